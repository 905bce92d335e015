"""Gallery: calibration arithmetic, the SQLite store (transactions under a killed process,
model versions), exact vs FAISS search, and enroll / identify / verify end to end."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import Cli

from ctface.embed.template import TEMPLATE_VIEWS
from ctface.errors import (
    FailureCode,
    FailureToAcquire,
    GalleryError,
    InvalidInputError,
    MissingDataError,
)
from ctface.gallery import (
    Calibration,
    GalleryDatabase,
    ScanRecord,
    TemplateIndex,
    calibrate,
    verify,
)

CLI = [sys.executable, "-m", "ctface"]


def _record(n: int) -> ScanRecord:
    return ScanRecord(f"digest{n}", f"/scans/{n}", f"1.2.{n}", "1.2", "", {"format": "nifti"},
                      {"face_fraction": 0.5})  # fmt: skip


def _unit(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_calibration_threshold_and_rates() -> None:
    impostor = np.arange(1000) / 1000.0  # 0.000 ... 0.999
    genuine = np.array([0.5, 0.9, 0.95, 0.99])
    cal = Calibration("v1", genuine, impostor, {"cohort": "hand-made"})
    t = cal.threshold(1e-2)  # 10 impostor scores may reach it: 0.990 ... 0.999
    assert 0.989 < t <= 0.990 + 1e-9
    assert cal.fmr_at(t) == pytest.approx(0.01)
    assert cal.fmr_at(0.9995) == 0.0 and cal.fmr_at(-1.0) == 1.0
    assert cal.fnmr_at(t) == 0.75  # 0.5, 0.9, 0.95 below
    with pytest.raises(InvalidInputError, match="1000 impostor"):
        cal.threshold(1e-4)
    v = verify(np.array([1.0, 0.0]), np.array([0.0, 1.0]), cal, 1e-2)
    assert v.score == 0.0 and not v.same_person and v.fmr_at_score == 1.0
    d = cal.describe(1e-2)  # printed and in the decisions' JSON as it always was
    assert d.threshold == t and list(d.to_json().items()) == [
        ("threshold", t), ("fmr", 0.01), ("fnmr_at_threshold", 0.75),
        ("impostor_comparisons", 1000), ("genuine_comparisons", 4),
        ("calibration", "calibration (hand-made)"),
    ]  # fmt: skip
    assert v.threshold == d and v.to_json()["decision"] == {"same_person": False, **d.to_json()}
    with pytest.raises(GalleryError, match="recalibrate"):
        cal.check_model("v2")


def test_failure_codes_and_their_exit_codes() -> None:
    """Failures to acquire exit 6, the other failures 4; codes print as their strings."""
    fta = [c for c in FailureCode if c.is_failure_to_acquire]
    assert fta == [
        "no-face",
        "thick-slices",
        "face-incomplete",
        "face-covered",
        "no-soft-tissue",
        "no-skull",
    ]
    assert {c.exit_code for c in fta} == {6} and FailureCode.CONFLICT.exit_code == 4
    assert FailureCode.exit_code_of([FailureCode.NO_FACE, FailureCode.FACE_COVERED]) == 6
    assert FailureCode.exit_code_of([FailureCode.NO_FACE, FailureCode.UNREADABLE]) == 4
    assert FailureCode.exit_code_of([FailureCode.NO_FACE, None]) == 4
    e = FailureToAcquire(FailureCode.THICK_SLICES, "slices 6 mm apart")
    assert str(e) == "failure to acquire (thick-slices): slices 6 mm apart" and e.exit_code == 6
    assert json.dumps({"code": e.code}) == '{"code": "thick-slices"}'


def test_calibrate_pairs_and_file_round_trip(tmp_path: Path) -> None:
    t = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    cal = calibrate(t, np.array(["a", "a", "b", "b"]), "v1", {"cohort": "x"})
    assert sorted(cal.genuine.tolist()) == pytest.approx([0.0, 0.8])  # (0,1) and (2,3)
    assert sorted(cal.impostor.tolist()) == pytest.approx([-1.0, -0.8, 0.0, 0.6])
    cal.save(tmp_path / "c.json")
    back = Calibration.load(tmp_path / "c.json")
    assert back.model_version == "v1" and np.allclose(back.impostor, cal.impostor)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(MissingDataError, match="unreadable"):
        Calibration.load(tmp_path / "bad.json")


def test_store_round_trip_removal_and_model_versions(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    vec = _unit(rng, 3)
    db = tmp_path / "g.db"
    with pytest.raises(MissingDataError, match="enroll scans first"):
        GalleryDatabase(db)
    with GalleryDatabase(db, create=True) as g:
        keys = [g.add_scan(pid, _record(n), vec[n], "v1") for n, pid in enumerate("AAB")]
        with pytest.raises(GalleryError, match="model v1"):
            g.add_scan("C", _record(9), vec[0], "v2")
        with pytest.raises(sqlite3.IntegrityError):  # the same files twice
            g.add_scan("C", _record(0), vec[0], "v1")
        t = g.templates()
        assert t.patient_ids == ["A", "A", "B"] and np.allclose(t.vectors, vec)
        assert g.patients() == [("A", 2), ("B", 1)]
        assert g.find_digest("digest1") == "A" and g.find_digest("nope") is None
        before = t.revision
        assert g.remove_scan(keys[2]) == "B"
        assert g.patients() == [("A", 2)] and g.templates().revision != before
        assert g.remove_patient("A") == 2
        with pytest.raises(GalleryError, match="no patient"):
            g.remove_patient("A")
        assert g.stats()["scans"] == 0 and g.stats()["integrity"] == "ok"
    (tmp_path / "other.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(GalleryError, match="not a ctface gallery"):
        GalleryDatabase(tmp_path / "other.db")


def test_killed_process_mid_enrollment_leaves_gallery_consistent(tmp_path: Path) -> None:
    """SIGKILL while a scan's transaction is open (patient and scan rows written, not yet
    committed): the earlier scans are there, the interrupted one is not, nothing dangles."""
    db = tmp_path / "g.db"
    child = textwrap.dedent(f"""
        import sys, time
        import numpy as np
        from ctface.gallery import GalleryDatabase, ScanRecord
        from ctface.gallery import store
        rec = lambda n: ScanRecord(f"d{{n}}", "s", None, None, "", {{}}, {{}})
        with GalleryDatabase(store.Path({str(db)!r}), create=True) as g:
            for n in range(3):
                g.add_scan(f"P{{n}}", rec(n), np.ones(4, np.float32) / 2, "v1")
            def stall():
                print("inside", flush=True)
                time.sleep(60)
            g._bump = stall
            g.add_scan("NEW", rec(9), np.ones(4, np.float32) / 2, "v1")
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "inside"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with GalleryDatabase(db) as g:
        assert g.patients() == [("P0", 1), ("P1", 1), ("P2", 1)]
        assert g.revision == 3 and g.stats()["integrity"] == "ok"
        assert len(g.templates().patient_ids) == 3


