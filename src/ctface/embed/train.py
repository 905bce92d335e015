"""Training the embedding network: group sampling, batch-hard triplet loss (+ CosFace), Adam.

Pretraining (synthetic depth faces) and fine-tuning (CT depth images of phantoms) are the same
loop on different image sets; fine-tuning starts from the pretrained network (``init``) or, for
the ablation, from scratch. The CosFace head belongs to one training set's identities and is
not carried from one stage to the next. Augmentation: a random crop (``resize`` -> ``input_size``)
and, one image in five, a random rectangle blanked (an occluder: tube, mask edge); one in four,
a band of 8-30 % of the face's height blanked at its top or its bottom (a field of view that cuts
the forehead or the chin, the commonest cause of a missed rescan on the harsh held-out phantoms).

A model whose configuration records ``extra["augment"] == "robust"`` (``ctface train finetune
--augment robust``, issue 16) also sees, before those: the face's grey levels scaled by
0.85-1 (a maximum set by something nearer than the face, up to the adjustment's face-anchored
cap), smooth bumps of up to +-4 mm (beard, hair, a blanket fold, skin swelling), holes (surface
the separation dropped) and a stripe of near grey levels across the image (a tube, strap or
hose in front of the face that the separation kept).

``--augment robust+devices`` adds, first, a close-fitting thermoplastic mask (issue 16: the
held-out cohort's lowest genuine scores were nearly all masked scans): a shell over the face's
grey-level closing (it bridges the eye sockets, nostrils and mouth as a sheet lying on the skin
does), 1.5-5 mm nearer than the skin, one time in two wrapping on one pixel past the face's
outline; over the whole face or a band of it, perforated by a random square or hexagonal
lattice of round holes (pitch 4-12 mm, radius 0.5-3 mm; wide holes merge; each pixel mixes
shell and skin by its covered share, and where there is no skin behind it, stays shell, or
becomes background when at least half open) and, one time in two, with open eyes/mouth
cut-outs; then a flat plate in front of the lower face (a bite block's flange, a connector,
tape: a rectangle or ellipse 12-50 mm across centred in the lower 60 % of the face, 2-10 mm
nearer than the face's nearest point under it, one time in two bored through by a channel 6-16
mm wide, at most 60 % of the plate's smaller half-size in radius). Depths are in mm at the
adjustment cap's scale (``MM_PER_UNIT``); sizes in mm at the crop's pixel (``FIELD_MM /
resize``).

The devices candidate (README) was trained with these rules as they were at commit c040e58,
before five corrections: there the wrap dilated the whole closing (beside a steep slope, such
as the nose, the sheet stood off by one pixel's rise more), a partly open pixel with no skin
behind mixed shell and background, sizes took the network input as FIELD_MM wide (~6 % small
on the face), a bore could be wider than a small plate, and holes wider than half the row
pitch were clipped at row boundaries.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ctface.embed.dataset import ImageSet
from ctface.embed.images import crop
from ctface.embed.losses import CosFace, batch_hard_triplet
from ctface.embed.resnet import EmbedConfig, ResNetEmbedder
from ctface.embed.sampling import GroupSampler
from ctface.render.depth import FACE_TOP_MM, SCALE_C
from ctface.render.views import FIELD_MM
from ctface.training import TrainConfig, train_loop

P_OCCLUDE = 0.2
P_CUT = 0.25
CUT_FRACTION = (0.08, 0.3)
AUGMENTATION = f"crop;occlude={P_OCCLUDE};cut={P_CUT}:{CUT_FRACTION[0]}-{CUT_FRACTION[1]}"
ROBUST = "robust"  # EmbedConfig.extra["augment"]: the extra augmentations below
ROBUST_DEVICES = "robust+devices"  # ... and the mask shell and plate
P_SCALE, P_BUMPS, P_HOLES, P_STRIPE, P_MASK, P_PLATE = 0.3, 0.3, 0.2, 0.15, 0.2, 0.15
MM_PER_UNIT = 255.0 * FACE_TOP_MM / SCALE_C  # depth span of input 0..1 at the cap: 133 mm
BUMP_MM = 4.0  # bumps: at most this, at the cap's scale (a face whose maximum is 101 mm: 4.6)


def _occlude(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    s = x.shape[-1]
    for i in np.flatnonzero(rng.random(len(x)) < P_OCCLUDE):
        h, w = rng.integers(s // 8, s // 3, size=2)
        r, c = rng.integers(0, s - h), rng.integers(0, s - w)
        x[i, :, r : r + h, c : c + w] = 0.0
    return x


def _cut(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    for i in np.flatnonzero(rng.random(len(x)) < P_CUT):
        rows = np.flatnonzero((x[i, 0] > 0).any(dim=1).numpy())
        if len(rows) < 8:
            continue
        k = int(round((rows[-1] - rows[0] + 1) * rng.uniform(*CUT_FRACTION)))
        if rng.random() < 0.5:
            x[i, :, : rows[0] + k] = 0.0
        else:
            x[i, :, rows[-1] + 1 - k :] = 0.0
    return x


def _chosen(n: int, p: float, rng: np.random.Generator) -> np.ndarray:
    return np.flatnonzero(rng.random(n) < p)


def _scale(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    for i in _chosen(len(x), P_SCALE, rng):
        face = x[i] > 0
        x[i][face] = (x[i][face] * float(rng.uniform(0.85, 1.0))).clamp_min(1 / 255)
    return x


def _bumps(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    s = x.shape[-1]
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    for i in _chosen(len(x), P_BUMPS, rng):
        field = np.zeros((s, s), np.float32)
        for _ in range(int(rng.integers(1, 5))):
            cy, cx = rng.uniform(0, s, 2)
            sigma = rng.uniform(2.0, 6.0) * s / 64
            amp = rng.uniform(-BUMP_MM, BUMP_MM) / MM_PER_UNIT
            field += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        field = np.clip(field, -BUMP_MM / MM_PER_UNIT, BUMP_MM / MM_PER_UNIT)  # overlaps too
        face = x[i, 0] > 0
        x[i, 0][face] = (x[i, 0] + torch.from_numpy(field))[face].clamp(1 / 255, 1.0)
    return x


def _holes(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    s = x.shape[-1]
    yy, xx = np.mgrid[0:s, 0:s]
    for i in _chosen(len(x), P_HOLES, rng):
        hole = np.zeros((s, s), bool)
        for _ in range(int(rng.integers(1, 6))):
            cy, cx = rng.uniform(0, s, 2)
            hole |= (yy - cy) ** 2 + (xx - cx) ** 2 <= (rng.uniform(1.5, 5.0) * s / 64) ** 2
        x[i, 0][torch.from_numpy(hole)] = 0.0
    return x


def _stripe(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    s = x.shape[-1]
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    for i in _chosen(len(x), P_STRIPE, rng):
        cy, cx = rng.uniform(s / 4, 3 * s / 4, 2)
        a = rng.uniform(0, np.pi)
        dist = np.abs((yy - cy) * np.cos(a) - (xx - cx) * np.sin(a))
        along = (yy - cy) * np.sin(a) + (xx - cx) * np.cos(a)
        start = rng.uniform(-s, 0)
        band = (dist <= rng.uniform(1.0, 3.0) * s / 64) & (along >= start)
        x[i, 0][torch.from_numpy(band)] = float(rng.uniform(0.8, 1.0))
    return x


def _closing(img: torch.Tensor, r: int) -> torch.Tensor:
    """Grey-level closing (dilation, then erosion) with a (2r+1)^2 square."""
    k = 2 * r + 1
    dil = nn.functional.max_pool2d(img[None, None], k, 1, r)
    return -nn.functional.max_pool2d(-dil, k, 1, r)[0, 0]


def _lattice_holes(s: int, mm: float, rng: np.random.Generator, sub: int = 4) -> np.ndarray:
    """Share of each pixel (``mm`` wide) that a random lattice of round holes covers (``sub`` x
    ``sub`` samples a pixel); square or hexagonal lattice, any orientation. A sample's hole is
    the nearest lattice point's of its own row and the rows on either side, so that holes wider
    than half the row pitch stay round (and overlapping holes merge)."""
    pitch, radius = rng.uniform(4.0, 12.0), rng.uniform(0.5, 3.0)
    a, hexagonal = rng.uniform(0, np.pi), rng.random() < 0.5
    g = (np.arange(s * sub) + 0.5) / sub * mm
    yy, xx = np.meshgrid(g, g, indexing="ij")
    u = xx * np.cos(a) + yy * np.sin(a) + rng.uniform(0, pitch)
    v = -xx * np.sin(a) + yy * np.cos(a) + rng.uniform(0, pitch)
    row_pitch = pitch * (0.866 if hexagonal else 1.0)
    hole = np.zeros_like(u, dtype=bool)
    for row in np.floor(v / row_pitch) + np.array([-1.0, 0.0, 1.0])[:, None, None]:
        shifted = u + (0.5 * pitch * (row % 2) if hexagonal else 0.0)
        du = shifted - pitch * np.round(shifted / pitch)
        dv = v - row_pitch * (row + 0.5)
        hole |= du**2 + dv**2 < radius**2
    return hole.astype(np.float32).reshape(s, sub, s, sub).mean(axis=(1, 3))


def _mask_region(face: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Where the sheet lies: the whole face, or a band of its rows; one time in two with
    elliptic cut-outs (eyes, mouth) of a random size and place."""
    rows = np.flatnonzero(face.any(axis=1))
    region = face.copy()
    if len(rows) < 8:
        return region
    h = rows[-1] - rows[0] + 1
    if rng.random() < 0.5:
        region[: rows[0] + int(h * rng.uniform(0.0, 0.35))] = False
        region[rows[-1] + 1 - int(h * rng.uniform(0.0, 0.2)) :] = False
    if rng.random() < 0.5:
        s = face.shape[0]
        yy, xx = np.mgrid[0:s, 0:s]
        cols = np.flatnonzero(face.any(axis=0))
        for _ in range(int(rng.integers(1, 4))):
            cy = rng.uniform(rows[0] + 0.2 * h, rows[-1] - 0.1 * h)
            cx = rng.uniform(cols[0], cols[-1] + 1)
            ry, rx = rng.uniform(0.05, 0.15) * h, rng.uniform(0.08, 0.25) * h
            region &= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 > 1
    return region


