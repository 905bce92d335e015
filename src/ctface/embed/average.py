"""Weight averaging of recognition models (``ctface train average``): every floating-point
weight of the embedding network is the weighted mean of the models' weights, and the result is
an ordinary model file, as fast as any of them. Two uses, both from the literature of robust
fine-tuning:

- a fine-tuned model mixed with the network it started from (WiSE-FT: Wortsman et al., "Robust
  fine-tuning of zero-shot models", CVPR 2022): ``--model BASE --model FINETUNED``, weights
  1 - alpha and alpha; it tends to keep the base's accuracy where the base was good with much
  of the fine-tuning's gain;
- fine-tunings of one start with other seeds (a "model soup": Wortsman et al., ICML 2022).

The mean is a good network only where the models share a layout (checked) and a start
(``ctface train finetune --init``; not checked: averaging unrelated networks gives noise). The
face separation, configuration and template rule are the last model's. Issue 16: README,
"Weight averaging". Torch does the arithmetic; only the file handling is ctface's."""

from __future__ import annotations

import math
from pathlib import Path

from ctface.embed.embedder import FaceEmbedder, load_network, save_model
from ctface.errors import InvalidInputError
from ctface.model_files import sha256


def average_models(models: list[Path], weights: list[float] | None, out: Path) -> Path:
    """Write to ``out`` the model whose embedding weights are the ``weights``-weighted mean
    (normalized to sum 1; None: equal) of ``models``' (the last a usable model, the others
    models or pretrained files); the rest is the last model's. InvalidInputError: fewer than
    two models, weights not one finite non-negative number each, networks of other layouts;
    MissingDataError: a file missing or unreadable."""
    share = _shares(len(models), weights)
    last = FaceEmbedder.load(models[-1], backend="torch")
    net = last.net
    state = net.state_dict()
    shapes = {k: v.shape for k, v in state.items()}
    mixed = {
        k: v.new_zeros(v.shape) if v.is_floating_point() else v.clone() for k, v in state.items()
    }
    for path, w in zip(models, share, strict=True):
        cfg, net_weights = load_network(Path(path))
        other_shapes = {k: v.shape for k, v in net_weights.items()} != shapes
        if other_shapes or cfg.layout != last.config.layout:
            raise InvalidInputError(f"{path} and {models[-1]} are networks of other layouts")
        for k, v in net_weights.items():  # all float32 here; counters stay the last model's
            if state[k].is_floating_point():
                mixed[k] += w * v
    net.load_state_dict(mixed)
    provenance = {
        "average": [
            {
                "file": Path(p).name,
                "sha256": sha256(Path(p)),
                "weight": w,
            }
            for p, w in zip(models, share, strict=True)
        ]  # fmt: skip
    }
    return save_model(out, last.config, net, last.segmenter, provenance)


def _shares(n: int, weights: list[float] | None) -> list[float]:
    """The weights normalized to sum 1 (None: equal)."""
    if n < 2:
        raise InvalidInputError("averaging needs at least two models (--model, repeated)")
    w = weights or [1.0] * n
    if len(w) != n or not all(math.isfinite(x) and x >= 0 for x in w) or sum(w) <= 0:
        raise InvalidInputError(
            f"--weight: one finite non-negative number per --model ({n}), not all 0; got {weights}"
        )
    return [x / sum(w) for x in w]
