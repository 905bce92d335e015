"""Cross-scan identification and verification (the strict protocol of ``docs/method.md``):
the gallery holds one scan per subject, every other scan of that subject is a probe, and no
probe is ever compared with its own scan. Scores are cosine similarities of unit templates."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Area under the ROC curve: P(genuine score > impostor score), ties count half."""
    scores = np.concatenate([genuine, impostor])
    ranks = rankdata(scores)
    n_g, n_i = len(genuine), len(impostor)
    return float((ranks[:n_g].sum() - n_g * (n_g + 1) / 2) / (n_g * n_i))


@dataclass(frozen=True)
class CrossScanResult:
    rank1: float
    auc: float
    n_subjects: int
    n_probes: int
    n_genuine: int
    n_impostor: int
    verification_accuracy: float  # best threshold on these scores (the paper's VACC)

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 5) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _best_accuracy(genuine: np.ndarray, impostor: np.ndarray) -> float:
    t = np.unique(np.concatenate([genuine, impostor]))
    g = np.sort(genuine)
    i = np.sort(impostor)
    tp = len(g) - np.searchsorted(g, t, side="left")
    tn = np.searchsorted(i, t, side="left")
    # balanced: genuine and impostor pairs weigh the same
    return float(np.max(0.5 * tp / len(g) + 0.5 * tn / len(i)))


def cross_scan(templates: np.ndarray, subject: np.ndarray) -> CrossScanResult:
    """``templates`` (n_scans, D) unit vectors, ``subject`` (n_scans,) labels, scans in order:
    each subject's first scan is its gallery entry, the others are probes."""
    labels, first = np.unique(subject, return_index=True)
    gallery = templates[first]
    probes = np.setdiff1d(np.arange(len(subject)), first)
    if len(probes) == 0:
        raise ValueError("cross-scan evaluation needs subjects with two or more scans")
    sim = templates[probes] @ gallery.T
    own = np.searchsorted(labels, subject[probes])
    rank1 = float(np.mean(sim.argmax(axis=1) == own))
    is_own = np.zeros_like(sim, dtype=bool)
    is_own[np.arange(len(probes)), own] = True
    genuine, impostor = sim[is_own], sim[~is_own]
    return CrossScanResult(
        rank1=rank1,
        auc=roc_auc(genuine, impostor),
        n_subjects=len(labels),
        n_probes=len(probes),
        n_genuine=len(genuine),
        n_impostor=len(impostor),
        verification_accuracy=_best_accuracy(genuine, impostor),
    )
