"""The methods the harness trains and tests, named by a spec ``ARCH[:key=value,...]``.

- ``ours``: ctface's recognition network (``CONFIGS["default"]``) fine-tuned on the training
  folds from the shipped depth-face pretrained network (``pretrained=1``) or from scratch
  (``pretrained=0``); ``stage`` = projected | segmented | final (the data stage, Table II),
  ``el`` = ExL group sampling (default the configuration's 6x16), ``grouping`` = 0 for
  subgroups of one scan's consecutive views (the paper's "no grouping").
- ``vgg16-3d``, ``resnet10-3d``, ``resnet18-3d``, ``resnet34-3d``: 3D CNNs on CT cubes,
  ``crop`` = 1 face crop / 0 whole head, ``rot`` = 1 random 3D rotations in training.
- ``pointnet``, ``pointnet2``: point networks on clouds from the segmented depth images.
- ``model``: a trained model file (``path``; default the shipped one), tested without training.

Every method takes ``it`` = training iterations per fold (default ``DEFAULT_ITERATIONS``, or the
CLI's ``--iterations``) and ``proportion`` = 1 (folds stratified by scans per subject, the paper's
"proportion") or 0 (plain random folds). Networks of every family learn with the same loss
(batch-hard triplet + CosFace) and group sampling (``embed.train.train_metric``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ctface.embed.inference import embed_images
from ctface.embed.resnet import CONFIGS, EmbedConfig
from ctface.embed.shipped import PRETRAINED
from ctface.embed.template import TEMPLATE_RULE, scan_templates
from ctface.embed.train import train_embedding, train_metric
from ctface.errors import InvalidInputError
from ctface.evaluate.baselines.cnn3d import (
    CNN3D_ARCHS,
    Cnn3dEmbedder,
    random_rotation,
    random_shift,
)
from ctface.evaluate.baselines.pointnet import POINT_ARCHS, PointEmbedder, augment_points
from ctface.evaluate.data import CohortData
from ctface.evaluate.protocols import FoldEmbeddings
from ctface.training import TrainConfig

ARCHS = ("ours", *CNN3D_ARCHS, *POINT_ARCHS, "model")
DEFAULT_ITERATIONS = 300
_BOOL = ("0", "1")
OPTIONS: dict[str, dict[str, tuple[str, ...] | None]] = {
    "ours": {"pretrained": _BOOL, "grouping": _BOOL, "stage": ("projected", "segmented", "final"),
             "el": None},
    "cnn3d": {"crop": _BOOL, "rot": _BOOL},
    "points": {},
    "model": {"path": None},
}  # fmt: skip
DEFAULTS = {"ours": {"pretrained": "1", "grouping": "1", "stage": "final", "el": "6x16"},
            "cnn3d": {"crop": "1", "rot": "0"}, "points": {}, "model": {"path": ""}}  # fmt: skip
BASELINE_GROUPS = (16, 3)  # L subjects x E items per batch for the baselines (48, the paper's)


def _family(arch: str) -> str:
    return "cnn3d" if arch in CNN3D_ARCHS else "points" if arch in POINT_ARCHS else arch


@dataclass(frozen=True)
class Method:
    arch: str
    options: dict[str, str]

    @property
    def family(self) -> str:
        return _family(self.arch)

    @property
    def spec(self) -> str:
        """Canonical name: the arch and every option, sorted."""
        return self.arch + ":" + ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))

    @property
    def stratified(self) -> bool:
        return self.options["proportion"] == "1"

    @property
    def iterations(self) -> int:
        return 0 if self.family == "model" else int(self.options["it"])

    def opt(self, key: str) -> str:
        return self.options[key]


def parse_method(text: str, iterations: int = DEFAULT_ITERATIONS) -> Method:
    """``ARCH[:key=value,...]`` -> Method with every option filled in (InvalidInputError)."""
    arch, _, rest = text.strip().partition(":")
    if arch not in ARCHS:
        raise InvalidInputError(f"unknown method {arch!r}; one of {', '.join(ARCHS)}")
    fam = _family(arch)
    allowed = {**OPTIONS[fam], "proportion": _BOOL, "it": None}
    options = {**DEFAULTS[fam], "proportion": "1", "it": str(iterations)}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or key not in allowed:
            raise InvalidInputError(f"method {arch}: unknown option {item!r} "
                                    f"(options: {', '.join(allowed)})")  # fmt: skip
        choices = allowed[key]
        if choices is not None and value not in choices:
            raise InvalidInputError(f"method {arch}: {key} must be one of {', '.join(choices)}")
        options[key] = value
    if fam == "ours":
        _group(options["el"])
    if not options["it"].isdigit() or int(options["it"]) < 0:
        raise InvalidInputError(f"method {arch}: it must be a whole number, got {options['it']!r}")
    if fam == "model":
        del options["it"]
    return Method(arch, options)


def bare_spec(text: str) -> str:
    """The canonical spec without the iteration count (what a table row names)."""
    m = parse_method(text)
    return m.arch + ":" + ",".join(f"{k}={v}" for k, v in sorted(m.options.items()) if k != "it")


def _group(el: str) -> tuple[int, int]:
    try:
        e, l_ = (int(x) for x in el.lower().split("x"))
    except ValueError:
        raise InvalidInputError(f"el must be ExL, e.g. 15x18, got {el!r}") from None
    if e < 2 or l_ < 2:
        raise InvalidInputError(f"el needs E >= 2 and L >= 2, got {el}")
    return e, l_


def subject_folds(
    scan_subject: np.ndarray, k: int, seed: int, stratified: bool
) -> list[np.ndarray]:
    """Test subjects of each of ``k`` folds. ``stratified``: subjects with the same number of
    scans are dealt round the folds in turn, so every fold has the same mix."""
    subjects = np.unique(scan_subject)
    if k < 2 or len(subjects) < 2 * k:
        raise InvalidInputError(f"{k} folds need at least {2 * k} subjects, the cohort has "
                                f"{len(subjects)}")  # fmt: skip
    rng = np.random.default_rng(seed)
    order = rng.permutation(subjects)
    if stratified:
        counts = np.bincount(scan_subject)[order]
        order = order[np.argsort(counts, kind="stable")]
        return [np.sort(order[i::k]) for i in range(k)]
    return [np.sort(f) for f in np.array_split(order, k)]


def _embed_batches(net: torch.nn.Module, x: torch.Tensor, batch: int = 64) -> np.ndarray:
    net.eval()
    with torch.no_grad():
        return torch.cat([net(x[i : i + batch].float()) for i in range(0, len(x), batch)]).numpy()


def _views(
    test: np.ndarray,
    data: CohortData,
    emb: np.ndarray,
    img_scan: np.ndarray,
    rule: str = TEMPLATE_RULE,
) -> FoldEmbeddings:
    """Test embeddings from view embeddings ``emb`` of scans ``img_scan`` (positions)."""
    templates = scan_templates(emb, img_scan, rule)
    return FoldEmbeddings(test, data.scan_subject[test], templates, emb, img_scan)


def run_fold(
    m: Method,
    data: CohortData,
    train: np.ndarray,
    test: np.ndarray,
    seed: int,
    work: Path,
    progress: Any = None,
) -> FoldEmbeddings:
    """Train ``m`` on scans ``train`` (cohort indices; resumable from ``work``), embed ``test``."""
    work.mkdir(parents=True, exist_ok=True)
    settings = TrainConfig(iterations=max(m.iterations, 1), seed=seed, checkpoint_every=50)
    if m.family == "model":
        from ctface.embed.embedder import FaceEmbedder
        from ctface.embed.examples import DepthExample

        model = FaceEmbedder.load(m.opt("path"))
        depth = (DepthExample.load(data.paths[s]).depth_mm.astype(np.float32) for s in test)
        views = [model.embed(model.images(d)[0]) for d in depth]
        pos = np.concatenate([np.full(len(v), i) for i, v in enumerate(views)])
        return _views(test, data, np.concatenate(views), pos, model.template_rule)
    if m.family == "ours":
        images = data.images(m.opt("stage"))
        cfg: EmbedConfig = CONFIGS["default"]
        init = None
        if m.opt("pretrained") == "1":
            from ctface.embed.embedder import load_network

            cfg, init = load_network(PRETRAINED)
        e, l_ = _group(m.opt("el"))
        cfg = dataclasses.replace(cfg, group_e=e, group_l=l_,
                                  group_shuffle=m.opt("grouping") == "1")  # fmt: skip
        net, _ = train_embedding(cfg, images.subset(train), settings, work, "fold", init, progress)
        t = images.subset(test)
        return _views(test, data, embed_images(net, cfg, t.images), t.scan)
    groups = dataclasses.replace(CONFIGS["default"], group_l=BASELINE_GROUPS[0],
                                 group_e=BASELINE_GROUPS[1])  # fmt: skip
    torch.manual_seed(seed)
    if m.family == "cnn3d":
        vol = torch.from_numpy(data.volumes(m.opt("crop") == "1"))[:, None]
        net3d = Cnn3dEmbedder(m.arch, groups.embedding_dim)
        rot = m.opt("rot") == "1"

        def cube(idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
            gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
            x = vol[train[idx]].float()
            return random_shift(random_rotation(x, gen) if rot else x, gen)

        labels = np.unique(data.scan_subject[train], return_inverse=True)[1]
        train_metric(net3d, cube, labels, groups, settings, work / "fold.ckpt", 3, progress)
        t_emb = _embed_batches(net3d, vol[test])
        return FoldEmbeddings(test, data.scan_subject[test], t_emb, None, None)
    pts = torch.from_numpy(data.points())
    images = data.images("segmented")
    tr, te = images.subset(train), images.subset(test)
    tr_rows, te_rows = images.rows(train), images.rows(test)
    netp = PointEmbedder(m.arch, groups.embedding_dim)

    def cloud(idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        return augment_points(pts[tr_rows[idx]].float(), gen)

    train_metric(netp, cloud, tr.subject, groups, settings, work / "fold.ckpt", 3, progress)
    return _views(test, data, _embed_batches(netp, pts[te_rows]), te.scan)
