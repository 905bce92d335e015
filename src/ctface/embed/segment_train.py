"""Training the face separation network (``segment``) on phantom depth images with their
true face masks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ctface.embed.segment import SEG_SIZE, FaceSegmenter, metric_input
from ctface.training import TrainConfig, train_loop


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy + soft Dice."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1)
    return bce + dice.mean()


def segmenter_data(
    examples: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(depth mm, true mask) pairs -> network inputs and 64 px targets for every view."""
    xs, ys = [], []
    for depth, mask in examples:
        xs.append(metric_input(depth))
        f = mask.shape[-1] // SEG_SIZE
        m = mask.reshape(len(mask), SEG_SIZE, f, SEG_SIZE, f).mean(axis=(2, 4)) >= 0.5
        ys.append(torch.from_numpy(m.astype(np.float32))[:, None])
    return torch.cat(xs), torch.cat(ys)


def train_segmenter(
    x: torch.Tensor,
    y: torch.Tensor,
    settings: TrainConfig,
    checkpoint: Path,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[FaceSegmenter, list[float]]:
    """Train on inputs ``x`` and masks ``y`` (``segmenter_data``); random flips left-right
    (a mirrored face is a face) and 90-degree turns are not used (the camera is upright)."""
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    net = FaceSegmenter()

    def batch_loss(it: int, rng: np.random.Generator) -> torch.Tensor:
        idx = torch.from_numpy(rng.integers(0, len(x), settings.batch))
        xb, yb = x[idx], y[idx]
        if rng.random() < 0.5:
            xb, yb = xb.flip(-1), yb.flip(-1)
        return segmentation_loss(net(xb), yb)

    losses = train_loop(net, batch_loss, settings, 4, checkpoint, progress)
    return net, losses
