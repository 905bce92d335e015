"""CT-FAN in 3-D: an input block of four convolutions and an hourglass, one heatmap per landmark.

The paper's face alignment network (input block + hourglass, Gaussian heatmap targets, MSE
loss, Adam) with 3-D convolutions. The input block halves the resolution once (its second
convolution has stride 2), so heatmaps come out at half the input resolution; the hourglass
pools down ``depth`` times and comes back up with a skip connection at every level.
Two instances make the coarse-to-fine detector (``sampling.COARSE`` and ``sampling.FINE``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class NetConfig:
    channels: int = 24
    depth: int = 3
    n_landmarks: int = 5

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _block(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
    )


class Hourglass(nn.Module):
    """skip(x) + up(inner(down(pool(x)))), recursively ``depth`` levels deep."""

    def __init__(self, depth: int, channels: int) -> None:
        super().__init__()
        self.skip = _block(channels, channels)
        self.down = _block(channels, channels)
        self.inner: nn.Module = (
            Hourglass(depth - 1, channels) if depth > 1 else _block(channels, channels)
        )
        self.up = _block(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(self.inner(self.down(F.max_pool3d(x, 2))))
        out: torch.Tensor = self.skip(x) + F.interpolate(y, size=x.shape[2:], mode="nearest")
        return out


class CtFan(nn.Module):
    """(B, 1, n, n, n) normalized CT -> (B, L, n/2, n/2, n/2) landmark heatmaps."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        c = config.channels
        self.config = config
        self.input_block = nn.Sequential(
            _block(1, c // 2), _block(c // 2, c, stride=2), _block(c, c), _block(c, c)
        )
        self.hourglass = Hourglass(config.depth, c)
        self.head = nn.Sequential(_block(c, c), nn.Conv3d(c, config.n_landmarks, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.hourglass(self.input_block(x)))
        return out
