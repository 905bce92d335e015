"""A phantom cohort (``ctface phantom``) read back through the whole pipeline, cached.

Each scan of ``manifest.csv`` is read with ``load_ct`` as a user's file, its face found and
rendered (90 views pooled to 128 px, ``embed.examples.DepthExample``) and cached as
``CACHE/<scan_id>.npz``; a scan the pipeline refuses is a failure to acquire, recorded with
its reason and left out. With ``volumes`` the scan's normalized CT cubes for the 3D-CNN
baselines are cached beside it (``CACHE/<scan_id>.vol.npz``, ``evaluate.volumes``), in the
same pass and the same face frame. The cache does not depend on the recognition model, so a
new model is evaluated or calibrated on it in seconds.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctface.embed.examples import DepthExample
from ctface.embed.images import pool_depth
from ctface.errors import CtfaceError, InvalidInputError
from ctface.evaluate.volumes import ScanVolumes, face_volume, head_volume
from ctface.jobs import map_jobs
from ctface.render.views import RENDER_PX


@dataclass(frozen=True)
class CohortScans:
    examples: list[DepthExample]  # in manifest order, failures left out
    failures: dict[str, str]  # scan_id -> reason
    seconds: list[float]  # pipeline seconds of the scans prepared in this call
    rows: list[dict[str, str]]  # the manifest, every scan (failures included)


def read_manifest(cohort: Path) -> list[dict[str, str]]:
    path = cohort / "manifest.csv"
    if not path.is_file():
        raise InvalidInputError(f"{cohort} is not a ctface phantom cohort (no manifest.csv).")
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _prepare(path: Path, row: dict[str, str], depth: Path | None, vol: Path | None) -> None:
    from ctface.ingest import load_ct
    from ctface.landmarks import face_frame
    from ctface.render.depth import render_face

    ct = load_ct(path)
    if depth is not None:
        rendering = render_face(ct, size=RENDER_PX)
        d = pool_depth(rendering.depth_mm).astype(np.float16)
        DepthExample(row["scan_id"], row["subject_id"], d, None).save(depth)
        frame = rendering.frame
    else:
        frame = face_frame(ct)
    if vol is not None:
        sid, subj = row["scan_id"], row["subject_id"]
        ScanVolumes(sid, subj, face_volume(ct, frame), head_volume(ct)).save(vol)


def _one(
    cohort: Path, cache: Path, row: dict[str, str], volumes: bool
) -> tuple[str, str | None, float]:
    sid = row["scan_id"]
    out, vol, fail = cache / f"{sid}.npz", cache / f"{sid}.vol.npz", cache / f"{sid}.failed"
    if fail.exists():
        return sid, fail.read_text(), 0.0
    need_depth, need_vol = not out.exists(), volumes and not vol.exists()
    if not (need_depth or need_vol):
        return sid, None, 0.0
    t = time.perf_counter()
    try:
        _prepare(cohort / row["path"], row, out if need_depth else None, vol if need_vol else None)
    except CtfaceError as e:
        fail.write_text(f"{type(e).__name__}: {e}")
        return sid, fail.read_text(), time.perf_counter() - t
    return sid, None, time.perf_counter() - t if need_depth else 0.0


def prepare_cohort(
    cohort: Path,
    cache: Path,
    jobs: int = 1,
    progress: Callable[[int, int], None] | None = None,
    volumes: bool = False,
) -> CohortScans:
    """Every scan of ``cohort`` through the pipeline (cached in ``cache``; resumable)."""
    rows = read_manifest(cohort)
    cache.mkdir(parents=True, exist_ok=True)
    done = [0]

    def tick(_: tuple[str, str | None, float]) -> None:
        done[0] += 1
        if progress:
            progress(done[0], len(rows))

    results = map_jobs(_one, [(cohort, cache, r, volumes) for r in rows], jobs, tick)
    failures = {s: err for s, err, _ in results if err}
    examples = [
        DepthExample.load(cache / f"{r['scan_id']}.npz")
        for r in rows
        if r["scan_id"] not in failures
    ]
    seconds = [t for _, err, t in results if not err and t > 0]
    return CohortScans(examples, failures, seconds, rows)
