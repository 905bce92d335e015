"""Embedding a scan: its face depth images -> face separation -> adjustment -> ResNet -> one
template (``template.scan_template``, by the rule the model file records). Weights: one file
with the configuration, the embedding network, the face separation network and the template
rule (``save_model`` / ``FaceEmbedder.load``); the shipped default is ``WEIGHTS`` with
``MODEL_CARD.md`` beside it. ``save_model`` also exports a usable model's two networks to ONNX
beside the file (``export_model_onnx``: NAME.segmenter.onnx, NAME.embedding.onnx); a model
whose exports record its file's SHA-256 runs on ONNX Runtime and loads without torch, any
other on torch (the same templates within 1e-4)."""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ctface.embed.config import EmbedConfig
from ctface.embed.images import CACHE_SIZE, face_images, pool_depth
from ctface.embed.inference import SEG_SIZE, embed_images, face_masks
from ctface.embed.shipped import WEIGHTS
from ctface.embed.template import TEMPLATE_RULE, checked_rule, scan_template
from ctface.errors import MissingDataError
from ctface.model_files import (
    SOURCE_KEY,
    OnnxNet,
    TorchOnDemand,
    export_onnx,
    import_torch,
    load_checked,
    onnx_nets,
    onnx_path,
    save_atomic,
)
from ctface.render.depth import FaceRendering

if TYPE_CHECKING:  # torch is imported where a torch network is loaded, trained or exported
    import torch

    from ctface.embed.resnet import ResNetEmbedder
    from ctface.embed.segment import FaceSegmenter

# 2: a usable model records its template rule (older ctface versions, which read only 1,
# refuse it rather than silently making mean templates); 1: no rule recorded = mean.
FORMAT = "ctface-embedder-2"
READABLE = ("ctface-embedder-1", FORMAT)
ONNX_PARTS = ("segmenter", "embedding")  # NAME.segmenter.onnx, NAME.embedding.onnx
BACKENDS = ("auto", "onnxruntime", "torch")


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
    onnx: bool = True,
) -> Path:
    """Write a model file (fp16 embedding weights); without ``segmenter`` it is a pretrained
    network for ``ctface train finetune --init``, not a usable model. A usable one is also
    exported to ONNX beside it (``onnx``; a warning instead where the onnx package is
    missing: the model then runs on torch)."""
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
    if onnx and segmenter is not None:
        try:
            export_model_onnx(path)
        except MissingDataError as e:
            warnings.warn(f"{path}: no ONNX export, the model runs on torch ({e})", stacklevel=2)
    return path


def export_model_onnx(path: Path) -> list[Path]:
    """Export the usable model file ``path`` to ONNX beside it (``onnx_path``, parts
    ``ONNX_PARTS``): the face separation with its sigmoid, (N, 1, 64, 64) metric depth -> face
    probability, and the embedding network, (N, 1, input_size, input_size) -> unit embedding;
    exactly the weights ``FaceEmbedder.load`` reads (fp16 rounded), with the file's SHA-256,
    configuration and template rule in their metadata."""
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    cfg, net, seg, rule = _read(Path(path), data)
    torch = import_torch()
    meta = {SOURCE_KEY: digest, "ctface.model_version": digest[:16]}
    n = cfg.input_size
    return [
        export_onnx(torch.nn.Sequential(seg, torch.nn.Sigmoid()),
                    torch.zeros(2, 1, SEG_SIZE, SEG_SIZE), onnx_path(path, "segmenter"),
                    ("depth", "face_probability"), {**meta, "ctface.part": "segmenter"}),
        export_onnx(net, torch.zeros(2, 1, n, n), onnx_path(path, "embedding"),
                    ("image", "embedding"), {**meta, "ctface.part": "embedding",
                    "ctface.config": cfg.to_json(), "ctface.template": rule}),
    ]  # fmt: skip


