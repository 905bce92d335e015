"""k-fold cross-validation over subjects: each method is trained on the other folds' scans and
embeds the held-out fold's scans; each fold's test embeddings are kept in the work folder
(``WORK/<method>/fold<i>.npz``, written atomically), so an interrupted run resumes and a report
can be remade without training."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctface.embed.embedder import WEIGHTS
from ctface.embed.template import TEMPLATE_RULE
from ctface.embed.train import AUGMENTATION
from ctface.errors import InvalidInputError
from ctface.evaluate.data import CohortData
from ctface.evaluate.methods import PRETRAINED, Method, run_fold, subject_folds
from ctface.evaluate.protocols import FoldEmbeddings


@dataclass(frozen=True)
class MethodRun:
    method: Method
    folds: list[FoldEmbeddings]
    train_seconds: list[float]  # per fold (0 where no training)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def method_dir(work: Path, m: Method, data: CohortData, k: int, seed: int) -> Path:
    """The method's folder for everything its fold results depend on: the spec, the cohort
    cache and its accepted scans, the face separation, the weights it starts from, the depth
    networks' training augmentation, the template rule (methods that embed views), the folds
    and the seed. Any change gives a new folder (nothing stale is reused)."""
    recipe = "" if m.family == "cnn3d" else TEMPLATE_RULE  # 3D networks: one embedding a scan
    if m.family == "model":
        recipe = file_digest(Path(m.opt("path") or WEIGHTS))
    elif m.family == "ours":
        recipe += AUGMENTATION + (file_digest(PRETRAINED) if m.opt("pretrained") == "1" else "")
    scans = ",".join(
        f"{s}:{data.subject_ids[i]}" for s, i in zip(data.scan_ids, data.scan_subject, strict=True)
    )
    key = "|".join([m.spec, str(data.cache.resolve()), scans, data.segmenter_version, recipe,
                    str(k), str(seed)])  # fmt: skip
    return work / f"{m.arch}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


def fold_split(
    data: CohortData, m: Method, k: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train scans, test scans) of each fold, for this method's fold rule. InvalidInputError
    when a fold could not be tested (no test subject with two scans) or trained (fewer than two
    training subjects with two scans)."""
    out = []
    repeat = np.bincount(data.scan_subject) >= 2
    for i, test_subjects in enumerate(subject_folds(data.scan_subject, k, seed, m.stratified)):
        is_test = np.isin(data.scan_subject, test_subjects)
        train_repeat = np.setdiff1d(np.flatnonzero(repeat), test_subjects)
        if not repeat[test_subjects].any() or len(train_repeat) < 2:
            raise InvalidInputError(
                f"fold {i + 1} of {k} has too few people scanned twice (test: "
                f"{int(repeat[test_subjects].sum())}, training: {len(train_repeat)}): use fewer "
                "folds or a cohort with more repeat scans"
            )
        out.append((np.flatnonzero(~is_test), np.flatnonzero(is_test)))
    return out


def run_method(
    m: Method,
    data: CohortData,
    k: int,
    seed: int,
    work: Path,
    progress: Callable[[int, int, float], None] | None = None,
) -> MethodRun:
    """All ``k`` folds of method ``m`` (resuming from ``work``). ``progress(fold, iteration,
    loss)``."""
    folder = method_dir(work, m, data, k, seed)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"spec": m.spec, "folds": k, "seed": seed, "cache": str(data.cache.resolve())}
    (folder / "method.json").write_text(json.dumps(meta))
    tests, seconds = [], []
    for i, (train, test) in enumerate(fold_split(data, m, k, seed)):
        out = folder / f"fold{i}.npz"
        timing = folder / f"fold{i}.seconds"
        if out.exists() and not np.array_equal(FoldEmbeddings.load(out).scan, test):
            out.unlink()  # never expected: the folder's key covers the scans and folds
        if not out.exists():
            t0 = time.perf_counter()
            tick = None
            if progress is not None:
                tick = lambda it, loss, i=i: progress(i, it, loss)  # noqa: E731
            emb = run_fold(m, data, train, test, seed * 100 + i, folder / f"w{i}", tick)
            emb.save(out)
            timing.write_text(f"{time.perf_counter() - t0:.1f}")
        tests.append(FoldEmbeddings.load(out))
        seconds.append(float(timing.read_text()) if timing.exists() else 0.0)
    return MethodRun(m, tests, seconds)
