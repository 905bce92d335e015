"""``ctface pacs sync``: new CT studies from a DICOMweb server identified, the result stored
back into each study as a DICOM Structured Report.

The shape of the integrations hospitals already run (mercure, Kaapana, MONAI Deploy): wait
until a study is complete, pull its CT series, run, send the result back as DICOM. Studies are
found through Orthanc's change feed (``StableStudy`` events; ``--orthanc``), or else by
QIDO-RS queries for studies with CT; each is pulled with WADO-RS (``dicomweb-client``),
acquired and identified with the library API (``ctface.api``), and answered with an SR
(``pacs.report``) by STOW-RS. The originals are never changed.

A study whose face is not its header's PatientID (another enrolled patient's face, or not the
enrolled patient's) becomes a finding in the gallery (the service's review page): the
correction is a person's, through the hospital's own patient-information reconciliation.

Resumable and idempotent: each study's outcome is kept in the gallery (``pacs_studies``) and
the feed's position after it (``pacs.orthanc_change``); a study already holding a ctface SR is
never answered twice, so a crash re-does at most the study in flight, and its finding and
enrollment are the same ones again. The answer is kept in the gallery before it is sent
(``pacs.answering.<study UID>``): a run killed after the server stored the SR, before the
outcome was recorded, finds its own SR next time and completes the study from what it kept
(its decision recorded, its enrollment made), without a second SR. A study that fails (no
usable face, unreadable) is recorded with its code and not tried again unless asked
(``retry_failed``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from ctface.api import Gallery
from ctface.errors import CtfaceError, FailureCode, InvalidInputError, RemoteError
from ctface.gallery.acquire import Acquisition
from ctface.gallery.enroll import failure_code
from ctface.gallery.store import GalleryDatabase

STUDIES_TABLE = """
CREATE TABLE IF NOT EXISTS pacs_studies (
    study_uid TEXT PRIMARY KEY, status TEXT NOT NULL, series_uid TEXT, sr_uid TEXT,
    header_patient_id TEXT, decision TEXT, code TEXT, reason TEXT, at TEXT NOT NULL)
"""
CHANGES_PAGE = 100
SR_DESCRIPTION = "ctface identification"
TAG = {"modality": "00080060", "series_uid": "0020000E", "description": "0008103E",
       "study_uid": "0020000D", "instances": "00201209"}  # fmt: skip


class StudyStatus(StrEnum):
    DONE = "done"  # identified, SR stored
    FAILED = "failed"  # no usable face, or unreadable: recorded, not tried again
    NO_CT = "no-ct"  # nothing to do (ignored, not recorded: a CT series may come later)
    ANSWERED = "answered"  # already holds a ctface SR (an earlier run's)


@dataclass(frozen=True)
class PacsSettings:
    dicomweb: str
    orthanc: str | None = None  # Orthanc's REST root: its change feed
    auth: tuple[str, str] | None = None  # HTTP basic
    token: str | None = None  # bearer
    fmr: float = 1e-3
    enroll_confirmed: bool = False
    kos: bool = True  # a Key Object Selection flagging a mismatching study's CT for review
    retry_failed: bool = False


@dataclass(frozen=True)
class StudyResult:
    study_uid: str
    status: StudyStatus
    series_uid: str | None = None
    header_patient_id: str | None = None
    decision: dict[str, Any] | None = None
    candidates: list[dict[str, Any]] = field(default_factory=list)
    sr_sop_instance_uid: str | None = None
    mismatch: bool = False
    enrolled: bool = False
    code: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, StrEnum) else v) for k, v in self.__dict__.items()}


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# -- the server ------------------------------------------------------------------------------
def session(settings: PacsSettings) -> Any:
    """A requests session with the server's credentials."""
    import requests

    s = requests.Session()
    if settings.auth:
        s.auth = settings.auth
    if settings.token:
        s.headers["Authorization"] = f"Bearer {settings.token}"
    return s


def client(settings: PacsSettings) -> Any:
    from ctface.extras import require

    require("dicomweb_client", "ctface pacs")
    require("highdicom", "ctface pacs")
    from dicomweb_client.api import DICOMwebClient

    try:
        return DICOMwebClient(settings.dicomweb.rstrip("/"), session=session(settings))
    except ValueError as e:
        raise InvalidInputError(f"--dicomweb {settings.dicomweb!r}: {e}") from None


def remote(what: str, url: str, e: Exception) -> RemoteError:
    """The error of a request to the server: transient (no answer, a timeout, 5xx, 429: the
    run stops, the next one tries again) or the server's refusal of this study (4xx)."""
    status = getattr(getattr(e, "response", None), "status_code", None)
    error = RemoteError(f"{what} at {url} failed: {type(e).__name__}: {str(e)[:200]}")
    error.transient = bool(status is None or status >= 500 or status == 429)
    return error


