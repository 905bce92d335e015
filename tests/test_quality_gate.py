"""The quality gate refuses what is not a face: a bare skull (no soft tissue) -> no-soft-tissue;
a head without a skull (a phantom, a mannequin) -> no-skull; a thick layer on the face (a thick
mask, a bolus) -> face-covered. A face, and a face under an RT mask, pass."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import FAST, Cli, make_cohort
from scipy import ndimage

from ctface.errors import FailureToAcquire

LAYER_MM = 15.0  # a bolus this thick on the face hides its shape (over acquire.MAX_COVER_MM)


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A coarse phantom, the same subject with an RT mask, the phantom's bare skull, the
    phantom's head made of one soft tissue (no skull) and the phantom under a bolus."""
    out = tmp_path_factory.mktemp("quality_gate")
    make_cohort(out / "plain", seed=7, nuisance=replace(FAST, p_mask=0.0))
    make_cohort(out / "mask", seed=7, nuisance=replace(FAST, p_mask=1.0))
    plain = next((out / "plain").glob("S*/*.nii.gz"))
    img = nib.load(plain)
    hu = np.asarray(img.dataobj, dtype=np.float32)
    hu[hu < 250] = -1000.0  # soft tissue and fat -> air, bone kept
    nib.save(nib.Nifti1Image(hu.astype(np.int16), img.affine), out / "skull.nii.gz")
    hu = np.asarray(img.dataobj, dtype=np.float32)
    head = ndimage.binary_fill_holes(hu > -350)
    nib.save(nib.Nifti1Image(np.where(head, 20, -1000).astype(np.int16), img.affine),
             out / "no_skull.nii.gz")  # fmt: skip
    hu[_in_front(img, head) & _within(head, img, LAYER_MM)] = 60.0  # a bolus on the face
    nib.save(nib.Nifti1Image(hu.astype(np.int16), img.affine), out / "bolus.nii.gz")
    return {"plain": plain, "mask": next((out / "mask").glob("S*/*.nii.gz")),
            "skull": out / "skull.nii.gz", "no_skull": out / "no_skull.nii.gz",
            "bolus": out / "bolus.nii.gz"}  # fmt: skip


def _within(head: np.ndarray, img: nib.Nifti1Image, mm: float) -> np.ndarray:
    """Air voxels within ``mm`` of the head."""
    d = ndimage.distance_transform_edt(~head, sampling=img.header.get_zooms()[:3])
    return (d > 0) & (d <= mm)


def _in_front(img: nib.Nifti1Image, head: np.ndarray) -> np.ndarray:
    """Voxels anterior of the head's centre (RAS affine: anterior is +y; the voxel axis that
    moves most along y)."""
    axis = int(np.argmax(np.abs(img.affine[1, :3])))
    index = np.indices(head.shape)[axis]
    centre = np.nonzero(head)[axis].mean()
    return (index - centre) * np.sign(img.affine[1, axis]) > 0


def test_bare_skull_refused_face_and_mask_accepted(scans: dict[str, Path]) -> None:
    from ctface.embed.embedder import FaceEmbedder
    from ctface.gallery import acquire
    from ctface.gallery.acquire import MAX_COVER_MM, MIN_BONE_SHARE, MIN_SOFT_TISSUE

    model = FaceEmbedder.load()
    with pytest.raises(FailureToAcquire) as e:
        acquire(scans["skull"], model)
    assert e.value.code == "no-soft-tissue" and e.value.exit_code == 6
    for name in ("plain", "mask"):
        q = acquire(scans[name], model).record.quality
        assert q["soft_tissue_share"] > MIN_SOFT_TISSUE + 0.15, q
        assert q["bone_share"] > MIN_BONE_SHARE + 0.3 and q["cover_mm"] <= MAX_COVER_MM / 2, q


def test_head_without_skull_and_thick_layer_on_the_face_refused(scans: dict[str, Path]) -> None:
    from ctface.embed.embedder import FaceEmbedder
    from ctface.gallery import acquire

    model = FaceEmbedder.load()
    for name, code in (("no_skull", "no-skull"), ("bolus", "face-covered")):
        with pytest.raises(FailureToAcquire) as e:
            acquire(scans[name], model)
        assert e.value.code == code and e.value.exit_code == 6, e.value
    assert "thick mask or bolus" in str(e.value)


def test_cli_reports_no_soft_tissue(scans: dict[str, Path], cli: Cli, tmp_path: Path) -> None:
    skull = str(scans["skull"])
    r = cli("verify", skull, skull, "--json")
    assert r.returncode == 6, r.stderr
    assert json.loads(r.stdout)["failure_to_acquire"]["code"] == "no-soft-tissue"
    r = cli("enroll", skull, "--patient-id", "P1", "--db", str(tmp_path / "g.db"), "--json")
    assert r.returncode != 0 and "no-soft-tissue" in r.stdout, (r.returncode, r.stdout, r.stderr)
