"""Weights files: written whole through a temporary name (``torch.save``), read back with a
check of the format they declare. Inference and training both read and write them."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ctface.files import atomic_path


def save_atomic(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checked(source: Path | io.BytesIO, fmt: str | tuple[str, ...]) -> dict[str, Any]:
    """A ctface weights file (``torch.load``); ValueError unless its format is ``fmt`` (or one
    of them)."""
    formats = (fmt,) if isinstance(fmt, str) else fmt
    state = torch.load(source, weights_only=False, map_location="cpu")
    if not isinstance(state, dict) or state.get("format") not in formats:
        raise ValueError(f"not a {' or '.join(formats)} file")
    return state
