"""The recognition recipes (``EmbedConfig``, ``CONFIGS``): plain data, no torch, so that
inference on ONNX Runtime reads a model's configuration without loading torch. The networks
they describe are in ``resnet``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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

    @property
    def layout(self) -> tuple[Any, ...]:
        """What the network computes, apart from its weights: the fields that are not about
        training (the images it sees and the layers)."""
        return (self.block, self.layers, self.widths, self.stem_stride, self.resize,
                self.input_size, self.embedding_dim)  # fmt: skip

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
