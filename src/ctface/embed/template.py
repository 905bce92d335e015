"""One template per scan from its view embeddings."""

from __future__ import annotations

import numpy as np


def scan_template(view_embeddings: np.ndarray) -> np.ndarray:
    """(V, D) unit view embeddings -> (D,) unit template: their mean, renormalized (compared
    with the frontal view alone in the model card)."""
    m = view_embeddings.mean(axis=0)
    out: np.ndarray = (m / max(float(np.linalg.norm(m)), 1e-12)).astype(np.float32)
    return out


def scan_templates(emb: np.ndarray, scan: np.ndarray) -> np.ndarray:
    """(N, D) view embeddings with their scan index (N,) -> (n_scans, D) templates."""
    return np.stack([scan_template(emb[scan == s]) for s in range(int(scan.max()) + 1)])