def _value(item: dict[str, Any], tag: str) -> str | None:
    values = item.get(TAG[tag], {}).get("Value") or []
    return str(values[0]) if values else None


def orthanc_studies(
    settings: PacsSettings, since: int, pending: set[str]
) -> Iterator[tuple[int, str | None]]:
    """(change sequence, study UID or None) for every change after ``since``: the UID of the
    studies that became stable, None for the other changes (the position moves past them).
    ``pending`` (Orthanc IDs) gains the new studies and loses the stable ones: Orthanc keeps
    its not-yet-stable studies in memory, and one stopped before a study became stable never
    announces it (``stable_pending`` finds those)."""
    s, root = session(settings), (settings.orthanc or "").rstrip("/")
    while True:
        try:
            page = s.get(f"{root}/changes", params={"since": since, "limit": CHANGES_PAGE},
                         timeout=60)  # fmt: skip
            page.raise_for_status()
            body = page.json()
        except Exception as e:  # noqa: BLE001 - connection, HTTP, JSON: one line, resumable
            raise remote("reading the change feed", root, e) from e
        if not body.get("Changes") and int(body.get("Last", since)) < since:
            since = 0  # a new Orthanc index: read its feed from the start (done studies stay)
            continue
        for change in body.get("Changes", []):
            since, kind, oid = int(change["Seq"]), change.get("ChangeType"), str(change["ID"])
            uid = None
            if kind == "NewStudy":
                pending.add(oid)
            elif kind == "StableStudy":
                pending.discard(oid)
                uid = _orthanc_study_uid(s, root, oid)
            yield since, uid
        if body.get("Done", True):
            return


def _orthanc_study(s: Any, root: str, orthanc_id: str) -> dict[str, Any] | None:
    try:
        r = s.get(f"{root}/studies/{orthanc_id}", timeout=60)
        if r.status_code == 404:
            return None  # deleted since
        r.raise_for_status()
        return dict(r.json())
    except Exception as e:  # noqa: BLE001
        raise remote("reading a study", root, e) from e


def _orthanc_study_uid(s: Any, root: str, orthanc_id: str) -> str | None:
    study = _orthanc_study(s, root, orthanc_id)
    return None if study is None else str(study["MainDicomTags"]["StudyInstanceUID"])


def stable_pending(settings: PacsSettings, pending: set[str]) -> Iterator[tuple[str, str | None]]:
    """(Orthanc ID, study UID) of the pending studies that are stable now, or (ID, None) for
    those deleted since; ``pending`` itself is left to the caller (it drops each one once its
    outcome is recorded)."""
    s, root = session(settings), (settings.orthanc or "").rstrip("/")
    for oid in sorted(pending):
        study = _orthanc_study(s, root, oid)
        if study is None:
            yield oid, None
        elif study.get("IsStable"):
            yield oid, str(study["MainDicomTags"]["StudyInstanceUID"])


QIDO_PAGE = 200


def qido_studies(web: Any, settings: PacsSettings) -> list[str]:
    """Study UIDs of the studies with CT (QIDO-RS), page by page until a page brings nothing
    new (a server may cap a page below what was asked, or ignore the offset)."""
    out: dict[str, None] = {}
    while True:
        try:
            found = web.search_for_studies(search_filters={"ModalitiesInStudy": "CT"},
                                           offset=len(out), limit=QIDO_PAGE)  # fmt: skip
        except Exception as e:  # noqa: BLE001
            raise remote("searching for studies", settings.dicomweb, e) from e
        new = [u for u in (_value(f, "study_uid") for f in found) if u and u not in out]
        if not new:
            return list(out)
        out.update(dict.fromkeys(new))


# -- the gallery's record of the loop -------------------------------------------------------
def recorded(db: GalleryDatabase) -> dict[str, str]:
    """Study UID -> its recorded status."""
    if not db.has_table("pacs_studies"):
        return {}
    return {str(a): str(b) for a, b in db.query("SELECT study_uid, status FROM pacs_studies")}


ANSWERING = "pacs.answering."  # + study UID: an answer being sent (``keep_answer``)


def keep_answer(db: GalleryDatabase, r: StudyResult, enroll: bool) -> None:
    """The answer about to be sent (``r``, and whether the study is to be enrolled after it),
    kept until the study's outcome is recorded: a run killed after the server stored it
    completes the study from it (``answering``)."""
    db.set_setting(ANSWERING + r.study_uid, json.dumps({**r.to_json(), "enroll": enroll}))


