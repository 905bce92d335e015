"""Training examples for CT-FAN: a scan's coarse and face grids with its true landmarks.

Examples come from phantoms made in memory (``phantom_example``: the same draws as
``ctface phantom --scans-min 1 --scans-max 1`` with that seed) or from any cohort folder with a
manifest and truth JSON (``cohort_examples``: phantoms on disk, or annotated real CTs). Each is
cached as one ``.npz`` so preparation resumes where it stopped.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ctface.errors import InvalidInputError
from ctface.files import save_npz_atomic
from ctface.ingest.canonical import canonicalize
from ctface.ingest.head import find_head
from ctface.ingest.reader import load_ct
from ctface.ingest.volume import CtVolume
from ctface.jobs import map_jobs
from ctface.landmarks.sampling import LANDMARKS, Grid, coarse_grid
from ctface.phantom.cohort import CohortSpec, ScanJob, synthesize_job
from ctface.phantom.params import NuisanceConfig

FACE_MARGIN_MM = 45.0  # the fine grid: the landmarks' box plus this on every side

# Training draws: every nuisance of the generator on, most of them more often than the cohort
# default, and wider head poses.
TRAINING_NUISANCE = NuisanceConfig(
    p_expression=0.5,
    p_jaw_open=0.25,
    p_eyes_closed=0.3,
    p_nasogastric=0.15,
    p_endotracheal=0.12,
    p_mask=0.25,
    p_dental_metal=0.4,
    pitch_deg=25.0,
    roll_deg=15.0,
    yaw_deg=25.0,
    p_cut_top=0.2,
    p_cut_chin=0.15,
)

# Issue 16: TRAINING_NUISANCE plus the domain-randomization devices (ET tubes with connector,
# bite blocks, other masks, blanket, pads, straps, hair, beards, glasses, skin bumps). The
# held-out generator style (``GeneratorStyle.HELDOUT``) is never drawn for training.
DOMAIN_RANDOMIZED = replace(
    TRAINING_NUISANCE,
    p_et_connector=0.15,
    p_bite_block=0.1,
    p_mask_open_face=0.1,
    p_mask_thick=0.1,
    p_blanket=0.2,
    p_pillow=0.15,
    p_strap=0.1,
    p_hair=0.25,
    p_beard=0.15,
    p_glasses=0.1,
    p_skin_bumps=0.25,
)


@dataclass(frozen=True)
class LandmarkExample:
    """One scan for training: whole head at 2.5 mm, face region at 1 mm, truth in LPS mm."""

    scan_id: str
    coarse: Grid
    fine: Grid
    lps: np.ndarray  # (5, 3) in LANDMARKS order
    in_fov: np.ndarray  # (5,) bool: inside the scanned field of view

    def save(self, path: Path) -> None:
        save_npz_atomic(
            path,
            scan_id=self.scan_id,
            coarse=self.coarse.data,
            coarse_origin=self.coarse.origin,
            coarse_mm=self.coarse.spacing_mm,
            fine=self.fine.data,
            fine_origin=self.fine.origin,
            fine_mm=self.fine.spacing_mm,
            lps=self.lps,
            in_fov=self.in_fov,
        )

    @classmethod
    def load(cls, path: Path) -> LandmarkExample:
        with np.load(path) as z:
            return cls(
                str(z["scan_id"]),
                Grid(z["coarse"], z["coarse_origin"], float(z["coarse_mm"])),
                Grid(z["fine"], z["fine_origin"], float(z["fine_mm"])),
                z["lps"].astype(np.float64),
                z["in_fov"].astype(bool),
            )


def example_from_volume(
    volume: CtVolume, lps: np.ndarray, in_fov: np.ndarray, scan_id: str
) -> LandmarkExample:
    """From a canonical 1 mm volume (what ``load_ct`` returns) and its true landmarks."""
    fine = Grid.from_volume(volume)
    fine = fine.crop(lps.min(0) - FACE_MARGIN_MM, lps.max(0) + FACE_MARGIN_MM)
    return LandmarkExample(scan_id, coarse_grid(volume), fine, lps, in_fov)


def _truth_points(truth: dict[str, object]) -> tuple[np.ndarray, np.ndarray]:
    marks = truth["landmarks"]
    if not isinstance(marks, dict) or any(n not in marks for n in LANDMARKS):
        raise InvalidInputError(f"truth JSON needs landmarks {', '.join(LANDMARKS)}")
    lps = np.array([marks[n]["lps"] for n in LANDMARKS], dtype=np.float64)
    in_fov = np.array([bool(marks[n].get("in_fov", True)) for n in LANDMARKS])
    return lps, in_fov


def phantom_example(seed: int, index: int, nuisance: NuisanceConfig) -> LandmarkExample:
    """Phantom ``index`` of a one-scan-per-person cohort with ``seed``, through the same head
    crop and canonical resampling as ``load_ct``."""
    spec = CohortSpec(subjects=index + 1, scans_min=1, scans_max=1, seed=seed, nuisance=nuisance)
    scan, _ = synthesize_job(spec, ScanJob(index, 0, 1))
    volume = canonicalize(find_head(scan.volume), 1.0)
    lps, in_fov = _truth_points(scan.truth)
    return example_from_volume(volume, lps, in_fov, scan.scan.scan_id)


def cohort_examples(folder: Path) -> Iterator[LandmarkExample]:
    """Every scan of a cohort folder (manifest.csv with path and truth columns)."""
    manifest = folder / "manifest.csv"
    if not manifest.is_file():
        raise InvalidInputError(f"{folder} has no manifest.csv (make one with `ctface phantom`)")
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        truth = json.loads((folder / row["truth"]).read_text())
        lps, in_fov = _truth_points(truth)
        volume = load_ct(folder / row["path"])
        yield example_from_volume(volume, lps, in_fov, row["scan_id"])


def _prepare_one(cache: Path, seed: int, index: int, nuisance: NuisanceConfig) -> Path:
    path = cache / f"phantom_{seed}_{index:05d}.npz"
    if not path.exists():
        phantom_example(seed, index, nuisance).save(path)
    return path


def prepare_phantoms(
    cache: Path,
    seed: int,
    count: int,
    nuisance: NuisanceConfig = TRAINING_NUISANCE,
    jobs: int = 1,
    progress: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Cache files of phantoms 0..count-1 with ``seed`` (existing ones are kept: resumable)."""
    cache.mkdir(parents=True, exist_ok=True)
    args = [(cache, seed, i, nuisance) for i in range(count)]
    return map_jobs(_prepare_one, args, jobs, progress)
