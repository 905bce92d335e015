"""Face-model lookup order and loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import FACE_MODEL, needs_face_model

from ctface.errors import MissingDataError
from ctface.face_model.model import ENV_VAR, find_face_model, load_face_model


def test_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    needs_face_model()
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert find_face_model().resolve() == FACE_MODEL.resolve()  # default beside the repo
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "x.npz"))
    with pytest.raises(MissingDataError, match=ENV_VAR):
        find_face_model()
    monkeypatch.setenv(ENV_VAR, str(FACE_MODEL))
    assert find_face_model() == FACE_MODEL
    with pytest.raises(MissingDataError, match="ICT-FaceKit"):
        find_face_model(tmp_path / "y.npz")


def test_loaded_model_is_in_mm_with_landmarks() -> None:
    needs_face_model()
    m = load_face_model(FACE_MODEL)
    assert m.n_identity == 100 and len(m.expression_names) == 53
    lm = m.neutral[m.landmarks68]
    inter_pupil = np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))
    assert 50 < inter_pupil < 75  # adult inter-pupillary distance in mm
    assert m.triangles.max() < len(m.neutral)
