"""Run one function over many argument tuples, in this process or in a process pool, in order,
with a progress callback after each result (the caches of training examples use it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


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
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for r in pool.map(fn, *zip(*args, strict=True)):
            out.append(r)
            if progress:
                progress(r)
    return out
