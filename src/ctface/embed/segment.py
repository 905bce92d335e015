"""Face separation (the paper's step 5): an encoder-decoder that marks the face in a depth image.

The paper uses CEDN (VGG16 encoder, deconvolution decoder) trained on 2-D face photographs.
Here a small convolutional encoder (4 levels, 16-128 channels) and a decoder of transposed
convolutions ("deconvolutions") with skip connections from the encoder (U-Net style, which
keeps the face's outline sharp at this size) are trained on phantom depth images whose true
face mask is known from the face model (``examples``; training: ``segment_train``): it learns
to drop the neck, headrest, tubes and anything in front of the face. It works at ``SEG_SIZE`` px
on *metric* depth (``metric_input``: mm above the reference plane / 180), not on the paper's
per-image adjustment, whose maximum a tube in front of the face would set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctface.embed.inference import SEG_SIZE as SEG_SIZE  # its input size, defined there
from ctface.embed.inference import metric_depth
from ctface.errors import MissingDataError
from ctface.model_files import load_checked, save_atomic

FORMAT = "ctface-segmenter-1"


def metric_input(depth_mm: np.ndarray) -> torch.Tensor:
    """(V, S, S) depth mm (NaN = background) -> (V, 1, SEG_SIZE, SEG_SIZE) in 0..1."""
    return torch.from_numpy(metric_depth(depth_mm))[:, None]


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class FaceSegmenter(nn.Module):
    """(N, 1, S, S) metric depth -> (N, 1, S, S) face logits; S divisible by 8."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        w = [width, width * 2, width * 4, width * 8]
        self.enc = nn.ModuleList([_block(1, w[0]), _block(w[0], w[1]), _block(w[1], w[2])])
        self.bottom = _block(w[2], w[3])
        self.up = nn.ModuleList(
            [nn.ConvTranspose2d(w[i + 1], w[i], 2, stride=2) for i in (2, 1, 0)]
        )
        self.dec = nn.ModuleList([_block(2 * w[i], w[i]) for i in (2, 1, 0)])
        self.out = nn.Conv2d(w[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for enc in self.enc:
            x = enc(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips), strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        out: torch.Tensor = self.out(x)
        return out


@torch.no_grad()
def face_masks(net: FaceSegmenter, depth_mm: np.ndarray, batch: int = 128) -> np.ndarray:
    """(V, S, S) depth mm -> (V, S, S) bool face mask (the network's 64 px mask, upsampled)."""
    net.eval()
    x = metric_input(depth_mm)
    probs = torch.cat([torch.sigmoid(net(x[i : i + batch])) for i in range(0, len(x), batch)])
    size = depth_mm.shape[-1]
    up = F.interpolate(probs, size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    return (up.numpy() >= 0.5) & np.isfinite(depth_mm)


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union of two boolean masks (all images together)."""
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else 1.0


def save_segmenter(path: Path, net: FaceSegmenter, provenance: dict[str, Any]) -> Path:
    save_atomic({"format": FORMAT, "net": net.state_dict(), "provenance": provenance}, path)
    return path


def load_segmenter(path: Path) -> FaceSegmenter:
    try:
        net = FaceSegmenter()
        net.load_state_dict(load_checked(path, FORMAT)["net"])
    except Exception as e:  # noqa: BLE001 - any unreadable file gets one message
        raise MissingDataError(f"cannot read face separation weights {path} ({e})") from e
    return net
