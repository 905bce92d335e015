"""The service's heavy work in a bounded pool of worker processes that keep the model loaded.

A heavy request takes a *slot* when it arrives, before its upload is read, and holds it to its
end: at most ``capacity`` requests (running plus waiting, uploads included) at once; one more
is refused at once (503 with Retry-After), never queued without bound. A job past the
request's time limit answers 504 and is stopped: still waiting, it is cancelled; running, its
worker is killed (a process pool cannot stop one job) and the pool started again. Jobs that a
dead or killed pool took down with it are run once more on the new pool; a second loss
answers 500. Workers exit by themselves when the server process is gone (killed, crashed), and
are killed when it stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ctface.errors import FailureCode
from ctface.gallery.acquire import Acquisition
from ctface.gallery.enroll import AcquireResult, acquire_job
from ctface.jobs import process_pool
from ctface.service.errors import ServiceError, from_failure

T = TypeVar("T")
RETRY_AFTER_S = 5
WATCH_S = 2.0  # how often a worker checks that the server process is still there
_worker: dict[str, Any] = {}  # in a worker process: its weights path and thread share


def start_worker(weights: str | None, threads: int, server_pid: int) -> None:
    """A worker's first act: read every model once (recognition, CT-FAN, face model), with
    its share of threads; quiet the readers' warnings (they name upload files); watch the
    server process and exit when it is gone."""
    from ctface.embed.embedder import cached_model
    from ctface.landmarks.detect import load_models
    from ctface.model_files import set_inference_threads

    warnings.simplefilter("ignore")
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    set_inference_threads(threads)
    _worker.update(weights=weights, threads=threads)
    cached_model(weights)
    load_models()
    threading.Thread(target=_watch, args=(server_pid,), daemon=True).start()


def _watch(server_pid: int) -> None:
    while True:
        time.sleep(WATCH_S)
        try:
            os.kill(server_pid, 0)
        except ProcessLookupError:
            os._exit(0)  # the server is gone: nobody will collect this worker's results


def acquire_in_worker(path: str, series_uid: str | None) -> AcquireResult:
    """Read and acquire a scan in a worker: (acquisition, failure code, reason, seconds),
    never an exception for a bad scan (``gallery.enroll.acquire_job``)."""
    return acquire_job(path, _worker.get("weights"), int(_worker.get("threads", 1)), series_uid)


def warm() -> bool:
    return True


class Slot:
    """A request's place in the pool; the job it runs now, if any."""

    def __init__(self) -> None:
        self.job: Future[Any] | None = None


class WorkerPool:
    def __init__(self, workers: int, capacity: int, weights: Path | None, threads: int) -> None:
        self.workers, self.capacity = workers, capacity
        self._args = (str(weights) if weights else None, threads, os.getpid())
        self._lock = threading.Lock()
        self._admitted = 0
        self._pool = process_pool(workers, start_worker, self._args)

    @property
    def admitted(self) -> int:
        """Requests holding a slot now (the queue depth of /metrics)."""
        return self._admitted

    def start(self) -> None:
        """Start every worker and load its models now, not at the first request."""
        for f in [self._pool.submit(warm) for _ in range(self.workers)]:
            f.result()

    def close(self) -> None:
        """Kill the workers (a scan in progress is abandoned: the server is stopping)."""
        with self._lock:
            _kill(self._pool)

    @contextmanager
    def slot(self) -> Iterator[Slot]:
        """A slot for the whole request, or 503 at once when every slot is taken."""
        with self._lock:
            if self._admitted >= self.capacity:
                raise ServiceError(503, "queue-full", f"{self._admitted} requests are running "
                                   "or waiting for a worker: try again later",
                                   {"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip
            self._admitted += 1
        slot = Slot()
        try:
            yield slot
        finally:
            with self._lock:
                self._admitted -= 1

    async def run(self, slot: Slot, timeout_s: float, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a worker for the request holding ``slot``: 504 past ``timeout_s``
        (the job stopped), 500 when the worker dies twice."""
        deadline = time.monotonic() + timeout_s
        for _ in range(2):
            with self._lock:
                pool = self._pool
            try:
                slot.job = pool.submit(fn, *args)
            except BrokenProcessPool:
                self._restart(pool)
                continue
            try:
                left = max(0.0, deadline - time.monotonic())
                return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(slot.job)), left)
            except TimeoutError:
                if not slot.job.cancel():  # running: only killing its worker stops it
                    self._restart(pool, kill=True)
                raise ServiceError(504, "timeout", f"the scan took longer than {timeout_s:g} s "
                                   "(the request's time limit)") from None  # fmt: skip
            except BrokenProcessPool:
                self._restart(pool)
            except asyncio.CancelledError:
                if not slot.job.cancelled() or _being_cancelled():
                    raise  # the request itself is cancelled (server stopping)
                self._restart(pool)  # cancelled by a restart that another request made
        raise ServiceError(500, "worker-lost", "the worker process died while working on this "
                           "request (out of memory?): try again")  # fmt: skip

    def _restart(self, broken: ProcessPoolExecutor, kill: bool = False) -> None:
        """A new pool, warming up, in place of ``broken`` (once: later callers find it
        replaced); ``kill``: its workers killed first (their jobs are run again by their
        requests)."""
        with self._lock:
            if self._pool is not broken:
                return
            if kill:
                _kill(broken)
            else:
                broken.shutdown(wait=False, cancel_futures=True)
            self._pool = process_pool(self.workers, start_worker, self._args)
            for _ in range(self.workers):
                self._pool.submit(warm)


def _kill(pool: ProcessPoolExecutor) -> None:
    """Kill a pool's worker processes and drop its jobs (Python 3.14 has ``kill_workers``;
    before it, the pool's process table is the only way to them)."""
    for process in list(getattr(pool, "_processes", {}).values()):
        process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def acquire_scan(
    pool: WorkerPool, slot: Slot, timeout_s: float, path: Path, series_uid: str | None
) -> Acquisition:
    """A scan's acquisition from a worker; its failure as the service answers it."""
    acq, code, reason, _ = await pool.run(slot, timeout_s, acquire_in_worker, str(path),
                                          series_uid)  # fmt: skip
    if acq is None:
        raise from_failure(code or FailureCode.ERROR, reason)
    return acq