def test_export_holds_records_templates_and_failures(tmp_path: Path) -> None:
    """``GalleryDatabase.export`` (``ctface gallery export``): stats, patients, every scan's
    record with its template (7 places; left out on request), failures to acquire."""
    from ctface.gallery.store import EXPORT_FORMAT

    vec = _unit(np.random.default_rng(2), 3)
    with GalleryDatabase(tmp_path / "g.db", create=True) as g:
        for n, pid in enumerate("ABA"):
            g.add_scan(pid, _record(n), vec[n], "v1")
        g.add_failure("digest9", "/scans/9", "no-face", "no face in field of view")
        data, bare, stats = g.export(), g.export(include_templates=False), g.stats()
        stored = [s.to_json() for s in g.scans()]
    assert data["format"] == EXPORT_FORMAT == "ctface-gallery-export-1"
    assert data["stats"] == stats and data["patients"] == ["A", "B"]
    assert [(s["patient_id"], s["scan_key"]) for s in data["scans"]] == [
        ("A", 1), ("A", 3), ("B", 2)]  # fmt: skip
    for s, rec in zip(data["scans"], stored, strict=True):
        assert s == {**rec, "template": s["template"]}
        assert s["template"] == pytest.approx(vec[s["scan_key"] - 1], abs=1e-7)
        assert all(round(v, 7) == v for v in s["template"])
    assert [(f["digest"], f["code"]) for f in data["failures_to_acquire"]] == [
        ("digest9", "no-face")]  # fmt: skip
    assert bare == {**data, "scans": stored}  # the same without the templates
    assert json.loads(json.dumps(data)) == data  # JSON as it is


