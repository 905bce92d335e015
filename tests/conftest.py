"""Shared fixtures: the face model from ../shared and tiny coarse phantom cohorts."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from ctface.phantom.cohort import CohortSpec, generate_cohort
from ctface.phantom.params import NuisanceConfig

SHARED = Path(__file__).resolve().parents[2] / "shared"
FACE_MODEL = SHARED / "data" / "face_model" / "ict_facekit_light.npz"

# Coarse, fast acquisitions for tests (a full-resolution scan takes ~10-20 s on 2 cores).
FAST = NuisanceConfig(pixel_mm=(0.9, 1.0), slice_thickness_mm=(2.0, 3.0), p_overlapping_slices=0.0)


def needs_face_model() -> None:
    if not FACE_MODEL.is_file():
        pytest.skip(f"face model not found at {FACE_MODEL} (../shared beside the repository)")


def make_cohort(out: Path, **kw: object) -> list[dict[str, object]]:
    needs_face_model()
    args: dict[str, object] = {"subjects": 1, "scans_min": 1, "scans_max": 1, "nuisance": FAST}
    args.update(kw)
    return generate_cohort(CohortSpec(face_model=str(FACE_MODEL), **args), out)  # type: ignore[arg-type]


Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run the ``ctface`` CLI in this process (no Python start, torch import or model load per
    command): ``cli("identify", path, "--json")`` -> returncode, stdout, stderr."""
    from ctface.cli import main

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        try:
            main(list(args))
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        out = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, out.out, out.err)

    return run


@pytest.fixture(scope="session")
def nifti_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohorts") / "nifti"
    make_cohort(out, seed=7, dicom_fraction=0.0)
    return out


@pytest.fixture(scope="session")
def dicom_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohorts") / "dicom"
    make_cohort(out, seed=7, dicom_fraction=1.0)
    return out


@pytest.fixture(scope="session")
def people(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two people, two NIfTI scans each (the API's and deid's tests)."""
    out = tmp_path_factory.mktemp("api") / "people"
    make_cohort(out, subjects=2, scans_min=2, scans_max=2, seed=11, nuisance=FAST)
    return out
