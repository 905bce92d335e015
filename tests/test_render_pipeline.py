"""Ingest + render end to end: real CTs from ../shared, and DICOM vs NIfTI of one phantom."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, needs_face_model

from ctface.errors import NoFaceError
from ctface.ingest import load_ct
from ctface.render import View, render_face

REAL = SHARED / "data" / "real_ct"
VIEWS = [View(0.0, 0.0, 0.0), View(-20.0, 25.0, 0.0), View(20.0, -25.0, 0.0)]


def _real(name: str) -> Path:
    paths = {
        "invesalius": REAL / "invesalius_0051" / "dicom",
        "ge_tilt": REAL / "ge_gantry_tilt" / "dicom",
        "headsq": REAL / "vtk_headsq" / "headsq.mha",
        "visible_human": REAL / "visible_human" / "visible_human_head_approx_hu.nrrd",
    }
    if not paths[name].exists():
        pytest.skip(f"{paths[name]} not found (../shared beside the repository)")
    return paths[name]


@pytest.mark.parametrize("name", ["invesalius", "headsq", "visible_human"])
def test_real_ct_renders_a_face(name: str) -> None:
    r = render_face(load_ct(_real(name)), views=VIEWS)
    frontal = r.depth_mm[0]
    face_px = np.isfinite(frontal).sum() * r.mm_per_pixel**2
    assert face_px > 120 * 100, f"only {face_px:.0f} mm2 of skin in the frontal view"
    # metric depth: the face spans a few cm in front of the reference plane, not more
    # (measured 79.6 mm InVesalius, 81.7 mm headsq, 77.8 mm Visible Human)
    relief = np.nanpercentile(frontal, 99) - np.nanpercentile(frontal, 5)
    assert 65 < relief < 95, relief
    missing = set(r.face_region.missing)
    assert not missing & {"eyes", "nose"}, r.face_region


def test_real_ct_partial_face_is_reported() -> None:
    """InVesalius ends just below the nose: the chin is reported missing, the eyes are not."""
    r = render_face(load_ct(_real("invesalius")), views=VIEWS[:1])
    assert "chin" in r.face_region.missing
    assert r.face_region.parts_in_view["eyes"] == 1.0


def test_real_ct_face_cut_off_is_no_usable_face() -> None:
    """The GE tilted scan holds only forehead, brow and upper nasal bridge."""
    vol = load_ct(_real("ge_tilt"))
    with pytest.raises(NoFaceError, match="no usable face|no face"):
        render_face(vol, views=VIEWS[:1])
    res = subprocess.run(
        [sys.executable, "-c", "from ctface.cli import main; main()", "render",
         str(_real("ge_tilt")), "--out", "unused_out_dir"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 6, res.stderr
    assert "Traceback" not in res.stderr and not Path("unused_out_dir").exists()


def test_dicom_and_nifti_of_one_phantom_render_the_same(tmp_path: Path) -> None:
    """Same voxels written both ways: depth images agree to 0.01 mm (median) / 0.1 mm (99th)."""
    needs_face_model()
    from conftest import make_cohort

    make_cohort(tmp_path / "n", seed=21, dicom_fraction=0.0)
    make_cohort(tmp_path / "d", seed=21, dicom_fraction=1.0)
    a = render_face(load_ct(tmp_path / "n" / "S0001" / "S0001_01.nii.gz"), views=VIEWS)
    b = render_face(load_ct(tmp_path / "d" / "S0001" / "S0001_01_dicom"), views=VIEWS)
    both = np.isfinite(a.depth_mm) & np.isfinite(b.depth_mm)
    assert both.sum() > 0.9 * np.isfinite(a.depth_mm).sum()
    diff = np.abs(a.depth_mm[both] - b.depth_mm[both])
    assert np.median(diff) < 0.01 and np.percentile(diff, 99) < 0.1, (
        np.median(diff),
        np.percentile(diff, 99),
    )
    assert np.allclose(a.frame.origin, b.frame.origin, atol=0.01)


def test_real_ct_flat_cut_nose_is_still_the_nose() -> None:
    """Visible Human (forehead to chin, nose tip cut flat): the nose, not the chin, is the
    origin, so no face part is reported missing."""
    r = render_face(load_ct(_real("visible_human")), views=VIEWS[:1])
    assert r.face_region.missing == (), r.face_region
    assert r.face_region.parts_in_view["chin"] > 0.5
