"""Biometric metrics of searches (ISO/IEC 19795-1 terms). Scores are similarities: higher
means more alike.

A set of searches (``Searches``) is a probe x gallery score matrix with each probe's mate (its
own subject's gallery column, or -1 for a probe whose subject is not enrolled), and the mated
probes that failed to acquire (no scores). A failed mated search is a miss (ISO/IEC 19795-1
transaction level; NIST FRTE counts the same): rank-1, the CMC, FNIR and FNMR count it, and
``rank1_acquired`` leaves it out; the score-only metrics (AUC, EER, VACC) use the scores there
are. A non-mated search that failed returns no candidate and is not counted. From it:
rank-1 and the CMC (closed set, mated probes), verification over every probe-gallery pair
(genuine = probe with its mate, impostor = every other pair): ROC AUC, EER, the paper's
verification accuracy (balanced accuracy at the best threshold on these scores, "VACC"), FNMR at
a fixed FMR; and, with non-mated probes, FNIR at a fixed FPIR (open set, rank 1).

An operating point at a rate r is "resolved" when the sample can show it: at least 1/r
impostor comparisons (non-mated searches for FPIR). An unresolved point is still reported (at
the threshold above every impostor score, i.e. measured FMR 0) and flagged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.stats import rankdata

from ctface.errors import InvalidInputError
from ctface.gallery.scores import (  # noqa: F401 - re-exported for evaluate's callers
    FMR_POINTS,
    clopper_pearson,
    pair_scores,
    rate_at,
    threshold_at_rate,
)

FPIR_POINTS = (1e-2, 3e-3)
CMC_RANKS = 20


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Area under the ROC curve: P(genuine score > impostor score), ties count half."""
    scores = np.concatenate([genuine, impostor])
    ranks = rankdata(scores)
    n_g, n_i = len(genuine), len(impostor)
    return float((ranks[:n_g].sum() - n_g * (n_g + 1) / 2) / (n_g * n_i))


@dataclass(frozen=True)
class OperatingPoint:
    rate: float  # the target FMR or FPIR
    threshold: float
    measured_rate: float  # FMR / FPIR measured at the threshold
    error: float  # FNMR / FNIR at the threshold
    resolved: bool  # the sample has at least 1/rate impostor comparisons (searches)

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def fnmr_at_fmr(genuine: np.ndarray, impostor: np.ndarray, fmr: float) -> OperatingPoint:
    imp = np.sort(impostor)
    t = threshold_at_rate(imp, fmr)
    fnmr = rate_at(np.sort(genuine), t, above=False)
    return OperatingPoint(fmr, t, rate_at(imp, t, above=True), fnmr, len(imp) * fmr >= 1.0)


def eer(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Equal error rate: FMR(t) falls and FNMR(t) rises with the threshold t; the EER is where
    they cross, linearly interpolated between the two observed thresholds around the crossing."""
    g, i = np.sort(genuine), np.sort(impostor)
    t = np.append(np.unique(np.concatenate([g, i])), np.inf)
    fnmr = np.searchsorted(g, t, side="left") / len(g)
    fmr = (len(i) - np.searchsorted(i, t, side="left")) / len(i)
    k = int(np.argmax(fnmr >= fmr))  # first threshold where FNMR has caught up (t = inf at worst)
    if k == 0:
        return float((fmr[0] + fnmr[0]) / 2)
    d1, d2 = fmr[k - 1] - fnmr[k - 1], fmr[k] - fnmr[k]  # > 0, <= 0
    w = d1 / (d1 - d2)
    return float(fmr[k - 1] + w * (fmr[k] - fmr[k - 1]))


def verification_accuracy(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """The paper's VACC: the best balanced accuracy over thresholds on these scores (genuine
    and impostor pairs weigh the same), and that threshold."""
    t = np.unique(np.concatenate([genuine, impostor]))
    tp = len(genuine) - np.searchsorted(np.sort(genuine), t, side="left")
    tn = np.searchsorted(np.sort(impostor), t, side="left")
    acc = 0.5 * tp / len(genuine) + 0.5 * tn / len(impostor)
    k = int(np.argmax(acc))
    return float(acc[k]), float(t[k])


def roc_curve(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FMR, 1 - FNMR) at every observed threshold, from the strictest."""
    g, i = np.sort(genuine), np.sort(impostor)
    t = np.unique(np.concatenate([g, i]))[::-1]
    tpr = (len(g) - np.searchsorted(g, t, side="left")) / len(g)
    fpr = (len(i) - np.searchsorted(i, t, side="left")) / len(i)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])


