"""Training the embedding network: group sampling, batch-hard triplet loss (+ CosFace), Adam.

Pretraining (synthetic depth faces) and fine-tuning (CT depth images of phantoms) are the same
loop on different image sets; fine-tuning starts from the pretrained network (``init``) or, for
the ablation, from scratch. The CosFace head belongs to one training set's identities and is
not carried from one stage to the next. Augmentation: a random crop (``resize`` -> ``input_size``)
and, one image in five, a random rectangle blanked (an occluder: tube, mask edge, cut).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ctface.embed.dataset import ImageSet
from ctface.embed.losses import CosFace, batch_hard_triplet
from ctface.embed.resnet import EmbedConfig, ResNetEmbedder
from ctface.embed.sampling import GroupSampler
from ctface.training import TrainConfig, train_loop

P_OCCLUDE = 0.2


def _crop(x: torch.Tensor, size: int, rng: np.random.Generator | None) -> torch.Tensor:
    """(n, 1, S, S) -> (n, 1, size, size): random crops (training) or the centre crop."""
    s = x.shape[-1]
    if s == size:
        return x
    if rng is None:
        o = (s - size) // 2
        return x[:, :, o : o + size, o : o + size]
    offs = rng.integers(0, s - size + 1, size=(len(x), 2))
    return torch.stack([x[i, :, a : a + size, b : b + size] for i, (a, b) in enumerate(offs)])


def _occlude(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    s = x.shape[-1]
    for i in np.flatnonzero(rng.random(len(x)) < P_OCCLUDE):
        h, w = rng.integers(s // 8, s // 3, size=2)
        r, c = rng.integers(0, s - h), rng.integers(0, s - w)
        x[i, :, r : r + h, c : c + w] = 0.0
    return x


def batch_images(
    data: ImageSet, idx: np.ndarray, cfg: EmbedConfig, rng: np.random.Generator | None
) -> torch.Tensor:
    """Network input for images ``idx``: resized, cropped (random when ``rng``), occluded."""
    x = _crop(data.tensor(idx, cfg.resize), cfg.input_size, rng)
    return _occlude(x.clone(), rng) if rng is not None else x


@torch.no_grad()
def embed_images(
    net: ResNetEmbedder, cfg: EmbedConfig, data: ImageSet, batch: int = 256
) -> np.ndarray:
    """(N, D) unit embeddings of every image (centre crop)."""
    net.eval()
    out = [
        net(batch_images(data, np.arange(i, min(i + batch, len(data))), cfg, None)).numpy()
        for i in range(0, len(data), batch)
    ]
    return np.concatenate(out)


class _Trainee(nn.Module):
    def __init__(self, net: ResNetEmbedder, head: CosFace | None) -> None:
        super().__init__()
        self.net, self.head = net, head


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
    head = None
    if "cosface" in cfg.loss:
        head = CosFace(cfg.embedding_dim, len(data.subject_ids), margin=cfg.cosface_margin)
    trainee = _Trainee(net, head)
    small = data.resized(cfg.resize) if cfg.resize <= data.images.shape[-1] else data
    sampler = GroupSampler(data.subject, cfg.group_e, cfg.group_l, np.random.default_rng(0))

    def batch_loss(it: int, rng: np.random.Generator) -> torch.Tensor:
        sampler.rng = rng
        idx = sampler.batch()
        labels = torch.from_numpy(data.subject[idx]).long()
        emb = net(batch_images(small, idx, cfg, rng))
        loss = batch_hard_triplet(emb, labels, cfg.margin)
        if head is not None:
            loss = loss + head(emb, labels)
        return loss

    stage_id = {"pretrain": 1, "finetune": 2}.get(stage, 3)
    losses = train_loop(trainee, batch_loss, settings, stage_id, work / f"{stage}.ckpt", progress)
    return net, losses
