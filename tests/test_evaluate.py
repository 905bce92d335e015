"""Evaluation: metrics against hand-computed values, folds and protocols, and a 2-fold run of
the harness (ctface's model, a 3D CNN, PointNet and the shipped model) on a tiny cohort."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Cli, needs_face_model

from ctface.errors import InvalidInputError
from ctface.evaluate.methods import parse_method, subject_folds
from ctface.evaluate.metrics import (
    Searches,
    cmc,
    eer,
    fnir_at_fpir,
    fnmr_at_fmr,
    roc_auc,
    summary,
    verification_accuracy,
)
from ctface.evaluate.protocols import FoldEmbeddings, searches
from ctface.evaluate.volumes import ScanVolumes


def _hand_searches(open_set: bool = False) -> Searches:
    scores = [[0.9, 0.1], [0.4, 0.6], [0.7, 0.8]]  # mates 0, 1, 0: ranks 1, 1, 2
    mate = [0, 1, 0]
    if open_set:
        scores += [[0.5, 0.2], [0.3, 0.85]]  # non-mated: top scores 0.5 and 0.85
        mate += [-1, -1]
    n = len(mate)
    return Searches(np.array(scores), np.array(mate), np.arange(n), np.arange(n), np.arange(2))


def test_metrics_match_hand_computed_values() -> None:
    s = _hand_searches()
    assert np.allclose(cmc(s, 2), [2 / 3, 1.0])
    gen, imp = s.pairs()
    assert sorted(gen) == [0.6, 0.7, 0.9] and sorted(imp) == [0.1, 0.4, 0.8]
    assert roc_auc(gen, imp) == pytest.approx(7 / 9)  # 3 + 2 + 2 of 9 pairs ordered right
    assert eer(gen, imp) == pytest.approx(1 / 3)  # at 0.7: FMR = FNMR = 1/3
    acc, t = verification_accuracy(gen, imp)
    assert acc == pytest.approx(5 / 6) and t == pytest.approx(0.6)  # 3/3 genuine, 2/3 impostor
    p = fnmr_at_fmr(gen, imp, 0.34)  # one impostor (0.8) may pass: threshold just above 0.4
    assert (p.error, p.measured_rate, p.resolved) == (0.0, pytest.approx(1 / 3), True)
    assert 0.4 < p.threshold < 0.41
    p = fnmr_at_fmr(gen, imp, 1e-2)  # none may pass: above 0.8, 2 of 3 genuine rejected
    assert (p.error, p.measured_rate, p.resolved) == (pytest.approx(2 / 3), 0.0, False)
    o = _hand_searches(open_set=True)
    p = fnir_at_fpir(o, 0.5)  # one of two non-mated searches may return: threshold above 0.5
    assert (p.error, p.measured_rate) == (pytest.approx(1 / 3), 0.5)  # the rank-2 mate misses
    p = fnir_at_fpir(o, 0.01)  # above 0.85: only the first mated search (0.9, rank 1) hits
    assert p.error == pytest.approx(2 / 3) and not p.resolved
    m = summary(o)
    assert m["rank1"] == pytest.approx(2 / 3) and "fnir@fpir=0.01" in m
    assert eer(np.array([0.5, 0.6]), np.array([0.55])) == pytest.approx(0.5)  # interpolated


def test_ties_and_broken_scores_never_look_good() -> None:
    flat = Searches(np.zeros((4, 4)), np.arange(4), np.arange(4), np.arange(4), np.arange(4))
    m = summary(flat)  # a network that maps every face to one point identifies nobody
    assert m["rank1"] == 0.0 and m["auc"] == 0.5 and m["fnmr@fmr=0.01"] == 1.0
    with pytest.raises(InvalidInputError, match="not finite"):
        Searches(np.full((2, 2), np.nan), np.arange(2), np.arange(2), np.arange(2), np.arange(2))
    empty = summary(Searches(np.zeros((1, 2)), np.array([-1]), np.zeros(1), np.zeros(1),
                             np.arange(2)))  # fmt: skip
    assert np.isnan(empty["rank1"]) and np.isnan(empty["auc"])  # nothing to measure: NaN


def test_folds_are_disjoint_and_stratified() -> None:
    subject = np.repeat(np.arange(20), [2] * 10 + [3] * 10)  # 10 people with 2 scans, 10 with 3
    for stratified in (True, False):
        folds = subject_folds(subject, 5, 0, stratified)
        assert sorted(np.concatenate(folds)) == list(range(20))
    counts = np.bincount(subject)
    assert all(sorted(counts[f]) == [2, 2, 3, 3] for f in subject_folds(subject, 5, 1, True))
    with pytest.raises(InvalidInputError, match="at least 10 subjects"):
        subject_folds(np.arange(8), 5, 0, True)


def test_fold_cache_key_follows_what_the_results_depend_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new template rule or training augmentation gives view-embedding methods a new fold
    folder (nothing stale reused); the 3D CNNs (one embedding a scan) and model files keep
    theirs."""
    from types import SimpleNamespace

    from ctface.evaluate import harness

    data = SimpleNamespace(cache=tmp_path, scan_ids=["a", "b"], subject_ids=["P", "Q"],
                           scan_subject=np.array([0, 1]), segmenter_version="s")  # fmt: skip
    specs = ("ours:pretrained=0", "pointnet", "resnet10-3d", "model")
    dirs = lambda: {s: harness.method_dir(tmp_path, parse_method(s), data, 2, 0) for s in specs}  # noqa: E731
    before = dirs()
    assert len(set(before.values())) == len(specs)
    monkeypatch.setattr(harness, "TEMPLATE_RULE", "mean")
    after = dirs()
    assert [after[s] != before[s] for s in specs] == [True, True, False, False]
    monkeypatch.setattr(harness, "AUGMENTATION", "none")
    assert dirs()["ours:pretrained=0"] not in (before["ours:pretrained=0"],
                                               after["ours:pretrained=0"])  # fmt: skip


