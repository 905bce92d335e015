"""Training and evaluation images in memory: every view of every example, face-separated and
adjusted, as uint8 at ``CACHE_SIZE`` px with its subject and scan."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ctface.embed.examples import DepthExample
from ctface.embed.images import face_images, to_input
from ctface.embed.segment import FaceSegmenter, face_masks

STAGES = ("projected", "segmented", "final")  # the paper's data stages (Table II)


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

    def rows(self, scans: np.ndarray) -> np.ndarray:
        """Indices of the images of scans ``scans``, scan by scan in that order."""
        return np.concatenate([np.flatnonzero(self.scan == s) for s in scans])

    def subset(self, scans: np.ndarray) -> ImageSet:
        """The images of scans ``scans`` (indices into ``scan_ids``, in that order: ``rows``),
        with subjects and scans renumbered from 0."""
        order = self.rows(scans)
        subj_old = self.subject[order]
        kept, subj = np.unique(subj_old, return_inverse=True)
        scan_new = np.empty(len(self.scan_ids), int)
        scan_new[scans] = np.arange(len(scans))
        return ImageSet(self.images[order], subj, scan_new[self.scan[order]],
                        [self.subject_ids[i] for i in kept],
                        [self.scan_ids[i] for i in scans])  # fmt: skip


def subject_key(path: Path, subject_id: str) -> str:
    """The person an example shows: phantom caches (``ct_<seed>_<subject>_<scan>.npz``) of two
    seeds both call their people S0001, S0002, ...: the seed tells them apart."""
    parts = path.stem.split("_")
    return f"{parts[1]}/{subject_id}" if parts[0] == "ct" and len(parts) == 4 else subject_id


def image_set(
    paths: Sequence[Path],
    segmenter: FaceSegmenter | None = None,
    true_mask: bool = False,
    progress: Callable[[int, int], None] | None = None,
    stage: str = "final",
) -> ImageSet:
    """Load cached examples, face-separated by ``segmenter`` (or, with ``true_mask``, by their
    true mask where they have one); without either, used as they are (synthetic faces hold
    nothing but the face).
    ``stage`` (``STAGES``): "final" (separated and adjusted), "segmented" (separated, metric
    depth) or "projected" (the whole depth image, metric depth)."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    images, subj, scans = [], [], []
    subject_index: dict[str, int] = {}
    scan_ids: list[str] = []
    for n, path in enumerate(paths):
        ex = DepthExample.load(path)
        depth = ex.depth_mm.astype(np.float32)
        mask = None
        if stage != "projected":
            if true_mask and ex.face_mask is not None:
                mask = ex.face_mask
            elif segmenter is not None:
                mask = face_masks(segmenter, depth)
        images.append(face_images(depth, mask, adjusted=stage == "final"))
        s = subject_index.setdefault(subject_key(path, ex.subject_id), len(subject_index))
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
