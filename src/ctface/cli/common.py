"""Helpers shared by the commands: progress bars on stderr, JSON-or-line reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ctface.errors import FailureToAcquire

out_console = Console()


def progress_bar(quiet: bool, *columns: Any) -> Progress:
    """A bar with a description, count, free ``info`` field and elapsed time (or ``columns``)
    on stderr; off if quiet, and where stderr is not a terminal (a log, a pipe: there the bar
    would only add its last state as a line after the command's own messages)."""
    columns = columns or (TextColumn("[bold]{task.description}"), BarColumn(),
                          MofNCompleteColumn(), TextColumn("{task.fields[info]}", markup=False),
                          TimeElapsedColumn())  # fmt: skip
    console = Console(stderr=True)
    return Progress(*columns, console=console, disable=quiet or not console.is_terminal)


def report(summary: dict[str, Any], json_out: bool, line: str) -> None:
    """Print ``summary`` as JSON (``--json``) or ``line`` for people (``line`` is plain text:
    IDs and paths in it are never read as markup)."""
    if json_out:
        print(json.dumps(summary, indent=1, default=str))
    else:
        out_console.print(line, highlight=False, soft_wrap=True, markup=False)


def acquire_probe(
    scan: Path, model: Any, series_uid: str | None, json_out: bool, *, digest: bool = False
) -> Any:
    """The scan's acquisition (``ctface.api.acquire``; without its content digest unless
    ``digest``); with ``json_out`` a failure to acquire also prints its code and reason as JSON,
    then ends the command (exit 6)."""
    from ctface.api import acquire

    try:
        return acquire(scan, model=model, series_uid=series_uid, digest=digest)
    except FailureToAcquire as e:
        if json_out:
            fta = {"code": e.code, "reason": e.reason}
            print(json.dumps({"scan": str(scan), "failure_to_acquire": fta}))
        raise
