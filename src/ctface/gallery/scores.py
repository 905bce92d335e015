"""Score arithmetic of decisions: the threshold at a false-match rate, the measured rates at a
threshold, genuine and impostor pairs, exact confidence intervals. Calibration and site
calibration decide with it; the evaluation harness measures with the same functions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betaincinv, ndtr, ndtri  # scipy.stats takes 0.5 s to import

FMR_POINTS = (1e-2, 1e-3, 1e-4)
TAIL_RATE = 0.01  # impostor rate below which ``ImpostorTail`` extrapolates
TAIL_FROM = 1.0 - TAIL_RATE  # the impostor quantile there


def threshold_at_rate(impostor_sorted: np.ndarray, rate: float) -> float:
    """Lowest threshold that at most ``rate`` of the (ascending) impostor scores reach;
    a score is accepted when ``score >= threshold``."""
    n = len(impostor_sorted)
    allowed = min(int(np.floor(rate * n)), n)  # impostor scores allowed at or above it
    if allowed >= n:
        return -np.inf
    return float(np.nextafter(impostor_sorted[n - allowed - 1], np.inf))


def rate_at(sorted_scores: np.ndarray, threshold: float, above: bool) -> float:
    """Share of ``sorted_scores`` at or above ``threshold`` (``above``), or below it."""
    k = np.searchsorted(sorted_scores, threshold, side="left")
    n = len(sorted_scores)
    return float((n - k) / n if above else k / n)


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided confidence interval of the proportion ``k / n``;
    (nan, nan) when ``n`` is 0."""
    if n <= 0:
        return (np.nan, np.nan)
    a = (1.0 - level) / 2
    lo = 0.0 if k == 0 else float(betaincinv(k, n - k + 1, a))
    hi = 1.0 if k == n else float(betaincinv(k + 1, n - k, 1 - a))
    return lo, hi


def pair_scores(templates: np.ndarray, subject: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of scans once: (genuine, impostor) similarities, each sorted ascending."""
    sim = templates @ templates.T
    i, j = np.triu_indices(len(subject), k=1)
    same = subject[i] == subject[j]
    return np.sort(sim[i, j][same]), np.sort(sim[i, j][~same])


@dataclass(frozen=True)
class ImpostorTail:
    """How often impostor pairs reach a score, beyond what was measured: the measured share up
    to the impostor scores' 99th percentile, beyond it a normal fitted to their upper half
    (centre the median, spread (99th percentile - median) / z(0.99)). Used where rates far below
    1 / (measured pairs) are needed: excluding outliers from a site calibration, thresholds for
    the billions of comparisons of an archive."""

    impostor: np.ndarray  # sorted ascending
    median: float
    spread: float

    @classmethod
    def fit(cls, impostor: np.ndarray) -> ImpostorTail:
        scores = np.sort(np.asarray(impostor, np.float64))
        med, q = np.quantile(scores, [0.5, TAIL_FROM])
        spread = max(float(q - med), 1e-6) / float(ndtri(TAIL_FROM))
        return cls(scores, float(med), spread)

    def rate(self, score: float | np.ndarray) -> np.ndarray:
        """Share of impostor pairs scoring ``score`` or more (measured, or the fitted tail)."""
        s = np.asarray(score, np.float64)
        n = len(self.impostor)
        measured = (n - np.searchsorted(self.impostor, s, side="left")) / n
        fitted = ndtr(-(s - self.median) / self.spread)
        tail = s > self.median + self.spread * float(ndtri(TAIL_FROM))
        return np.where(tail, fitted, measured)

    def threshold(self, rate: float) -> float:
        """The score that a share ``rate`` of impostor pairs reach."""
        if rate >= TAIL_RATE:
            return threshold_at_rate(self.impostor, rate)
        return float(self.median - self.spread * float(ndtri(rate)))