class FaceEmbedder(TorchOnDemand):
    """A loaded recognition model: its networks run on ONNX Runtime (``onnx``: the exports of
    its file, by part) or on torch (``net``, ``segmenter``; read from ``path`` on first use
    where ONNX Runtime runs the model)."""

    def __init__(
        self,
        cfg: EmbedConfig,
        net: ResNetEmbedder | None,
        segmenter: FaceSegmenter | None,
        version: str,
        template_rule: str = TEMPLATE_RULE,
        path: Path | None = None,
        onnx: dict[str, OnnxNet] | None = None,
    ) -> None:
        if (net is None or segmenter is None) and (onnx is None or path is None):
            raise ValueError("a model needs its torch networks, or its ONNX ones and its file")
        self.config, self.version = cfg, version
        self.template_rule = template_rule
        self.path = path  # the weights file it was read from (worker processes read it again)
        self.onnx = onnx
        self._net, self._segmenter = net, segmenter
        for module in (net, segmenter):
            if module is not None:
                module.eval()

    @property
    def net(self) -> ResNetEmbedder:
        """The torch embedding network."""
        net: ResNetEmbedder = self._on_demand("_net")
        return net

    @property
    def segmenter(self) -> FaceSegmenter:
        """The torch face separation network."""
        seg: FaceSegmenter = self._on_demand("_segmenter")
        return seg

    def _load_torch(self) -> None:
        assert self.path is not None
        data = self.path.read_bytes()
        if hashlib.sha256(data).hexdigest()[:16] != self.version:
            raise MissingDataError(f"{self.path} changed since model {self.version} was loaded")
        _, net, seg, _ = _read(self.path, data)
        self._net, self._segmenter = net.eval(), seg.eval()

    @classmethod
    def load(cls, path: str | Path | None = None, backend: str = "auto") -> FaceEmbedder:
        """The model in ``path`` (None or "": the shipped one). ``backend`` "auto": on ONNX
        Runtime where the file's exports are beside it and record its SHA-256, else on torch;
        "torch" or "onnxruntime" (MissingDataError without valid exports): that one."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        p = Path(path) if path else WEIGHTS  # None or "": the shipped model
        if not p.is_file():
            raise MissingDataError(
                f"recognition model weights not found: {p} (reinstall ctface, or train them "
                "with `ctface train finetune`; see the model card)"
            )
        data = p.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        nets = onnx_nets(p, ONNX_PARTS, digest) if backend != "torch" else None
        if nets is not None:
            meta = nets["embedding"].metadata
            try:
                cfg = EmbedConfig.from_json(json.loads(meta["ctface.config"]))
                rule = checked_rule(meta["ctface.template"])
            except (KeyError, TypeError, ValueError):  # not written by export_model_onnx
                nets = None
            else:
                return cls(cfg, None, None, digest[:16], rule, p.resolve(), nets)
        if backend == "onnxruntime":
            raise MissingDataError(
                f"no ONNX export of {p} (or onnxruntime missing): `ctface train export-onnx "
                f"--weights {p}` writes it"
            )
        cfg, net, seg, rule = _read(p, data)
        return cls(cfg, net, seg, digest[:16], rule, p.resolve())

    def images(self, depth_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(V, S, S) render depth mm -> face images (V, 128, 128) uint8 and face masks."""
        d = pool_depth(depth_mm, CACHE_SIZE)
        mask = face_masks(self.onnx["segmenter"] if self.onnx else self.segmenter, d)
        return face_images(d, mask), mask

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(V, D) unit embeddings of face images (V, 128, 128) uint8."""
        return embed_images(self.onnx["embedding"] if self.onnx else self.net, self.config, images)

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


def _read(p: Path, data: bytes | None = None) -> tuple[EmbedConfig, Any, Any, str]:
    """Configuration, torch embedding and face separation networks, template rule of the model
    file ``p`` (its bytes ``data`` if read already); MissingDataError if it is not usable."""
    from ctface.embed.resnet import ResNetEmbedder
    from ctface.embed.segment import FaceSegmenter

    try:
        state = load_checked(io.BytesIO(p.read_bytes() if data is None else data), READABLE)
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
    return cfg, net, seg, rule


def _network(state: dict[str, Any]) -> tuple[EmbedConfig, dict[str, torch.Tensor]]:
    return EmbedConfig.from_json(state["config"]), {k: v.float() for k, v in state["net"].items()}


def load_network(path: Path) -> tuple[EmbedConfig, dict[str, torch.Tensor]]:
    """Configuration and (float32) embedding weights of a model or pretrained file."""
    try:
        return _network(load_checked(path, READABLE))
    except Exception as e:  # noqa: BLE001
        raise MissingDataError(f"cannot read network weights {path} ({e})") from e
