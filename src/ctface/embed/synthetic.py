"""Depth faces rendered straight from the face model: the pretraining data.

The paper pretrains its recognition network on an RGB-D face dataset (450 people, 581,366
depth images). None is reachable offline; the stand-in is thousands of ICT-FaceKit identities,
each rendered in several *instances* (its own expression, landmark error, field-of-view cut)
from random poses of the paper's ranges. Identities are drawn like the phantoms' people, with
a per-identity spread of the identity weights (x U(0.8, 1.25)) so that the set is more diverse
than one Gaussian. Only the face and the eyes are rendered, so the images are already what the
face separation keeps; the camera is ``render_face``'s, at ``CACHE_SIZE`` px over 220 mm.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from ctface.embed.examples import FACE_GROUPS, LANDMARK_ERROR_MM, DepthExample, jittered_frame
from ctface.embed.images import CACHE_SIZE
from ctface.face_model import five_landmarks
from ctface.jobs import map_jobs
from ctface.landmarks.dataset import TRAINING_NUISANCE
from ctface.landmarks.sampling import LANDMARKS
from ctface.landmarks.skin import mesh_surface
from ctface.phantom.cohort import load_generator_model
from ctface.phantom.params import draw_expression, draw_subject
from ctface.render.depth import render_surface
from ctface.render.views import View

P_CUT_CHIN = 0.15  # the field of view ends between the mouth and the chin
P_CUT_TOP = 0.15  # ... or 25-60 mm above the eyes


def _cut(v: np.ndarray, tris: np.ndarray, lps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Triangles left after a random field-of-view cut across the face (model's y is up)."""
    y = v[tris].mean(axis=1)[:, 1]
    keep = np.ones(len(tris), bool)
    mouth, eyes = lps[[3, 4], 1].mean(), lps[[0, 1], 1].mean()
    if rng.random() < P_CUT_CHIN:
        keep &= y > mouth - rng.uniform(5.0, 30.0)
    if rng.random() < P_CUT_TOP:
        keep &= y < eyes + rng.uniform(25.0, 60.0)
    return tris[keep]


def synthetic_face(
    seed: int, index: int, instances: int = 2, views: int = 8, face_model: str | None = None
) -> DepthExample:
    """Identity ``index`` of the set ``seed``: ``instances`` x ``views`` depth images."""
    model, _ = load_generator_model(face_model)
    rng = np.random.default_rng([seed, index, 0x5F])
    person = draw_subject(rng, f"F{index:05d}", model.n_identity)
    identity = person.identity * np.float32(rng.uniform(0.8, 1.25))
    tris_all = model.triangles[model.group_mask(*FACE_GROUPS)]
    images = []
    for _ in range(instances):
        expr = np.zeros(len(model.expression_names), np.float32)
        for name, w in draw_expression(rng, model.expression_names, TRAINING_NUISANCE).items():
            expr[model.expression_index(name)] = w
        v = model.vertices(identity, expr) * np.float32(person.head_scale)
        marks = five_landmarks(model, v)
        lps = np.array([marks[n] for n in LANDMARKS])
        frame = jittered_frame(lps, rng, LANDMARK_ERROR_MM)
        pose = [View(rng.uniform(-20, 20), rng.uniform(-25, 25)) for _ in range(views)]
        surface = mesh_surface(v, _cut(v, tris_all, lps, rng))
        images.append(render_surface(surface, frame, pose, size=CACHE_SIZE))
    depth = np.concatenate(images).astype(np.float16)
    return DepthExample(f"{person.subject_id}", person.subject_id, depth, None)


def _prepare_one(cache: Path, seed: int, index: int, instances: int, views: int) -> Path:
    path = cache / f"face_{seed}_{index:05d}.npz"
    if not path.exists():
        synthetic_face(seed, index, instances, views).save(path)
    return path


def prepare_synthetic_faces(
    cache: Path,
    seed: int,
    count: int,
    instances: int = 2,
    views: int = 8,
    jobs: int = 1,
    progress: Callable[[Path], None] | None = None,
) -> list[Path]:
    """Cache files of identities 0..count-1 of the set ``seed`` (existing ones are kept)."""
    cache.mkdir(parents=True, exist_ok=True)
    args = [(cache, seed, i, instances, views) for i in range(count)]
    return map_jobs(_prepare_one, args, jobs, progress)
