"""Crash safety of whole commands (issue 23): `ctface enroll --from-dicom-tags`, `ctface
reconcile` and `ctface pacs sync` killed with SIGKILL as processes (`python -m ctface`), at
random moments and inside their write transactions, output renames, acquisitions and STOW
answers (``benchmarks/kill.py``, whose campaigns these are). After every kill the database
passes ``PRAGMA integrity_check``, the same command completes, and the gallery (and the
report, and Orthanc's answers) are those of an uninterrupted run: no scan twice, none lost.

The normal suite kills enroll inside a write transaction and reconcile while it writes its
outputs, on a tiny archive; the slow tests (`make test-slow`) run the 20-kill campaigns."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import needs_face_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import kill  # noqa: E402

TINY = {"subjects": 3, "scans": 1, "planted": {"S0003/S0003_01_dicom": ""}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three people with one coarse DICOM scan each, the third without a PatientID (reconcile:
    an unlabeled scan, a finding with a report image)."""
    needs_face_model()
    return kill.make_archive(tmp_path_factory.mktemp("kill"), seed=23, **TINY)  # type: ignore[arg-type]


def _check(result: dict[str, Any], kills: int) -> None:
    failures = [t for t in result["kill_log"] if t["differences"] or t["rerun_exit"] != 0]
    assert not failures, failures
    assert result["trials"] == kills and result["kills"] >= kills - 1, result["kill_log"]
    assert result["integrity_ok"] == kills and result["reruns_completed"] == kills
    assert result["duplicates"] == 0 and result["lost"] == 0
    assert result["matching_reference"] == kills


@pytest.mark.parametrize(
    ("command", "aim"), [("enroll", "db-commit"), ("reconcile", "write report.html")]
)
def test_killed_commands_resume_to_the_uninterrupted_result(
    command: str, aim: str, tiny: Path, tmp_path: Path
) -> None:
    """One kill each where it matters most: enroll inside a scan's write transaction (held
    open before its COMMIT), reconcile while it renames its report into place (findings.csv
    written, findings.json not yet)."""
    with kill.scenario(command, tmp_path, tiny) as sc:
        result = kill.campaign(sc, 1, seed=5, say=lambda _: None, aims=[aim])
    _check(result, 1)
    phase = result["kill_log"][0]["phase"]
    assert phase.startswith("db write" if aim == "db-commit" else "writing"), phase


@pytest.mark.slow
@pytest.mark.parametrize("command", ["enroll", "reconcile"])
def test_twenty_kills(command: str, tiny: Path, tmp_path: Path) -> None:
    with kill.scenario(command, tmp_path, tiny) as sc:
        result = kill.campaign(sc, 20, seed=23, say=lambda _: None)
    _check(result, 20)


@pytest.mark.slow
def test_twenty_kills_of_the_pacs_loop(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`pacs sync --once --enroll-confirmed` against a real Orthanc, three studies (a rescan,
    a rescan filed under another patient, a new patient): after every kill and rerun each
    study holds one ctface SR (and the mismatch its one KOS), is recorded once with the
    uninterrupted run's decision, and the gallery holds the same enrollments and finding."""
    pytest.importorskip("highdicom")
    pytest.importorskip("dicomweb_client")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import orthanc_server

    orthanc_server.skip_without_orthanc()
    needs_face_model()
    work = tmp_path_factory.mktemp("kill-pacs")
    archive = kill.make_archive(work)
    with kill.scenario("pacs", work, archive) as sc:
        result = kill.campaign(sc, 20, seed=23, say=lambda _: None)
    _check(result, 20)
