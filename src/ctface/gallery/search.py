"""Identification search: the gallery's templates most similar to a probe, per patient.

Scores are cosine similarities of unit templates (higher = more similar); a patient's score is
the best score over their scans. Below ``FAISS_MIN`` templates the search is exact (one matrix
product, NumPy); from there on a FAISS inverted-file index (``IndexIVFFlat``, inner product,
``nlist = 4 sqrt(N)`` cells, one in ``PROBE_SHARE`` visited; the benchmark measures its
agreement with exact search) answers in milliseconds at 10^6 templates. The index returns
``top_k x`` (the most scans any patient has) scans, so the per-patient ranking is the exact
one whenever the index returns the exact nearest scans. FAISS is optional (the ``faiss``
extra): without it every search is exact (slower on large galleries, same answers or better).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ctface.errors import OutputError
from ctface.extras import available, optional, require
from ctface.files import atomic_path
from ctface.gallery.store import GalleryTemplates

FAISS_MIN = 50_000
PROBE_SHARE = 8  # visit 1/8 of the cells: on 10^6 isotropic synthetic templates (the worst
# case for an inverted file) the rank-1 scan equals the exact one for 200 of 200 probes at
# 1/8 (6.6 ms), 199 at 1/16, 183 at 1/80 (one thread)
TRAIN_SAMPLE = 200_000


@dataclass(frozen=True)
class Candidate:
    """One ranked patient: ``rank`` (1 = best), ``patient_id``, ``score`` (similarity of the
    probe with the patient's best-matching scan, -1..1) and that scan's ``scan_key``."""

    rank: int
    patient_id: str
    score: float
    scan_key: int  # the patient's best-matching scan

    def to_json(self) -> dict[str, Any]:
        return {"rank": self.rank, "patient_id": self.patient_id,
                "score": round(self.score, 6), "scan_key": self.scan_key}  # fmt: skip


class TemplateIndex:
    """Nearest-template search over a gallery's templates (exact or FAISS, see module)."""

    def __init__(self, gallery: GalleryTemplates, exact: bool | None = None) -> None:
        self.gallery = gallery
        n = len(gallery.patient_ids)
        if exact is None:
            exact = n < FAISS_MIN or not available("faiss")
        elif not exact:
            require("faiss", "approximate gallery search")
        self.exact = exact
        _, counts = np.unique(np.array(gallery.patient_ids, dtype=object), return_counts=True)
        self.max_scans = int(counts.max()) if n else 0
        self._faiss: Any = None
        if not self.exact and n:
            self._faiss = _build_ivf(gallery.vectors)

    @property
    def kind(self) -> str:
        return "exact" if self.exact else f"faiss-ivf({self._faiss.nprobe}/{self._faiss.nlist})"

    def nearest(self, probe: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row indices of the ``k`` most similar templates, best first."""
        vec = self.gallery.vectors
        k = min(k, len(vec))
        if k == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        q = np.ascontiguousarray(probe, dtype=np.float32).reshape(1, -1)
        if self._faiss is not None:
            scores, rows = self._faiss.search(q, k)
            keep = rows[0] >= 0
            return scores[0][keep], rows[0][keep].astype(np.int64)
        sim = vec @ q[0]
        top = np.argpartition(-sim, k - 1)[:k] if k < len(sim) else np.arange(len(sim))
        top = top[np.lexsort((top, -sim[top]))]
        return sim[top], top.astype(np.int64)

    def rank_patients(self, probe: np.ndarray, top_k: int = 5) -> list[Candidate]:
        """The ``top_k`` patients by their best scan's similarity to ``probe``."""
        scores, rows = self.nearest(probe, top_k * max(self.max_scans, 1))
        best: dict[str, Candidate] = {}
        for s, r in zip(scores, rows, strict=True):
            pid = self.gallery.patient_ids[int(r)]
            if pid not in best:
                key = int(self.gallery.scan_keys[int(r)])
                best[pid] = Candidate(len(best) + 1, pid, float(s), key)
            if len(best) == top_k:
                break
        return list(best.values())

    def save(self, path: Path) -> None:
        """Write the FAISS index (exact indexes have nothing to save)."""
        if self._faiss is not None:
            faiss = require("faiss", "saving a FAISS index")
            with atomic_path(path) as tmp:  # per-process name: processes share the cache
                faiss.write_index(self._faiss, str(tmp))

    @classmethod
    def cached(cls, gallery: GalleryTemplates, cache: Path | None) -> TemplateIndex:
        """An index for ``gallery``; a FAISS index is read from / written to ``cache`` (its
        name carries the gallery revision, so a changed gallery never reads a stale index)."""
        n = len(gallery.patient_ids)
        if n < FAISS_MIN or cache is None:  # exact: FAISS is not even imported
            return cls(gallery)
        faiss = optional("faiss")
        if faiss is None:
            return cls(gallery)
        path = cache.with_name(f"{cache.name}.r{gallery.revision}.faiss")
        if path.is_file():
            index = cls(gallery, exact=True)
            index.exact, index._faiss = False, faiss.read_index(str(path))
            index._faiss.nprobe = max(1, index._faiss.nlist // PROBE_SHARE)
            return index
        index = cls(gallery)
        with contextlib.suppress(OSError, OutputError):  # a read-only folder: rebuilt next time
            for old in cache.parent.glob(f"{cache.name}.r*.faiss"):
                old.unlink(missing_ok=True)
            index.save(path)
        return index


def _build_ivf(vectors: np.ndarray) -> Any:
    faiss = require("faiss", "approximate gallery search")
    n, d = vectors.shape
    nlist = max(1, int(4 * np.sqrt(n)))
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    rng = np.random.default_rng(0)
    sample = vectors[rng.choice(n, min(n, max(TRAIN_SAMPLE, 40 * nlist)), replace=False)]
    index.train(np.ascontiguousarray(sample))
    index.add(np.ascontiguousarray(vectors))
    index.nprobe = max(1, nlist // PROBE_SHARE)
    return index
