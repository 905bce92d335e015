"""Training and evaluation images in memory: every view of every example, face-separated and
adjusted, as uint8 at ``CACHE_SIZE`` px with its subject and scan."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ctface.embed.examples import DepthExample
from ctface.embed.images import adjust, to_input
from ctface.embed.segment import FaceSegmenter, face_masks


def face_images(depth_mm: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """(V, S, S) depth mm and face mask -> (V, S, S) uint8: the paper's adjustment of the face
    pixels only (0 elsewhere). ``mask`` None: the images hold nothing but the face already."""
    d = depth_mm.astype(np.float32)
    if mask is not None:
        d = np.where(mask, d, np.nan)
    return np.rint(adjust(d) * 255).astype(np.uint8)


@dataclass
class ImageSet:
    images: np.ndarray  # (N, S, S) uint8
    subject: np.ndarray  # (N,) int, index into subject_ids
    scan: np.ndarray  # (N,) int, index into scan_ids
    subject_ids: list[str]
    scan_ids: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def tensor(self, idx: np.ndarray, size: int) -> torch.Tensor:
        """Images ``idx`` as (n, 1, size, size) float in 0..1."""
        x = torch.from_numpy(self.images[idx].astype(np.float32) / 255.0)
        return to_input(x, size)

    def resized(self, size: int) -> ImageSet:
        """The same set at ``size`` px (uint8), e.g. once before training a small network."""
        out = np.concatenate(
            [
                np.rint(
                    self.tensor(np.arange(i, min(i + 512, len(self))), size)[:, 0].numpy() * 255
                )
                for i in range(0, len(self), 512)
            ]
        ).astype(np.uint8)
        return ImageSet(out, self.subject, self.scan, self.subject_ids, self.scan_ids)


def image_set(
    paths: Sequence[Path],
    segmenter: FaceSegmenter | None = None,
    true_mask: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ImageSet:
    """Load cached examples. CT examples are face-separated by ``segmenter`` (or, with
    ``true_mask``, by their true mask); synthetic faces (no mask) are used as they are."""
    images, subj, scans = [], [], []
    subject_index: dict[str, int] = {}
    scan_ids: list[str] = []
    for n, path in enumerate(paths):
        ex = DepthExample.load(path)
        depth = ex.depth_mm.astype(np.float32)
        mask = None
        if ex.face_mask is not None:
            if true_mask:
                mask = ex.face_mask
            elif segmenter is not None:
                mask = face_masks(segmenter, depth)
        images.append(face_images(depth, mask))
        s = subject_index.setdefault(ex.subject_id, len(subject_index))
        subj.append(np.full(len(depth), s))
        scans.append(np.full(len(depth), len(scan_ids)))
        scan_ids.append(ex.scan_id)
        if progress:
            progress(n + 1, len(paths))
    return ImageSet(
        np.concatenate(images),
        np.concatenate(subj),
        np.concatenate(scans),
        list(subject_index),
        scan_ids,
    )
