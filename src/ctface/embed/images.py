"""Depth images as the recognition networks see them.

Every network in ``embed`` reads depth images at ``CACHE_SIZE`` pixels over the render's
220 mm field: the 256 px render (0.86 mm/px) is pooled to 128 px (1.72 mm/px) by averaging the
surface pixels of each 2 x 2 block, which is what training caches hold. A configuration then
resamples to its own input size (``to_input``). The adjustment is the paper's
NX = C (SX - theta) / (max SX - theta) with max SX capped 15 mm in front of the nose tip
(``render.depth.normalize_depth``), scaled to 0..1, background 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ctface.render.depth import SCALE_C, THETA_MM, normalize_depth

if TYPE_CHECKING:  # torch is imported by the functions that take tensors (inference on ONNX
    import torch  # Runtime reads these images without it)

CACHE_SIZE = 128  # render.views.RENDER_PX / 2


def pool_depth(depth_mm: np.ndarray, size: int = CACHE_SIZE) -> np.ndarray:
    """(V, S, S) depth in mm (NaN = background) -> (V, size, size): the mean of the surface
    pixels of each block; a block with under half of its pixels on the surface is background."""
    v, s, _ = depth_mm.shape
    if s == size:
        return depth_mm.astype(np.float32)
    f = s // size
    if f * size != s:
        raise ValueError(f"cannot pool {s} px images to {size} px")
    blocks = depth_mm.reshape(v, size, f, size, f)
    valid = np.isfinite(blocks)
    n = valid.sum(axis=(2, 4))
    total = np.where(valid, blocks, 0.0).sum(axis=(2, 4))
    out = np.full((v, size, size), np.nan, np.float32)
    ok = n * 2 >= f * f
    out[ok] = total[ok] / n[ok]
    return out


def pool_mask(mask: np.ndarray, size: int = CACHE_SIZE) -> np.ndarray:
    """(V, S, S) bool -> (V, size, size): true where at least half of the block is true."""
    v, s, _ = mask.shape
    f = s // size
    return mask.reshape(v, size, f, size, f).mean(axis=(2, 4)) >= 0.5


def adjust(
    depth_mm: np.ndarray, theta_mm: float = THETA_MM, scale_c: float = SCALE_C
) -> np.ndarray:
    """The paper's adjustment of (V, S, S) depth in mm, as float32 in 0..1 (background 0)."""
    return normalize_depth(depth_mm, theta_mm, scale_c).astype(np.float32) / 255.0


def to_input(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, S, S) or (N, 1, S, S) float images -> (N, 1, size, size), area/bilinear resampled."""
    import torch.nn.functional as F

    x = images if images.dim() == 4 else images[:, None]
    if x.shape[-1] == size:
        return x
    if x.shape[-1] > size:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def crop(x: torch.Tensor, size: int, rng: np.random.Generator | None) -> torch.Tensor:
    """(n, 1, S, S) -> (n, 1, size, size): random crops (training) or the centre crop."""
    s = x.shape[-1]
    if s == size:
        return x
    if rng is None:
        o = (s - size) // 2
        return x[:, :, o : o + size, o : o + size]
    import torch

    offs = rng.integers(0, s - size + 1, size=(len(x), 2))
    return torch.stack([x[i, :, a : a + size, b : b + size] for i, (a, b) in enumerate(offs)])


def face_images(depth_mm: np.ndarray, mask: np.ndarray | None, adjusted: bool = True) -> np.ndarray:
    """(V, S, S) depth mm and face mask -> (V, S, S) uint8: the paper's adjustment of the face
    pixels only (0 elsewhere). ``mask`` None: the images hold nothing but the face already.
    ``adjusted`` False: metric depth instead, 1 grey level per mm above the reference plane
    (1..255; the paper's "projected" and "segmented" stages, before adjustment)."""
    d = depth_mm.astype(np.float32)
    if mask is not None:
        d = np.where(mask, d, np.nan)
    if not adjusted:
        return np.where(np.isfinite(d), np.clip(np.rint(d), 1, 255), 0).astype(np.uint8)
    return np.rint(adjust(d) * 255).astype(np.uint8)
