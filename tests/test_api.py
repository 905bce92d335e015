"""The library API (``ctface.api``): the verbs chain, probes of every kind give one answer, and
bad requests fail with the typed errors before any slow work."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import ctface
from ctface.errors import FailureCode, GalleryError, InvalidInputError, MissingDataError


def test_verbs_chain_and_probes_of_every_kind_agree(people: Path, tmp_path: Path) -> None:
    a1, a2, b1 = (people / f"{s}/{s}_0{n}.nii.gz" for s, n in (("S0001", 1), ("S0001", 2),
                                                              ("S0002", 1)))  # fmt: skip
    volume = ctface.load_ct(a2)
    marks = ctface.detect_landmarks(volume)
    rendering = ctface.render_face(volume, landmarks=marks)
    assert rendering.depth_mm.shape == (90, 256, 256) and rendering.frame.method == "landmarks"
    probe = ctface.face_template(volume)
    assert probe.vector.shape == (128,) and np.isclose(np.linalg.norm(probe.vector), 1.0)

    with ctface.Gallery.open(tmp_path / "g.db") as gallery:
        outcomes = gallery.enroll(a1, patient_id="S0001") + gallery.enroll([b1], "S0002")
        assert [o.status for o in outcomes] == ["enrolled", "enrolled"]
        by_template = gallery.identify(probe, fmr=1e-2)
        by_vector = gallery.identify(probe.vector, fmr=1e-2)
        assert by_template.patient_id == by_vector.patient_id == "S0001"
        assert [c.score for c in by_template.candidates] == [c.score for c in by_vector.candidates]
        same = gallery.verify(probe, probe.vector)
        assert same.same_person and same.score == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(InvalidInputError, match="below what the calibration can measure"):
            gallery.identify(probe, fmr=1e-9)
        with pytest.raises(GalleryError, match="made by model"):
            gallery.identify(replace(probe, model_version="0" * 16))
        with pytest.raises(InvalidInputError, match="unit-length"):
            gallery.identify(np.ones(128, np.float32))
    assert ctface.verify(probe, probe, fmr=1e-2).same_person


def test_bad_requests_fail_before_slow_work(tmp_path: Path) -> None:
    missing = ctface.Gallery.open(tmp_path / "none.db")
    with pytest.raises(MissingDataError, match="no gallery"):
        missing.identify(tmp_path / "never_read.nii.gz")
    with pytest.raises(InvalidInputError, match="patient ID is empty"):
        missing.enroll(tmp_path / "never_read.nii.gz", patient_id="  ")
    assert not (tmp_path / "none.db").exists()  # nothing written by a refused request
    with pytest.raises(InvalidInputError, match="landmark method"):
        ctface.detect_landmarks(None, method="magic")  # type: ignore[arg-type]


def test_closed_gallery_holds_no_connection_and_decides_with_its_own_calibration(
    tmp_path: Path,
) -> None:
    from ctface.gallery import GalleryDatabase, ScanRecord
    from ctface.gallery.calibration import Calibration

    model = ctface.default_model()
    db = tmp_path / "g.db"
    rng = np.random.default_rng(0)
    with GalleryDatabase(db, create=True) as g:
        for n in range(2):
            v = rng.standard_normal(128).astype(np.float32)
            g.add_scan(f"P{n}", ScanRecord(f"d{n}", f"/s/{n}", None, None, "", {}, {}),
                       v / np.linalg.norm(v), model.version)  # fmt: skip
    gallery = ctface.Gallery.open(db)
    shipped = gallery.calibration
    assert shipped.source.startswith("shipped") and gallery.calibration_note is None
    own = Calibration(model.version, np.linspace(0.5, 1, 50), np.linspace(-0.5, 0.4, 2000), {},
                      "gallery")  # fmt: skip
    with GalleryDatabase(db) as g:  # stored meanwhile, by another handle: used from now on
        g.save_calibration(own)
    assert gallery.calibration.source == "gallery"
    other = Calibration("0" * 16, own.genuine, own.impostor, {}, "gallery")
    with GalleryDatabase(db) as g:
        g.save_calibration(other)
    assert gallery.calibration.source.startswith("shipped")
    assert "for model 0000000000000000" in str(gallery.calibration_note)
    gallery.close()
    assert gallery._handle is None  # nothing open after close
    with pytest.raises(InvalidInputError, match="128 finite numbers"):
        gallery.identify(np.ones(64, np.float32) / 8)


def test_enrollment_without_a_model_file_stays_in_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker processes read the model from its file: a model without one is not replaced by
    the shipped model in the workers, the scans are acquired here."""
    import copy

    import ctface.gallery.enroll as enroll_module

    model = copy.copy(ctface.default_model())
    model.path = None
    seen: dict[str, object] = {}

    def fake_run(
        fn: object, args: list[tuple[object, ...]], on_result: object, **kw: object
    ) -> None:
        seen["jobs"], seen["model"] = kw["jobs"], args[0][1]
        for i, _ in enumerate(args):  # as if every scan failed: nothing is acquired or stored
            on_result(i, (None, FailureCode.ERROR, "not run", 0.0))  # type: ignore[operator]

    monkeypatch.setattr(enroll_module, "run_tasks", fake_run)
    ctface.Gallery.open(tmp_path / "g.db", model=model).enroll(["a.nii", "b.nii"], "P", jobs=2)
    assert seen == {"jobs": 1, "model": model}
