"""The commands the other test files leave out, each through the in-process CLI on tiny data:
`ctface gallery list|stats`, `ctface calibrate`, `ctface train phantoms`,
`ctface train-landmarks` and `ctface demo`."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import FAST, Cli, needs_face_model

from ctface.gallery import Calibration, GalleryDatabase, ScanRecord


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mtimes(paths: list[Path]) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in paths}


# -- gallery list | stats ---------------------------------------------------------------------


def _record(n: int, face: float) -> ScanRecord:
    return ScanRecord(f"digest{n}", f"/scans/{n}", f"1.2.{n}", "1.2", f"DPID{n}",
                      {"format": "nifti"}, {"face_fraction": face, "n_views": 90})  # fmt: skip


@pytest.fixture
def small_gallery(tmp_path: Path) -> Path:
    """Patients A (2 scans) and B (1 scan), a patient C enrolled and removed again, one
    recorded failure to acquire: canned templates, no CT."""
    db = tmp_path / "g.db"
    rng = np.random.default_rng(0)
    vec = rng.standard_normal((4, 8)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    with GalleryDatabase(db, create=True) as g:
        for n, (pid, face) in enumerate([("A", 0.5), ("B", 0.42), ("A", 0.61), ("C", 0.3)]):
            g.add_scan(pid, _record(n, face), vec[n], "v1")
        g.remove_patient("C")
        g.add_failure("digest9", "/scans/9", "no-face", "no face in field of view")
    return db


def test_gallery_list(small_gallery: Path, cli: Cli) -> None:
    db = ["--db", str(small_gallery)]
    before = _digest(small_gallery)
    r = cli("gallery", "list", "--json", *db)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["patients"] == [{"patient_id": "A", "scans": 2}, {"patient_id": "B", "scans": 1}]
    assert [(s["patient_id"], s["scan_key"], s["source"]) for s in out["scans"]] == [
        ("A", 1, "/scans/0"), ("A", 3, "/scans/2"), ("B", 2, "/scans/1")]  # fmt: skip
    first = out["scans"][0]
    assert (first["digest"], first["series_uid"], first["dicom_patient_id"]) == (
        "digest0", "1.2.0", "DPID0")  # fmt: skip
    assert first["quality"] == {"face_fraction": 0.5, "n_views": 90}
    assert first["model_version"] == "v1" and "template" not in first

    r = cli("gallery", "list", "--patient", "B", "--json", *db)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["patients"] == [{"patient_id": "B", "scans": 1}]
    assert [s["source"] for s in out["scans"]] == ["/scans/1"]

    r = cli("gallery", "list", *db)  # for people: one line a scan, then the counts
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 4 and lines[-1] == "2 patients, 3 scans"
    assert re.fullmatch(r"A\s+scan\s+1\s+face\s+50%\s+/scans/0\s+1\.2\.0", lines[0]), lines[0]
    assert re.fullmatch(r"B\s+scan\s+2\s+face\s+42%\s+/scans/1\s+1\.2\.1", lines[2]), lines[2]

    r = cli("gallery", "list", "--patient", "C", *db)  # removed: not there any more
    assert r.returncode == 7 and "no patient 'C'" in r.stderr and r.stdout == ""
    assert _digest(small_gallery) == before  # listing writes nothing
    r = cli("gallery", "list", "--db", str(small_gallery.with_name("none.db")))
    assert r.returncode == 3 and "enroll scans first" in r.stderr
    assert not small_gallery.with_name("none.db").exists()


def test_gallery_stats(small_gallery: Path, cli: Cli) -> None:
    r = cli("gallery", "stats", "--json", "--db", str(small_gallery))
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s == {
        **s,
        "path": str(small_gallery),
        "patients": 2,
        "scans": 3,
        "scans_per_patient": {"min": 1, "max": 2},
        "failures_to_acquire": 1,
        "model_version": "v1",
        "revision": 5,  # 4 scans added, patient C removed (a failure changes no template)
        "size_bytes": small_gallery.stat().st_size,
        "integrity": "ok",
    }
    assert s["created_at"].startswith("20")
    r = cli("gallery", "stats", "--db", str(small_gallery))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert "patients: 2" in lines and "scans: 3" in lines and "integrity: ok" in lines
    assert "failures_to_acquire: 1" in lines and len(lines) == len(s)
    (small_gallery.parent / "other.db").write_bytes(b"not a database at all" * 100)
    r = cli("gallery", "stats", "--db", str(small_gallery.parent / "other.db"))
    assert r.returncode == 7 and "not a ctface gallery" in r.stderr


def test_gallery_export(small_gallery: Path, tmp_path: Path, cli: Cli) -> None:
    """The file is the library's export (with or without templates); nothing else changes."""
    out = tmp_path / "e.json"
    before = _digest(small_gallery)
    for flags, templates in (((), True), (("--no-templates",), False)):
        r = cli("gallery", "export", "--out", str(out), "--db", str(small_gallery), *flags)
        assert r.returncode == 0, r.stderr
        assert " ".join(r.stdout.split()) == f"wrote {out}: 2 patients, 3 scans"
        data = json.loads(out.read_text())
        with GalleryDatabase(small_gallery) as g:
            assert data == g.export(include_templates=templates)
        assert ("template" in data["scans"][0]) == templates
    assert _digest(small_gallery) == before
    r = cli("gallery", "export", "--out", str(out), "--db", str(tmp_path / "none.db"))
    assert r.returncode == 3 and "enroll scans first" in r.stderr


