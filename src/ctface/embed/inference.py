"""Embedding face images with a trained network (inference only: no training code)."""

from __future__ import annotations

import numpy as np
import torch

from ctface.embed.images import crop, to_input
from ctface.embed.resnet import EmbedConfig, ResNetEmbedder


@torch.no_grad()
def embed_images(
    net: ResNetEmbedder, cfg: EmbedConfig, images: np.ndarray, batch: int = 256
) -> np.ndarray:
    """(N, D) unit embeddings of face images (N, S, S) uint8, resized to ``cfg.resize`` and
    centre-cropped to ``cfg.input_size``."""
    net.eval()
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(images[i : i + batch].astype(np.float32) / 255.0)
        out.append(net(crop(to_input(x, cfg.resize), cfg.input_size, None)).numpy())
    return np.concatenate(out)
