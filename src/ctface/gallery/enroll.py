"""Enrolling scans: acquire each (in worker processes), write each to the gallery as soon as it
is ready (one transaction per scan: an interrupted run keeps what was finished and resumes).

Scans of an archive (``ingest.archive``) are identified by the digest of their files before
any work: enrolled ones are skipped, and so are earlier failures (unless ``retry_failed``),
which are recorded in the gallery's ``failures`` table. Scans given one by one are never
recorded as failures: a bad input leaves the gallery as it was (and creates none).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctface.embed.embedder import FaceEmbedder
from ctface.errors import CtfaceError, FailureToAcquire, InvalidInputError, NoFaceError
from ctface.gallery.acquire import Acquisition, acquire
from ctface.gallery.store import GalleryDatabase
from ctface.ingest.archive import ArchiveScan
from ctface.jobs import map_jobs

Source = str | Path | ArchiveScan
_MODELS: dict[str, FaceEmbedder] = {}


@dataclass(frozen=True)
class Outcome:
    """What happened to one scan."""

    source: str
    patient_id: str
    status: str  # enrolled | already-enrolled | failed | skipped
    scan_key: int | None = None
    code: str | None = None  # failure-to-acquire code, or "unreadable" / "conflict"
    reason: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def failure_code(e: CtfaceError) -> str:
    if isinstance(e, FailureToAcquire):
        return e.code
    if isinstance(e, NoFaceError):
        return "no-face"
    return "unreadable" if isinstance(e, InvalidInputError) else "error"


def _model(weights: str | None, threads: int) -> FaceEmbedder:
    key = str(weights)
    if key not in _MODELS:
        import torch

        torch.set_num_threads(threads)
        _MODELS.clear()
        _MODELS[key] = FaceEmbedder.load(weights)
    return _MODELS[key]


def acquire_job(
    source: Source, weights: str | None, threads: int
) -> tuple[Acquisition | None, str | None, str | None, float]:
    """Acquire in a worker: (acquisition, failure code, reason, seconds); never raises for
    a bad scan."""
    t = time.perf_counter()
    try:
        return acquire(source, _model(weights, threads)), None, None, time.perf_counter() - t
    except CtfaceError as e:
        return None, failure_code(e), str(e), time.perf_counter() - t
    except MemoryError:
        return None, "error", "out of memory while processing the scan", time.perf_counter() - t
    except Exception as e:  # noqa: BLE001 - one bad scan must not end an archive's enrollment
        why = f"{type(e).__name__}: {e}"
        return (
            None,
            "unreadable" if isinstance(e, OSError) else "error",
            why,
            time.perf_counter() - t,
        )


def label(source: Source) -> str:
    return source.label if isinstance(source, ArchiveScan) else str(source)


class LazyGallery:
    """Opens (and creates) the database only when something is written."""

    def __init__(self, path: Path) -> None:
        self.path, self._g = path, GalleryDatabase(path) if path.exists() else None

    def get(self) -> GalleryDatabase:
        if self._g is None:
            self._g = GalleryDatabase(self.path, create=True)
        return self._g

    @property
    def existing(self) -> GalleryDatabase | None:
        return self._g

    def close(self) -> None:
        if self._g is not None:
            self._g.close()


def enroll(
    db: LazyGallery,
    items: Sequence[tuple[Source, str]],
    model: FaceEmbedder,
    weights: str | None,
    *,
    jobs: int = 1,
    record_failures: bool = False,
    retry_failed: bool = False,
    on_outcome: Callable[[Outcome, Acquisition | None], None] | None = None,
) -> list[Outcome]:
    """Enroll ``items`` (source, patient ID); returns one outcome per item, in order."""
    if db.existing is not None:
        db.existing.check_model(model.version)
    outcomes: dict[int, Outcome] = {}
    todo: list[tuple[int, Source, str, str | None]] = []
    for n, (src, pid) in enumerate(items):
        try:
            digest = src.digest if isinstance(src, ArchiveScan) else None
        except OSError as e:
            outcomes[n] = Outcome(label(src), pid, "failed", code="unreadable", reason=str(e))
            if on_outcome:
                on_outcome(outcomes[n], None)
            continue
        g = db.existing
        if digest is not None and g is not None:
            owner, failed = g.find_digest(digest), g.failure(digest)
            if owner == pid:
                outcomes[n] = Outcome(label(src), owner, "already-enrolled")
            elif owner is not None:
                outcomes[n] = Outcome(
                    label(src),
                    pid,
                    "failed",
                    code="conflict",
                    reason=f"these files are already enrolled as {owner!r}",
                )
            elif failed is not None and not retry_failed:
                outcomes[n] = Outcome(label(src), pid, "skipped", code=failed[0],
                                      reason=f"failed before: {failed[1]}")  # fmt: skip
        if n in outcomes:
            if on_outcome:
                on_outcome(outcomes[n], None)
            continue
        todo.append((n, src, pid, digest))

    threads = max(1, (os.cpu_count() or 1) // max(jobs, 1))
    pending = iter(todo)

    def write(result: tuple[Acquisition | None, str | None, str | None, float]) -> None:
        n, src, pid, digest = next(pending)
        acq, code, reason, secs = result
        if acq is None:
            out = Outcome(label(src), pid, "failed", code=code, reason=reason, seconds=secs)
            if record_failures and digest is not None:
                db.get().add_failure(digest, label(src), code or "error", reason or "")
        else:
            g = db.get()
            owner = g.find_digest(acq.record.digest)
            if owner == pid:
                out = Outcome(label(src), pid, "already-enrolled", seconds=secs)
            elif owner is not None:
                out = Outcome(label(src), pid, "failed", code="conflict", seconds=secs,
                              reason=f"these files are already enrolled as {owner!r}")  # fmt: skip
            else:
                key = g.add_scan(pid, acq.record, acq.template.vector, model.version)
                out = Outcome(label(src), pid, "enrolled", scan_key=key, seconds=secs)
        outcomes[n] = out
        if on_outcome:
            on_outcome(out, acq)

    args = [(src, weights, threads) for _, src, _, _ in todo]
    map_jobs(acquire_job, args, jobs, write)
    return [outcomes[n] for n in range(len(items))]
