"""Files written whole, and paths recorded without the machine's folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctface.errors import OutputError
from ctface.files import portable_path, write_text_atomic


def test_portable_path_is_relative_inside_the_base_and_a_name_outside(tmp_path: Path) -> None:
    assert portable_path(tmp_path / "cohort" / "S0001", tmp_path) == "cohort/S0001"
    assert portable_path(tmp_path / "elsewhere" / "harsh4444", tmp_path / "repo") == "harsh4444"
    assert not portable_path(tmp_path / "x").startswith("/")


def test_write_text_atomic_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.json"
    write_text_atomic(target, "{}")
    assert target.read_text() == "{}" and not list(target.parent.glob("*.tmp"))
    (tmp_path / "blocked").write_text("a file, not a folder")
    with pytest.raises(OutputError):
        write_text_atomic(tmp_path / "blocked" / "x.json", "{}")
