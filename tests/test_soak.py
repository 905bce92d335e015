"""A short soak of ``ctface serve`` (``benchmarks/soak.py``'s core): the real server under a
mixed load of two clients for about 25 s (scans identified, verified and enrolled, the gallery
and findings read, bad tokens, corrupt, oversize and abandoned uploads) answers every request
as expected, counts no error of its own (an upload the client gave up is 499, not 500) and
leaves no upload folder behind."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("psutil")
pytest.importorskip("requests")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import soak  # noqa: E402
from conftest import needs_face_model  # noqa: E402


@pytest.mark.slow
def test_a_short_soak(tmp_path: Path) -> None:
    needs_face_model()
    scenario = soak.prepare(tmp_path / "work", seed=5, people=2, dicom_people=1)
    opening = (
        "client-abort",
        "identify-dicom-zip",
        "enroll",
        "bad-token-upload",
        "oversize-announced",
    )
    raw = soak.run_soak(scenario, tmp_path / "run", seconds=25, clients=2, seed=5, sample_s=2,
                        opening=opening)  # fmt: skip
    summary = soak.summarize(raw)
    assert summary["unexpected"] == 0, summary["unexpected_examples"]
    # an upload the client gave up is no error of the server's (499 in its own count)
    counted = summary["server_counted"]
    assert counted["5xx"] == 0 and counted["by_status"].get("499", 0) >= 1, counted
    assert "internal" not in counted["failures"], counted
    assert summary["requests"] >= 20
    kinds = summary["by_kind_status"]
    assert any(k.startswith(("identify", "verify", "enroll")) for k in kinds), kinds
    assert any(k in ("patients", "scan", "findings", "healthz", "metrics") for k in kinds), kinds
    leftovers = summary["verdicts"]["no_leftover_uploads"]
    assert leftovers["ok"], leftovers
    assert summary["verdicts"]["descriptors_flat"]["ok"], summary["verdicts"]["descriptors_flat"]
    assert not summary["server_log_problems"], summary["server_log_problems"]
    assert summary["series"]["t_s"] and max(summary["series"]["workers"]) == 2
