"""3D VGG16 and 3D ResNet10/18/34 embedding networks for (N, 1, S, S, S) volumes in 0..1.

Layouts as in the paper's baselines (Simonyan & Zisserman's VGG16: 13 convolutions in 5 blocks
of 2-2-3-3-3; Hara et al.'s 3D ResNets: basic blocks 1-1-1-1 / 2-2-2-2 / 3-4-6-3), at reduced
width for a CPU: VGG 4-8-16-32-32 channels, ResNets 4-8-16-32 with a 3^3 stride-2 stem (the
originals: 64-512 channels, 7^3 stem). Output: a unit embedding, as the recognition network's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CNN3D_ARCHS = ("vgg16-3d", "resnet10-3d", "resnet18-3d", "resnet34-3d")
RESNET_LAYERS = {"resnet10-3d": (1, 1, 1, 1), "resnet18-3d": (2, 2, 2, 2),
                 "resnet34-3d": (3, 4, 6, 3)}  # fmt: skip
RESNET_WIDTHS = (4, 8, 16, 32)
VGG_BLOCKS = ((2, 4), (2, 8), (3, 16), (3, 32), (3, 32))


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(True)
    )


class Block3d(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.a = _conv(cin, cout, stride)
        self.b = nn.Sequential(nn.Conv3d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm3d(cout))
        self.down: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv3d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm3d(cout))  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.b(self.a(x)) + self.down(x))


class Cnn3dEmbedder(nn.Module):
    """``arch`` in ``CNN3D_ARCHS`` -> unit embeddings of ``dim``."""

    def __init__(self, arch: str, dim: int = 128) -> None:
        super().__init__()
        if arch not in CNN3D_ARCHS:
            raise ValueError(f"unknown 3D CNN {arch!r}; one of {CNN3D_ARCHS}")
        layers: list[nn.Module] = []
        if arch == "vgg16-3d":
            cin = 1
            for n, w in VGG_BLOCKS:
                for _ in range(n):
                    layers.append(_conv(cin, w))
                    cin = w
                layers.append(nn.MaxPool3d(2, ceil_mode=True))
        else:
            cin = RESNET_WIDTHS[0]
            layers.append(_conv(1, cin, 2))
            for i, (n, w) in enumerate(zip(RESNET_LAYERS[arch], RESNET_WIDTHS, strict=True)):
                for k in range(n):
                    layers.append(Block3d(cin, w, 2 if (k == 0 and i > 0) else 1))
                    cin = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = F.adaptive_avg_pool3d(self.features(x), 1).flatten(1)
        return F.normalize(self.head(f), dim=1)


def random_rotation(x: torch.Tensor, gen: torch.Generator, max_deg: float = 20.0) -> torch.Tensor:
    """Each volume of (N, 1, S, S, S) turned by random angles (uniform +-``max_deg`` about each
    axis) about its centre, trilinear, air (0) outside."""
    n = len(x)
    a = (torch.rand(n, 3, generator=gen) * 2 - 1) * torch.deg2rad(torch.tensor(max_deg))
    c, s = torch.cos(a), torch.sin(a)
    one, zero = torch.ones(n), torch.zeros(n)
    rx = torch.stack([one, zero, zero, zero, c[:, 0], -s[:, 0], zero, s[:, 0], c[:, 0]], 1)
    ry = torch.stack([c[:, 1], zero, s[:, 1], zero, one, zero, -s[:, 1], zero, c[:, 1]], 1)
    rz = torch.stack([c[:, 2], -s[:, 2], zero, s[:, 2], c[:, 2], zero, zero, zero, one], 1)
    r = rx.view(n, 3, 3) @ ry.view(n, 3, 3) @ rz.view(n, 3, 3)
    theta = torch.cat([r, torch.zeros(n, 3, 1)], dim=2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_shift(x: torch.Tensor, gen: torch.Generator, max_vox: int = 2) -> torch.Tensor:
    """Each volume shifted by up to ``max_vox`` voxels per axis (air fills in)."""
    out = torch.zeros_like(x)
    s = x.shape[-1]
    for i, d in enumerate(torch.randint(-max_vox, max_vox + 1, (len(x), 3), generator=gen)):
        src = [slice(max(0, -int(v)), s - max(0, int(v))) for v in d]
        dst = [slice(max(0, int(v)), s - max(0, -int(v))) for v in d]
        out[i, :, dst[0], dst[1], dst[2]] = x[i, :, src[0], src[1], src[2]]
    return out
