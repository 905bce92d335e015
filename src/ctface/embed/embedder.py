"""Embedding a scan: its face depth images -> face separation -> adjustment -> ResNet -> one
template (``template.scan_template``, by the rule the model file records). Weights: one file
with the configuration, the embedding network, the face separation network and the template
rule (``save_model`` / ``FaceEmbedder.load``); the shipped default is ``WEIGHTS`` with
``MODEL_CARD.md`` beside it."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctface.embed.images import CACHE_SIZE, face_images, pool_depth
from ctface.embed.inference import embed_images
from ctface.embed.resnet import EmbedConfig, ResNetEmbedder
from ctface.embed.segment import FaceSegmenter, face_masks
from ctface.embed.shipped import WEIGHTS
from ctface.embed.template import TEMPLATE_RULE, checked_rule, scan_template
from ctface.errors import MissingDataError
from ctface.model_files import load_checked, save_atomic
from ctface.render.depth import FaceRendering

# 2: a usable model records its template rule (older ctface versions, which read only 1,
# refuse it rather than silently making mean templates); 1: no rule recorded = mean.
FORMAT = "ctface-embedder-2"
READABLE = ("ctface-embedder-1", FORMAT)


@dataclass(frozen=True)
class Template:
    """One scan's face template: a unit vector, and what made it.

    Attributes
    ----------
    vector : ndarray, shape (D,)
        float32, unit length (D = 128 for the shipped model). The similarity of two scans is
        the dot product of their vectors, -1..1; decisions compare it with a calibrated
        threshold.
    n_views : int
        Depth views it was made from (90).
    model_version : str
        First 16 hex digits of the weights file's SHA-256: templates of different models
        cannot be compared.
    face_fraction : float
        Share of the image pixels the face separation kept (mean over views, 0..1).
    """

    vector: np.ndarray
    n_views: int
    model_version: str
    face_fraction: float


def save_model(
    path: Path,
    cfg: EmbedConfig,
    net: ResNetEmbedder,
    segmenter: FaceSegmenter | None,
    provenance: dict[str, Any],
) -> Path:
    """Write a model file (fp16 embedding weights); without ``segmenter`` it is a pretrained
    network for ``ctface train finetune --init``, not a usable model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    half = {k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}
    state = {
        "format": FORMAT,
        "config": cfg.to_json(),
        "net": half,
        "segmenter": segmenter.state_dict() if segmenter is not None else None,
        "provenance": provenance,
    }
    if segmenter is not None:  # a usable model: how it makes templates
        state["template"] = TEMPLATE_RULE
    save_atomic(state, path)
    return path


class FaceEmbedder:
    """A loaded recognition model."""

    def __init__(
        self,
        cfg: EmbedConfig,
        net: ResNetEmbedder,
        segmenter: FaceSegmenter,
        version: str,
        template_rule: str = TEMPLATE_RULE,
        path: Path | None = None,
    ) -> None:
        self.config, self.net, self.segmenter, self.version = cfg, net, segmenter, version
        self.template_rule = template_rule
        self.path = path  # the weights file it was read from (worker processes read it again)
        self.net.eval()
        self.segmenter.eval()

    @classmethod
    def load(cls, path: str | Path | None = None) -> FaceEmbedder:
        p = Path(path) if path else WEIGHTS  # None or "": the shipped model
        if not p.is_file():
            raise MissingDataError(
                f"recognition model weights not found: {p} (reinstall ctface, or train them "
                "with `ctface train finetune`; see the model card)"
            )
        data = p.read_bytes()
        try:
            state = load_checked(io.BytesIO(data), READABLE)
            if state.get("segmenter") is None:
                raise ValueError("a pretrained network without face separation: fine-tune it")
            cfg, weights = _network(state)
            net = ResNetEmbedder(cfg)
            net.load_state_dict(weights)
            seg = FaceSegmenter()
            seg.load_state_dict(state["segmenter"])
            if state["format"] == FORMAT and "template" not in state:
                raise ValueError("no template rule recorded")
            rule = checked_rule(state.get("template", "mean"))  # format 1 without one: mean
        except Exception as e:  # noqa: BLE001 - any unreadable file gets one message
            raise MissingDataError(f"recognition model weights unreadable: {p} ({e})") from e
        return cls(cfg, net, seg, hashlib.sha256(data).hexdigest()[:16], rule, p.resolve())

    def images(self, depth_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(V, S, S) render depth mm -> face images (V, 128, 128) uint8 and face masks."""
        d = pool_depth(depth_mm, CACHE_SIZE)
        mask = face_masks(self.segmenter, d)
        return face_images(d, mask), mask

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(V, D) unit embeddings of face images (V, 128, 128) uint8."""
        return embed_images(self.net, self.config, images)

    def template(self, rendering: FaceRendering) -> Template:
        """The scan's template from all its views."""
        return self.template_of_depth(rendering.depth_mm)

    def template_of_depth(self, depth_mm: np.ndarray) -> Template:
        """The template from (V, S, S) depth views in mm (a rendering's, or a cached one)."""
        imgs, mask = self.images(depth_mm.astype(np.float32))
        emb = self.embed(imgs)
        vector = scan_template(emb, self.template_rule)
        return Template(vector, len(imgs), self.version, float(mask.mean()))


def cached_model(path: str | Path | None = None) -> FaceEmbedder:
    """``FaceEmbedder.load(path)`` (None: the shipped model), read once per process per file."""
    return _cached(str(Path(path).resolve()) if path else "")


@lru_cache(maxsize=2)
def _cached(path: str) -> FaceEmbedder:
    return FaceEmbedder.load(path or None)


def _network(state: dict[str, Any]) -> tuple[EmbedConfig, dict[str, torch.Tensor]]:
    return EmbedConfig.from_json(state["config"]), {k: v.float() for k, v in state["net"].items()}


def load_network(path: Path) -> tuple[EmbedConfig, dict[str, torch.Tensor]]:
    """Configuration and (float32) embedding weights of a model or pretrained file."""
    try:
        return _network(load_checked(path, READABLE))
    except Exception as e:  # noqa: BLE001
        raise MissingDataError(f"cannot read network weights {path} ({e})") from e
