"""Running the trained networks (inference only: no training code): embedding face images and
separating the face, on torch modules or on their ONNX Runtime exports (``OnnxNet``).

Both give the same numbers (within 1e-4, ``tests/test_onnx_runtime.py``): on ONNX Runtime the
images' resampling (torch's area pooling, bilinear interpolation and centre crop) is the same
linear map written as a matrix (``resample_matrix``). torch is imported only for a torch
network."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from ctface.embed.config import EmbedConfig
from ctface.embed.images import pool_depth
from ctface.model_files import OnnxNet, import_torch
from ctface.render.depth import FRONT_MM, REFERENCE_MM

if TYPE_CHECKING:
    from ctface.embed.resnet import ResNetEmbedder
    from ctface.embed.segment import FaceSegmenter

SEG_SIZE = 64  # the face separation's input size (px)


def metric_depth(depth_mm: np.ndarray) -> np.ndarray:
    """(V, S, S) depth mm (NaN = background) -> (V, SEG_SIZE, SEG_SIZE) float32 in 0..1: mm
    above the reference plane / 180, the face separation's input."""
    d = pool_depth(depth_mm.astype(np.float32), SEG_SIZE)
    x = np.nan_to_num(d / (REFERENCE_MM + FRONT_MM), nan=0.0).clip(0.0, 1.0)
    return x.astype(np.float32)


@cache
def resample_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) float32 matrix M of torch's resampling along one axis: adaptive
    average pooling when shrinking, bilinear interpolation (align_corners False) when growing;
    an image X resamples to M @ X @ M.T."""
    m = np.zeros((size_out, size_in), np.float64)
    if size_out == size_in:
        np.fill_diagonal(m, 1.0)
    elif size_out < size_in:  # torch's adaptive_avg_pool2d bins
        for i in range(size_out):
            a, b = (i * size_in) // size_out, -((-(i + 1) * size_in) // size_out)
            m[i, a:b] = 1.0 / (b - a)
    else:  # torch's upsample_bilinear2d, half-pixel centres, clamped at the edges
        src = np.maximum((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, size_in - 1)
        w = src - i0
        rows = np.arange(size_out)
        np.add.at(m, (rows, i0), 1.0 - w)
        np.add.at(m, (rows, i1), w)
    return m.astype(np.float32)


def _input_matrix(size: int, cfg: EmbedConfig) -> np.ndarray:
    """``resample_matrix`` to ``cfg.resize``, then the centre ``cfg.input_size`` rows."""
    m = resample_matrix(size, cfg.resize)
    o = (cfg.resize - cfg.input_size) // 2
    return m[o : o + cfg.input_size]


def embed_images(
    net: ResNetEmbedder | OnnxNet, cfg: EmbedConfig, images: np.ndarray, batch: int = 256
) -> np.ndarray:
    """(N, D) unit embeddings of face images (N, S, S) uint8, resized to ``cfg.resize`` and
    centre-cropped to ``cfg.input_size``."""
    if isinstance(net, OnnxNet):
        m = _input_matrix(images.shape[-1], cfg)
        out = []
        for i in range(0, len(images), batch):
            x = images[i : i + batch].astype(np.float32) / np.float32(255.0)
            out.append(net((m @ x @ m.T)[:, None]))
        return np.concatenate(out)
    from ctface.embed.images import crop, to_input

    torch = import_torch()
    net.eval()
    with torch.no_grad():
        out = []
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i : i + batch].astype(np.float32) / 255.0)
            out.append(net(crop(to_input(x, cfg.resize), cfg.input_size, None)).numpy())
    return np.concatenate(out)


def face_masks(net: FaceSegmenter | OnnxNet, depth_mm: np.ndarray, batch: int = 128) -> np.ndarray:
    """(V, S, S) depth mm -> (V, S, S) bool face mask (the network's 64 px mask, upsampled).
    An ``OnnxNet`` is the face separation exported with its sigmoid (face probability)."""
    if not isinstance(net, OnnxNet):
        from ctface.embed.segment import face_masks as torch_face_masks

        return torch_face_masks(net, depth_mm, batch)
    x = metric_depth(depth_mm)[:, None]
    probs = np.concatenate([net(x[i : i + batch]) for i in range(0, len(x), batch)])[:, 0]
    m = resample_matrix(SEG_SIZE, depth_mm.shape[-1])
    return (m @ probs @ m.T >= 0.5) & np.isfinite(depth_mm)
