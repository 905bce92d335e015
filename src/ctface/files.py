"""Files written whole or not at all: a temporary name beside the target, then a rename
(``os.replace`` is atomic on one file system). Readers never see a half-written file."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from ctface.errors import OutputError


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` (parent folders made); OutputError if it cannot."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):  # the folder itself may be what failed
            tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e


def save_npz_atomic(path: Path, **arrays: Any) -> None:
    """``np.savez`` to ``path`` through a temporary file (no pickled objects)."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, allow_pickle=False, **arrays)
    os.replace(tmp, path)


def portable_path(path: str | Path, base: Path | None = None) -> str:
    """``path`` as reports and results record it, with no machine path: relative to ``base``
    (default: the current folder) when it lies inside it, else the last part of its name."""
    p, root = Path(path).resolve(), (base or Path.cwd()).resolve()
    return str(p.relative_to(root)) if p.is_relative_to(root) else p.name
