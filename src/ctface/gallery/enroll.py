"""Enrolling scans: acquire each (in worker processes), write each to the gallery as soon as it
is ready (one transaction per scan: an interrupted run keeps what was finished and resumes).

Scans of an archive (``ingest.archive``) are identified by the digest of their files before
any work: enrolled ones are skipped, and so are earlier failures (unless ``retry_failed``),
which are recorded in the gallery's ``failures`` table. Scans given one by one are never
recorded as failures: a bad input leaves the gallery as it was (and creates none).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ctface.embed.embedder import FaceEmbedder, cached_model
from ctface.errors import (
    CtfaceError,
    FailureCode,
    FailureToAcquire,
    InvalidInputError,
    NoFaceError,
)
from ctface.gallery.acquire import Acquisition, acquire
from ctface.gallery.records import Outcome, Status
from ctface.gallery.store import GalleryDatabase
from ctface.ingest.archive import ArchiveScan
from ctface.jobs import Engine, WorkerLost, run_tasks
from ctface.model_files import set_inference_threads

Source = str | Path | ArchiveScan


def failure_code(e: CtfaceError) -> FailureCode:
    if isinstance(e, FailureToAcquire):
        return e.code
    if isinstance(e, NoFaceError):
        return FailureCode.NO_FACE
    return FailureCode.UNREADABLE if isinstance(e, InvalidInputError) else FailureCode.ERROR


def _model(model: FaceEmbedder | str | None, threads: int) -> FaceEmbedder:
    """The model itself in this process; in a worker, the weights file read once, with its
    share of the CPUs (the caller's thread setting is left alone)."""
    if isinstance(model, FaceEmbedder):
        return model
    set_inference_threads(threads)  # ONNX Runtime's sessions made from now on, and torch's
    return cached_model(model)


AcquireResult = tuple[Acquisition | None, FailureCode | None, str | None, float]


def acquire_job(
    source: Source, model: FaceEmbedder | str | None, threads: int, series_uid: str | None = None
) -> AcquireResult:
    """Acquire in this process or a worker (``model``: the model, or in a worker the weights
    file it reads once): (acquisition, failure code, reason, seconds); never raises for a bad
    scan."""
    t = time.perf_counter()
    try:
        acq = acquire(source, _model(model, threads), series_uid=series_uid)
        return acq, None, None, time.perf_counter() - t
    except CtfaceError as e:
        return None, failure_code(e), str(e), time.perf_counter() - t
    except MemoryError:
        why = "out of memory while processing the scan"
        return None, FailureCode.ERROR, why, time.perf_counter() - t
    except Exception as e:  # noqa: BLE001 - one bad scan must not end an archive's enrollment
        why = f"{type(e).__name__}: {e}"
        return (
            None,
            FailureCode.UNREADABLE if isinstance(e, OSError) else FailureCode.ERROR,
            why,
            time.perf_counter() - t,
        )


def label(source: Source | Acquisition) -> str:
    if isinstance(source, Acquisition):
        return source.record.source
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


def _known(
    g: GalleryDatabase | None, src: Source, pid: str, digest: str | None, retry_failed: bool
) -> Outcome | None:
    """The outcome of an archive scan decided by its digest before any work (enrolled, under
    another patient, failed before), or None: it is to be acquired."""
    if digest is None or g is None:
        return None
    owner, failed = g.find_digest(digest), g.failure(digest)
    if owner == pid:
        return Outcome(label(src), owner, Status.ALREADY_ENROLLED)
    if owner is not None:
        return Outcome(label(src), pid, Status.FAILED, code=FailureCode.CONFLICT,
                       reason=f"these files are already enrolled as {owner!r}")  # fmt: skip
    if failed is not None and not retry_failed:
        known = failed[0] in FailureCode.__members__.values()
        code = FailureCode(failed[0]) if known else FailureCode.ERROR  # another version's code
        why = f"failed before: {failed[1]}"
        return Outcome(label(src), pid, Status.SKIPPED, code=code, reason=why)
    return None


def store_acquisition(
    g: GalleryDatabase, pid: str, acq: Acquisition, version: str, source: str, secs: float = 0.0
) -> Outcome:
    """Store an acquired scan under ``pid`` unless its files are enrolled already (as this
    patient: already-enrolled; as another: conflict) or its template is another model's.
    Another process enrolling the same files meanwhile (two enrollments of one archive at
    once) is found by the database's unique digest: the scan is stored once."""
    if acq.template.model_version != version:  # never store another model's
        why = f"made by model {acq.template.model_version}, not {version}"
        return Outcome(source, pid, Status.FAILED, code=FailureCode.ERROR, reason=why,
                       seconds=secs)  # fmt: skip
    owner = g.find_digest(acq.record.digest)
    if owner is None:
        try:
            key = g.add_scan(pid, acq.record, acq.template.vector, version)
            return Outcome(source, pid, Status.ENROLLED, scan_key=key, seconds=secs)
        except sqlite3.IntegrityError:  # the same files stored by another writer since
            owner = g.find_digest(acq.record.digest)
            if owner is None:
                raise
    if owner == pid:
        return Outcome(source, pid, Status.ALREADY_ENROLLED, seconds=secs)
    why = f"these files are already enrolled as {owner!r}"
    return Outcome(source, pid, Status.FAILED, code=FailureCode.CONFLICT, reason=why,
                   seconds=secs)  # fmt: skip


def enroll(
    db: LazyGallery,
    items: Sequence[tuple[Source | Acquisition, str]],
    model: FaceEmbedder,
    *,
    jobs: int = 1,
    record_failures: bool = False,
    retry_failed: bool = False,
    on_outcome: Callable[[Outcome, Acquisition | None], None] | None = None,
    engine: Engine = Engine.LOCAL,
    address: str | None = None,
) -> list[Outcome]:
    """Enroll ``items`` (source, patient ID); returns one outcome per item, in order. Scans are
    acquired on ``engine`` (``acquire_many``) and written here as each finishes."""
    if db.existing is not None:
        db.existing.check_model(model.version)
    outcomes: dict[int, Outcome] = {}
    todo: list[tuple[int, Source, str, str | None]] = []  # to acquire
    for n, (src, pid) in enumerate(items):
        if isinstance(src, Acquisition):  # acquired already (the service's workers)
            outcomes[n] = store_acquisition(db.get(), pid, src, model.version, label(src))
            if on_outcome:
                on_outcome(outcomes[n], src)
            continue
        try:
            digest = src.digest if isinstance(src, ArchiveScan) else None
        except OSError as e:
            known: Outcome | None = Outcome(label(src), pid, Status.FAILED,
                                            code=FailureCode.UNREADABLE, reason=str(e))  # fmt: skip
        else:
            known = _known(db.existing, src, pid, digest, retry_failed)
        if known is None:
            todo.append((n, src, pid, digest))
            continue
        outcomes[n] = known
        if on_outcome:
            on_outcome(known, None)

    def write(index: int, result: AcquireResult) -> None:
        n, src, pid, digest = todo[index]
        acq, code, reason, secs = result
        if acq is None:
            out = Outcome(label(src), pid, Status.FAILED, code=code, reason=reason, seconds=secs)
            if record_failures and digest is not None:
                db.get().add_failure(digest, label(src), code or FailureCode.ERROR, reason or "")
        else:
            out = store_acquisition(db.get(), pid, acq, model.version, label(src), secs)
        outcomes[n] = out
        if on_outcome:
            on_outcome(out, acq)

    acquire_many([src for _, src, _, _ in todo], model, jobs, write, engine=engine,
                 address=address)  # fmt: skip
    return [outcomes[n] for n in range(len(items))]


def acquire_many(
    sources: Sequence[Source],
    model: FaceEmbedder,
    jobs: int = 1,
    progress: Callable[[int, AcquireResult], None] | None = None,
    *,
    engine: Engine = Engine.LOCAL,
    address: str | None = None,
) -> list[AcquireResult]:
    """``acquire_job`` over ``sources`` on ``engine`` (``jobs.run_tasks``); ``progress(index,
    result)`` as each finishes; the results in order. Locally: in ``jobs`` worker processes,
    each reading the model once from its weights file with its share of the CPUs, or in this
    process (one job, one scan, or a model without a file: never another model in its place).
    On Dask or Ray each worker reads the weights file once and keeps the model loaded (the file
    must be at the same path on the workers: the shipped model is, where ctface is installed).
    A scan whose worker died twice is a failure (``error``)."""
    distributed = engine != Engine.LOCAL
    if distributed and model.path is None:
        raise InvalidInputError(f"the {engine} engine needs the model as a weights file")
    threads = max(1, (os.cpu_count() or 1) // max(jobs, 1))
    in_process = not distributed and (jobs <= 1 or len(sources) <= 1 or model.path is None)
    ref: FaceEmbedder | str = model if in_process else str(model.path)
    results: list[AcquireResult | None] = [None] * len(sources)

    def keep(index: int, result: AcquireResult | WorkerLost) -> None:
        if isinstance(result, WorkerLost):
            result = (None, FailureCode.ERROR, str(result), 0.0)
        results[index] = result
        if progress:
            progress(index, result)

    run_tasks(acquire_job, [(src, ref, threads) for src in sources], keep, engine=engine,
              jobs=1 if in_process else jobs, address=address)  # fmt: skip
    return [r for r in results if r is not None]