def _mask_shell(x: torch.Tensor, mm: float, rng: np.random.Generator) -> torch.Tensor:
    """A close-fitting mask (module docstring) on a share ``P_MASK`` of the images, whose
    pixels are ``mm`` wide."""
    s = x.shape[-1]
    for i in _chosen(len(x), P_MASK, rng):
        img = x[i, 0]
        closed = _closing(img, max(1, int(round(rng.uniform(4.0, 10.0) / mm))))
        if rng.random() < 0.5:  # the sheet wraps on one pixel past the face's outline
            wrap = nn.functional.max_pool2d(closed[None, None], 3, 1, 1)[0, 0]
            closed = torch.where(closed > 0, closed, wrap)
        shell = torch.maximum(closed, img) + rng.uniform(1.5, 5.0) / MM_PER_UNIT
        open_ = torch.from_numpy(_lattice_holes(s, mm, rng))
        covered = torch.from_numpy(_mask_region((closed > 0).numpy(), rng))
        edge = torch.where(open_ < 0.5, shell, torch.zeros(()))  # no skin behind: all or none
        masked = torch.where(img > 0, (1 - open_) * shell + open_ * img, edge)
        x[i, 0] = torch.where(covered, masked.clamp(max=1.0), img)
    return x


def _plate(x: torch.Tensor, mm: float, rng: np.random.Generator) -> torch.Tensor:
    """A flat plate in front of the lower face (module docstring) on a share ``P_PLATE`` of
    the images, whose pixels are ``mm`` wide."""
    s = x.shape[-1]
    yy, xx = np.mgrid[0:s, 0:s]
    for i in _chosen(len(x), P_PLATE, rng):
        img = x[i, 0]
        rows, cols = np.flatnonzero((img > 0).any(dim=1)), np.flatnonzero((img > 0).any(dim=0))
        if len(rows) < 8:
            continue
        cy = rng.uniform(rows[0] + 0.4 * len(rows), rows[-1] + 1)
        cx = rng.uniform(cols[0] + 0.25 * len(cols), cols[-1] + 1 - 0.25 * len(cols))
        hy, hx = rng.uniform(6.0, 25.0, 2) / mm
        if rng.random() < 0.5:
            plate = (np.abs(yy - cy) <= hy) & (np.abs(xx - cx) <= hx)
        else:
            plate = ((yy - cy) / hy) ** 2 + ((xx - cx) / hx) ** 2 <= 1
        on = torch.from_numpy(plate)
        level = float(img[on].max()) + rng.uniform(2.0, 10.0) / MM_PER_UNIT
        x[i, 0][on] = min(level, 1.0)
        if rng.random() < 0.5:  # an air channel, a connector's bore, inside the plate
            r = min(rng.uniform(3.0, 8.0) / mm, 0.6 * min(hy, hx))
            x[i, 0][torch.from_numpy((yy - cy) ** 2 + (xx - cx) ** 2 <= r**2)] = 0.0
    return x


