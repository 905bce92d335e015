"""Files written whole or not at all: a temporary name beside the target, then a rename
(``os.replace`` is atomic on one file system). Readers never see a half-written file."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ctface.errors import OutputError

_serial = itertools.count()  # with the pid: no two writers (processes, threads) share a name


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write the whole file to; on leaving the block it is
    renamed over ``path``, or removed if the block raised. Parent folders are made. The name is
    hidden (a leading dot), unique to this process and call, contains ``.tmp.`` and keeps
    ``path``'s last suffix (``savefig`` and ``np.savez`` choose the format by it). OSError
    (here or in the block) becomes OutputError with a one-line message."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{next(_serial)}.tmp{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):  # the folder itself may be what failed
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OutputError(f"cannot write {path}: {_why(path, e)}") from e
        raise


def _why(path: Path, e: OSError) -> str:
    """Why ``path`` cannot be written, in words: a file where a folder on its way should be
    (mkdir says only "File exists" or "Not a directory"), else the system's reason."""
    for parent in path.parents:
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                return f"{parent} is a file, not a folder"
            break
    return str(e.strerror or e)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (parent folders made); OutputError if it cannot."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_npz_atomic(path: Path, **arrays: Any) -> None:
    """``np.savez`` to ``path`` through a temporary file (no pickled objects)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, allow_pickle=False, **arrays)


def portable_path(path: str | Path, base: Path | None = None) -> str:
    """``path`` as reports and results record it, with no machine path: relative to ``base``
    (default: the current folder) when it lies inside it, else the last part of its name."""
    p, root = Path(path).resolve(), (base or Path.cwd()).resolve()
    return str(p.relative_to(root)) if p.is_relative_to(root) else p.name