def test_exact_and_faiss_search_agree() -> None:
    """The FAISS index returns the exact per-patient ranking for probes near enrolled scans."""
    rng = np.random.default_rng(1)
    centres = _unit(rng, 1500, 64)
    vec = np.repeat(centres, 2, axis=0) + 0.04 * rng.standard_normal((3000, 64))
    vec = (vec / np.linalg.norm(vec, axis=1, keepdims=True)).astype(np.float32)
    from ctface.gallery import GalleryTemplates

    pids = [f"P{i // 2:04d}" for i in range(3000)]
    t = GalleryTemplates(vec, pids, np.arange(3000), "r")
    exact, approx = TemplateIndex(t, exact=True), TemplateIndex(t, exact=False)
    assert exact.kind == "exact" and approx.kind.startswith("faiss")
    probes = centres[:200] + 0.04 * rng.standard_normal((200, 64)).astype(np.float32)
    for p in probes / np.linalg.norm(probes, axis=1, keepdims=True):
        a, b = exact.rank_patients(p, 5), approx.rank_patients(p, 5)
        assert a[0].patient_id == b[0].patient_id
        assert a[0].score == pytest.approx(b[0].score, abs=1e-5)
    first = exact.rank_patients(centres[7], 3)
    assert first[0].patient_id == "P0007" and [c.rank for c in first] == [1, 2, 3]


