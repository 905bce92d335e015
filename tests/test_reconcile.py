"""`ctface reconcile`: the findings on synthetic templates (splits, merges, unlabeled scans,
the thresholds and expected false findings), `jobs.run_tasks` losing only a crashing task on
each engine, and the command end to end on a tiny phantom DICOM archive with planted errors."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib
import io
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Cli, make_cohort

from ctface.gallery.calibration import DEFAULT_FMR, Calibration
from ctface.gallery.reconcile import (
    EXPECTED_FALSE_MATCHES,
    LINK_RATE,
    FindingKind,
    Reconciliation,
    Role,
    all_pairs_above,
    archive_patient_id,
    is_unlabeled,
    reconcile,
)
from ctface.gallery.scores import ImpostorTail
from ctface.gallery.store import GalleryTemplates

DIM = 128
NOISE = 0.35  # per-scan noise: genuine scores ~0.89, impostors ~N(0, 1/sqrt(128) = 0.09)


# -- synthetic templates ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calibration() -> Calibration:
    return Calibration.load(None)


def _templates(scans: list[tuple[str, int]], seed: int = 0) -> GalleryTemplates:
    """One template per ``(filed patient ID, person)``: the person's identity vector plus
    noise, unit length; scan keys 1..N."""
    rng = np.random.default_rng(seed)
    people = max(p for _, p in scans) + 1
    identity = rng.standard_normal((people, DIM))
    identity /= np.linalg.norm(identity, axis=1, keepdims=True)
    vec = np.stack([identity[p] + NOISE * rng.standard_normal(DIM) / np.sqrt(DIM)
                    for _, p in scans])  # fmt: skip
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    keys = np.arange(1, len(scans) + 1, dtype=np.int64)
    return GalleryTemplates(vec.astype(np.float32), [pid for pid, _ in scans], keys, "rev")


def _clean(people: int, first: int = 0) -> list[tuple[str, int]]:
    """Persons ``first``.. each under their own ID ``P<n>``, with 2 or 3 scans."""
    return [(f"P{p:03d}", p) for p in range(first, first + people) for _ in range(2 + p % 2)]


def _rows(t: GalleryTemplates, pid: str) -> set[int]:
    return {i for i, p in enumerate(t.patient_ids) if p == pid}


def _by_role(r: Reconciliation, k: int = 0) -> dict[Role, set[int]]:
    out: dict[Role, set[int]] = {}
    for s in r.findings[k].scans:
        out.setdefault(s.role, set()).add(s.row)
    return out


def test_synthetic_scores_are_realistic() -> None:
    t = _templates(_clean(12))
    sim = t.vectors @ t.vectors.T
    same = np.equal.outer(t.patient_ids, t.patient_ids)
    upper = np.triu(np.ones_like(same), k=1)
    genuine, impostor = sim[same & upper], sim[~same & upper]
    assert 0.85 < np.median(genuine) < 0.95 and genuine.min() > 0.75
    assert abs(np.mean(impostor)) < 0.03 and 0.06 < np.std(impostor) < 0.12


def test_clean_archive_has_no_findings(calibration: Calibration) -> None:
    t = _templates(_clean(12))
    r = reconcile(t, calibration)
    assert r.findings == []
    assert (r.patients, r.unlabeled, r.patient_ids) == (12, 0, t.patient_ids)
    assert r.scan_keys.tolist() == t.scan_keys.tolist()
    assert r.expected_false_findings < 1


def test_misfiled_scan_is_a_split_of_its_id(calibration: Calibration) -> None:
    """A (3 scans) has a fourth scan filed under B (2 scans): B's odd one out, suggested A."""
    scans = [("A", 0)] * 3 + [("B", 1)] * 2 + _clean(8, first=2)
    scans.insert(4, ("B", 0))  # between B's own scans
    t = _templates(scans, seed=1)
    r = reconcile(t, calibration)
    assert len(r.findings) == 1, r.findings
    (f,) = r.findings
    assert f.kind == FindingKind.SPLIT and f.patient_ids == ("B", "A")
    assert f.suggested_patient_id == "A"
    roles = _by_role(r)
    assert roles == {Role.ODD: {4}, Role.FILED: _rows(t, "B") - {4},
                     Role.SUGGESTED: _rows(t, "A")}  # fmt: skip
    assert f.score < r.levels.link <= r.levels.match <= (f.match_score or 0.0)
    assert f.evidence > 3 and "A" in f.check and "B" in f.check