def answering(db: GalleryDatabase, study_uid: str) -> tuple[StudyResult, bool] | None:
    """The answer kept by ``keep_answer`` for a study whose outcome is not recorded yet."""
    kept = db.setting(ANSWERING + study_uid)
    if kept is None:
        return None
    data = json.loads(kept)
    enroll = bool(data.pop("enroll"))
    data["status"] = StudyStatus(data["status"])
    return StudyResult(**data), enroll


def record(db: GalleryDatabase, r: StudyResult | None, state: dict[str, str]) -> None:
    """A study's outcome and the loop's state after it (``state``: settings), together."""
    with db.transaction() as conn:
        db.put_settings(conn, state)
        if r is None:
            return
        db.delete_settings(conn, [ANSWERING + r.study_uid])
        conn.execute(STUDIES_TABLE)
        conn.execute(
            "INSERT OR REPLACE INTO pacs_studies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (r.study_uid, str(r.status), r.series_uid, r.sr_sop_instance_uid,
             r.header_patient_id, json.dumps(r.decision) if r.decision else None, r.code,
             r.reason, _now()),
        )  # fmt: skip


# -- one study -------------------------------------------------------------------------------
SERIES_FIELDS = ["Modality", "SeriesDescription", "NumberOfSeriesRelatedInstances"]


def _series(web: Any, settings: PacsSettings, study_uid: str) -> list[dict[str, Any]]:
    try:
        return list(web.search_for_series(study_uid, fields=SERIES_FIELDS))
    except Exception as e:  # noqa: BLE001
        raise remote("searching the study's series", settings.dicomweb, e) from e


def _retrieve(web: Any, settings: PacsSettings, study_uid: str, series: list[str],
              folder: Path) -> dict[str, list[Path]]:  # fmt: skip
    """The CT series' instances written to ``folder`` as they stream in (what ``load_ct``
    reads; none is held in memory): their files, by series UID."""
    out: dict[str, list[Path]] = {}
    for n, uid in enumerate(series):
        files = out.setdefault(uid, [])
        try:
            for k, ds in enumerate(web.iter_series(study_uid, uid)):
                files.append(folder / f"{n:03d}_{k:05d}.dcm")
                ds.save_as(files[-1], enforce_file_format=True)
        except Exception as e:  # noqa: BLE001
            raise remote("retrieving a series", settings.dicomweb, e) from e
    return out


def _check_complete(files: dict[str, list[Path]], counts: dict[str, Any], study_uid: str,
                    settings: PacsSettings) -> None:  # fmt: skip
    """RemoteError when a series brought fewer instances than the server announced."""
    for uid, count in counts.items():
        if count is not None and len(files[uid]) < int(count):
            raise RemoteError(f"series {uid} of study {study_uid} arrived incomplete "
                              f"({len(files[uid])} of {count} instances) from "
                              f"{settings.dicomweb}")  # fmt: skip


def _headers(files: list[Path]) -> list[Any]:
    """The instances' headers (the SR's evidence: no pixel data needed)."""
    import pydicom

    return [pydicom.dcmread(f, stop_before_pixels=True) for f in files]


def process_study(
    web: Any, gallery: Gallery, settings: PacsSettings, study_uid: str
) -> StudyResult:
    """Identify one study and answer it (module docstring); every outcome recorded. A study
    holding a ctface SR is answered already: by this loop in a run stopped before it recorded
    the outcome (``answering``: the kept answer is the outcome, and the study is enrolled if
    it was to be), or by another."""
    found = _series(web, settings, study_uid)
    kept = answering(gallery.db, study_uid)
    if any(_value(s, "modality") == "SR" and _value(s, "description") == SR_DESCRIPTION
           for s in found):  # fmt: skip
        if kept is None:
            return StudyResult(study_uid, StudyStatus.ANSWERED)
        if not kept[1]:
            return kept[0]
    else:
        kept = None  # not sent: answered again from the start
    ct = {u: _value(s, "instances") for s in found
          if _value(s, "modality") == "CT" and (u := _value(s, "series_uid"))}  # fmt: skip
    if not ct:
        return StudyResult(study_uid, StudyStatus.NO_CT) if kept is None else kept[0]
    with tempfile.TemporaryDirectory(prefix="ctface-pacs-") as tmp:
        try:
            files = _retrieve(web, settings, study_uid, list(ct), Path(tmp))
            _check_complete(files, ct, study_uid, settings)
            acq = _acquire(Path(tmp), gallery)
        except CtfaceError as e:
            if kept is not None and not (isinstance(e, RemoteError) and e.transient):
                return replace(kept[0], enrolled=False)  # the SR is stored: its answer stands
            if isinstance(e, RemoteError):
                raise
            _series(web, settings, study_uid)  # the server still there: the study's own fault
            first = next((f[0] for f in files.values() if f), None)
            header = str(_headers([first])[0].get("PatientID", "")) if first else ""
            return StudyResult(study_uid, StudyStatus.FAILED, header_patient_id=header,
                               code=str(failure_code(e)),
                               reason=str(e).replace(tmp, "<study>"))  # fmt: skip
        series_uid = acq.record.series_uid or next(iter(files))
        if kept is not None:  # the SR stored by a run stopped before its enrollment
            return replace(kept[0], enrolled=_enroll(gallery, acq, study_uid, series_uid,
                                                     kept[0].header_patient_id or ""))  # fmt: skip
        evidence = _headers(files[series_uid])
    return _answer(web, gallery, settings, study_uid, acq, series_uid, evidence)


