"""Training CT-FAN: random views of each example, MSE on Gaussian heatmaps, Adam, checkpoints.

Coarse stage: the whole head at 5.5 mm under any rotation (about the body axis uniformly with a
tilt up to 35 deg, or, one time in four, uniform over all rotations: prone, lateral, anything),
+-10 % scale, 8 mm SD shift; targets: three symmetric heatmaps (eyes, nose, mouth corners).
Fine stage: a 40 mm cube around one landmark in the face frame of the true landmarks, shifted
(SD 4 mm, at most 12) and turned (SD 6 deg) as the coarse stage's errors would, +-5 % scale.
Both: mirror images half the time (the face mirrored, right and left labels swapped: a
plausible other face, so twice the identities), HU gain 0.9-1.1, offset +-40 HU, noise up to
30 HU SD. Every draw comes from (seed, stage, iteration), so a run resumed from a checkpoint
goes on exactly as it would have. ``validation_error``: the trained nets' landmark errors on
held-out examples (what the weights file's card reports).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctface.landmarks.ctfan import CtFanDetector
from ctface.landmarks.dataset import LandmarkExample
from ctface.landmarks.metrics import error_summary
from ctface.landmarks.model import CtFan, NetConfig
from ctface.landmarks.sampling import (
    COARSE,
    FINE,
    LANDMARKS,
    MIRROR,
    Stage,
    body_centre,
    face_axes,
    gaussian_heatmaps,
    sample_cube,
    to_cells,
)
from ctface.training import TrainConfig, train_loop

COARSE_NET = NetConfig(channels=16, depth=3, n_landmarks=3)  # eyes, nose, mouth corners
FINE_NET = NetConfig(channels=24, depth=3)
Item = tuple[np.ndarray, np.ndarray]
FOREGROUND_WEIGHT = 50.0


def _rotation(axis: np.ndarray, deg: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = np.radians(deg)
    out: np.ndarray = np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)
    return out


def random_axes(rng: np.random.Generator, p_any: float = 0.25) -> np.ndarray:
    """Rows of a random rotation: usually about the body axis with a tilt, sometimes any."""
    if rng.random() < p_any:
        q, r = np.linalg.qr(rng.standard_normal((3, 3)))
        q = q * np.sign(np.diag(r))
        if np.linalg.det(q) < 0:
            q[:, 0] = -q[:, 0]
        return q
    spin = _rotation(np.array([0.0, 0.0, 1.0]), float(rng.uniform(0, 360)))
    phi = float(rng.uniform(0, 2 * np.pi))
    tilt = _rotation(np.array([np.cos(phi), np.sin(phi), 0.0]), float(rng.uniform(0, 35)))
    out: np.ndarray = tilt @ spin
    return out


def _intensity(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = x * float(rng.uniform(0.9, 1.1)) + float(rng.uniform(-0.04, 0.04))
    x = x + rng.normal(0, float(rng.uniform(0, 0.03)), x.shape).astype(np.float32)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def _mirror(axes: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    if rng.random() < 0.5:
        return axes * np.array([[-1.0], [1.0], [1.0]]), True
    return axes, False


def symmetric_heatmaps(five: np.ndarray) -> np.ndarray:
    """(5, n, n, n) -> (3, n, n, n): both eyes, nose tip, both mouth corners."""
    return np.stack([five[0:2].max(0), five[2], five[3:5].max(0)])


def coarse_item(ex: LandmarkExample, centre: np.ndarray, rng: np.random.Generator) -> Item:
    axes, _ = _mirror(random_axes(rng), rng)  # symmetric targets: nothing to swap
    stage = Stage(COARSE.n, COARSE.step_mm * float(rng.uniform(0.9, 1.1)))
    c = centre + rng.normal(0, 8.0, 3)
    x = _intensity(sample_cube(ex.coarse, c, axes, stage.n, stage.step_mm), rng)
    y = gaussian_heatmaps(
        to_cells(ex.lps, c, axes, stage), np.ones(len(LANDMARKS), bool), stage.out_n
    )
    return x[None], symmetric_heatmaps(y)


def fine_item(ex: LandmarkExample, rng: np.random.Generator) -> Item:
    present = np.flatnonzero(ex.in_fov)
    target = int(rng.choice(present))
    turn = _rotation(rng.standard_normal(3), float(np.clip(rng.normal(0, 6.0), -15, 15)))
    axes, mirrored = _mirror(face_axes(ex.lps) @ turn.T, rng)
    stage = Stage(FINE.n, FINE.step_mm * float(rng.uniform(0.95, 1.05)))
    c = ex.lps[target] + np.clip(rng.normal(0, 4.0, 3), -12, 12) @ axes
    x = _intensity(sample_cube(ex.fine, c, axes, stage.n, stage.step_mm), rng)
    y = gaussian_heatmaps(to_cells(ex.lps, c, axes, stage), ex.in_fov, stage.out_n)
    return x[None], y[MIRROR] if mirrored else y


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE with the cells near a landmark (target > 0.05) weighted ``FOREGROUND_WEIGHT`` x:
    in 3-D a landmark's Gaussian covers ~1/1000 of the cells, and plain MSE settles on
    all-zero heatmaps (measured: the coarse stage's loss stalled at exactly that level)."""
    weight = 1.0 + FOREGROUND_WEIGHT * (target > 0.05).float()
    return (weight * (pred - target) ** 2).mean() * 100.0  # x100: readable numbers


