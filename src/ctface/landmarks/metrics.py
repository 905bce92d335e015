"""Landmark error statistics: mean, 95th percentile and failure rate per landmark."""

from __future__ import annotations

from typing import Any

import numpy as np

from ctface.landmarks.sampling import LANDMARKS

FAILURE_MM = 10.0


def error_summary(errors: np.ndarray) -> dict[str, dict[str, Any]]:
    """``errors`` (N, 5) in mm, NaN where the landmark is not scored -> per landmark and "all":
    n, mean, p95, max, failure rate (> 10 mm)."""
    out: dict[str, dict[str, Any]] = {}
    columns = [(n, errors[:, i]) for i, n in enumerate(LANDMARKS)] + [("all", errors.ravel())]
    for name, e in columns:
        e = e[np.isfinite(e)]
        if len(e) == 0:
            out[name] = {"n": 0}
            continue
        out[name] = {
            "n": int(len(e)),
            "mean_mm": round(float(e.mean()), 3),
            "p95_mm": round(float(np.percentile(e, 95)), 3),
            "max_mm": round(float(e.max()), 3),
            "failure_rate": round(float((e > FAILURE_MM).mean()), 4),
        }
    return out
