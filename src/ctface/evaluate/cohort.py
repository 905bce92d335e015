"""A phantom cohort (``ctface phantom``) read back through the whole pipeline, cached.

Each scan of ``manifest.csv`` is read with ``load_ct`` as a user's file, its face found and
rendered (``embed.examples.scan_example``: 90 views pooled to 128 px) and cached as
``CACHE/<scan_id>.npz``; a scan the pipeline refuses is a failure to acquire, recorded with
its reason and left out. The cache does not depend on the recognition model, so a new model
is evaluated or calibrated on it in seconds.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ctface.embed.examples import DepthExample, scan_example
from ctface.errors import CtfaceError, InvalidInputError
from ctface.jobs import map_jobs


@dataclass(frozen=True)
class CohortScans:
    examples: list[DepthExample]  # in manifest order, failures left out
    failures: dict[str, str]  # scan_id -> reason
    seconds: list[float]  # pipeline seconds of the scans prepared in this call


def read_manifest(cohort: Path) -> list[dict[str, str]]:
    path = cohort / "manifest.csv"
    if not path.is_file():
        raise InvalidInputError(f"{cohort} is not a ctface phantom cohort (no manifest.csv).")
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _one(cohort: Path, cache: Path, row: dict[str, str]) -> tuple[str, str | None, float]:
    out, fail = cache / f"{row['scan_id']}.npz", cache / f"{row['scan_id']}.failed"
    if out.exists():
        return row["scan_id"], None, 0.0
    if fail.exists():
        return row["scan_id"], fail.read_text(), 0.0
    t = time.perf_counter()
    try:
        scan_example(cohort / row["path"], row["scan_id"], row["subject_id"]).save(out)
    except CtfaceError as e:
        fail.write_text(f"{type(e).__name__}: {e}")
        return row["scan_id"], fail.read_text(), time.perf_counter() - t
    return row["scan_id"], None, time.perf_counter() - t


def prepare_cohort(
    cohort: Path,
    cache: Path,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> CohortScans:
    """Every scan of ``cohort`` through the pipeline (cached in ``cache``; resumable)."""
    rows = read_manifest(cohort)
    cache.mkdir(parents=True, exist_ok=True)
    done = [0]

    def tick(_: tuple[str, str | None, float]) -> None:
        done[0] += 1
        if progress:
            progress(done[0], len(rows))

    results = map_jobs(_one, [(cohort, cache, r) for r in rows], jobs, tick)
    failures = {s: err for s, err, _ in results if err}
    examples = [
        DepthExample.load(cache / f"{r['scan_id']}.npz")
        for r in rows
        if r["scan_id"] not in failures
    ]
    return CohortScans(examples, failures, [t for _, err, t in results if not err and t > 0])
