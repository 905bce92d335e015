"""PointNet and PointNet++ (multi-scale grouping) embedding networks for (N, P, 3) point
clouds, and the clouds themselves: points sampled from a depth image's surface pixels.

Sizes reduced for a CPU: ``POINTS`` = 512 points per image (the paper: 4,096), PointNet's
shared MLP 3-32-64-256 (Qi et al.: 64-64-64-128-1024, no input transform nets), PointNet++
MSG with 128 and 32 centres (512 and 128) and MLPs a quarter as wide; farthest-point sampling
and ball query written in torch (the CUDA kernels of the reference code do not run here).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctface.embed.images import CACHE_SIZE
from ctface.render.views import FIELD_MM

POINT_ARCHS = ("pointnet", "pointnet2")
POINTS = 512
MM_PER_PX = FIELD_MM / CACHE_SIZE  # the 128 px depth images span the render's 220 mm


def depth_points(images: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """(V, S, S) uint8 metric depth images (1 grey level = 1 mm, 0 = background) -> (V, n, 3)
    float16 clouds in mm (x right, y up, z depth), ``n`` pixels drawn at random (with
    replacement when fewer), centred and scaled into the unit ball."""
    v, s, _ = images.shape
    out = np.zeros((v, n, 3), np.float16)
    for k in range(v):
        r, c = np.nonzero(images[k])
        if len(r) == 0:
            continue
        pick = rng.choice(len(r), n, replace=len(r) < n)
        xyz = np.stack([(c[pick] - s / 2) * MM_PER_PX, (s / 2 - r[pick]) * MM_PER_PX,
                        images[k][r[pick], c[pick]].astype(np.float32)], axis=1)  # fmt: skip
        xyz -= xyz.mean(axis=0)
        out[k] = xyz / max(float(np.linalg.norm(xyz, axis=1).max()), 1e-6)
    return out


def _mlp(sizes: list[int], dims: int) -> nn.Sequential:
    conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [conv(a, b, 1), norm(b), nn.ReLU(True)]
    return nn.Sequential(*layers)


def farthest_points(xyz: torch.Tensor, m: int) -> torch.Tensor:
    """(B, P, 3) -> (B, m) indices by farthest-point sampling (from point 0)."""
    b, p, _ = xyz.shape
    idx = torch.zeros(b, m, dtype=torch.long)
    dist = torch.full((b, p), float("inf"))
    far = torch.zeros(b, dtype=torch.long)
    rows = torch.arange(b)
    for i in range(m):
        idx[:, i] = far
        d = ((xyz - xyz[rows, far][:, None]) ** 2).sum(-1)
        dist = torch.minimum(dist, d)
        far = dist.argmax(dim=1)
    return idx


def ball_query(xyz: torch.Tensor, centres: torch.Tensor, radius: float, k: int) -> torch.Tensor:
    """(B, M, k) indices of up to ``k`` nearest points within ``radius`` of each centre (the
    nearest point repeated where fewer)."""
    d = torch.cdist(centres, xyz)  # (B, M, P)
    near, idx = d.topk(k, dim=-1, largest=False)
    return torch.where(near <= radius, idx, idx[..., :1])


def _gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, P, C), idx (B, ...) -> (B, ..., C)."""
    b = x.shape[0]
    flat = idx.reshape(b, -1)
    out = torch.gather(x, 1, flat[..., None].expand(-1, -1, x.shape[-1]))
    return out.reshape(*idx.shape, x.shape[-1])


class SetAbstractionMsg(nn.Module):
    def __init__(self, m: int, radii: list[float], ks: list[int], cin: int,
                 mlps: list[list[int]]) -> None:  # fmt: skip
        super().__init__()
        self.m, self.radii, self.ks = m, radii, ks
        self.mlps = nn.ModuleList(_mlp([cin + 3, *sizes], 2) for sizes in mlps)

    def forward(self, xyz: torch.Tensor, feat: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        centres = _gather(xyz, farthest_points(xyz, self.m))
        outs = []
        for r, k, mlp in zip(self.radii, self.ks, self.mlps, strict=True):
            idx = ball_query(xyz, centres, r, k)
            local = _gather(xyz, idx) - centres[:, :, None]
            if feat is not None:
                local = torch.cat([local, _gather(feat, idx)], dim=-1)
            h = mlp(local.permute(0, 3, 1, 2))  # (B, C, M, k)
            outs.append(h.max(dim=-1).values)
        return centres, torch.cat(outs, dim=1).transpose(1, 2)


class PointEmbedder(nn.Module):
    """``arch`` in ``POINT_ARCHS``: (N, P, 3) clouds -> unit embeddings of ``dim``."""

    def __init__(self, arch: str, dim: int = 128) -> None:
        super().__init__()
        if arch not in POINT_ARCHS:
            raise ValueError(f"unknown point network {arch!r}; one of {POINT_ARCHS}")
        self.arch = arch
        if arch == "pointnet":
            self.shared = _mlp([3, 32, 64, 256], 1)
            width = 256
        else:
            self.sa1 = SetAbstractionMsg(128, [0.1, 0.2, 0.4], [8, 16, 32], 0,
                                         [[8, 8, 16], [16, 16, 32], [16, 24, 32]])  # fmt: skip
            self.sa2 = SetAbstractionMsg(32, [0.2, 0.4], [16, 32], 80, [[32, 64], [32, 64]])
            self.sa3 = _mlp([128 + 3, 128, 256], 1)
            width = 256
        self.head = nn.Sequential(nn.Linear(width, 128), nn.BatchNorm1d(128), nn.ReLU(True),
                                  nn.Linear(128, dim))  # fmt: skip

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        if self.arch == "pointnet":
            f = self.shared(xyz.transpose(1, 2)).max(dim=-1).values
        else:
            c1, f1 = self.sa1(xyz, None)
            c2, f2 = self.sa2(c1, f1)
            f = self.sa3(torch.cat([c2, f2], dim=-1).transpose(1, 2)).max(dim=-1).values
        return F.normalize(self.head(f), dim=1)


def augment_points(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random rotation about the view axis (+-15 deg), scale 0.9-1.1, jitter 0.01."""
    n = len(x)
    a = (torch.rand(n, generator=gen) * 2 - 1) * np.deg2rad(15.0)
    c, s = torch.cos(a), torch.sin(a)
    r = torch.zeros(n, 3, 3)
    r[:, 0, 0], r[:, 0, 1], r[:, 1, 0], r[:, 1, 1], r[:, 2, 2] = c, -s, s, c, 1.0
    scale = 0.9 + 0.2 * torch.rand(n, 1, 1, generator=gen)
    return (x @ r.transpose(1, 2)) * scale + 0.01 * torch.randn(x.shape, generator=gen)
