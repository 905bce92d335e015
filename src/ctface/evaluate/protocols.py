"""The three test protocols, as probe x gallery searches over one fold's test subjects.

- ``paper``: the paper's 1:N test. The gallery is one depth image per test subject (drawn at
  random), every other image of that subject is a probe, including the other poses of the
  gallery image's own scan. Methods with one input per scan (3D CNNs) use scans instead.
- ``cross-scan``: gallery = each subject's first scan (its template: the mean of its views'
  embeddings), probes = the subject's other scans; no probe is compared with its own scan.
- ``open-set``: half of the test subjects (at random, among those with two or more scans) are
  enrolled as in cross-scan; their other scans are mated probes, every scan of the others is a
  non-mated probe.

A scan of a test subject that the pipeline refused (failure to acquire) is a failed mated
search of that subject when the subject is enrolled (``Searches.failed_subject``; in the paper
protocol one per view it would have had); a refused scan of a subject who is not enrolled would
have been a non-mated search and is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctface.evaluate.metrics import Searches
from ctface.files import save_npz_atomic

PROTOCOLS = ("paper", "cross-scan", "open-set")
OPEN_SET_ENROLLED = 0.5


@dataclass(frozen=True)
class FoldEmbeddings:
    """One fold's test scans as a method embeds them."""

    scan: np.ndarray  # (S,) cohort scan index
    subject: np.ndarray  # (S,) cohort subject index
    templates: np.ndarray  # (S, D) unit scan templates
    images: np.ndarray | None  # (N, D) unit view embeddings (depth-image methods)
    image_scan: np.ndarray | None  # (N,) position in ``scan`` of each view

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "scan": self.scan,
            "subject": self.subject,
            "templates": self.templates.astype(np.float32),
        }
        if self.images is not None and self.image_scan is not None:
            arrays |= {"images": self.images.astype(np.float16), "image_scan": self.image_scan}
        save_npz_atomic(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> FoldEmbeddings:
        with np.load(path) as z:
            imgs = z["images"].astype(np.float32) if "images" in z else None
            img_scan = z.get("image_scan")
            return cls(z["scan"], z["subject"], z["templates"], imgs, img_scan)


def _searches(
    emb: np.ndarray, subj: np.ndarray, scan: np.ndarray, gallery: np.ndarray, probes: np.ndarray,
    enrolled: np.ndarray, failed: np.ndarray,
) -> Searches:  # fmt: skip
    col = {int(s): k for k, s in enumerate(enrolled)}
    mate = np.array([col.get(int(s), -1) for s in subj[probes]], int)
    return Searches(emb[probes] @ emb[gallery].T, mate, subj[probes], scan[probes],
                    subj[gallery], failed[np.isin(failed, enrolled)])  # fmt: skip


def _first_scans(subject: np.ndarray) -> np.ndarray:
    _, first = np.unique(subject, return_index=True)
    return np.sort(first)


def searches(
    t: FoldEmbeddings,
    protocol: str,
    rng: np.random.Generator,
    failed_subject: np.ndarray | None = None,
) -> Searches:
    """The searches of ``protocol`` on one fold's test embeddings. ``failed_subject``: the
    cohort subject index of every scan that failed to acquire (any fold; those of this fold's
    enrolled subjects become failed searches)."""
    failed = np.zeros(0, int) if failed_subject is None else np.asarray(failed_subject, int)
    failed = failed[np.isin(failed, t.subject)]
    if protocol == "paper":
        if t.images is not None and t.image_scan is not None:
            emb, unit_scan = t.images, t.image_scan
        else:
            emb, unit_scan = t.templates, np.arange(len(t.scan))
        subj, scan = t.subject[unit_scan], t.scan[unit_scan]
        gallery = np.array([rng.choice(np.flatnonzero(subj == s)) for s in np.unique(subj)])
        probes = np.setdiff1d(np.arange(len(subj)), gallery)
        per_scan = len(unit_scan) // len(t.scan)  # views per scan (1 for one input per scan)
        lost = np.repeat(failed, per_scan)
        return _searches(emb, subj, scan, gallery, probes, subj[gallery], lost)
    first = _first_scans(t.subject)
    if protocol == "cross-scan":
        probes = np.setdiff1d(np.arange(len(t.scan)), first)
        return _searches(t.templates, t.subject, t.scan, first, probes, t.subject[first], failed)
    if protocol == "open-set":
        subjects, counts = np.unique(t.subject, return_counts=True)
        multi = rng.permutation(subjects[counts >= 2])  # an enrolled subject has a mated probe
        n = min(len(multi), max(1, int(round(len(subjects) * OPEN_SET_ENROLLED))))
        enrolled = np.sort(multi[:n])
        gallery = first[np.isin(t.subject[first], enrolled)]
        probes = np.setdiff1d(np.arange(len(t.scan)), gallery)
        return _searches(t.templates, t.subject, t.scan, gallery, probes, t.subject[gallery],
                         failed)  # fmt: skip
    raise ValueError(f"unknown protocol {protocol!r}; one of {PROTOCOLS}")
