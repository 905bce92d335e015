"""Depth-image examples for training and evaluation: one scan's (or one synthetic face's)
depth images at ``CACHE_SIZE`` px with its subject and, where known, its true face mask.

CT examples come from phantoms made in memory (``phantom_example``: the same draws as
``ctface phantom`` with that seed, through ``load_ct``'s head crop and canonical resampling, and
``render_face``), with the face frame from the true landmarks plus a detection error (a cohort
folder read through the whole pipeline is ``evaluate.cohort``). The true face mask of a
phantom view is where the rendered CT surface lies within
``MASK_TOLERANCE_MM`` (10 mm) of the face model's face and eyes rendered with the same camera:
the neck, the headrest and devices that stand off the face (endotracheal tube) are outside it.
An RT immobilization mask over the face is kept: it lies 2-5 mm off the skin (up to ~10 mm over
the eye sockets, which it bridges), the skin under it is not visible at -350 HU, and it is the
face's shape as far as the CT shows it. With 3 mm (first tried) the masked scans kept 6-26 % of
their face pixels, with 10 mm 70-85 % (measured on four masked training phantoms); a tube taped
to the cheek stays in either way (it covers ~2 % of the face). Each example is cached
as one ``.npz`` so preparation resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ctface.embed.images import pool_depth
from ctface.errors import InvalidInputError
from ctface.face_model import five_landmarks
from ctface.files import save_npz_atomic, write_text_atomic
from ctface.ingest.canonical import canonicalize
from ctface.ingest.head import find_head
from ctface.jobs import map_jobs
from ctface.landmarks.frame import FaceFrame, FrameMethod
from ctface.landmarks.sampling import LANDMARKS, face_axes
from ctface.landmarks.skin import SkinSurface, mesh_surface
from ctface.phantom.cohort import (
    CohortSpec,
    ScanJob,
    draw_job,
    load_generator_model,
    plan,
    synthesize_job,
)
from ctface.phantom.generator import scan_vertices
from ctface.phantom.params import NuisanceConfig
from ctface.phantom.scanner import place_head
from ctface.render.depth import render_face, render_surface
from ctface.render.views import RENDER_PX, View, pose_grid

MASK_TOLERANCE_MM = 10.0
LANDMARK_ERROR_MM = 1.5  # SD per coordinate of the simulated landmark error (CT-FAN: ~1.3 mm)
FACE_GROUPS = ("face", "eyeball_left", "eyeball_right")


@dataclass(frozen=True)
class DepthExample:
    """Depth images (V, CACHE_SIZE, CACHE_SIZE) float16 mm (NaN = background) of one scan."""

    scan_id: str
    subject_id: str
    depth_mm: np.ndarray
    face_mask: np.ndarray | None  # (V, S, S) bool, true = face

    def save(self, path: Path) -> None:
        mask = self.face_mask if self.face_mask is not None else np.zeros((0,), bool)
        save_npz_atomic(path, scan_id=self.scan_id, subject_id=self.subject_id,
                        depth_mm=self.depth_mm.astype(np.float16), face_mask=np.packbits(mask),
                        mask_shape=np.array(mask.shape))  # fmt: skip

    @classmethod
    def load(cls, path: Path) -> DepthExample:
        with np.load(path) as z:
            shape = tuple(int(x) for x in z["mask_shape"])
            n = int(np.prod(shape))
            mask = np.unpackbits(z["face_mask"])[:n].reshape(shape).astype(bool) if n else None
            return cls(str(z["scan_id"]), str(z["subject_id"]), z["depth_mm"], mask)


def jittered_frame(lps: np.ndarray, rng: np.random.Generator, error_mm: float) -> FaceFrame:
    """The landmarks' face frame (``LandmarkSet.frame``) of true points plus detection error."""
    pts = lps + rng.normal(0.0, error_mm, lps.shape)
    axes = face_axes(pts)
    return FaceFrame(pts[2].copy(), axes[2], axes[1], FrameMethod.LANDMARKS)


