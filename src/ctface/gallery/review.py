"""What people review, kept in the gallery: findings (a reconciliation's splits, merges and
unlabeled scans; the service's identifications; the shared scans an audit against the gallery
re-identifies) and the decisions people record on them.

Decisions are an audit trail: each is a new row (accept, reject or a note, with user, time and
the finding's evidence as it was then: score, title, details), and SQLite triggers refuse any
change or deletion of one, so a later decision never overwrites an earlier one. A finding comes
back with the same ``key`` when a later reconciliation (or audit of the same dataset) finds it
again: its score and details are updated, its decisions kept; one it no longer finds is marked
``gone`` (status "gone" until someone decides it).

Images: an identification keeps its probe's frontal depth image (the uploaded scan itself is
deleted after the request), and ``scan_images`` keeps enrolled scans' frontal depth images once
rendered for a review. They are pictures of faces: the gallery is as sensitive as the scans.
The tables are made by their first write (galleries without them read as having no findings;
older ctface versions open galleries with them).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ctface.errors import InvalidInputError, UnknownEntryError
from ctface.gallery.store import GalleryDatabase

RECENT_IDENTIFICATIONS = 1000  # undecided identifications kept (older ones are pruned)
MAX_NOTE = 2000  # characters of a note
TABLES = """
CREATE TABLE IF NOT EXISTS findings (
    finding_id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL, origin TEXT NOT NULL, score REAL, title TEXT NOT NULL,
    detail TEXT NOT NULL, scan_keys TEXT NOT NULL, probe_png BLOB,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, gone_at TEXT);