def test_one_person_under_two_ids_is_a_merge(calibration: Calibration) -> None:
    scans = [("C", 0)] * 2 + [("C2", 0)] * 3 + _clean(10, first=1)
    t = _templates(scans, seed=2)
    r = reconcile(t, calibration)
    assert len(r.findings) == 1, r.findings
    (f,) = r.findings
    assert f.kind == FindingKind.MERGE and set(f.patient_ids) == {"C", "C2"}
    assert f.suggested_patient_id is None and f.score >= r.levels.match
    assert _by_role(r) == {Role.MERGED: _rows(t, "C") | _rows(t, "C2")}


@pytest.mark.parametrize("placeholder", ["", "UNKNOWN", " n/a ", "unlabeled:1.2.3"])
def test_unlabeled_scan_gets_its_owner_suggested(
    calibration: Calibration, placeholder: str
) -> None:
    scans = [("A", 0)] * 3 + _clean(9, first=1) + [(placeholder, 0), ("unlabeled:9.9", 20)]
    t = _templates(scans, seed=3)
    r = reconcile(t, calibration)
    assert (r.patients, r.unlabeled) == (10, 2)
    assert [f.kind for f in r.findings] == [FindingKind.UNLABELED] * 2
    owned, stranger = r.findings  # strongest evidence first
    assert owned.suggested_patient_id == "A" and owned.patient_ids == ()
    assert owned.score >= r.levels.match and owned.evidence > 3
    assert _by_role(r, 0) == {Role.UNLABELED: {len(scans) - 2}, Role.SUGGESTED: _rows(t, "A")}
    assert stranger.suggested_patient_id is None and stranger.evidence == 0
    assert stranger.score < r.levels.match and "not in the archive" in stranger.check
    assert _by_role(r, 1) == {Role.UNLABELED: {len(scans) - 1}}


@pytest.mark.parametrize("swap", [False, True])
def test_two_scan_tie_the_one_matching_another_patient_is_odd(
    calibration: Calibration, swap: bool
) -> None:
    """T holds one scan of A (who has 3 more) and one of a person seen nowhere else: two
    groups of one scan; the one matching A is the odd one, whatever the order."""
    pair = [("T", 0), ("T", 1)][:: -1 if swap else 1]
    scans = [("A", 0)] * 3 + pair + _clean(8, first=2)
    t = _templates(scans, seed=4)
    odd = 3 + swap
    r = reconcile(t, calibration)
    assert len(r.findings) == 1, r.findings
    (f,) = r.findings
    assert f.kind == FindingKind.SPLIT and f.suggested_patient_id == "A"
    assert f.patient_ids == ("T", "A")
    assert _by_role(r) == {Role.ODD: {odd}, Role.FILED: {7 - odd}, Role.SUGGESTED: _rows(t, "A")}


def test_two_scan_tie_matching_nobody_is_undecided(calibration: Calibration) -> None:
    scans = [("U", 0), ("U", 1)] + _clean(10, first=2)
    t = _templates(scans, seed=5)
    r = reconcile(t, calibration)
    assert len(r.findings) == 1, r.findings
    (f,) = r.findings
    assert f.kind == FindingKind.SPLIT and f.patient_ids == ("U",)
    assert f.suggested_patient_id is None
    assert _by_role(r) == {Role.UNDECIDED: {0, 1}}