def train_stage(
    net: CtFan,
    make_item: Callable[[int, np.random.Generator], Item],
    n_examples: int,
    config: TrainConfig,
    stage_id: int,
    checkpoint: Path,
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``net`` for ``config.iterations`` batches; resumes from ``checkpoint`` if present.

    ``make_item(example_index, rng)`` draws one training pair. Returns the loss per iteration
    (those of a resumed run start at the checkpoint)."""

    def batch_loss(it: int, rng: np.random.Generator) -> torch.Tensor:
        items = [make_item(int(rng.integers(n_examples)), rng) for _ in range(config.batch)]
        x = torch.from_numpy(np.stack([a for a, _ in items]))
        y = torch.from_numpy(np.stack([b for _, b in items]))
        return heatmap_loss(net(x), y)

    return train_loop(net, batch_loss, config, stage_id, checkpoint, progress)


def train_ctfan(
    examples: Sequence[LandmarkExample],
    work: Path,
    coarse: TrainConfig,
    fine: TrainConfig,
    progress: Callable[[str, int, int, float], None] | None = None,
) -> tuple[CtFan, CtFan, dict[str, Any]]:
    """Both stages; checkpoints in ``work``. Returns the nets and what was run (for the card)."""
    work.mkdir(parents=True, exist_ok=True)
    centres = [body_centre(ex.coarse) for ex in examples]
    usable = [i for i, ex in enumerate(examples) if ex.in_fov.any()]
    t0 = time.time()
    torch.manual_seed(coarse.seed)  # the initial weights too
    coarse_net = CtFan(COARSE_NET)
    train_stage(
        coarse_net,
        lambda i, rng: coarse_item(examples[i], centres[i], rng),
        len(examples),
        coarse,
        1,
        work / "coarse.ckpt",
        (lambda i, v: progress("coarse", i, coarse.iterations, v)) if progress else None,
    )
    t1 = time.time()
    torch.manual_seed(fine.seed + 1)
    fine_net = CtFan(FINE_NET)
    train_stage(
        fine_net,
        lambda i, rng: fine_item(examples[usable[i]], rng),
        len(usable),
        fine,
        2,
        work / "fine.ckpt",
        (lambda i, v: progress("fine", i, fine.iterations, v)) if progress else None,
    )
    info = {
        "coarse": {"net": COARSE_NET.to_json(), "train": coarse.to_json()},
        "fine": {"net": FINE_NET.to_json(), "train": fine.to_json()},
        "examples": len(examples),
        "seconds_this_run": {"coarse": round(t1 - t0, 1), "fine": round(time.time() - t1, 1)},
    }
    return coarse_net, fine_net, info


def validation_error(
    coarse: CtFan, fine: CtFan, examples: Iterable[LandmarkExample]
) -> dict[str, dict[str, Any]]:
    """The trained nets (put in evaluation mode) on held-out examples: each example's five
    landmarks detected from its grids, their distance to the truth in mm (landmarks outside the
    field of view not scored), summarized per landmark and over all (``metrics.error_summary``);
    ``{}`` without examples. ``examples`` may be a generator: one is held at a time."""
    detector = CtFanDetector(coarse, fine, {})
    errors = []
    for ex in examples:
        est = detector.detect_grids(ex.coarse, ex.fine).lps
        e = np.linalg.norm(est - ex.lps, axis=1)
        errors.append(np.where(ex.in_fov, e, np.nan))
    return error_summary(np.array(errors)) if errors else {}
