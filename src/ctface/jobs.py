"""Run one function over many argument tuples: ``map_jobs`` in this process or in a process
pool, in order, with a progress callback after each result (the caches of training examples use
it); ``run_tasks`` on an engine (a local pool, Dask distributed or Ray), results as they come,
a task whose worker dies retried once (enrollment and reconciliation use it).

Workers are started by a fork server, not forked from the caller: a process that has already
run torch (thread pools, OpenMP) can deadlock a child forked from it (seen: the test suite hung
in `prepare_cohort(jobs=2)` after earlier tests had embedded images)."""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from enum import StrEnum
from typing import Any, TypeVar

from ctface.extras import require

T = TypeVar("T")


def process_pool(
    jobs: int, initializer: Callable[..., object] | None = None, initargs: tuple[Any, ...] = ()
) -> ProcessPoolExecutor:
    """A pool of ``jobs`` worker processes started cleanly (see the module docstring), each
    running ``initializer(*initargs)`` first (the service: load the model once)."""
    return ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("forkserver"),
        initializer=initializer, initargs=initargs,
    )  # fmt: skip


def map_jobs(
    fn: Callable[..., T],
    args: Sequence[tuple[Any, ...]],
    jobs: int = 1,
    progress: Callable[[T], None] | None = None,
) -> list[T]:
    """``[fn(*a) for a in args]`` on ``jobs`` processes (1: here), in order."""
    out: list[T] = []
    if jobs <= 1 or len(args) <= 1:
        results = (fn(*a) for a in args)
        for r in results:
            out.append(r)
            if progress:
                progress(r)
        return out
    with process_pool(jobs) as pool:
        for r in pool.map(fn, *zip(*args, strict=True)):
            out.append(r)
            if progress:
                progress(r)
    return out


DASK_WINDOW = 4  # Dask tasks submitted ahead per worker


class Engine(StrEnum):
    """Where ``run_tasks`` runs: a process pool here (``local``), or a Dask or Ray cluster (a
    local one started for the run, or the one at an address)."""

    LOCAL = "local"
    DASK = "dask"
    RAY = "ray"


def check_engine(engine: Engine) -> None:
    """MissingDataError naming the extra to install when ``engine``'s package is missing (before
    any work)."""
    if engine != Engine.LOCAL:
        require("distributed" if engine == Engine.DASK else "ray", f"--engine {engine}")


class WorkerLost(Exception):
    """A task whose worker process died twice while running it (it was retried once)."""


def run_tasks(
    fn: Callable[..., T],
    args: Sequence[tuple[Any, ...]],
    on_result: Callable[[int, T | WorkerLost], None],
    *,
    engine: Engine = Engine.LOCAL,
    jobs: int = 1,
    address: str | None = None,
) -> None:
    """``fn(*a)`` for every ``a`` in ``args`` on ``engine``, calling ``on_result(index,
    result)`` here as each one finishes (in any order). A worker that dies loses only the task
    it was running, which is retried once and then reported as ``WorkerLost``; other tasks go
    on. ``local`` with one job runs here (a crash here is a crash of the caller)."""
    if not args:
        return
    if engine == Engine.DASK:
        _run_dask(fn, args, on_result, jobs, address)
    elif engine == Engine.RAY:
        _run_ray(fn, args, on_result, jobs, address)
    elif jobs <= 1:
        for i, a in enumerate(args):
            on_result(i, fn(*a))
    else:
        _run_pool(fn, args, on_result, jobs)


def _run_pool(
    fn: Callable[..., T],
    args: Sequence[tuple[Any, ...]],
    on_result: Callable[[int, T | WorkerLost], None],
    jobs: int,
) -> None:
    """A local process pool with at most ``jobs`` tasks in flight: when a worker dies the pool
    breaks, and the tasks in flight (the dead one among them) are run again one by one, each
    in a fresh one-worker pool; one that kills that worker too is lost."""
    todo = list(range(len(args)))[::-1]  # popped from the end: in order
    while todo:
        suspects: list[int] = []
        with process_pool(jobs) as pool:
            flight: dict[Future[T], int] = {}
            while todo or flight:
                while todo and len(flight) < jobs and not suspects:
                    try:
                        flight[pool.submit(fn, *args[todo[-1]])] = todo[-1]
                    except BrokenProcessPool:  # a worker died since the last result
                        break
                    todo.pop()
                if not flight:
                    break
                done, _ = wait(flight, return_when=FIRST_COMPLETED)
                for f in done:
                    i = flight.pop(f)
                    try:
                        on_result(i, f.result())
                    except BrokenProcessPool:
                        suspects.append(i)
        for i in sorted(suspects):
            with process_pool(1) as alone:
                try:
                    on_result(i, alone.submit(fn, *args[i]).result())
                except BrokenProcessPool:
                    on_result(i, WorkerLost(f"the worker died twice running task {i}"))