def test_unmatched_splits_are_counted_not_listed_beyond_the_limit(
    calibration: Calibration, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where more false splits are expected than ``MAX_FALSE_UNMATCHED``, splits whose odd
    scans match nobody are only counted (``all_splits`` lists them); matched ones stay."""
    import ctface.gallery.reconcile as rec

    scans = [("A", 0)] * 3 + [("B", 1)] * 2 + [("B", 0), ("U", 2), ("U", 3)] + _clean(8, 4)
    t = _templates(scans, seed=6)
    listed = reconcile(t, calibration)
    assert sorted((f.patient_ids, f.suggested_patient_id) for f in listed.findings) == [
        (("B", "A"), "A"), (("U",), None)]  # fmt: skip
    assert listed.levels.unmatched_splits_hidden == 0
    monkeypatch.setattr(rec, "MAX_FALSE_UNMATCHED", 0.0)
    r = reconcile(t, calibration)
    assert [(f.patient_ids, f.suggested_patient_id) for f in r.findings] == [(("B", "A"), "A")]
    assert r.levels.unmatched_splits_hidden == 1 and r.levels.expected_false_splits == 0
    every = reconcile(t, calibration, all_splits=True)
    assert len(every.findings) == 2 and every.levels.unmatched_splits_hidden == 0


def _brute_force(v: np.ndarray, threshold: float) -> dict[tuple[int, int], float]:
    sim = v.astype(np.float64) @ v.astype(np.float64).T
    n = len(v)
    return {(i, j): sim[i, j] for i in range(n) for j in range(i + 1, n) if sim[i, j] >= threshold}


@pytest.mark.parametrize("block_floats", [None, 1, 7 * 60])
@pytest.mark.parametrize("threshold", [0.5, 0.1, -0.05])
def test_all_pairs_above_is_the_upper_triangle(
    monkeypatch: pytest.MonkeyPatch, block_floats: int | None, threshold: float
) -> None:
    """Exact against a brute-force check, in one block, one row a block or 7 (the last one
    partial), with a negative threshold too (the diagonal and the lower triangle excluded)."""
    import ctface.gallery.reconcile as rec

    if block_floats is not None:
        monkeypatch.setattr(rec, "BLOCK_FLOATS", block_floats)
    v = _templates([("x", p // 3) for p in range(60)], seed=7).vectors  # triples: high scores
    expect = _brute_force(v, threshold)
    margin = np.abs(v.astype(np.float64) @ v.astype(np.float64).T - threshold).min()
    assert margin > 1e-5  # no score so near the threshold that float32 rounding decides it
    hits = all_pairs_above(v, threshold)
    assert {(i, j) for i, j, _ in hits} == set(expect)
    assert all(abs(s - expect[i, j]) < 1e-5 for i, j, s in hits)
    assert [s for *_, s in hits] == sorted((s for *_, s in hits), reverse=True)
    assert len(expect) > 0 and (threshold > 0 or len(expect) > 60 * 59 / 4)


def test_all_pairs_above_small_inputs() -> None:
    assert all_pairs_above(np.zeros((0, DIM), np.float32), 0.5) == []
    assert all_pairs_above(np.eye(1, DIM, dtype=np.float32), -1.0) == []
    (hit,) = all_pairs_above(np.eye(2, DIM, dtype=np.float32), -0.5)
    assert hit == (0, 1, 0.0)


def test_levels_default_fmr_few_comparisons(calibration: Calibration) -> None:
    """Few patients: the calibration's impostor tail, FMR capped at 1e-3; the expected false
    matches are comparisons x FMR (the tail is continuous at the match threshold)."""
    scans = [("A", 0)] * 3 + [("B", 1)] * 2 + [("B", 0)] + _clean(8, first=2) + [("", 0)]
    t = _templates(scans, seed=1)
    lv = reconcile(t, calibration).levels
    tail = ImpostorTail.fit(calibration.impostor)
    m = 10  # A, B, P002..P009
    assert lv.comparisons == m * (m - 1) // 2 + (1 + 1) * m  # + the odd and unlabeled scans
    assert lv.fmr == DEFAULT_FMR == 1e-3 < EXPECTED_FALSE_MATCHES / lv.comparisons
    assert lv.tail_source == calibration.label
    assert lv.link == pytest.approx(tail.threshold(LINK_RATE))
    assert lv.match == pytest.approx(tail.threshold(DEFAULT_FMR))
    assert lv.expected_false_matches == pytest.approx(lv.comparisons * lv.fmr, rel=1e-6)
    assert lv.split_tests == 10  # every ID has 2+ scans
    assert 0 < lv.expected_false_splits < 1
    json.dumps(lv.to_json())


def test_levels_default_fmr_many_comparisons(calibration: Calibration) -> None:
    """160 patients (12,720 pairs): the archive's own impostor tail, FMR
    ``EXPECTED_FALSE_MATCHES`` / comparisons (below the 1e-3 cap), so that many false matches
    expected; an FMR given is used as it is."""
    t = _templates(_clean(160), seed=8)
    lv = reconcile(t, calibration).levels
    assert lv.tail_source == "archive" and lv.comparisons == 160 * 159 // 2
    assert lv.fmr == pytest.approx(EXPECTED_FALSE_MATCHES / lv.comparisons)
    assert lv.fmr < DEFAULT_FMR
    assert lv.expected_false_matches == pytest.approx(EXPECTED_FALSE_MATCHES, rel=1e-6)
    assert 0.1 < lv.link < lv.match < 0.5  # the archive's impostors: sd ~0.09
    fixed = reconcile(t, calibration, fmr=1e-6).levels
    assert fixed.fmr == 1e-6 and fixed.match > lv.match
    assert fixed.expected_false_matches == pytest.approx(fixed.comparisons * 1e-6, rel=1e-6)
    assert fixed.link == lv.link and fixed.expected_false_splits == lv.expected_false_splits


def test_levels_explicit_fmr_with_the_calibration_tail(calibration: Calibration) -> None:
    t = _templates(_clean(12), seed=9)
    tail = ImpostorTail.fit(calibration.impostor)
    for fmr in (1e-2, 1e-4):
        lv = reconcile(t, calibration, fmr=fmr).levels
        assert lv.fmr == fmr and lv.match == pytest.approx(tail.threshold(fmr))
        assert lv.expected_false_matches == pytest.approx(66 * fmr, rel=0.05)


def test_placeholders_are_unlabeled() -> None:
    for pid in ("", "  ", "UNKNOWN", "unknown", " N/A ", "anonymous", "0", "unlabeled:1.2.3"):
        assert is_unlabeled(pid), pid
    for pid in ("S0001", "0001", "UNKNOWN2", "Anon Ymous", "x-unlabeled:1"):
        assert not is_unlabeled(pid), pid
    assert archive_patient_id("", "1.2.3") == "unlabeled:1.2.3"
    assert archive_patient_id(" unknown ", "1.2.4") == "unlabeled:1.2.4"
    assert archive_patient_id(" S0001 ", "1.2.5") == "S0001"


# -- run_tasks: a worker that dies ----------------------------------------------------------------


def _crash_run(tmp_path: Path, engine: str) -> tuple[dict[int, list[Any]], int]:
    """8 tasks on 2 workers, the 4th killing its worker: every result, and how many times the
    4th was started."""
    from engine_tasks import square_or_die

    from ctface.jobs import Engine, run_tasks

    marker = tmp_path / "attempts"
    results: dict[int, list[Any]] = {}
    run_tasks(square_or_die, [(x, 3, str(marker)) for x in range(8)],
              lambda i, r: results.setdefault(i, []).append(r), engine=Engine(engine),
              jobs=2)  # fmt: skip
    return results, len(marker.read_text().splitlines())


def _check_crash_run(results: dict[int, list[Any]], attempts: int) -> None:
    from ctface.jobs import WorkerLost

    assert sorted(results) == list(range(8)) and all(len(r) == 1 for r in results.values())
    lost = sorted(i for i, r in results.items() if isinstance(r[0], WorkerLost))
    assert lost == [3], results  # no other task lost with it
    assert {i: r[0] for i, r in results.items() if i != 3} == {i: i * i for i in range(8) if i != 3}
    assert attempts == 2  # retried once


def test_run_tasks_local_pool_loses_only_the_crashing_task(tmp_path: Path) -> None:
    _check_crash_run(*_crash_run(tmp_path, "local"))


def test_run_tasks_dask_loses_only_the_crashing_task(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    _check_crash_run(*_crash_run(tmp_path, "dask"))


@pytest.mark.slow
def test_run_tasks_ray_loses_only_the_crashing_task(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray")
    tests = str(Path(__file__).parent)  # Ray's workers import engine_tasks by name
    monkeypatch.setenv("PYTHONPATH", tests)
    _check_crash_run(*_crash_run(tmp_path, "ray"))


# -- end to end: a phantom DICOM archive with planted errors --------------------------------------

# scan folder -> the PatientID written into all its files (the cohort files each scan under its
# subject): a misfiled scan, a lost ID, and one person under two IDs
PLANTED = {"S0003_03": "S0001", "S0004_03": "", "S0005_02": "S0005B", "S0005_03": "S0005B"}
RUN = ("--jobs", "2", "--json")


def _scan_folder(root: Path, scan: str) -> Path:
    return root / scan[:5] / f"{scan}_dicom"


def _state(root: Path) -> dict[str, tuple[str, int]]:
    """Every file's digest and mtime."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                       p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}  # fmt: skip


def _ctface(*args: str) -> subprocess.CompletedProcess[str]:
    """The in-process CLI (as the ``cli`` fixture, for module-scoped fixtures)."""
    from ctface.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, tuple[str, int]]]:
    """S0001 (2 scans), S0002 (2), S0003-S0005 (3 each), the errors ``PLANTED``; and the state
    of its files (~35 s on 2 cores)."""
    import pydicom

    root = tmp_path_factory.mktemp("reconcile") / "archive"
    make_cohort(root, subjects=5, scans_min=2, scans_max=3, seed=19, dicom_fraction=1.0)
    for scan, pid in PLANTED.items():
        for f in sorted(_scan_folder(root, scan).iterdir()):
            ds = pydicom.dcmread(f)
            ds.PatientID = pid
            ds.save_as(f)
    return root, _state(root)


