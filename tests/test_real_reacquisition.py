"""Real faces re-acquired (issue 16): a second visit of a real CT (``evaluate.reacquire``: head
turned within +-12 deg, other pixels, 1-3 mm slices, noise) is acquired, scores above the
shipped FMR-1e-3 threshold against its original, and the original ranks first among the real
CTs. The fast cases are the named hard cases (Visible Human at pitch -8 deg, refused "no face"
before the fix in ``landmarks.detect._cross_checked``; VTK headsq at 3.2 mm pixels); the
benchmark's seeded visits (``benchmarks/reacquisition.py --seed 0``) are ``slow``; three of
headsq's are refused today (``HEADSQ_NO_NOSE``, strict xfail)."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SHARED, needs_face_model

from ctface.evaluate.reacquire import Visit, second_visit
from ctface.ingest import CtVolume, load_ct
from ctface.ingest.head import find_head
from ctface.ingest.reader import read_ct

REAL = SHARED / "data" / "real_ct"
FULL_FACE = {  # the real CTs whose face the pipeline acquires (their originals are the gallery)
    "visible_human": "visible_human_head_approx_hu.nrrd",
    "vtk_headsq": "headsq.mha",
    "invesalius_0051": "dicom",
}
SEED = 0
VISITS = 4
# Refused "no face" (open, issue 16): CT-FAN is lost on headsq's 3.2 mm pixels at every pose, so
# its face rests on the geometric locator, whose nose test (``landmarks.frame``: stands >= 10 mm
# out, measured along the scanner's anterior axis) its flat nose passes by 13.8 mm unturned and
# fails (9-10 mm) turned chin up 4-6 deg with yaw 6-10 deg
HEADSQ_NO_NOSE = {"seed0.0", "seed0.1", "seed0.2"}


def _path(name: str) -> Path:
    p = REAL / name / FULL_FACE[name]
    if not p.exists():
        pytest.skip(f"{p} not found (../shared beside the repository)")
    needs_face_model()
    return p


@cache
def _source(name: str) -> CtVolume:
    return find_head(read_ct(_path(name)))


@cache
def _originals() -> dict[str, np.ndarray]:
    from ctface.api import acquire

    return {n: acquire(load_ct(_path(n)), digest=False).template.vector for n in FULL_FACE}


@cache
def _threshold() -> float:
    from ctface.api import default_model, resolve_calibration

    return float(resolve_calibration(None, default_model().version).threshold(1e-3))


def _check(name: str, visit: Visit) -> None:
    from ctface.api import acquire

    originals = _originals()
    probe = acquire(second_visit(_source(name), visit), digest=False)  # refused: raises
    scores = {n: float(probe.template.vector @ t) for n, t in originals.items()}
    genuine = scores[name]
    assert genuine >= _threshold(), (scores, probe.record.quality)
    assert max(scores, key=scores.__getitem__) == name, scores


@pytest.mark.parametrize(
    ("name", "visit"),
    [
        ("visible_human", Visit(pitch_deg=-8.0, pixel_mm=0.8, slice_mm=2.0, seed=1)),
        ("vtk_headsq", Visit(pixel_mm=3.2, slice_mm=2.0, seed=2)),
    ],
    ids=["visible_human-pitch-8", "vtk_headsq-px3.2"],
)
def test_named_reacquisition_matches(name: str, visit: Visit) -> None:
    _check(name, visit)


def _benchmark_visits() -> list[Any]:
    bench = Path(__file__).resolve().parents[1] / "benchmarks"
    sys.path.insert(0, str(bench))
    try:
        from reacquisition import visits
    finally:
        sys.path.remove(str(bench))
    refused = pytest.mark.xfail(
        reason="headsq's flat nose fails the locator's nose test when turned", strict=True
    )
    return [
        pytest.param(
            name,
            v,
            id=f"{name}-{label}",
            marks=[refused] if name == "vtk_headsq" and label in HEADSQ_NO_NOSE else [],
        )
        for name in FULL_FACE
        for label, v in visits(name, VISITS, SEED)
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "visit"), _benchmark_visits())
def test_seeded_reacquisition_matches(name: str, visit: Visit) -> None:
    _check(name, visit)