def _run_dask(
    fn: Callable[..., T],
    args: Sequence[tuple[Any, ...]],
    on_result: Callable[[int, T | WorkerLost], None],
    jobs: int,
    address: str | None,
) -> None:
    """Dask distributed: the cluster at ``address``, else a local one of ``jobs`` one-thread
    worker processes (their nannies restart a dead worker). The scheduler retries a task whose
    worker died once (``allowed-failures`` 1, and ``worker-saturation`` 1.0 so that a worker
    holds only the task it runs: a dead worker counts a failure against every task it holds;
    a remote scheduler uses its own settings), then it is lost (``KilledWorker``)."""
    require("distributed", "--engine dask")
    import dask
    from distributed import Client, KilledWorker, LocalCluster, as_completed

    # one task per worker at a time: a dying worker charges a failure to every task it holds;
    # glibc's default trim threshold: Dask's 64 kB one made acquisition a quarter slower
    # (benchmarks/results/reconcile_dask_trim.json: a scan allocates and frees large arrays)
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {})}
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    settings = {"distributed.scheduler.allowed-failures": 1,
                "distributed.scheduler.worker-saturation": 1.0,
                "distributed.nanny.pre-spawn-environ": environ}  # fmt: skip
    with dask.config.set(settings):
        cluster = None
        if address is None:
            cluster = LocalCluster(n_workers=max(jobs, 1), threads_per_worker=1, processes=True,
                                   dashboard_address=":0", silence_logs=logging.ERROR)  # fmt: skip
        try:
            with Client(address or cluster) as client:
                todo = iter(range(len(args)))
                index: dict[str, int] = {}

                def submit() -> Any:  # the next task, or None when all are submitted
                    i = next(todo, None)
                    if i is None:
                        return None
                    future = client.submit(fn, *args[i], pure=False)
                    index[future.key] = i
                    return future

                # a bounded window of tasks: the scheduler and this process never hold a whole
                # archive's tasks (and their arguments) at once
                window = [f for f in (submit() for _ in range(DASK_WINDOW * max(jobs, 1))) if f]
                running = as_completed(window)
                for f in running:
                    try:
                        result: T | WorkerLost = f.result()
                    except KilledWorker as e:
                        result = WorkerLost(f"the worker died twice running it ({e})")
                    on_result(index.pop(f.key), result)
                    f.release()
                    if (following := submit()) is not None:
                        running.add(following)
        finally:
            if cluster is not None:
                cluster.close()


class _Runner:
    """A Ray actor: one worker process that runs the tasks given to it (whatever it loads and
    caches, e.g. the recognition model, stays loaded between tasks)."""

    def run(self, fn: Callable[..., T], *a: Any) -> T:
        return fn(*a)


def _run_ray(
    fn: Callable[..., T],
    args: Sequence[tuple[Any, ...]],
    on_result: Callable[[int, T | WorkerLost], None],
    jobs: int,
    address: str | None,
) -> None:
    """Ray: ``jobs`` actors on the cluster at ``address``, else on a local one started for the
    run; each actor runs one task at a time. A dead actor is restarted and its task retried
    once (``max_task_retries``), then it is lost."""
    ray = require("ray", "--engine ray")
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else max(jobs, 1),
                 include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)  # fmt: skip
    try:
        runner = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=1)(_Runner)
        idle: list[Any] = [runner.remote() for _ in range(max(jobs, 1))]
        todo = list(range(len(args)))[::-1]
        flight: dict[Any, tuple[int, Any]] = {}
        while todo or flight:
            while todo and idle:
                i, actor = todo.pop(), idle.pop()
                flight[actor.run.remote(fn, *args[i])] = (i, actor)
            done, _ = ray.wait(list(flight), num_returns=1)
            i, actor = flight.pop(done[0])
            try:
                result: T | WorkerLost = ray.get(done[0])
            except ray.exceptions.RayActorError as e:
                result = WorkerLost(f"the worker died twice running it ({type(e).__name__})")
            idle.append(actor)
            on_result(i, result)
    finally:
        if started:
            ray.shutdown()