@pytest.fixture(scope="module")
def local_run(
    archive: tuple[Path, dict[str, tuple[str, int]]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    """`ctface reconcile ARCHIVE --out OUT --jobs 2 --json` (~25 s): OUT and what it printed."""
    out = tmp_path_factory.mktemp("reconcile") / "out"
    r = _ctface("reconcile", str(archive[0]), "--out", str(out), *RUN)
    assert r.returncode == 0, r.stderr
    return out, json.loads(r.stdout)


def _series_uid(root: Path, scan: str) -> str:
    import pydicom

    first = sorted(_scan_folder(root, scan).iterdir())[0]
    return str(pydicom.dcmread(first, stop_before_pixels=True).SeriesInstanceUID)


def _same(findings: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What must agree between runs (scan keys may differ)."""
    return sorted((f["kind"], tuple(f["patient_ids"]), f["suggested_patient_id"],
                   round(f["score"], 3), tuple(sorted((s["role"], s["series_uid"])
                                                      for s in f["scans"])))
                  for f in findings)  # fmt: skip


def _stub_frontals(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Report images rendered again from the sources (~3 s a scan on 2 cores; the function is
    tested with the identify pages) replaced by a grey square; the sources asked for."""
    # the module (``import ctface.gallery.acquire`` names the function the package exports)
    acquire_module = importlib.import_module("ctface.gallery.acquire")
    asked: list[str] = []

    def grey(record: Any) -> np.ndarray:
        asked.append(record.source)
        return np.full((64, 64), 128, np.uint8)

    monkeypatch.setattr(acquire_module, "frontal_from_source", grey)
    return asked


def test_reconcile_finds_the_planted_errors(
    archive: tuple[Path, dict[str, tuple[str, int]]], local_run: tuple[Path, dict[str, Any]]
) -> None:
    root, _ = archive
    _, res = local_run
    assert (res["scans"], res["patients"], res["unlabeled"]) == (13, 6, 1)
    assert res["failed_to_acquire"] == 0 and res["expected_false_findings"] < 1
    by_kind = {f["kind"]: f for f in res["findings"]}
    assert sorted(by_kind) == ["merge", "split", "unlabeled"], res["findings"]

    split = by_kind["split"]
    assert split["patient_ids"] == ["S0001", "S0003"] and split["suggested_patient_id"] == "S0003"
    (odd,) = [s for s in split["scans"] if s["role"] == str(Role.ODD)]
    assert "S0003_03" in odd["source"] and odd["series_uid"] == _series_uid(root, "S0003_03")
    assert {s["role"] for s in split["scans"]} == {str(Role.ODD), str(Role.FILED),
                                                    str(Role.SUGGESTED)}  # fmt: skip

    lost = by_kind["unlabeled"]
    assert lost["suggested_patient_id"] == "S0004" and lost["patient_ids"] == []
    (scan,) = [s for s in lost["scans"] if s["role"] == str(Role.UNLABELED)]
    assert "S0004_03" in scan["source"] and scan["series_uid"] == _series_uid(root, "S0004_03")

    merge = by_kind["merge"]
    assert sorted(merge["patient_ids"]) == ["S0005", "S0005B"]
    assert merge["suggested_patient_id"] is None
    assert {s["series_uid"] for s in merge["scans"]} == {
        _series_uid(root, f"S0005_0{k}") for k in (1, 2, 3)}  # fmt: skip
    assert [f["evidence"] for f in res["findings"]] == sorted(
        (f["evidence"] for f in res["findings"]), reverse=True)  # fmt: skip


def test_reconcile_writes_the_worklist(local_run: tuple[Path, dict[str, Any]]) -> None:
    from ctface.gallery.reconcile_report import CSV_COLUMNS

    out, res = local_run
    assert {Path(p).name for p in res["outputs"].values()} == {
        "findings.json", "findings.csv", "report.html"}  # fmt: skip
    saved = json.loads((out / "findings.json").read_text())
    assert saved["findings"] == res["findings"] and saved["levels"] == res["levels"]
    with open(out / "findings.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS
    expect = [(str(n), f["kind"], s["role"], s["series_uid"])
              for n, f in enumerate(res["findings"], 1) for s in f["scans"]]  # fmt: skip
    got = [(r[0], r[1], r[CSV_COLUMNS.index("role")], r[CSV_COLUMNS.index("series_uid")])
           for r in rows[1:]]  # fmt: skip
    assert got == expect
    page = (out / "report.html").read_text()
    scans = sum(len(f["scans"]) for f in res["findings"])
    assert page.count('<img src="data:image/png') == scans  # this run's images, every scan
    assert "source not readable" not in page


def test_rerun_processes_nothing_new(
    archive: tuple[Path, dict[str, tuple[str, int]]],
    local_run: tuple[Path, dict[str, Any]],
    cli: Cli,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second run into the same --out reads the gallery of the first: no scan acquired, the
    same findings, the report images from the first run's OUT/images (none rendered again)."""
    from ctface.gallery.review import Decision, list_findings, record_decision
    from ctface.gallery.store import GalleryDatabase

    out, res = local_run
    with GalleryDatabase(out / "archive.db") as g:
        before = (g.revision, len(g.scans()))
        kept, total = list_findings(g)  # the findings are kept in the gallery for review
        assert total == len(res["findings"]) == 3
        assert {f.kind for f in kept} == {"split", "merge", "unlabeled"}
        record_decision(g, kept[0].finding_id, Decision.ACCEPT, "alice", "checked")
    asked = _stub_frontals(monkeypatch)
    r = cli("reconcile", str(archive[0]), "--out", str(out), "--jobs", "2")
    assert r.returncode == 0, r.stderr
    assert "13 scans, 13 done in an earlier run, 0 to process" in r.stderr
    with GalleryDatabase(out / "archive.db") as g:
        assert (g.revision, len(g.scans())) == before == (13, 13)
        again_kept, total = list_findings(g)  # found again: the same findings, decisions kept
        assert total == 3 and {f.key for f in again_kept} == {f.key for f in kept}
        decided = [f for f in again_kept if f.finding_id == kept[0].finding_id]
        assert decided[0].status == "accept" and decided[0].decisions[0].user == "alice"
    again = json.loads((out / "findings.json").read_text())
    assert _same(again["findings"]) == _same(res["findings"])
    assert "split" in r.stdout and "S0005B" in r.stdout  # the table
    assert asked == []
    pictured = sum(len(f["scans"]) for f in res["findings"])
    assert (out / "report.html").read_text().count('<img src="data:image/png') == pictured
    assert len(list((out / "images").glob("*.png"))) == len(
        {s["source"] for f in res["findings"] for s in f["scans"]}
    )


def test_reconcile_a_gallery_alone(
    local_run: tuple[Path, dict[str, Any]],
    cli: Cli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    out, res = local_run
    asked = _stub_frontals(monkeypatch)
    db = out / "archive.db"
    r = cli("reconcile", "--db", str(db), "--out", str(tmp_path / "o"), "--json", "--jobs", "1")
    assert r.returncode == 0, r.stderr
    alone = json.loads(r.stdout)
    assert alone["archive"] == str(db) and alone["scans"] == 13
    assert _same(alone["findings"]) == _same(res["findings"])
    assert (tmp_path / "o" / "report.html").is_file()
    assert not (tmp_path / "o" / "archive.db").exists()  # the gallery given is the one read
    assert len(set(asked)) == len({s["source"] for f in res["findings"] for s in f["scans"]})


def test_dask_engine_gives_the_same_findings(
    archive: tuple[Path, dict[str, tuple[str, int]]],
    local_run: tuple[Path, dict[str, Any]],
    cli: Cli,
    tmp_path: Path,
) -> None:
    """The archive processed again on a local Dask cluster (2 workers)."""
    pytest.importorskip("distributed")
    r = cli("reconcile", str(archive[0]), "--out", str(tmp_path / "dask"), "--engine", "dask",
            *RUN)  # fmt: skip
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["failed_to_acquire"] == 0 and res["scans"] == 13
    assert _same(res["findings"]) == _same(local_run[1]["findings"])


def test_bad_input_exits_4_before_any_work(
    archive: tuple[Path, dict[str, tuple[str, int]]],
    cli: Cli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each refused in one line on stderr before the archive is read or --out made."""

    def processing(*_: Any) -> None:
        pytest.fail("the archive was processed before the request was checked")

    monkeypatch.setattr(importlib.import_module("ctface.cli.reconcile"), "_update", processing)
    out = tmp_path / "out"
    (tmp_path / "a_file").touch()
    for args in (
        ("--out", str(out)),  # neither ARCHIVE nor --db
        (str(tmp_path / "missing"), "--out", str(out)),
        (str(archive[0]), "--out", str(out), "--engine", "spark"),
        (str(archive[0]), "--out", str(tmp_path / "a_file")),
        (str(archive[0]), "--out", str(out), "--fmr", "0"),
        (str(archive[0]), "--out", str(out), "--fmr", "1.5"),
    ):
        r = cli("reconcile", *args)
        assert r.returncode == 4, (args, r.stdout, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not out.exists(), args
    r = cli("reconcile", "--db", str(tmp_path / "none.db"), "--out", str(out))
    assert r.returncode == 3 and "no gallery" in r.stderr  # missing data
    assert not (tmp_path / "none.db").exists()


def test_archive_left_untouched(archive: tuple[Path, dict[str, tuple[str, int]]]) -> None:
    """After every run above (last in this file): no file of the archive changed, none added."""
    root, before = archive
    assert _state(root) == before


def test_a_corrected_id_is_refiled_on_the_next_run(
    archive: tuple[Path, dict[str, tuple[str, int]]],
    local_run: tuple[Path, dict[str, Any]],
    cli: Cli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The misfiled scan's PatientID corrected in (a copy of) the archive: the next run files
    the stored scan under its patient without processing it again, and the split is gone."""
    import shutil

    import pydicom

    from ctface.gallery.store import GalleryDatabase

    root = tmp_path / "archive"
    shutil.copytree(archive[0], root)
    db = tmp_path / "archive.db"
    shutil.copy(local_run[0] / "archive.db", db)
    for f in sorted(_scan_folder(root, "S0003_03").iterdir()):
        ds = pydicom.dcmread(f)
        ds.PatientID = "S0003"
        ds.save_as(f)
    _stub_frontals(monkeypatch)
    r = cli("reconcile", str(root), "--db", str(db), "--out", str(tmp_path / "o"), "--jobs", "1")
    assert r.returncode == 0, r.stderr
    assert "0 to process" in r.stderr and "1 scans filed under" in r.stderr
    found = json.loads((tmp_path / "o" / "findings.json").read_text())["findings"]
    assert sorted(f["kind"] for f in found) == ["merge", "unlabeled"]
    with GalleryDatabase(db) as g:
        assert dict(g.patients())["S0003"] == 3 and dict(g.patients())["S0001"] == 2


def test_an_archive_where_every_scan_fails_gets_a_report(
    archive: tuple[Path, dict[str, tuple[str, int]]],
    cli: Cli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No scan acquired (each refused by the quality gate, canned here): a report with no
    findings and the failures with their reasons, not an error about a missing gallery."""
    import ctface.gallery.enroll as enroll_module
    from ctface.errors import FailureCode

    def refused(*_: Any) -> tuple[None, FailureCode, str, float]:
        return None, FailureCode.NO_FACE, "no face in the field of view", 0.0

    monkeypatch.setattr(enroll_module, "acquire_job", refused)
    out = tmp_path / "o"
    r = cli("reconcile", str(archive[0]), "--out", str(out), "--jobs", "1", "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert (res["scans"], res["findings"], res["levels"]) == (0, [], None)
    assert res["failed_to_acquire"] == 13 == len(res["failures"])
    assert {f["code"] for f in res["failures"]} == {"no-face"}
    assert "No scan could be acquired" in (out / "report.html").read_text()
    r = cli("reconcile", str(archive[0]), "--out", str(out), "--jobs", "1")  # the table's path
    assert r.returncode == 0 and "no scan of" in r.stdout


def test_findings_csv_cells_never_run_as_formulas() -> None:
    from ctface.gallery.reconcile_report import findings_csv

    scan = {"role": "odd", "patient_id": "=HYPERLINK(\"x\")", "series_uid": "1.2",
            "study_uid": None, "source": "@evil/scan"}  # fmt: skip
    finding = {"kind": "split", "score": -0.5, "evidence": 3.2, "patient_ids": ["+P1"],
               "suggested_patient_id": "-P2", "check": "look", "scans": [scan]}  # fmt: skip
    row = findings_csv([finding]).splitlines()[1]
    assert "'=HYPERLINK" in row and "'@evil" in row and "'+P1" in row and "'-P2" in row
    assert ",-0.5," in row  # numbers stay numbers
