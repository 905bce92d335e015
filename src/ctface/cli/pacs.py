"""`ctface pacs sync`: CT studies of a DICOMweb server identified, answered with DICOM SRs
(``ctface.pacs``)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import typer

from ctface.cli.main import app, err
from ctface.errors import InvalidInputError, RemoteError

pacs_app = typer.Typer(help="The PACS loop: identify CT studies, answer with DICOM SRs.",
                       no_args_is_help=True)  # fmt: skip
app.add_typer(pacs_app, name="pacs")


def _auth(auth: str | None, token_file: Path | None) -> tuple[Any, str | None]:
    if auth is not None and token_file is not None:
        raise InvalidInputError("give --auth or --token-file, not both")
    if auth is not None:
        user, sep, password = auth.partition(":")
        if not sep or not user:
            raise InvalidInputError("--auth is USER:PASSWORD")
        return (user, password), None
    if token_file is not None:
        if not token_file.is_file():
            raise InvalidInputError(f"--token-file {token_file} is not a file")
        token = token_file.read_text().strip()
        if not token or any(c.isspace() for c in token):
            raise InvalidInputError(f"{token_file} must hold one token")
        return None, token
    return None, None


@pacs_app.command()
def sync(
    dicomweb: str = typer.Option(..., "--dicomweb", help="DICOMweb root (QIDO/WADO/STOW)."),
    orthanc: str | None = typer.Option(
        None, "--orthanc", help="Orthanc's REST root: follow its change feed (StableStudy)."
    ),
    auth: str | None = typer.Option(None, "--auth", help="HTTP basic USER:PASSWORD."),
    token_file: Path | None = typer.Option(None, "--token-file", help="A bearer token file."),
    db: Path | None = typer.Option(None, "--db", help="Gallery database (default as enroll)."),
    once: bool = typer.Option(False, "--once", help="Process what is there, then exit."),
    interval: float = typer.Option(30.0, "--interval", min=1, help="Seconds between polls."),
    fmr: float = typer.Option(1e-3, "--fmr", help="False-match rate of the decisions."),
    enroll_confirmed: bool = typer.Option(
        False,
        "--enroll-confirmed",
        help="Enroll studies whose face confirms their PatientID (and new patients' studies).",
    ),
    no_kos: bool = typer.Option(False, "--no-kos", help="No Key Object Selection for review."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Try failed studies again."),
    weights: Path | None = typer.Option(None, "--weights", help="Recognition model file."),
    json_out: bool = typer.Option(False, "--json", help="Print the outcome as JSON."),
) -> None:
    """Identify new CT studies of a DICOMweb server (Orthanc's change feed with --orthanc,
    else QIDO-RS) and store the result in each study as a DICOM SR; a study whose face is not
    its PatientID becomes a finding in the gallery. Originals are never changed."""
    from ctface.api import Gallery
    from ctface.pacs.sync import PacsSettings, StudyStatus, sync_once

    basic, token = _auth(auth, token_file)
    settings = PacsSettings(dicomweb, orthanc, basic, token, fmr, enroll_confirmed, not no_kos,
                            retry_failed)  # fmt: skip
    stopping = {"now": False}

    def stop(*_: Any) -> None:
        stopping["now"] = True

    signal.signal(signal.SIGTERM, stop)
    results: list[Any] = []

    def show(r: Any) -> None:
        results.append(r)
        if not json_out:
            what = (r.decision or {}).get("patient_id") or (
                "not in gallery" if r.status == StudyStatus.DONE else r.code or r.status
            )
            extra = " (face is not the header's PatientID: a finding)" if r.mismatch else ""
            err.print(f"{r.study_uid}: {r.status}: {what}{extra}", highlight=False,
                      markup=False)  # fmt: skip

    with Gallery.open(db, model=weights) as gallery:
        while True:
            try:
                sync_once(gallery, settings, show, lambda: stopping["now"])
            except RemoteError as e:
                if once:  # what this run did, then the one-line error (exit 8)
                    _report(results, json_out)
                    raise
                err.print(f"ctface: {e} (trying again in {interval:g} s)", highlight=False,
                          markup=False, soft_wrap=True)  # fmt: skip
            if once or stopping["now"]:
                break
            deadline = time.monotonic() + interval
            while time.monotonic() < deadline and not stopping["now"]:
                time.sleep(0.2)
            if stopping["now"]:
                break
    _report(results, json_out)


def _report(results: list[Any], json_out: bool) -> None:
    from ctface.pacs.sync import StudyStatus

    done = [r.to_json() for r in results if r.status == StudyStatus.DONE]
    failed = [r.to_json() for r in results if r.status == StudyStatus.FAILED]
    if json_out:
        print(json.dumps({"studies": done, "failed": failed}, indent=1))
    else:
        err.print(f"{len(done)} studies identified, {len(failed)} failed, "
                  f"{sum(r['mismatch'] for r in done)} mismatches", highlight=False,
                  markup=False)  # fmt: skip
