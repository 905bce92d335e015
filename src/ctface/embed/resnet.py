"""ResNet embedding networks in plain torch (torchvision does not import beside this torch).

He et al.'s ResNet for one-channel depth images: basic blocks (ResNet18/34) or bottleneck
blocks (ResNet50), batch norm, a global average pool, then a linear layer to the embedding,
L2-normalized. ``EmbedConfig`` names the whole recipe (network, input size, loss, group
sampling); ``CONFIGS`` holds the paper's and ctface's default (both in ``config``, without
torch, and importable from here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ctface.embed.config import CONFIGS, EmbedConfig

__all__ = ["CONFIGS", "EmbedConfig", "ResNetEmbedder"]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.down(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.down = _shortcut(cin, cout, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + self.down(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if cin == cout and stride == 1:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNetEmbedder(nn.Module):
    """Depth image (N, 1, S, S) in 0..1 -> unit embedding (N, embedding_dim)."""

    def __init__(self, cfg: EmbedConfig) -> None:
        super().__init__()
        block = BasicBlock if cfg.block == "basic" else Bottleneck
        w0 = cfg.widths[0]
        stem: list[nn.Module] = [
            nn.Conv2d(1, w0, 7 if cfg.stem_stride > 1 else 3, cfg.stem_stride,
                      3 if cfg.stem_stride > 1 else 1, bias=False),
            nn.BatchNorm2d(w0),
            nn.ReLU(inplace=True),
        ]  # fmt: skip
        if cfg.stem_stride > 1:
            stem.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        stages: list[nn.Module] = []
        cin = w0
        for i, (n, w) in enumerate(zip(cfg.layers, cfg.widths, strict=True)):
            blocks: list[nn.Module] = []
            for k in range(n):
                blocks.append(block(cin, w, 2 if (k == 0 and i > 0) else 1))
                cin = w * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(cin, cfg.embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x * 2.0 - 1.0))
        return F.normalize(self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)), dim=1)
