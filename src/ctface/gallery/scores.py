"""Score arithmetic of decisions: the threshold at a false-match rate, the measured rates at a
threshold, genuine and impostor pairs, exact confidence intervals. Calibration and site
calibration decide with it; the evaluation harness measures with the same functions."""

from __future__ import annotations

import numpy as np
from scipy.special import betaincinv  # scipy.stats' beta.ppf; scipy.stats takes 0.5 s to import

FMR_POINTS = (1e-2, 1e-3, 1e-4)


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