def test_protocols_keep_probes_and_galleries_apart() -> None:
    rng = np.random.default_rng(0)
    subject = np.array([0, 0, 1, 1, 1, 2, 2, 3, 3])
    tmpl = rng.normal(size=(9, 4))
    views = np.repeat(np.arange(9), 3)
    t = FoldEmbeddings(np.arange(9) + 10, subject, tmpl, rng.normal(size=(27, 4)), views)
    cross = searches(t, "cross-scan", rng)
    assert cross.scores.shape == (5, 4) and (cross.mate >= 0).all()
    assert not set(cross.probe_scan) & {10, 12, 15, 17}  # first scans are the gallery
    paper = searches(t, "paper", rng)
    assert paper.scores.shape == (23, 4)  # one image per subject in the gallery
    for s in (cross, paper):  # every probe's mate is its own subject's gallery entry
        assert (s.gallery_subject[s.mate] == s.probe_subject).all()
    assert not (np.abs(paper.scores - 1.0) < 1e-6).any()  # no image is compared with itself
    openset = searches(t, "open-set", rng)
    assert openset.scores.shape[1] == 2 and (openset.mate == -1).sum() >= 4
    one = FoldEmbeddings(np.arange(4), np.array([0, 1, 1, 2]), tmpl[:4], None, None)
    for seed in range(5):  # single-scan people are never enrolled (they would have no probe)
        o = searches(one, "open-set", np.random.default_rng(seed))
        assert list(o.gallery_subject) == [1] and o.mated.sum() == 1
    assert parse_method("resnet18-3d:rot=1").spec == "resnet18-3d:crop=1,it=300,proportion=1,rot=1"
    with pytest.raises(InvalidInputError, match="unknown option"):
        parse_method("ours:depth=3")


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5 synthetic people x 2 "scans" (face-model renderings with new expression and poses),
    written as a cohort whose pipeline cache is ready (the pipeline itself is tested
    elsewhere), with CT cubes made from the depth images."""
    needs_face_model()
    from ctface.embed.synthetic import synthetic_face

    root = tmp_path_factory.mktemp("eval") / "cohort"
    cache = root / "depth"
    cache.mkdir(parents=True)
    rows = []
    for i in range(5):
        face = synthetic_face(99, i, instances=2, views=6)
        for k in range(2):
            sid = f"S{i:04d}_{k + 1:02d}"
            depth = face.depth_mm[6 * k : 6 * k + 6]
            from ctface.embed.examples import DepthExample

            DepthExample(sid, f"S{i:04d}", depth, None).save(cache / f"{sid}.npz")
            d = np.nan_to_num(depth[0, ::4, ::4].astype(np.float32)) / 150.0
            cube = np.clip(np.linspace(0, 1, 32)[:, None, None] * d[None], 0, 1)
            ScanVolumes(sid, f"S{i:04d}", cube, cube[::-1]).save(cache / f"{sid}.vol.npz")
            rows.append({"scan_id": sid, "subject_id": f"S{i:04d}", "path": f"{sid}.nii.gz",
                         "slice_thickness_mm": "2.0", "mask": "0", "tube": "none",
                         "expression": ""})  # fmt: skip
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def test_two_fold_run_writes_a_report(
    tiny_cohort: Path, tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "report"
    r = cli("evaluate", "--cohort", str(tiny_cohort), "--folds", "2", "--iterations", "3",
            "--method", "ours", "--method", "resnet10-3d:rot=1", "--method", "pointnet",
            "--method", "model", "--bootstrap", "20", "--out", str(out), "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text())
    assert rep["cohort"]["subjects"] == 5 and rep["cohort"]["failure_to_acquire"]["rate"] == 0
    assert [m["family"] for m in rep["methods"]] == ["ours", "cnn3d", "points", "model"]
    for m in rep["methods"]:
        for p in ("paper", "cross-scan", "open-set"):
            res = m["protocols"][p]
            rank1 = res["metrics"]["rank1"]
            assert len(rank1["folds"]) == 2 and 0 <= rank1["mean"] <= 1
            assert np.all(np.diff(res["cmc"]) >= 0)
            assert res["cmc"][0] == pytest.approx(rank1["mean"], abs=1e-4)
            lo, hi = res["metrics"]["auc"]["ci95"]
            assert lo <= hi
        assert "fnir@fpir=0.01" in m["protocols"]["open-set"]["metrics"]
    shipped = rep["methods"][-1]["protocols"]["cross-scan"]["metrics"]
    assert shipped["rank1"]["mean"] >= 0.75 and shipped["auc"]["mean"] > 0.8  # it knows faces
    html = (out / "report.html").read_text()
    assert html.count("data:image/png") == 6 and "Rank-1 by nuisance" in html
    assert "Proposed (depth images pretrained)" in (out / "tables.md").read_text()
    work = out / "work"
    assert len(list(work.iterdir())) == 4
    (points,) = work.glob("pointnet-*")
    folds = sorted(points.glob("fold*.npz"))
    assert [f.name for f in folds] == ["fold0.npz", "fold1.npz"]
    before = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in folds}
    from ctface.evaluate import harness

    trained: list[str] = []
    real_run_fold = harness.run_fold

    def run_fold(m: Any, data: Any, train: Any, test: Any, seed: int, work: Path,
                 progress: Any = None) -> Any:  # fmt: skip
        trained.append(work.name)  # the fold's training folder: w<fold>
        return real_run_fold(m, data, train, test, seed, work, progress)

    monkeypatch.setattr(harness, "run_fold", run_fold)
    again = ("evaluate", "--cohort", str(tiny_cohort), "--folds", "2", "--iterations", "3",
             "--method", "pointnet", "--bootstrap", "0", "--work", str(work))  # fmt: skip
    r = cli(*again, "--out", str(tmp_path / "again"))
    assert r.returncode == 0, r.stderr
    assert trained == [] and len(list(work.iterdir())) == 4  # folds reused, not retrained
    assert {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in folds} == before
    again_rep = json.loads((tmp_path / "again" / "report.json").read_text())
    rank1 = lambda rep, i: rep["methods"][i]["protocols"]["cross-scan"]["metrics"]["rank1"]  # noqa: E731
    assert rank1(again_rep, 0)["folds"] == rank1(rep, 2)["folds"]  # the same fold results
    (points / "fold1.npz").unlink()  # as if interrupted during fold 1: only it is trained
    r = cli(*again, "--out", str(tmp_path / "third"))
    assert r.returncode == 0, r.stderr
    assert trained == ["w1"] and (points / "fold1.npz").is_file()
    assert (folds[0].stat().st_ino, folds[0].stat().st_mtime_ns) == before["fold0.npz"]
    r = cli("evaluate", "--tables", "--out", str(out))
    assert r.returncode == 0 and "| 3D ResNet10 (rotation)" in r.stdout
    r = cli("evaluate", "--cohort", str(tmp_path / "none"), "--out", str(tmp_path / "x"))
    assert r.returncode == 4 and not (tmp_path / "x" / "report.json").exists()
    r = cli("evaluate", "--cohort", str(tiny_cohort), "--folds", "3", "--out", str(tmp_path / "y"))
    assert r.returncode == 4 and "6 subjects" in r.stderr