def _enroll(gallery: Gallery, acq: Acquisition, study_uid: str, series_uid: str,
            header: str) -> bool:  # fmt: skip
    """Enroll the study's scan under its header's PatientID; whether it was new."""
    source = replace(acq.record, source=f"pacs {study_uid}/{series_uid}")
    (outcome,) = gallery.enroll(replace(acq, record=source), header)
    return bool(outcome.status == "enrolled")


def _acquire(folder: Path, gallery: Gallery) -> Acquisition:
    from ctface.api import acquire

    return acquire(folder, model=gallery.model)


def _answer(web: Any, gallery: Gallery, settings: PacsSettings, study_uid: str,
            acq: Acquisition, series_uid: str, evidence: list[Any]) -> StudyResult:  # fmt: skip
    from ctface.pacs.report import identification_sr, review_kos

    header = str(evidence[0].get("PatientID", ""))
    result = gallery.identify(acq, fmr=settings.fmr)
    summary = result.summary(study_uid, gallery.model.version, acq.record.quality, 0.0)
    enrolled_ids = {p for p, _ in gallery.db.patients()}
    face = result.patient_id
    mismatch = bool(header) and face != header and (face is not None or header in enrolled_ids)
    if mismatch:
        _keep_finding(gallery, study_uid, series_uid, header, result, acq)
    sr = identification_sr(evidence, summary, header)
    answer = [sr] + ([review_kos(evidence, sr)] if mismatch and settings.kos else [])
    enroll = bool(settings.enroll_confirmed and header and (face == header or (
        face is None and header not in enrolled_ids)))  # fmt: skip
    done = StudyResult(study_uid, StudyStatus.DONE, series_uid, header, summary["decision"],
                       summary["candidates"], str(sr.SOPInstanceUID), mismatch)  # fmt: skip
    keep_answer(gallery.db, done, enroll)  # before it is sent: a kill after it is stored
    _store(web, settings, study_uid, answer)
    # the enrollment after the SR: a rerun must never find the study's own template
    enrolled = enroll and _enroll(gallery, acq, study_uid, series_uid, header)
    return replace(done, enrolled=enrolled)


def _store(web: Any, settings: PacsSettings, study_uid: str, answer: list[Any]) -> None:
    """STOW-RS; the server's answer checked instance by instance (a 200 or 202 may still
    list failures)."""
    try:
        reply = web.store_instances(answer, study_uid)
    except Exception as e:  # noqa: BLE001
        raise remote("storing the SR", settings.dicomweb, e) from e
    stored = {str(x.get("ReferencedSOPInstanceUID", ""))
              for x in getattr(reply, "ReferencedSOPSequence", None) or []}  # fmt: skip
    failed = getattr(reply, "FailedSOPSequence", None) or []
    missing = [str(ds.SOPInstanceUID) for ds in answer if str(ds.SOPInstanceUID) not in stored]
    if failed or (reply is not None and missing):
        error = RemoteError(f"{settings.dicomweb} refused the SR of study {study_uid} "
                            f"({len(failed)} failed, {len(missing)} not stored)")  # fmt: skip
        error.transient = False
        raise error


def _keep_finding(gallery: Gallery, study_uid: str, series_uid: str, header: str, result: Any,
                  acq: Acquisition) -> None:  # fmt: skip
    from ctface.gallery.report import png_bytes
    from ctface.gallery.review import ReviewKind, save_finding

    face = result.patient_id or "not in gallery"
    best = result.candidates[0].score if result.candidates else None
    check = (
        f"the header says {header}, the face is {face}: correct it through the "
        "hospital's patient-information reconciliation (ctface changes nothing)"
    )
    detail = {"label": f"study {study_uid}", "study_uid": study_uid, "series_uid": series_uid,
              "header_patient_id": header, **result.to_json(), "check": check}  # fmt: skip
    save_finding(gallery.db, f"pacs-mismatch:{study_uid}", ReviewKind.PACS_MISMATCH, "pacs",
                 best, f"PACS study: header {header}, face {face}", detail,
                 [c.scan_key for c in result.candidates], png_bytes(acq.frontal))  # fmt: skip