def true_face_mask(
    ct_depth: np.ndarray, face_depth: np.ndarray, tolerance_mm: float = MASK_TOLERANCE_MM
) -> np.ndarray:
    """Pixels where the CT surface is the face: both rendered and within ``tolerance_mm``."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(ct_depth) & (np.abs(ct_depth - face_depth) <= tolerance_mm)


def phantom_truth(
    seed: int, job: ScanJob, nuisance: NuisanceConfig, error_mm: float = LANDMARK_ERROR_MM
) -> tuple[FaceFrame, SkinSurface]:
    """The render frame of phantom scan ``job`` (true landmarks + simulated detection error)
    and its true face surface (face model's face and eyes, LPS mm); no CT is made."""
    spec = CohortSpec(subjects=job.subject_index + 1, seed=seed, nuisance=nuisance)
    subject, scan, _ = draw_job(spec, job)
    model, maps = load_generator_model(None)
    v = scan_vertices(model, maps, subject, scan)
    place = place_head(scan, v[model.vertex_group <= 1], v[model.landmarks68[30]])
    marks = five_landmarks(model, v)
    lps = np.round(place.apply(np.array([marks[n] for n in LANDMARKS])), 3)
    rng = np.random.default_rng([seed, job.subject_index, job.scan_index, 0xE1])
    frame = jittered_frame(lps, rng, error_mm)
    face = mesh_surface(place.apply(v), model.triangles[model.group_mask(*FACE_GROUPS)])
    return frame, face


def phantom_example(
    seed: int,
    job: ScanJob,
    nuisance: NuisanceConfig,
    views: list[View] | None = None,
    error_mm: float = LANDMARK_ERROR_MM,
) -> DepthExample:
    """Scan ``job`` of the cohort with ``seed``: depth images and the true face mask."""
    spec = CohortSpec(subjects=job.subject_index + 1, seed=seed, nuisance=nuisance)
    scan, _ = synthesize_job(spec, job)
    volume = canonicalize(find_head(scan.volume), 1.0)
    frame, face = phantom_truth(seed, job, nuisance, error_mm)
    views = pose_grid() if views is None else views
    ct = pool_depth(render_face(volume, frame=frame, views=views, size=RENDER_PX).depth_mm)
    face_depth = pool_depth(render_surface(face, frame, views, size=RENDER_PX))
    return DepthExample(
        scan.scan.scan_id,
        scan.subject.subject_id,
        ct.astype(np.float16),
        true_face_mask(ct, face_depth),
    )


def remask(path: Path, nuisance: NuisanceConfig, tolerance_mm: float = MASK_TOLERANCE_MM) -> None:
    """Recompute the true face mask of a cached phantom example (``ct_<seed>_<subject>_<scan>``)
    with ``tolerance_mm``, from its geometry alone."""
    _, seed, subject, scan = path.stem.split("_")
    ex = DepthExample.load(path)
    frame, face = phantom_truth(int(seed), ScanJob(int(subject), int(scan), 1), nuisance)
    face_depth = pool_depth(render_surface(face, frame, pose_grid(), size=RENDER_PX))
    ct = ex.depth_mm.astype(np.float32)
    DepthExample(
        ex.scan_id, ex.subject_id, ex.depth_mm, true_face_mask(ct, face_depth, tolerance_mm)
    ).save(path)


def _prepare_one(cache: Path, seed: int, job: ScanJob, nuisance: NuisanceConfig) -> Path:
    path = cache / f"ct_{seed}_{job.subject_index:05d}_{job.scan_index:02d}.npz"
    if not path.exists():
        phantom_example(seed, job, nuisance).save(path)
    return path


def prepare_phantom_examples(
    cache: Path,
    seed: int,
    subjects: int,
    nuisance: NuisanceConfig,
    scans: tuple[int, int] = (2, 3),
    jobs: int = 1,
    progress: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Cache files of every scan of a ``subjects``-person cohort with ``seed`` (resumable).
    The nuisance draws are stamped per seed (``nuisance_<seed>.json``): resuming a cache with
    other draws is an InvalidInputError, never a silent mix."""
    cache.mkdir(parents=True, exist_ok=True)
    stamp = cache / f"nuisance_{seed}.json"
    wanted = json.loads(json.dumps(asdict(nuisance)))
    if stamp.exists() and json.loads(stamp.read_text()) != wanted:
        raise InvalidInputError(
            f"{cache} holds seed {seed} examples made with other nuisance draws ({stamp.name}): "
            "use another --cache"
        )
    write_text_atomic(stamp, json.dumps(wanted, indent=1) + "\n")
    spec = CohortSpec(subjects=subjects, scans_min=scans[0], scans_max=scans[1], seed=seed)
    args = [(cache, seed, job, nuisance) for job in plan(spec)]
    return map_jobs(_prepare_one, args, jobs, progress)
