"""Run one function over many argument tuples, in this process or in a process pool, in order,
with a progress callback after each result (the caches of training examples use it).

Workers are started by a fork server, not forked from the caller: a process that has already
run torch (thread pools, OpenMP) can deadlock a child forked from it (seen: the test suite hung
in `prepare_cohort(jobs=2)` after earlier tests had embedded images)."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def process_pool(jobs: int) -> ProcessPoolExecutor:
    """A pool of ``jobs`` worker processes started cleanly (see the module docstring)."""
    return ProcessPoolExecutor(
        max_workers=jobs, mp_context=multiprocessing.get_context("forkserver")
    )


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