def _failed(gallery: Gallery, r: StudyResult) -> None:
    """A study that failed also in the gallery's failures (the review page lists them)."""
    digest = hashlib.sha256(f"pacs:{r.study_uid}".encode()).hexdigest()
    gallery.db.add_failure(digest, f"pacs/{r.study_uid}", r.code or FailureCode.ERROR,
                           r.reason or "")  # fmt: skip


# -- a run -----------------------------------------------------------------------------------
def sync_once(
    gallery: Gallery,
    settings: PacsSettings,
    on_study: Callable[[StudyResult], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> list[StudyResult]:
    """Process what the server has now; every study's outcome is recorded as it ends, with the
    loop's place after it (the results of this run, in order). ``stop``: asked between
    studies."""
    gallery.check(settings.fmr)  # no gallery, another model's, a bad FMR: before any work
    web = client(settings)
    db = gallery.db
    status = recorded(db)
    results: list[StudyResult] = []

    def one(uid: str, state: dict[str, str]) -> None:
        r = _outcome(web, gallery, settings, uid)
        if r.status == StudyStatus.FAILED:
            _failed(gallery, r)
        keep = r if r.status != StudyStatus.NO_CT else None  # a CT series may come later
        record(db, keep, state)
        if keep is not None:
            status[uid] = str(r.status)
        results.append(r)
        if on_study:
            on_study(r)

    def todo(uid: str, new_event: bool) -> bool:
        """Not yet recorded; failed: again on a new event or when asked."""
        was = status.get(uid)
        return was is None or (was == "failed" and (new_event or settings.retry_failed))

    if settings.retry_failed:  # the failures of earlier runs, once
        for uid in [u for u, st in status.items() if st == "failed"]:
            if stop():
                return results
            one(uid, {})
    if settings.orthanc:
        _orthanc_loop(db, settings, one, todo, stop)
    else:
        for uid in qido_studies(web, settings):
            if stop():
                break
            if todo(uid, False):
                one(uid, {})
    return results


def _outcome(web: Any, gallery: Gallery, settings: PacsSettings, uid: str) -> StudyResult:
    """``process_study``; a study the server refuses (4xx) or that breaks the reader is a
    recorded failure, so it never blocks the studies behind it; the server gone (no answer,
    5xx) stops the run (RemoteError) before anything is recorded."""
    try:
        return process_study(web, gallery, settings, uid)
    except RemoteError as e:
        if getattr(e, "transient", True):
            raise
        return StudyResult(uid, StudyStatus.FAILED, code=str(FailureCode.ERROR), reason=str(e))
    except CtfaceError as e:
        return StudyResult(uid, StudyStatus.FAILED, code=str(failure_code(e)), reason=str(e))
    except Exception as e:  # noqa: BLE001 - a malformed study must not stop the loop
        why = f"{type(e).__name__}: {str(e)[:200]}"
        return StudyResult(uid, StudyStatus.FAILED, code=str(FailureCode.ERROR), reason=why)


def _orthanc_loop(db: GalleryDatabase, settings: PacsSettings, one: Callable[..., None],
                  todo: Callable[[str, bool], bool], stop: Callable[[], bool]) -> None:  # fmt: skip
    """Orthanc's change feed, then the pending studies it never declared stable. The feed's
    position and the pending list are saved with each study's outcome (one transaction) and
    at the end; a run that fails re-reads the changes since the last save."""
    since = int(db.setting("pacs.orthanc_change") or 0)
    pending = set(json.loads(db.setting("pacs.orthanc_pending") or "[]"))

    def state(seq: int) -> dict[str, str]:
        waiting = json.dumps(sorted(pending))
        return {"pacs.orthanc_change": str(seq), "pacs.orthanc_pending": waiting}

    last = since
    for seq, uid in orthanc_studies(settings, since, pending):
        if stop():
            break
        if uid is not None and todo(uid, True):
            one(uid, state(seq))
        last = seq
    record(db, None, state(last))
    for oid, uid in stable_pending(settings, pending):
        if stop():
            return
        if uid is not None and todo(uid, False):
            pending.discard(oid)
            one(uid, state(last))
        else:
            pending.discard(oid)
            record(db, None, state(last))
