"""The quality gate refuses what is not a face: a bare skull (no soft tissue) -> no-soft-tissue."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import FAST, Cli, make_cohort

from ctface.errors import FailureToAcquire


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A coarse phantom, the same subject with an RT mask, and the phantom's bare skull."""
    out = tmp_path_factory.mktemp("quality_gate")
    make_cohort(out / "plain", seed=7, nuisance=replace(FAST, p_mask=0.0))
    make_cohort(out / "mask", seed=7, nuisance=replace(FAST, p_mask=1.0))
    plain = next((out / "plain").glob("S*/*.nii.gz"))
    img = nib.load(plain)
    hu = np.asarray(img.dataobj, dtype=np.float32)
    hu[hu < 250] = -1000.0  # soft tissue and fat -> air, bone kept
    nib.save(nib.Nifti1Image(hu.astype(np.int16), img.affine), out / "skull.nii.gz")
    return {"plain": plain, "mask": next((out / "mask").glob("S*/*.nii.gz")),
            "skull": out / "skull.nii.gz"}  # fmt: skip


def test_bare_skull_refused_face_and_mask_accepted(scans: dict[str, Path]) -> None:
    from ctface.embed.embedder import FaceEmbedder
    from ctface.gallery import acquire
    from ctface.gallery.acquire import MIN_SOFT_TISSUE

    model = FaceEmbedder.load()
    with pytest.raises(FailureToAcquire) as e:
        acquire(scans["skull"], model)
    assert e.value.code == "no-soft-tissue" and e.value.exit_code == 6
    for name in ("plain", "mask"):
        a = acquire(scans[name], model)
        assert a.record.quality["soft_tissue_share"] > MIN_SOFT_TISSUE + 0.15, a.record.quality


def test_cli_reports_no_soft_tissue(scans: dict[str, Path], cli: Cli, tmp_path: Path) -> None:
    skull = str(scans["skull"])
    r = cli("verify", skull, skull, "--json")
    assert r.returncode == 6, r.stderr
    assert json.loads(r.stdout)["failure_to_acquire"]["code"] == "no-soft-tissue"
    r = cli("enroll", skull, "--patient-id", "P1", "--db", str(tmp_path / "g.db"), "--json")
    assert r.returncode != 0 and "no-soft-tissue" in r.stdout, (r.returncode, r.stdout, r.stderr)
