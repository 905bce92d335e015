"""Files written whole, and paths recorded without the machine's folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctface.errors import OutputError
from ctface.files import atomic_path, portable_path, save_npz_atomic, write_text_atomic


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


def test_atomic_path_replaces_the_target_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "data.npz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".npz" and ".tmp." in tmp.name
        assert not target.exists()  # nothing at the target until the block ends
        np.savez(tmp, a=np.arange(3))
    with np.load(target) as z:
        assert z["a"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="half way"), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise ValueError("half way")
    with np.load(target) as z:  # the old file, untouched; no temporary left beside it
        assert z["a"].tolist() == [0, 1, 2]
    assert [p.name for p in target.parent.iterdir()] == ["data.npz"]
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b  # two writers of one target never share a temporary file
        np.savez(a, a=np.arange(1))
        np.savez(b, a=np.arange(2))
    with np.load(target) as z:  # the last rename wins, whole
        assert z["a"].tolist() == [0]


def test_atomic_path_reports_an_unwritable_folder_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file, not a folder")
    target = tmp_path / "blocked" / "x.png"
    with pytest.raises(OutputError, match=r"cannot write .*x\.png") as e, atomic_path(target) as t:
        t.write_bytes(b"never")
    assert "\n" not in str(e.value)
    with pytest.raises(OutputError), atomic_path(tmp_path / "file.txt") as tmp:
        tmp.write_text("x")
        raise OSError(28, "No space left on device")  # an OSError in the block: OutputError
    assert list(tmp_path.iterdir()) == [tmp_path / "blocked"]
    save_npz_atomic(tmp_path / "cache.npz", v=np.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked", "cache.npz"]