@dataclass(frozen=True)
class Searches:
    """Probe x gallery similarities. ``mate[p]``: the gallery column of probe p's subject, -1
    when that subject is not enrolled. Subjects and scans are indices into the cohort."""

    scores: np.ndarray  # (P, G)
    mate: np.ndarray  # (P,)
    probe_subject: np.ndarray  # (P,)
    probe_scan: np.ndarray  # (P,)
    gallery_subject: np.ndarray  # (G,)
    failed_subject: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # (F,)

    def __post_init__(self) -> None:
        if not np.isfinite(self.scores).all():
            raise InvalidInputError(
                "similarity scores are not finite (did the method's training diverge?)"
            )

    def rows(self, idx: np.ndarray, failed: np.ndarray | None = None) -> Searches:
        """The searches ``idx`` and the failed ones ``failed`` (indices into
        ``failed_subject``; none by default)."""
        lost = self.failed_subject[failed] if failed is not None else self.failed_subject[:0]
        return Searches(self.scores[idx], self.mate[idx], self.probe_subject[idx],
                        self.probe_scan[idx], self.gallery_subject, lost)  # fmt: skip

    @property
    def attempts(self) -> int:
        """Mated searches, the failed ones included."""
        return int(self.mated.sum()) + len(self.failed_subject)

    @property
    def mated(self) -> np.ndarray:
        return self.mate >= 0

    def mate_rank(self) -> np.ndarray:
        """Rank (1 = best) of each mated probe's mate; a tie ranks the mate last among the
        tied (a constant score identifies nobody)."""
        m = self.mated
        own = self.scores[m, self.mate[m]]
        return (self.scores[m] >= own[:, None]).sum(axis=1)

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Genuine scores (mated probe with its mate) and impostor scores (all other pairs)."""
        m = self.mated
        is_mate = np.zeros(self.scores.shape, bool)
        is_mate[np.flatnonzero(m), self.mate[m]] = True
        return self.scores[is_mate], self.scores[~is_mate]


def fnir_at_fpir(s: Searches, fpir: float) -> OperatingPoint:
    """Open-set identification at rank 1: the threshold lets at most ``fpir`` of the non-mated
    searches return a candidate (top score >= threshold); a mated search is a miss unless its
    mate is ranked first and scores at least the threshold."""
    top = np.sort(s.scores[~s.mated].max(axis=1))
    t = threshold_at_rate(top, fpir)
    m = s.mated
    own = s.scores[m, s.mate[m]]
    hits = int(np.sum((s.mate_rank() == 1) & (own >= t)))
    return OperatingPoint(fpir, t, rate_at(top, t, above=True), 1 - hits / s.attempts,
                          len(top) * fpir >= 1.0)  # fmt: skip


def cmc(s: Searches, max_rank: int = CMC_RANKS) -> np.ndarray:
    """Identification rate at ranks 1..max_rank (mated searches, failed ones as misses)."""
    r = s.mate_rank()
    return np.array([(r <= k).sum() / s.attempts for k in range(1, max_rank + 1)])


def metric_names(open_set: bool) -> list[str]:
    names = ["rank1", "rank1_acquired", "vacc", "auc", "eer",
             *(f"fnmr@fmr={r:g}" for r in FMR_POINTS)]  # fmt: skip
    return names + [f"fnir@fpir={r:g}" for r in FPIR_POINTS] if open_set else names


def summary(s: Searches) -> dict[str, float]:
    """Every scalar metric of a set of searches; NaN where the set cannot give it (no mated
    probe, no genuine or no impostor pair). FNIR only with non-mated probes. Failed mated
    searches count as misses in rank-1, FNMR and FNIR (one genuine pair each)."""
    out = dict.fromkeys(metric_names(bool((~s.mated).any())), np.nan)
    gen, imp = s.pairs()
    lost = len(s.failed_subject)
    if len(gen):
        hits = int(np.sum(s.mate_rank() == 1))
        out["rank1"], out["rank1_acquired"] = hits / s.attempts, hits / len(gen)
    if len(gen) and len(imp):
        out["vacc"], _ = verification_accuracy(gen, imp)
        out["auc"], out["eer"] = roc_auc(gen, imp), eer(gen, imp)
        for r in FMR_POINTS:
            fnmr = fnmr_at_fmr(gen, imp, r).error
            out[f"fnmr@fmr={r:g}"] = (fnmr * len(gen) + lost) / (len(gen) + lost)
        if (~s.mated).any():
            for r in FPIR_POINTS:
                out[f"fnir@fpir={r:g}"] = fnir_at_fpir(s, r).error
    return out


def failed_probe_count(acquired_subjects: Iterable[str], failed_subjects: Iterable[str]) -> int:
    """Probe transactions lost to failures to acquire in a cross-scan test: every failed scan
    of a subject with an acquired scan was a probe; of a subject with none, all but one (that
    one was the gallery entry, a failure to enroll)."""
    acquired = set(acquired_subjects)
    failed = Counter(failed_subjects)
    return sum(n if s in acquired else n - 1 for s, n in failed.items())


@dataclass(frozen=True)
class CrossScanResult:
    """Cross-scan identification and verification. A probe scan that failed to acquire counts
    as a missed search (ISO/IEC 19795-1 transaction level): ``rank1`` = hits / (probes +
    failed probes), with its exact 95 % CI; ``rank1_acquired`` leaves the failures out."""

    rank1: float
    rank1_ci95: tuple[float, float]
    rank1_acquired: float
    hits: int
    auc: float
    n_subjects: int
    n_probes: int  # probes that went through the pipeline
    n_failed_probes: int  # probes refused by the pipeline (failures to acquire)
    n_genuine: int
    n_impostor: int
    verification_accuracy: float  # best threshold on these scores (the paper's VACC)

    def to_json(self) -> dict[str, Any]:
        def r(v: Any) -> Any:
            if isinstance(v, tuple):
                return [r(x) for x in v]
            return round(v, 5) if isinstance(v, float) else v

        return {k: r(v) for k, v in asdict(self).items()}


def cross_scan(
    templates: np.ndarray, subject: np.ndarray, failed_probes: int = 0
) -> CrossScanResult:
    """``templates`` (n_scans, D) unit vectors, ``subject`` (n_scans,) labels, scans in order:
    each subject's first scan is its gallery entry, the others are probes. ``failed_probes``:
    probe scans the pipeline refused (``failed_probe_count``), counted as misses."""
    labels, first = np.unique(subject, return_index=True)
    probes = np.setdiff1d(np.arange(len(subject)), first)
    if len(probes) == 0:
        raise ValueError("cross-scan evaluation needs subjects with two or more scans")
    own = np.searchsorted(labels, subject[probes])
    s = Searches(templates[probes] @ templates[first].T, own, own, probes, np.arange(len(labels)))
    gen, imp = s.pairs()
    hits = int(np.sum(s.mate_rank() == 1))  # ties count against the mate
    attempts = len(probes) + failed_probes
    return CrossScanResult(
        rank1=hits / attempts,
        rank1_ci95=clopper_pearson(hits, attempts),
        rank1_acquired=hits / len(probes),
        hits=hits,
        auc=roc_auc(gen, imp),
        n_subjects=len(labels),
        n_probes=len(probes),
        n_failed_probes=failed_probes,
        n_genuine=len(gen),
        n_impostor=len(imp),
        verification_accuracy=verification_accuracy(gen, imp)[0],
    )
