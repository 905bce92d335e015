"""CLI behaviour: help, one-line errors with distinct exit codes, --json output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import FACE_MODEL, needs_face_model


def ctface(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from ctface.cli import main; main()", *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300,
    )  # fmt: skip


def test_help_lists_commands() -> None:
    res = ctface("--help")
    assert res.returncode == 0
    for cmd in ("phantom", "demo", "face-model"):
        assert cmd in res.stdout


def test_missing_face_model_is_one_line_exit_3(tmp_path: Path) -> None:
    res = ctface("phantom", "--subjects", "1", "--out", str(tmp_path / "o"),
                 "--face-model", str(tmp_path / "nope.npz"))  # fmt: skip
    assert res.returncode == 3, res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert "ICT-FaceKit" in res.stderr and "face-model pack" in res.stderr
    assert not (tmp_path / "o").exists()


def test_env_var_pointing_nowhere(tmp_path: Path) -> None:
    res = ctface("phantom", "--subjects", "1", "--out", str(tmp_path / "o"),
                 env={"CTFACE_FACE_MODEL": str(tmp_path / "missing.npz")})  # fmt: skip
    assert res.returncode == 3 and "CTFACE_FACE_MODEL" in res.stderr


def test_usage_errors(tmp_path: Path) -> None:
    assert ctface("phantom", "--out", str(tmp_path)).returncode == 2  # --subjects missing
    bad = tmp_path / "n.json"
    bad.write_text(json.dumps({"p_maskk": 0.5}))
    res = ctface("phantom", "--subjects", "1", "--out", str(tmp_path / "o"), "--nuisance", str(bad))
    assert res.returncode == 4 and "p_maskk" in res.stderr and "Traceback" not in res.stderr


def test_phantom_json(tmp_path: Path) -> None:
    needs_face_model()
    cfg = tmp_path / "fast.json"
    cfg.write_text(json.dumps({"pixel_mm": [1.0, 1.0], "slice_thickness_mm": [3.0]}))
    out = tmp_path / "c"
    res = ctface("phantom", "--subjects", "1", "--scans-min", "1", "--scans-max", "1",
                 "--seed", "5", "--out", str(out), "--face-model", str(FACE_MODEL),
                 "--nuisance", str(cfg), "--qc", "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    (row,) = doc["scans"]
    assert row["slice_thickness_mm"] == 3.0 and (out / row["path"]).exists()
    assert (out / "qc" / f"{row['scan_id']}.png").stat().st_size > 10_000
    again = ctface("phantom", "--subjects", "1", "--out", str(out), "--face-model", str(FACE_MODEL))
    assert again.returncode == 5 and "not empty" in again.stderr