def augment(x: torch.Tensor, cfg: EmbedConfig, rng: np.random.Generator) -> torch.Tensor:
    """The training augmentations of ``cfg`` on a batch (n, 1, S, S) of adjusted images."""
    kind = cfg.extra.get("augment")
    if kind == ROBUST_DEVICES:
        mm = FIELD_MM / cfg.resize  # a pixel of the crop, on the face
        x = _plate(_mask_shell(x, mm, rng), mm, rng)
    if kind in (ROBUST, ROBUST_DEVICES):
        x = _stripe(_holes(_bumps(_scale(x, rng), rng), rng), rng)
    return _cut(_occlude(x, rng), rng)


def batch_images(
    data: ImageSet, idx: np.ndarray, cfg: EmbedConfig, rng: np.random.Generator | None
) -> torch.Tensor:
    """Network input for images ``idx``: resized, cropped (random when ``rng``), augmented."""
    x = crop(data.tensor(idx, cfg.resize), cfg.input_size, rng)
    return augment(x.clone(), cfg, rng) if rng is not None else x


class _Trainee(nn.Module):
    def __init__(self, net: nn.Module, head: CosFace | None) -> None:
        super().__init__()
        self.net, self.head = net, head


def train_metric(
    net: nn.Module,
    inputs: Callable[[np.ndarray, np.random.Generator], torch.Tensor],
    labels: np.ndarray,
    cfg: EmbedConfig,
    settings: TrainConfig,
    checkpoint: Path,
    stage_id: int = 3,
    progress: Callable[[int, float], None] | None = None,
    scans: np.ndarray | None = None,
) -> list[float]:
    """Metric learning of any embedding network ``net``: group sampling (``cfg.group_e`` x
    ``cfg.group_l``, ``cfg.group_shuffle``) over ``labels`` (subject per item, 0..n-1),
    batch-hard triplet loss (+ CosFace as ``cfg.loss`` says), ``train_loop``. ``inputs(idx,
    rng)`` makes the network input of items ``idx`` (augmented with ``rng``); ``scans`` (scan
    per item) bounds the subgroups without grouping. L is capped at the number of subjects (a
    small training fold)."""
    head = None
    if "cosface" in cfg.loss:
        n_ids = int(labels.max()) + 1
        head = CosFace(cfg.embedding_dim, n_ids, margin=cfg.cosface_margin)
    rng0 = np.random.default_rng(0)
    n_subjects = int((np.bincount(labels) >= 2).sum())
    l_ = min(cfg.group_l, n_subjects)
    sampler = GroupSampler(labels, cfg.group_e, l_, rng0, cfg.group_shuffle, scans)

    def batch_loss(it: int, rng: np.random.Generator) -> torch.Tensor:
        sampler.rng = rng
        idx = sampler.batch()
        target = torch.from_numpy(labels[idx]).long()
        emb = net(inputs(idx, rng))
        loss = batch_hard_triplet(emb, target, cfg.margin)
        if head is not None:
            loss = loss + head(emb, target)
        return loss

    return train_loop(_Trainee(net, head), batch_loss, settings, stage_id, checkpoint, progress)


def train_embedding(
    cfg: EmbedConfig,
    data: ImageSet,
    settings: TrainConfig,
    work: Path,
    stage: str,
    init: dict[str, Any] | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[ResNetEmbedder, list[float]]:
    """Train on ``data`` with checkpoints in ``work/<stage>.ckpt`` (resumable). ``init``: the
    state dict of a network of the same configuration to start from (transfer learning)."""
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(settings.seed)
    net = ResNetEmbedder(cfg)
    if init is not None:
        net.load_state_dict(init)
    small = data.resized(cfg.resize) if cfg.resize <= data.images.shape[-1] else data
    stage_id = {"pretrain": 1, "finetune": 2}.get(stage, 3)
    losses = train_metric(
        net, lambda idx, rng: batch_images(small, idx, cfg, rng), data.subject, cfg, settings,
        work / f"{stage}.ckpt", stage_id, progress, data.scan,
    )  # fmt: skip
    return net, losses