def test_search_is_exact_without_faiss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FAISS is an extra: a large gallery without it is searched exactly; asking for FAISS
    names the extra."""
    import ctface.gallery.search as search
    from ctface.gallery import GalleryTemplates

    rng = np.random.default_rng(2)
    t = GalleryTemplates(_unit(rng, 300, 16), [f"P{i:03d}" for i in range(300)], np.arange(300),
                         "r1")  # fmt: skip
    monkeypatch.setattr(search, "FAISS_MIN", 100)
    assert TemplateIndex(t).kind.startswith("faiss")  # installed: the large gallery uses it
    monkeypatch.setitem(sys.modules, "faiss", None)  # as if faiss-cpu were not installed
    index = TemplateIndex(t)
    assert index.kind == "exact" and index.rank_patients(t.vectors[42], 1)[0].patient_id == "P042"
    cached = TemplateIndex.cached(t, tmp_path / "g.db")
    assert cached.kind == "exact" and not list(tmp_path.iterdir())
    with pytest.raises(MissingDataError, match=r"pip install 'ctface\[faiss\]'"):
        TemplateIndex(t, exact=False)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})  # fmt: skip


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import FAST, make_cohort

    out = tmp_path_factory.mktemp("gallery") / "c"
    make_cohort(out, subjects=3, scans_min=2, scans_max=2, seed=11, nuisance=FAST,
                dicom_fraction=0.5)  # fmt: skip
    return out


def test_enroll_identify_verify_round_trip(cohort: Path, tmp_path: Path, cli: Cli) -> None:
    """Two people enrolled from their DICOM tags; a rescan is identified, a third person is
    "not in gallery", two scans of one person verify as the same (through load_ct, landmarks
    and render, with the shipped model); resume skips done scans; export and embed agree."""
    db = ["--db", str(tmp_path / "g.db")]
    r = cli("enroll", str(cohort / "S0001"), str(cohort / "S0002"), "--from-dicom-tags",
             "--json", *db)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["enrolled"] == 2 and {s["patient_id"] for s in out["scans"]} == {"S0001", "S0002"}
    r = cli("enroll", str(cohort / "S0001"), "--from-dicom-tags", "--json", *db)
    assert json.loads(r.stdout)["already-enrolled"] == 1, r.stderr  # resumed: nothing redone

    # one real process: the entry point as users run it
    r = _cli("identify", str(cohort / "S0002" / "S0002_02.nii.gz"), "--json", "--fmr", "1e-2", *db)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["decision"]["patient_id"] == "S0002" and out["decision"]["in_gallery"]
    assert out["candidates"][0]["rank"] == 1 and out["candidates"][0]["patient_id"] == "S0002"
    assert out["decision"]["fmr"] == 0.01
    # the threshold is the shipped calibration's at FMR 1e-2, recomputed from its file: the
    # lowest score at most 1 % of the impostor scores reach (0.35843 when this was written)
    from ctface.gallery.calibration import CALIBRATION

    impostor = np.sort(json.loads(CALIBRATION.read_text())["impostor"])
    allowed = int(0.01 * len(impostor))
    t = out["decision"]["threshold"]
    assert t == np.nextafter(impostor[-allowed - 1], np.inf)
    assert np.sum(impostor >= t) <= allowed < np.sum(impostor >= impostor[-allowed - 1])
    assert out["decision"]["impostor_comparisons"] == len(impostor)

    stranger = cohort / "S0003" / "S0003_01.nii.gz"
    r = cli("identify", str(stranger), "--json", "--top-k", "1", "--html",
             str(tmp_path / "p.html"), *db)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["decision"] == {**out["decision"], "patient_id": None, "in_gallery": False}
    assert out["decision"]["fmr"] == 1e-3 and len(out["candidates"]) == 1
    assert (tmp_path / "p.html").read_text().count("data:image/png") == 2

    r = cli("verify", str(stranger), str(cohort / "S0003" / "S0003_02.nii.gz"), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["decision"]["same_person"] and out["score"] > out["decision"]["threshold"]

    r = cli("gallery", "export", "--out", str(tmp_path / "e.json"), *db)
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["patients"] == ["S0001", "S0002"] and len(data["scans"][0]["template"]) == 128
    assert "pixel" not in json.dumps(data).lower()
    quality = [s["quality"] for s in data["scans"]]
    assert all(q["n_views"] == TEMPLATE_VIEWS and 0.1 < q["face_fraction"] < 0.9 for q in quality)
    # `ctface embed` gives the very template that enrollment stored
    first = data["scans"][0]
    r = cli("embed", first["source"], "--series-uid", first["series_uid"], "--json")
    assert r.returncode == 0, r.stderr
    assert float(np.dot(json.loads(r.stdout)["template"], first["template"])) > 0.999
    r = cli("embed", str(tmp_path / "nothing"), "--json")
    assert r.returncode == 4
    r = cli("gallery", "remove", "--patient", "S0002", "--json", *db)
    assert r.returncode == 0 and json.loads(r.stdout)["scans"] == 1

    from ctface.cli.demo import _blank_patient_id
    from ctface.ingest.archive import list_archive

    blank = _blank_patient_id(cohort / "S0001" / "S0001_01_dicom", tmp_path / "blank")
    found, skipped = list_archive(blank)  # a lost PatientID: reported, never guessed
    assert found == [] and "no PatientID" in skipped[0][1]


def test_enroll_statuses_and_conflicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The enrollment bookkeeping, with the slow acquisition replaced by canned results."""
    import ctface.gallery.enroll as enroll_module
    from ctface.embed.embedder import Template
    from ctface.gallery import Acquisition
    from ctface.gallery.enroll import LazyGallery, Status, enroll

    def fake(source: object, weights: object, threads: int) -> tuple:
        name = str(source)
        if name.startswith("bad"):
            return None, FailureCode.NO_FACE, "no face in field of view", 0.1
        vec = np.zeros(8, np.float32)
        vec[len(name) % 8] = 1.0
        rec = ScanRecord(f"digest-{name.split('#')[0]}", name, None, None, "", {}, {})
        return Acquisition(rec, Template(vec, 90, "vX", 0.5), np.zeros((2, 2))), None, None, 0.1

    monkeypatch.setattr(enroll_module, "acquire_job", fake)

    class Model:
        version = "vX"
        path = None  # no weights file: acquired in this process

    db = LazyGallery(tmp_path / "g.db")
    out = enroll(db, [("bad1", "A")], Model())  # type: ignore[arg-type]
    assert out[0].status == "failed" and out[0].code == "no-face"
    assert not (tmp_path / "g.db").exists()  # nothing written, no empty database
    out = enroll(db, [("s1", "A"), ("s2", "B"), ("s1#copy", "A"), ("s1#again", "C")],
                 Model())  # type: ignore[arg-type]  # fmt: skip
    assert [o.status for o in out] == ["enrolled", "enrolled", "already-enrolled", "failed"]
    assert out[3].code is FailureCode.CONFLICT and "already enrolled as 'A'" in str(out[3].reason)
    assert out[3].status is Status.FAILED and out[0].status is Status.ENROLLED
    g = db.get()
    assert g.patients() == [("A", 1), ("B", 1)] and g.failures() == []
    db.close()
    with GalleryDatabase(tmp_path / "g.db") as g:
        g._db.execute("UPDATE meta SET value = 'vY' WHERE key = 'model_version'")
    with pytest.raises(GalleryError, match="model vY"):
        enroll(LazyGallery(tmp_path / "g.db"), [("s3", "A")], Model())  # type: ignore[arg-type]


