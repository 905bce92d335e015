"""Metric-learning losses on unit embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def batch_hard_triplet(emb: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """The paper's triplet loss max(0, |a - p|^2 - |a - n|^2 + m), each anchor with its
    hardest positive and hardest negative in the batch (Hermans et al. 2017); group sampling
    guarantees every anchor has positives."""
    d = torch.cdist(emb, emb).pow(2)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    pos = torch.where(same & ~eye, d, torch.full_like(d, -1.0)).max(dim=1).values
    neg = torch.where(~same, d, torch.full_like(d, 1e9)).min(dim=1).values
    ok = (pos >= 0) & (neg < 1e9)
    if not bool(ok.any()):
        return emb.sum() * 0.0
    return F.relu(pos[ok] - neg[ok] + margin).mean()


class CosFace(nn.Module):
    """Large-margin cosine loss (Wang et al. 2018): s (cos(theta_y) - m) for the true class."""

    def __init__(self, dim: int, classes: int, scale: float = 30.0, margin: float = 0.35) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dim) * 0.01)
        self.scale, self.margin = scale, margin

    def forward(self, emb: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = emb @ F.normalize(self.weight, dim=1).T
        logits = self.scale * (cos - self.margin * F.one_hot(labels, cos.shape[1]))
        return F.cross_entropy(logits, labels)
