"""Tasks for the `jobs.run_tasks` tests, in a module of their own so that worker processes
(a local pool, Dask or Ray workers) import them by name."""

from __future__ import annotations

import os
from pathlib import Path


def square_or_die(x: int, crash: int, marker: str) -> int:
    """``x * x``; for ``x == crash`` the worker process dies (``os._exit``) after appending a
    line to the file ``marker`` (one line per attempt)."""
    if x == crash:
        with Path(marker).open("a") as fh:
            fh.write(f"{os.getpid()}\n")
        os._exit(1)
    return x * x