def test_bad_inputs_leave_the_gallery_unchanged(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ctface.embed.embedder import FaceEmbedder

    db = tmp_path / "g.db"
    env = {"CTFACE_GALLERY": str(db)}
    r = _cli("enroll", str(tmp_path / "missing"), "--patient-id", "X", env=env)
    assert r.returncode == 4 and not db.exists()  # no empty database left behind
    monkeypatch.setenv("CTFACE_GALLERY", str(db))  # the default database, as the CLI's above
    r = cli("identify", str(tmp_path / "missing"))
    assert r.returncode == 3 and "enroll scans first" in r.stderr
    with GalleryDatabase(db, create=True) as g:
        g.add_scan("A", _record(0), _unit(np.random.default_rng(0), 1, 128)[0],
                   FaceEmbedder.load().version)  # fmt: skip
        g.add_scan("B", _record(1), _unit(np.random.default_rng(1), 1, 128)[0],
                   FaceEmbedder.load().version)  # fmt: skip
        g.remove_patient("B")
        g.remove_patient("A")
    r = cli("identify", str(tmp_path / "missing"))
    assert r.returncode == 7 and "is empty" in r.stderr
    with GalleryDatabase(db) as g:
        g.add_scan("A", _record(0), _unit(np.random.default_rng(0), 1, 128)[0],
                   FaceEmbedder.load().version)  # fmt: skip
    before = _digest(db)
    (tmp_path / "notes.txt").write_text("not a CT")
    r = cli("enroll", str(tmp_path / "notes.txt"), "--patient-id", "B")
    assert r.returncode == 4 and "not a DICOM" in r.stderr and _digest(db) == before
    r = cli("enroll", "x")
    assert r.returncode == 4 and "--patient-id" in r.stderr
    r = cli("gallery", "remove", "--patient", "X[/]")  # not read as markup
    assert r.returncode == 7 and "no patient 'X[/]'" in r.stderr
    with sqlite3.connect(db) as c:  # as if enrolled with another model
        c.execute("UPDATE meta SET value = '0000000000000000' WHERE key = 'model_version'")
    before = _digest(db)
    r = cli("identify", str(tmp_path / "notes.txt"))
    assert r.returncode == 7 and "model 0000000000000000" in r.stderr
    r = cli("enroll", str(tmp_path / "notes.txt"), "--patient-id", "C")
    assert r.returncode == 7 and _digest(db) == before


def test_quality_gate_refuses_unusable_faces(cohort: Path, tmp_path: Path) -> None:
    """No face (a water cylinder) and slices over 5 mm: failure-to-acquire codes, exit 6."""
    import nibabel as nib
    import SimpleITK as sitk

    hu = np.full((100, 100, 100), -1000, np.int16)
    yy, xx = np.mgrid[:100, :100]
    hu[(yy - 50) ** 2 + (xx - 50) ** 2 < 35**2, :] = 0
    nib.save(nib.Nifti1Image(hu, np.diag([-2.0, -2.0, 2.0, 1.0])), tmp_path / "water.nii.gz")
    r = _cli("identify", str(tmp_path / "water.nii.gz"), "--json", "--db", str(tmp_path / "x.db"))
    assert r.returncode == 3  # no gallery: refused before the slow work
    r = _cli("verify", str(tmp_path / "water.nii.gz"), str(tmp_path / "water.nii.gz"), "--json")
    assert r.returncode == 6, r.stderr
    assert json.loads(r.stdout)["failure_to_acquire"]["code"] == "no-face"

    img = sitk.ReadImage(str(cohort / "S0003" / "S0003_01.nii.gz"))
    size = img.GetSize()
    spacing = (img.GetSpacing()[0], img.GetSpacing()[1], 6.0)
    n = int(size[2] * img.GetSpacing()[2] / 6.0)
    thick = sitk.Resample(img, (size[0], size[1], n), sitk.Transform(), sitk.sitkLinear,
                          img.GetOrigin(), spacing, img.GetDirection(), -1024)  # fmt: skip
    sitk.WriteImage(thick, str(tmp_path / "thick.nii.gz"))
    from ctface.embed.embedder import FaceEmbedder
    from ctface.gallery import acquire

    with pytest.raises(FailureToAcquire) as e:
        acquire(tmp_path / "thick.nii.gz", FaceEmbedder.load())
    assert e.value.code == "thick-slices" and e.value.exit_code == 6
