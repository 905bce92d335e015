"""ResNet embedding networks in plain torch (torchvision does not import beside this torch).

He et al.'s ResNet for one-channel depth images: basic blocks (ResNet18/34) or bottleneck
blocks (ResNet50), batch norm, a global average pool, then a linear layer to the embedding,
L2-normalized. ``EmbedConfig`` names the whole recipe (network, input size, loss, group
sampling); ``CONFIGS`` holds the paper's and ctface's default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class EmbedConfig:
    """A recognition recipe. ``input_size`` is what the network sees: images are resampled
    from the 128 px cache to ``resize`` and, in training, randomly cropped to ``input_size``
    (centre crop at test time). ``loss``: "triplet" (batch-hard, margin ``margin`` on the
    squared distance of unit vectors) or "triplet+cosface" (plus CosFace with scale 30 and
    margin ``cosface_margin`` over the training identities). ``group_shuffle`` False: the
    paper's ablation without grouping (subgroups of consecutive images, i.e. of one scan)."""

    name: str
    block: str  # "basic" | "bottleneck"
    layers: tuple[int, int, int, int]
    widths: tuple[int, int, int, int]
    stem_stride: int
    resize: int
    input_size: int
    embedding_dim: int = 128
    loss: str = "triplet"
    margin: float = 0.2
    cosface_margin: float = 0.35
    group_e: int = 15
    group_l: int = 18
    group_shuffle: bool = True
    lr: float = 1e-3
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"], d["widths"] = list(self.layers), list(self.widths)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EmbedConfig:
        d = dict(d)
        d["layers"], d["widths"] = tuple(d["layers"]), tuple(d["widths"])
        return cls(**d)


CONFIGS: dict[str, EmbedConfig] = {
    # the paper: ResNet50, 256 px resized, random 224 crop, triplet loss, Adam 1e-3, E x L = 15 x 18
    "paper": EmbedConfig(
        name="paper", block="bottleneck", layers=(3, 4, 6, 3), widths=(64, 128, 256, 512),
        stem_stride=2, resize=256, input_size=224, loss="triplet", group_e=15, group_l=18,
    ),
    # ctface's default (model card): a ResNet18 of quarter width at 64 px (3.4 mm/px)
    "default": EmbedConfig(
        name="default", block="basic", layers=(2, 2, 2, 2), widths=(16, 32, 64, 128),
        stem_stride=2, resize=68, input_size=64, loss="triplet+cosface", group_e=6, group_l=16,
    ),
}  # fmt: skip


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
