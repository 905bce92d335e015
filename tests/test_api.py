"""The library API (``ctface.api``): the verbs chain, probes of every kind give one answer, and
bad requests fail with the typed errors before any slow work."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import ctface
from ctface.errors import GalleryError, InvalidInputError, MissingDataError


@pytest.fixture(scope="module")
def people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import FAST, make_cohort

    out = tmp_path_factory.mktemp("api") / "people"
    make_cohort(out, subjects=2, scans_min=2, scans_max=2, seed=11, nuisance=FAST)
    return out


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