CREATE TABLE IF NOT EXISTS decisions (
    decision_id INTEGER PRIMARY KEY AUTOINCREMENT,
    finding_id INTEGER NOT NULL REFERENCES findings(finding_id),
    decision TEXT NOT NULL CHECK (decision IN ('accept', 'reject', 'note')),
    user TEXT NOT NULL, note TEXT NOT NULL, at TEXT NOT NULL, evidence TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS decisions_finding ON decisions(finding_id);
CREATE TRIGGER IF NOT EXISTS decisions_never_changed BEFORE UPDATE ON decisions
    BEGIN SELECT RAISE(ABORT, 'decisions are an audit trail: never changed'); END;
CREATE TRIGGER IF NOT EXISTS decisions_never_deleted BEFORE DELETE ON decisions
    BEGIN SELECT RAISE(ABORT, 'decisions are an audit trail: never deleted'); END;
CREATE TABLE IF NOT EXISTS scan_images (
    scan_key INTEGER PRIMARY KEY REFERENCES scans(scan_key) ON DELETE CASCADE,
    png BLOB NOT NULL, at TEXT NOT NULL);
"""


class ReviewKind(StrEnum):
    """What a finding is (the first three: ``gallery.reconcile.FindingKind``)."""

    SPLIT = "split"
    MERGE = "merge"
    UNLABELED = "unlabeled"
    IDENTIFICATION = "identification"
    REIDENTIFIED = "re-identified"  # ``ctface audit``: a shared scan its person is found by
    PACS_MISMATCH = "pacs-mismatch"  # ``ctface pacs``: a study whose face is not its PatientID


class Decision(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    NOTE = "note"


class Sort(StrEnum):
    SCORE = "score"
    TIME = "time"


@dataclass(frozen=True)
class DecisionRecord:
    decision_id: int
    finding_id: int
    decision: Decision
    user: str
    note: str
    at: str
    evidence: dict[str, Any]  # the finding's score, title and details when it was decided

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ReviewFinding:
    finding_id: int
    key: str
    kind: ReviewKind
    origin: str  # "reconcile", "identify"
    score: float | None
    title: str
    detail: dict[str, Any]
    scan_keys: tuple[int, ...]  # the gallery scans it shows
    has_probe_image: bool
    created_at: str
    updated_at: str
    gone_at: str | None = None  # the run that no longer found it
    decisions: tuple[DecisionRecord, ...] = ()

    @property
    def status(self) -> str:
        """The latest accept or reject; before any (notes do not decide) "gone" when the last
        run no longer found it, else "open"."""
        made = [d.decision for d in self.decisions if d.decision != Decision.NOTE]
        return str(made[-1]) if made else "gone" if self.gone_at else "open"

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "decisions"}
        out["scan_keys"] = list(self.scan_keys)
        out["status"] = self.status
        out["decisions"] = [d.to_json() for d in self.decisions]
        return out


def _now() -> str:
    """UTC, to the millisecond (when a finding was made, updated, decided or gone)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _ensure(db: GalleryDatabase, conn: Any) -> None:
    """Make the tables inside the caller's transaction (``executescript`` would commit it)."""
    if not db.has_table("scan_images"):
        for statement in _statements(TABLES):
            conn.execute(statement)


def _statements(script: str) -> list[str]:
    """The script's statements (a trigger's body keeps its own semicolons)."""
    out, part = [], ""
    for line in script.strip().splitlines():
        part += line + "\n"
        if line.rstrip().endswith(";") and (part.count("BEGIN") == part.count("END;")):
            out.append(part.strip())
            part = ""
    return out


def save_finding(
    db: GalleryDatabase,
    key: str,
    kind: ReviewKind,
    origin: str,
    score: float | None,
    title: str,
    detail: dict[str, Any],
    scan_keys: list[int],
    probe_png: bytes | None = None,
) -> int:
    """Add a finding, or update the one with this ``key`` (its decisions kept); its ID."""
    now = _now()
    with db.transaction() as conn:
        _ensure(db, conn)
        conn.execute(
            "INSERT INTO findings (key, kind, origin, score, title, detail, scan_keys, "
            "probe_png, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET score = excluded.score, title = excluded.title, "
            "detail = excluded.detail, scan_keys = excluded.scan_keys, "
            "updated_at = excluded.updated_at, gone_at = NULL",
            (key, str(kind), origin, score, title, json.dumps(detail), json.dumps(scan_keys),
             probe_png, now, now),
        )  # fmt: skip
        (fid,) = conn.execute("SELECT finding_id FROM findings WHERE key = ?", (key,)).fetchone()
        if kind == ReviewKind.IDENTIFICATION:
            _prune_identifications(conn)
    return int(fid)


def _prune_identifications(conn: Any) -> None:
    """Keep the newest ``RECENT_IDENTIFICATIONS`` undecided identifications (decided ones are
    part of the audit trail and stay)."""
    conn.execute(
        "DELETE FROM findings WHERE kind = ? AND finding_id NOT IN "
        "(SELECT finding_id FROM decisions) AND finding_id NOT IN (SELECT finding_id FROM "
        "findings WHERE kind = ? ORDER BY finding_id DESC LIMIT ?)",
        (str(ReviewKind.IDENTIFICATION), str(ReviewKind.IDENTIFICATION), RECENT_IDENTIFICATIONS),
    )


FINDING_COLUMNS = (
    "finding_id, key, kind, origin, score, title, detail, scan_keys, probe_png IS NOT NULL, "
    "created_at, updated_at, gone_at"
)


def _finding(row: tuple[Any, ...], decisions: tuple[DecisionRecord, ...]) -> ReviewFinding:
    return ReviewFinding(int(row[0]), str(row[1]), ReviewKind(row[2]), str(row[3]),
                         None if row[4] is None else float(row[4]), str(row[5]),
                         json.loads(row[6]), tuple(json.loads(row[7])), bool(row[8]),
                         str(row[9]), str(row[10]), row[11], decisions)  # fmt: skip


def _decisions(db: GalleryDatabase, ids: list[int]) -> dict[int, list[DecisionRecord]]:
    out: dict[int, list[DecisionRecord]] = {i: [] for i in ids}
    if not ids:
        return out
    marks = ", ".join("?" * len(ids))
    rows = db.query(
        "SELECT decision_id, finding_id, decision, user, note, at, evidence FROM decisions "
        f"WHERE finding_id IN ({marks}) ORDER BY decision_id", tuple(ids))  # fmt: skip
    for r in rows:
        out[int(r[1])].append(DecisionRecord(int(r[0]), int(r[1]), Decision(r[2]), str(r[3]),
                                             str(r[4]), str(r[5]), json.loads(r[6])))  # fmt: skip
    return out


def list_findings(
    db: GalleryDatabase,
    *,
    kind: ReviewKind | None = None,
    status: str = "all",
    sort: Sort = Sort.SCORE,
    descending: bool = True,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[ReviewFinding], int]:
    """One page of findings (``status``: all; open: undecided and found by the last run;
    decided; gone: undecided, no longer found) and how many there are."""
    if status not in ("all", "open", "decided", "gone"):
        raise InvalidInputError(f"unknown status {status!r} (all, open, decided, gone)")
    if not db.has_table("findings"):
        return [], 0
    where, args = [], []
    if kind is not None:
        where.append("kind = ?")
        args.append(str(kind))
    decided = ("finding_id IN (SELECT finding_id FROM decisions "
               "WHERE decision IN ('accept', 'reject'))")  # fmt: skip
    if status == "open":
        where.append(f"NOT {decided} AND gone_at IS NULL")
    elif status == "decided":
        where.append(decided)
    elif status == "gone":
        where.append(f"NOT {decided} AND gone_at IS NOT NULL")
    sql_where = f" WHERE {' AND '.join(where)}" if where else ""
    order = "score" if sort == Sort.SCORE else "finding_id"
    direction = "DESC" if descending else "ASC"
    (total,) = db.query(f"SELECT COUNT(*) FROM findings{sql_where}", tuple(args))[0]
    rows = db.query(
        f"SELECT {FINDING_COLUMNS} FROM findings{sql_where} ORDER BY {order} IS NULL, "
        f"{order} {direction}, finding_id DESC LIMIT ? OFFSET ?",
        (*args, limit, offset),
    )
    made = _decisions(db, [int(r[0]) for r in rows])
    return [_finding(r, tuple(made[int(r[0])])) for r in rows], int(total)


def get_finding(db: GalleryDatabase, finding_id: int) -> ReviewFinding:
    """One finding with its decisions; GalleryError when there is none with this ID."""
    rows = (
        db.query(f"SELECT {FINDING_COLUMNS} FROM findings WHERE finding_id = ?", (finding_id,))
        if db.has_table("findings") else []
    )  # fmt: skip
    if not rows:
        raise UnknownEntryError(f"no finding {finding_id} in {db.path}")
    return _finding(rows[0], tuple(_decisions(db, [finding_id])[finding_id]))


def probe_png(db: GalleryDatabase, finding_id: int) -> bytes | None:
    rows = (db.query("SELECT probe_png FROM findings WHERE finding_id = ?", (finding_id,))
            if db.has_table("findings") else [])  # fmt: skip
    return None if not rows or rows[0][0] is None else bytes(rows[0][0])


def record_decision(
    db: GalleryDatabase, finding_id: int, decision: Decision, user: str, note: str = ""
) -> DecisionRecord:
    """Add a decision (never replacing an earlier one); GalleryError for an unknown finding."""
    if len(note) > MAX_NOTE:
        raise InvalidInputError(f"a note has at most {MAX_NOTE} characters, not {len(note)}")
    if decision == Decision.NOTE and not note.strip():
        raise InvalidInputError("a note decision needs a note")
    found = get_finding(db, finding_id)
    at = _now()
    evidence = {"score": found.score, "title": found.title, "detail": found.detail,
                "updated_at": found.updated_at}  # fmt: skip
    with db.transaction() as conn:
        _ensure(db, conn)
        cur = conn.execute(
            "INSERT INTO decisions (finding_id, decision, user, note, at, evidence) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (finding_id, str(decision), user, note, at, json.dumps(evidence)),
        )
    return DecisionRecord(int(cur.lastrowid or 0), finding_id, decision, user, note, at,
                          evidence)  # fmt: skip


def scan_image(db: GalleryDatabase, scan_key: int) -> bytes | None:
    """A scan's stored frontal depth image (PNG), if one was kept."""
    if not db.has_table("scan_images"):
        return None
    rows = db.query("SELECT png FROM scan_images WHERE scan_key = ?", (scan_key,))
    return bytes(rows[0][0]) if rows else None


def save_scan_images(db: GalleryDatabase, pngs: dict[int, bytes]) -> None:
    """Keep enrolled scans' frontal depth images (PNG, by scan key) for review; one
    transaction; keys no longer in the gallery are skipped."""
    with db.transaction() as conn:
        _ensure(db, conn)
        for scan_key, png in pngs.items():
            if conn.execute("SELECT 1 FROM scans WHERE scan_key = ?", (scan_key,)).fetchone():
                conn.execute("INSERT OR REPLACE INTO scan_images VALUES (?, ?, ?)",
                             (scan_key, png, _now()))  # fmt: skip


def reconcile_finding_key(finding: dict[str, Any]) -> str:
    """The same error found again has the same key: its kind and the scans' series UIDs (scan
    keys for scans without one), sorted."""
    scans = sorted(s.get("series_uid") or f"scan:{s['scan_key']}" for s in finding["scans"])
    return f"{finding['kind']}:{'|'.join(scans)}"


def mark_gone(db: GalleryDatabase, origin: str, key_prefix: str, found: list[int]) -> int:
    """Findings of ``origin`` whose key starts with ``key_prefix`` that a run did not find
    again (not among the finding ids ``found``) marked gone; how many. By id, not by time: two
    runs within one millisecond (a fast machine) kept the first run's findings open."""
    with db.transaction() as conn:
        _ensure(db, conn)
        cur = conn.execute(
            "UPDATE findings SET gone_at = ? WHERE origin = ? AND key LIKE ? ESCAPE '\\' "
            "AND gone_at IS NULL AND finding_id NOT IN (SELECT value FROM json_each(?))",
            (_now(), origin, _like_prefix(key_prefix), json.dumps(found)),
        )
    return int(cur.rowcount)


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def save_reconcile_findings(db: GalleryDatabase, findings: list[dict[str, Any]]) -> list[int]:
    """A reconciliation's findings (``reconcile_report.findings_json``) kept for review; the
    earlier ones it no longer finds marked gone."""
    ids = []
    for f in findings:
        ids_text = " / ".join(f["patient_ids"]) or "no patient ID"
        suggested = f" -> {f['suggested_patient_id']}" if f.get("suggested_patient_id") else ""
        title = f"{f['kind']}: {ids_text}{suggested}"
        keys = [int(s["scan_key"]) for s in f["scans"]]
        ids.append(save_finding(db, reconcile_finding_key(f), ReviewKind(f["kind"]),
                                "reconcile", float(f["score"]), title, f, keys))  # fmt: skip
    mark_gone(db, "reconcile", "", ids)
    return ids


def save_audit_risks(
    db: GalleryDatabase, dataset: str, risks: list[dict[str, Any]], images: dict[str, bytes]
) -> list[int]:
    """An audit's shared scans that some attack ranks their own person first or in the first
    five (``audit_metrics.ProbeRisk.to_json``; ``risk`` re-identified or top-5), each with the
    person's gallery scans and the shared scan's frontal image (``images``, by scan id); those
    of an earlier audit of ``dataset`` no longer at risk marked gone."""
    owners = dict[str, list[int]]()
    for scan in db.scans():
        owners.setdefault(scan.patient_id, []).append(scan.scan_key)
    ids = []
    for r in risks:
        if r["risk"] not in ("re-identified", "top-5"):
            continue
        person = r.get("person") or ""
        found = sorted(a for a, v in r["attacks"].items() if v.get("rank") == r["worst_rank"])
        keys = owners.get(person, [])
        detail = {**r, "label": r["probe_id"], "dataset": dataset,
                  "check": f"{', '.join(found)} ranks this shared scan's person "
                           f"{person or '?'} at rank {r['worst_rank']}: deface it again or "
                           "withhold it",
                  "scans": [{"role": "reference", "patient_id": person, "scan_key": k}
                            for k in keys]}  # fmt: skip
        score = (r["attacks"].get("ctface") or {}).get("mate_score")
        title = f"re-identified: {r['probe_id']} ({dataset}) -> {person} ({r['risk']})"
        ids.append(save_finding(db, f"re-identified:{dataset}:{r['probe_id']}",
                                ReviewKind.REIDENTIFIED, "audit", score, title, detail, keys,
                                images.get(r["probe_id"])))  # fmt: skip
    mark_gone(db, "audit", f"re-identified:{dataset}:", ids)
    return ids