# -- calibrate ----------------------------------------------------------------------------------

# people and their scans: 7 people scanned twice, one three times, one once, and one scan of
# that last person that failed to acquire
SCANS = {f"S{i:04d}": 2 for i in range(7)} | {"S0007": 3, "S0008": 1}
GENUINE = 7 * 1 + 3  # pairs of one person's scans
IMPOSTOR = 18 * 17 // 2 - GENUINE  # every other pair of the 18 usable scans


@pytest.fixture(scope="module")
def calib_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cohort folder whose pipeline cache is ready (depth images of synthetic faces: 3 views
    a scan, new expression and poses per scan; the pipeline itself is tested elsewhere)."""
    needs_face_model()
    from ctface.embed.examples import DepthExample
    from ctface.embed.synthetic import synthetic_face

    root = tmp_path_factory.mktemp("calib") / "cohort"
    cache = root / "depth"
    cache.mkdir(parents=True)
    rows = []
    for i, (subject, n) in enumerate(SCANS.items()):
        face = synthetic_face(31, i, instances=n, views=3)
        for k in range(n):
            sid = f"{subject}_{k + 1:02d}"
            DepthExample(sid, subject, face.depth_mm[3 * k : 3 * k + 3], None).save(
                cache / f"{sid}.npz"
            )
            rows.append({"scan_id": sid, "subject_id": subject, "path": f"{sid}.nii.gz"})
    rows.append({"scan_id": "S0008_02", "subject_id": "S0008", "path": "S0008_02.nii.gz"})
    (cache / "S0008_02.failed").write_text("NoFaceError: no face in field of view")
    with open(root / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (root / "cohort.json").write_text(json.dumps({"subjects": 9, "seed": 4242}))
    return root


def test_calibrate(calib_cohort: Path, tmp_path: Path, cli: Cli) -> None:
    from ctface.embed.embedder import FaceEmbedder
    from ctface.embed.examples import DepthExample

    out = tmp_path / "cal.json"
    r = cli("calibrate", "--cohort", str(calib_cohort), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    model = FaceEmbedder.load()
    assert summary == {
        **summary,
        "out": str(out),
        "model_version": model.version,
        "scans": 18,
        "subjects": 9,
        "genuine": GENUINE,
        "impostor": IMPOSTOR,
        "failures_to_acquire": 1,
    }
    data = json.loads(out.read_text())
    assert data["format"] == "ctface-calibration-1" and data["model_version"] == model.version
    prov = data["provenance"]
    assert prov["cohort"] == "phantom cohort seed 4242" and prov["cohort_spec"]["seed"] == 4242
    assert prov["failures_to_acquire"] == {"S0008_02": "NoFaceError: no face in field of view"}
    assert (prov["scans"], prov["subjects"], prov["command"]) == (18, 9, "ctface calibrate")
    assert len(data["genuine"]) == GENUINE and len(data["impostor"]) == IMPOSTOR
    assert data["genuine"] == sorted(data["genuine"]) and data["impostor"] == sorted(
        data["impostor"]
    )

    # the scores are the cosine similarities of the right pairs: recomputed from the cache
    ex = [DepthExample.load(p) for p in sorted((calib_cohort / "depth").glob("*.npz"))]
    t = np.stack([model.template_of_depth(e.depth_mm).vector for e in ex])
    subj = np.array([e.subject_id for e in ex])
    i, j = np.triu_indices(len(ex), k=1)
    sim, same = np.sum(t[i] * t[j], axis=1), subj[i] == subj[j]
    assert data["genuine"] == pytest.approx(np.sort(sim[same]), abs=1e-5)
    assert data["impostor"] == pytest.approx(np.sort(sim[~same]), abs=1e-5)
    assert np.median(sim[same]) > np.median(sim[~same])  # the same face scores higher

    # thresholds fall as the FMR allowed rises (143 distinct impostor scores: strictly)
    cal = Calibration.load(out)
    cal.check_model(model.version)  # identify / verify accept it for the shipped model
    fmrs = [0.01, 0.05, 0.1, 0.3, 0.6]
    thresholds = [cal.threshold(f) for f in fmrs]
    assert all(a > b for a, b in zip(thresholds, thresholds[1:], strict=False)), thresholds
    for f, th in zip(fmrs, thresholds, strict=True):
        assert cal.fmr_at(th) <= f < cal.fmr_at(np.nextafter(th, -1.0))  # the lowest such
    fnmr = [cal.fnmr_at(th) for th in thresholds]
    assert fnmr == sorted(fnmr, reverse=True)
    points = summary["operating_points"]  # 143 impostor comparisons: FMR 1e-3 not measurable
    assert points["0.01"] == {"threshold": round(thresholds[0], 4),
                              "fnmr": round(fnmr[0], 4)}  # fmt: skip
    assert points["0.001"] is None and points["0.0001"] is None

    # bad input: exit 4 (not a cohort; nobody scanned twice), 5 (output not writable)
    r = cli("calibrate", "--cohort", str(tmp_path), "--out", str(tmp_path / "x.json"))
    assert r.returncode == 4 and "no manifest.csv" in r.stderr
    single = tmp_path / "single"
    single.mkdir()
    with open(calib_cohort / "manifest.csv", newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if row["scan_id"].endswith("_01")]
    with open(single / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    r = cli("calibrate", "--cohort", str(single), "--cache", str(calib_cohort / "depth"),
            "--out", str(tmp_path / "x.json"))  # fmt: skip
    assert r.returncode == 4 and "two or more scans" in r.stderr
    assert not (tmp_path / "x.json").exists()
    (tmp_path / "file").write_text("")
    r = cli("calibrate", "--cohort", str(calib_cohort), "--out", str(tmp_path / "file" / "c.json"))
    assert r.returncode == 5 and "cannot write" in r.stderr
    r = cli("calibrate", "--out", str(out))
    assert r.returncode == 2  # --cohort is required


def test_calibrate_on_cohort(calib_cohort: Path, tmp_path: Path) -> None:
    """The library behind `calibrate --cohort`: progress by stage, counts and failures, the
    scores of the model's templates, the operating points, the file; a folder without
    cohort.json is named by its folder name. A stand-in model (the shipped one: test_calibrate)."""
    from ctface.embed.examples import DepthExample
    from ctface.evaluate.calibration import calibrate_on_cohort, cohort_provenance

    class StandIn:  # a template from the mean depth image, 8 x 8
        version = "stand-in"

        def template_of_depth(self, depth_mm: np.ndarray) -> Any:
            v = np.nan_to_num(depth_mm.astype(np.float64)).mean(0)[::16, ::16].ravel()
            return SimpleNamespace(vector=v / np.linalg.norm(v))

    model = StandIn()
    calls: list[tuple[str, int, int | None]] = []
    result = calibrate_on_cohort(calib_cohort, calib_cohort / "depth", model, 1,
                                 lambda *a: calls.append(a))  # fmt: skip
    rows = 19  # the manifest's scans, the failed one included
    assert [c for c in calls if c[0] == "pipeline"] == [("pipeline", 0, None)] + [
        ("pipeline", i, rows) for i in range(1, rows + 1)]  # fmt: skip
    assert [c for c in calls if c[0] == "embed"] == [("embed", k, 18) for k in range(19)]
    cal = result.calibration
    assert (result.scans, result.subjects, len(cal.genuine), len(cal.impostor)) == (
        18, 9, GENUINE, IMPOSTOR)  # fmt: skip
    assert result.failures == {"S0008_02": "NoFaceError: no face in field of view"}
    assert cal.model_version == "stand-in" and cal.provenance["cohort_spec"]["seed"] == 4242
    ex = [DepthExample.load(p) for p in sorted((calib_cohort / "depth").glob("*.npz"))]
    t = np.stack([model.template_of_depth(e.depth_mm).vector for e in ex])
    subj = np.array([e.subject_id for e in ex])
    i, j = np.triu_indices(len(ex), k=1)
    sim, same = np.sum(t[i] * t[j], axis=1), subj[i] == subj[j]
    assert cal.genuine == pytest.approx(np.sort(sim[same])) and cal.impostor == pytest.approx(
        np.sort(sim[~same]))  # fmt: skip
    points = result.operating_points()
    th = cal.threshold(0.01)
    assert points == {"0.01": {"threshold": round(th, 4), "fnmr": round(cal.fnmr_at(th), 4)},
                      "0.001": None, "0.0001": None}  # 143 impostor pairs  # fmt: skip
    assert result.to_json() == {"model_version": model.version, "scans": 18, "subjects": 9,
                                "genuine": GENUINE, "impostor": IMPOSTOR,
                                "failures_to_acquire": 1, "operating_points": points}  # fmt: skip
    result.save(tmp_path / "c.json")
    back = Calibration.load(tmp_path / "c.json")
    assert back.provenance == cal.provenance
    assert back.genuine == pytest.approx(cal.genuine, abs=1e-5)

    plain = tmp_path / "plain"  # not made by `ctface phantom`: no settings to name it by
    plain.mkdir()
    prov = cohort_provenance(plain, {"x": "why"})
    assert prov == {"cohort": "plain", "cohort_path": "plain",
                    "failures_to_acquire": {"x": "why"}, "command": "ctface calibrate"}  # fmt: skip


# -- train phantoms | train-landmarks -----------------------------------------------------------


@pytest.fixture
def fast_training_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    """The training nuisances with the tests' coarse acquisitions (the commands read
    ``TRAINING_NUISANCE`` when they run); every other draw as the commands make it."""
    needs_face_model()
    import ctface.landmarks.dataset as ds

    coarse = {f: getattr(FAST, f) for f in ("pixel_mm", "slice_thickness_mm",
                                            "p_overlapping_slices")}  # fmt: skip
    monkeypatch.setattr(
        ds, "TRAINING_NUISANCE", dataclasses.replace(ds.TRAINING_NUISANCE, **coarse)
    )


def test_train_phantoms_writes_examples_and_resumes(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, fast_training_draws: None
) -> None:
    import ctface.embed.examples as examples
    from ctface.embed.examples import DepthExample
    from ctface.phantom.cohort import CohortSpec, plan

    cache = tmp_path / "ct"
    args = ("train", "phantoms", "--cache", str(cache), "--subjects", "1", "--seed", "5151",
            "--jobs", "1", "--json")  # fmt: skip
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    jobs = plan(CohortSpec(subjects=1, scans_min=2, scans_max=3, seed=5151))
    files = [cache / f"ct_5151_00000_{j.scan_index:02d}.npz" for j in jobs]
    assert sorted(cache.glob("ct_*.npz")) == files and len(files) == 2  # this seed draws 2
    assert (cache / "nuisance_5151.json").is_file()  # the draws, checked when resumed
    assert json.loads(r.stdout) == {**json.loads(r.stdout), "scans": 2, "subjects": 1}
    for k, path in enumerate(files):
        ex = DepthExample.load(path)
        assert (ex.scan_id, ex.subject_id) == (f"S0001_{k + 1:02d}", "S0001")
        assert ex.depth_mm.shape == (90, 128, 128) and ex.depth_mm.dtype == np.float16
        assert ex.face_mask is not None and ex.face_mask.shape == ex.depth_mm.shape
        surface = np.isfinite(ex.depth_mm)
        assert not (ex.face_mask & ~surface).any()  # the face is on the rendered surface
        share = ex.face_mask.sum() / surface.sum()
        # most of the rendered skin is face, but not all of it (neck, headrest, tube are not):
        # measured 0.920 and 0.940 for these two scans
        assert 0.85 < share < 0.98, share

    before = _mtimes(files)

    def never(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a cached scan was made again")

    monkeypatch.setattr(examples, "phantom_example", never)
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["scans"] == 2 and _mtimes(files) == before  # nothing redone

    # an interrupted run (the second scan missing): that scan is made, and only that one
    files[1].unlink()
    made: list[Any] = []

    def stand_in(seed: int, job: Any, *_a: Any, **_k: Any) -> DepthExample:
        made.append((seed, job))
        return DepthExample("x", "x", np.zeros((1, 2, 2), np.float16), np.zeros((1, 2, 2), bool))

    monkeypatch.setattr(examples, "phantom_example", stand_in)
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert made == [(5151, jobs[1])] and files[1].is_file()
    assert _mtimes([files[0]]) == {files[0].name: before[files[0].name]}
    r = cli("train", "phantoms", "--cache", str(cache), "--subjects", "0")
    assert r.returncode == 2


def test_train_landmarks_writes_loadable_weights(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, fast_training_draws: None
) -> None:
    import torch

    import ctface.landmarks.dataset as ds
    from ctface.landmarks.ctfan import CtFanDetector
    from ctface.landmarks.dataset import LandmarkExample

    # the phantom it trains on, made here; it validates on the same one (copied to the
    # validation seed's name: a phantom of its own would cost ~4 s more)
    work, out = tmp_path / "work", tmp_path / "ctfan.pt"
    cache = work / "cache"
    (train,) = ds.prepare_phantoms(cache, 1001, 1, ds.TRAINING_NUISANCE)
    shutil.copy(train, cache / "phantom_1002_00000.npz")
    before = _mtimes(sorted(cache.iterdir()))

    def never(*_a: Any, **_k: Any) -> Any:
        raise AssertionError("a cached phantom was made again")

    monkeypatch.setattr(ds, "phantom_example", never)
    args = ("train-landmarks", "--work", str(work), "--phantoms", "1", "--validation", "1",
            "--coarse-iterations", "2", "--fine-iterations", "3", "--batch", "1",
            "--jobs", "1")  # fmt: skip
    r = cli(*args, "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr
    meta = json.loads(r.stdout)
    assert meta["out"] == str(out)
    assert (meta["coarse"]["train"]["iterations"], meta["coarse"]["train"]["batch"]) == (2, 1)
    assert (meta["fine"]["train"]["iterations"], meta["fine"]["train"]["batch"]) == (3, 2)
    assert meta["data"]["phantoms"] == 1 and meta["data"]["seed"] == 1001
    assert meta["data"]["validation"] == {"phantoms": 1, "seed": 1002}
    assert _mtimes(sorted(cache.iterdir())) == before  # the cache was used, nothing redone
    for stage, its in (("coarse", 2), ("fine", 3)):
        ckpt = torch.load(work / f"{stage}.ckpt", weights_only=False)
        assert ckpt["iteration"] == its and len(ckpt["losses"]) == its

    # the file loads as a detector holding the trained networks, and detects
    det = CtFanDetector.load(out)
    ckpt = torch.load(work / "fine.ckpt", weights_only=False)
    assert all(torch.equal(v, ckpt["net"][k]) for k, v in det.fine.state_dict().items())
    assert det.meta["data"]["validation"] == meta["data"]["validation"]
    val = LandmarkExample.load(work / "cache" / "phantom_1002_00000.npz")
    found = det.detect_grids(val.coarse, val.fine).lps
    assert found.shape == (5, 3) and np.isfinite(found).all()
    err = np.linalg.norm(found - val.lps, axis=1)[val.in_fov]
    summary = meta["validation_error_mm"]["all"]  # the reported validation error is this one's
    assert summary["n"] == int(val.in_fov.sum())
    assert summary["mean_mm"] == pytest.approx(err.mean(), abs=1e-3)

    # invalid arguments: usage errors (2); an unusable --cohort: invalid input (4), nothing
    # written
    for bad in (("--phantoms", "0"), ("--coarse-iterations", "0"), ("--batch", "x")):
        r = cli(*args, *bad, "--out", str(tmp_path / "x.pt"))
        assert r.returncode == 2, (bad, r.stderr)
    r = cli(*args, "--cohort", str(tmp_path / "none"), "--out", str(tmp_path / "x.pt"))
    assert r.returncode == 4 and "no manifest.csv" in r.stderr
    assert not (tmp_path / "x.pt").exists()


# -- demo ---------------------------------------------------------------------------------------


def test_demo_with_canned_acquisitions(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ctface demo` with 2 patients (and the stranger) instead of 8, each scan's acquisition
    replaced by a template that encodes its person (the acquisition itself is tested in
    test_gallery.py): the hospital, whom it enrolls by which ID, the probe with the blanked
    PatientID, the decisions and their pages."""
    needs_face_model()
    import pydicom

    import ctface.cli.demo as demo
    import ctface.gallery.enroll as enroll_module
    from ctface.embed.embedder import FaceEmbedder, Template
    from ctface.gallery import Acquisition
    from ctface.ingest.archive import ArchiveScan

    version = FaceEmbedder.load().version
    acquired: list[str] = []

    def canned(source: Any, _weights: Any, _threads: int) -> tuple[Any, None, None, float]:
        path = str(source.series.paths[0] if isinstance(source, ArchiveScan) else source)
        acquired.append(path)
        person = int(re.findall(r"S(\d{4})", path)[-1])
        vec = np.zeros(128, np.float32)
        vec[person] = 1.0
        rec = ScanRecord(hashlib.sha256(path.encode()).hexdigest(), path, None, None, "", {},
                         {"face_fraction": 0.5})  # fmt: skip
        frontal = np.full((32, 32), 40 * person, np.uint8)
        return Acquisition(rec, Template(vec, 90, version, 0.5), frontal), None, None, 0.0

    monkeypatch.setattr(enroll_module, "acquire_job", canned)
    monkeypatch.setattr(demo, "PATIENTS", 2)
    out = tmp_path / "demo"
    r = cli("demo", "--out", str(out), "--jobs", "1")
    assert r.returncode == 0, r.stderr
    with open(out / "hospital" / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [x["subject_id"] for x in rows] == ["S0001"] * 2 + ["S0002"] * 2 + ["S0003"] * 2
    assert {x["format"] for x in rows} == {"dicom", "nifti"}  # both kinds of files

    # one patient's DICOM rescan is the probe, a copy with its PatientID and name blanked
    (probe,) = (out / "probes").iterdir()
    lost = next(x for x in rows if probe.name == f"{x['scan_id']}_no_id")
    assert lost["format"] == "dicom" and lost["subject_id"] != "S0003"
    original = sorted((out / "hospital" / lost["path"]).iterdir())
    copied = sorted(probe.iterdir())
    assert [f.name for f in copied] == [f.name for f in original]
    ds = pydicom.dcmread(copied[0])
    assert (ds.PatientID, str(ds.PatientName)) == ("", "")
    assert pydicom.dcmread(original[0]).PatientID == lost["subject_id"]

    # the gallery: every other scan of the 2 patients, under their IDs (one NIfTI scan filed
    # under the other patient: the planted error); no scan of S0003
    planted = re.search(r"planted error: (S\d{4})'s scan (\S+) was enrolled as (S\d{4})", r.stdout)
    assert planted is not None, r.stdout
    owner, misfiled, filed = planted.groups()
    assert owner != filed and owner != lost["subject_id"]
    with GalleryDatabase(out / "gallery.db") as g:
        enrolled = {p: n for p, n in g.patients()}
        sources = [s.record.source for s in g.scans()]
        planted_as = [s.patient_id for s in g.scans() if misfiled in Path(s.record.source).parts]
        assert planted_as == [filed]
    expect = {p: 2 - (p == lost["subject_id"]) - (p == owner) + (p == filed)
              for p in ("S0001", "S0002")}  # fmt: skip
    assert enrolled == {p: n for p, n in expect.items() if n}
    assert not any("S0003" in s or lost["scan_id"] in s for s in sources)
    assert acquired[-2:] == [str(probe), str(out / "hospital" / rows[4]["path"])]
    assert sum("S0003" in a for a in acquired) == 1  # the stranger: only searched for

    t = Calibration.load().threshold(1e-3)  # the shipped calibration's, as the demo decides
    assert f"PatientID lost: {lost['subject_id']} (threshold {t:.4f} at FMR 0.001" in r.stdout
    assert "S0003, never enrolled: not in gallery" in r.stdout
    assert ": 3 scans of 2 patients enrolled (0 failed to acquire)" in r.stdout
    assert "2 of 2 decisions correct; the misfiled scan found" in r.stdout
    assert (out / "reconcile" / "report.html").is_file()
    pages = sorted(out.glob("identify_*.html"))
    stranger = Path(rows[4]["path"]).name.split(".")[0]
    assert [p.name for p in pages] == sorted([f"identify_{probe.name}.html",
                                              f"identify_{stranger}.html"])  # fmt: skip
    for page in pages:  # the probe's and both candidates' frontal depth images
        assert page.read_text().count("data:image/png") == 3


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path, cli: Cli) -> None:
    """What `make demo` runs (8 patients, the real pipeline; 79 s in process on 2 cores)."""
    needs_face_model()
    out = tmp_path / "demo"
    r = cli("demo", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "2 of 2 decisions correct; the misfiled scan found" in r.stdout
    with GalleryDatabase(out / "gallery.db") as g:
        patients = g.patients()
    assert [p for p, _ in patients] == [f"S{i:04d}" for i in range(1, 9)]
    m = re.search(r"(\d+) scans of 8 patients enrolled \((\d+) failed to acquire\)", r.stdout)
    assert m is not None, r.stdout
    enrolled, failed = int(m[1]), int(m[2])
    assert enrolled + failed == 15 and failed <= 2  # 16 scans, less the probe
    assert sum(n for _, n in patients) == enrolled
    assert len(list(out.glob("identify_*.html"))) == 2
