"""The README's "From Python" example runs as written and prints what its comment says; the
library API loads neither torch nor FAISS on import, nor does `ctface gallery list`."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _section_blocks() -> dict[str, str]:
    text = README.read_text()
    section = text.split("## From Python\n", 1)[1].split("\n## ", 1)[0]
    return {lang: code for lang, code in re.findall(r"```(\w+)\n(.*?)```", section, re.S)}


def test_readme_example_has_at_most_five_lines() -> None:
    code = _section_blocks()["python"]
    assert len(code.strip().splitlines()) <= 5


def test_readme_example_identifies_the_rescan(tmp_path: Path) -> None:
    blocks = _section_blocks()
    command = shlex.split(blocks["bash"].strip())
    assert command[0] == "ctface"
    subprocess.run([sys.executable, "-m", "ctface", *command[1:]], cwd=tmp_path, check=True,
                   capture_output=True)  # fmt: skip
    code = blocks["python"]
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    expected = code.strip().splitlines()[-1].split("# ", 1)[1]
    assert r.stdout.strip() == expected


def _imported_after(code: str) -> set[str]:
    """Which of torch and FAISS a fresh interpreter has loaded after running ``code``."""
    heavy = "print('loaded:', *(m for m in ('torch', 'faiss') if m in sys.modules))"
    probe = f"import sys\n{code}\n{heavy}"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(r.stdout.strip().splitlines()[-1].split()[1:])


def test_import_ctface_loads_neither_torch_nor_faiss() -> None:
    assert _imported_after("import ctface; ctface.Gallery; ctface.__version__") == set()


def test_gallery_commands_do_not_import_torch(tmp_path: Path) -> None:
    from ctface.gallery import GalleryDatabase

    db = tmp_path / "g.db"
    GalleryDatabase(db, create=True).close()
    code = (
        "from ctface.cli import main\n"
        f"for cmd in (['list'], ['stats'], ['export', '--out', {str(tmp_path / 'e.json')!r}]):\n"
        "    try:\n"
        f"        main(['gallery', *cmd, '--db', {str(db)!r}])\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, e.code"
    )
    assert _imported_after(code) == set()
