"""One template per scan from its view embeddings.

Rules: "median" (the per-dimension median of the views' unit embeddings, renormalized; what
``save_model`` records in new model files) or "mean" (the mean, renormalized; model files
written before the rule was recorded). The median is kept by measurement (model card): it
ignores the few views in which a cut, a mask edge or the pose hides most of the face, and it
had the higher AUC on the validation phantoms for each of the three networks compared.
"""

from __future__ import annotations

import numpy as np

RULES = ("median", "mean")
TEMPLATE_RULE = "median"
# Views a gallery or probe template is made from: the paper's 90-view grid at pitch -20, 0 and
# 20 only, with all 10 rolls (30 views). Chosen by measurement (``benchmarks/views.py``): on the
# blind harsh cohort every sub-grid from 90 down to 12 views keeps the same rank-1 hits and
# false non-matches; on a second cohort (seed 1818) only the grids of 30 views or more do (12
# views lose one genuine pair at the shipped threshold). Training and the paper's evaluation
# keep the 90 views.
TEMPLATE_PITCHES_DEG = (-20.0, 0.0, 20.0)
TEMPLATE_VIEWS = 30


def checked_rule(rule: str) -> str:
    """``rule`` if it is one of ``RULES``, else ValueError."""
    if rule not in RULES:
        raise ValueError(f"template rule must be one of {RULES}, got {rule!r}")
    return rule


def scan_template(view_embeddings: np.ndarray, rule: str = TEMPLATE_RULE) -> np.ndarray:
    """(V, D) unit view embeddings -> (D,) unit template by ``rule`` (``RULES``)."""
    checked_rule(rule)
    m = np.median(view_embeddings, axis=0) if rule == "median" else view_embeddings.mean(axis=0)
    out: np.ndarray = (m / max(float(np.linalg.norm(m)), 1e-12)).astype(np.float32)
    return out


def scan_templates(emb: np.ndarray, scan: np.ndarray, rule: str = TEMPLATE_RULE) -> np.ndarray:
    """(N, D) view embeddings with their scan index (N,) -> (n_scans, D) templates."""
    return np.stack([scan_template(emb[scan == s], rule) for s in range(int(scan.max()) + 1)])
