"""Files written whole or not at all: a temporary name beside the target, then a rename
(``os.replace`` is atomic on one file system). Readers never see a half-written file."""

from __future__ import annotations

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
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from e


def save_npz_atomic(path: Path, **arrays: Any) -> None:
    """``np.savez`` to ``path`` through a temporary file (no pickled objects)."""
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, allow_pickle=False, **arrays)
    os.replace(tmp, path)
