"""The gallery database: patients, their scans and one face template per scan (SQLite).

No image or pixel data is stored: per scan the content digest of its files, the DICOM series
and study UIDs, the source path, acquisition metadata without dates or names
(``records.ACQUISITION_KEYS``), quality flags, the model version and the template (float32).
Every write is one SQLite transaction (synchronous FULL): a crash, ``kill -9`` or Ctrl-C leaves
the database as it was before the interrupted scan. The file is in write-ahead-log mode (WAL,
persistent; a gallery made by an older ctface in rollback-journal mode is switched by its first
opening where it can be written): readers see one committed state and never wait for a writer,
writers wait for each other (``BUSY_TIMEOUT_S``; also where SQLite itself does not wait). WAL
keeps ``-wal`` and ``-shm`` files beside the database while it is open; a gallery on a folder
that cannot be written (read-only media) is opened for reading only (``immutable`` when it has
no log to merge) and refuses writes with a one-line error. All templates of a gallery come from
one model version (``meta.model_version``, set by the first enrollment); another model's
templates are refused. A site calibration (``ctface calibrate --gallery``) is kept in the table
``calibration``, made when the first one is stored: galleries without it open as before (and
older ctface versions, which never read it, open galleries with it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ctface.errors import GalleryError, MissingDataError, OutputError, UnknownEntryError
from ctface.files import save_npz_atomic
from ctface.gallery.calibration import Calibration
from ctface.gallery.records import ScanRecord

T = TypeVar("T")
SCHEMA_VERSION = "1"
BUSY_TIMEOUT_S = 60.0  # how long a writer waits for another (enrollments, the service, a CLI)
KEYS_PER_QUERY = 30_000  # scan keys per query (SQLite builds allow 32,766 variables or more)
CACHE_MIN = 50_000  # templates from which `templates(cache=True)` keeps a file beside the db
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE patients (
    patient_id TEXT PRIMARY KEY, created_at TEXT NOT NULL);
CREATE TABLE scans (
    scan_key INTEGER PRIMARY KEY AUTOINCREMENT,
    patient_id TEXT NOT NULL REFERENCES patients(patient_id) ON DELETE CASCADE,
    digest TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL, series_uid TEXT, study_uid TEXT, dicom_patient_id TEXT NOT NULL,
    acquisition TEXT NOT NULL, quality TEXT NOT NULL,
    model_version TEXT NOT NULL, template BLOB NOT NULL, enrolled_at TEXT NOT NULL);
CREATE INDEX scans_patient ON scans(patient_id);
CREATE TABLE failures (
    digest TEXT PRIMARY KEY, source TEXT NOT NULL, code TEXT NOT NULL, reason TEXT NOT NULL,
    at TEXT NOT NULL);
"""

CALIBRATION_TABLE = """
CREATE TABLE IF NOT EXISTS calibration (
    id INTEGER PRIMARY KEY CHECK (id = 1), model_version TEXT NOT NULL, provenance TEXT NOT NULL,
    genuine BLOB NOT NULL, impostor BLOB NOT NULL, created_at TEXT NOT NULL)
"""


def default_path() -> Path:
    """``$CTFACE_GALLERY``, else ``$XDG_DATA_HOME/ctface/gallery.db`` (~/.local/share)."""
    if os.environ.get("CTFACE_GALLERY"):
        return Path(os.environ["CTFACE_GALLERY"])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ctface" / "gallery.db"


def missing_gallery(path: Path) -> MissingDataError:
    """The error for a gallery file that does not exist yet, saying how to make one."""
    return MissingDataError(
        f"no gallery at {path}: enroll scans first (`ctface enroll ... --db {path}`)"
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class StoredScan:
    scan_key: int
    patient_id: str
    record: ScanRecord
    model_version: str
    enrolled_at: str

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "scan_key": self.scan_key, "patient_id": self.patient_id, "digest": r.digest,
            "source": r.source, "series_uid": r.series_uid, "study_uid": r.study_uid,
            "dicom_patient_id": r.dicom_patient_id, "acquisition": r.acquisition,
            "quality": r.quality, "model_version": self.model_version,
            "enrolled_at": self.enrolled_at,
        }  # fmt: skip


@dataclass(frozen=True)
class GalleryTemplates:
    """All templates of a gallery, row-aligned: what identification searches."""

    vectors: np.ndarray  # (N, D) float32 unit vectors
    patient_ids: list[str]
    scan_keys: np.ndarray  # (N,) int64
    revision: str  # changes with every change of the gallery (index caches key on it)


class GalleryDatabase:
    """One gallery database file. Use as a context manager, or call ``close``."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        self.path = path
        if not path.exists():
            if not create:
                raise missing_gallery(path)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OutputError(f"cannot create the gallery folder {path.parent}: {e}") from e
        # a folder that cannot be written (read-only media): WAL's -shm cannot be made there
        self.read_only = path.exists() and not (
            os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
        )
        try:
            self._db = self._connect(path)
        except sqlite3.DatabaseError as e:
            raise GalleryError(f"{path} cannot be opened as a gallery database ({e})") from e
        try:
            self._open(path)
        except sqlite3.DatabaseError as e:  # past the header: a damaged page
            self._db.close()
            raise GalleryError(f"{path} is a damaged gallery database ({e}): restore it "
                               "from a backup") from e  # fmt: skip
        except BaseException:
            self._db.close()  # a refused file leaves no connection behind
            raise

    def _connect(self, path: Path) -> sqlite3.Connection:
        """A connection that waits up to ``BUSY_TIMEOUT_S`` for another writer; on a folder
        that cannot be written, a read-only one (``immutable`` when a WAL-mode file cannot be
        read otherwise: no -shm can be made, and no log is waiting to be merged)."""
        if not self.read_only:
            return sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        uri = f"file:{urllib.parse.quote(str(path.resolve()))}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_S)
        try:
            conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
        for log in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")):
            if log.exists() and log.stat().st_size > 0:  # immutable would read around it
                raise GalleryError(
                    f"{path} has changes in {log.name} that cannot be merged in a folder that "
                    "cannot be written: open it once where it can be written (or copy it with "
                    f"its -{log.name.rsplit('-', 1)[1]} file to such a folder)"
                )
        return sqlite3.connect(f"{uri}&immutable=1", uri=True, isolation_level=None)

    def _open(self, path: Path) -> None:
        """Check the file is a gallery of this schema; lay out a new one (two processes that
        create it at once: the second finds the first's); switch it to WAL."""
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA synchronous = FULL")
            tables = self._tables()
        except sqlite3.DatabaseError as e:
            raise GalleryError(f"{path} is not a ctface gallery database ({e})") from e
        if tables and "meta" not in tables:
            raise GalleryError(f"{path} is an SQLite file but not a ctface gallery")
        if not self.read_only:
            self._wal()
        if not tables:
            with self.transaction():
                if not self._tables():  # not made meanwhile by another process
                    for statement in SCHEMA.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._set("schema", SCHEMA_VERSION)
                    self._set("revision", "0")
                    self._set("created_at", _now())
        if self._get("schema") != SCHEMA_VERSION:
            raise GalleryError(
                f"{path} has gallery schema {self._get('schema')}, this ctface reads "
                f"{SCHEMA_VERSION}"
            )

    def _tables(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}

    def _wal(self) -> None:
        """Write-ahead-log mode (persistent: once set, every later opening has it). A file
        that cannot be switched (another process holds it in rollback mode) stays as it is;
        the next opening tries again."""
        try:
            mode = self._retry(lambda: self._db.execute("PRAGMA journal_mode").fetchone()[0])
            if str(mode).lower() != "wal":
                self._retry(lambda: self._db.execute("PRAGMA journal_mode = WAL").fetchone())
        except sqlite3.OperationalError:
            pass  # a read-only file in a writable folder, or held: rollback mode, still safe

    def _retry(self, step: Callable[[], T]) -> T:
        """``step()``, again while SQLite answers busy or locked where it does not wait by
        itself (a read snapshot's upgrade, WAL recovery or a journal-mode change by another
        connection), up to ``BUSY_TIMEOUT_S``."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        pause = 0.005
        while True:
            try:
                return step()
            except sqlite3.OperationalError as e:
                text = str(e).lower()
                if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.2)

    def __enter__(self) -> GalleryDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes inside commit together, or not at all (exception, crash, kill). SQLite
        failures (locked, read-only, disk full) become one-line errors."""
        try:
            self._retry(lambda: self._db.execute("BEGIN IMMEDIATE"))
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as e:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise OutputError(f"cannot write the gallery {self.path}: {e}") from e

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """The reads inside see one committed state of the gallery (one read transaction:
        never a scan half written, writers go on meanwhile in WAL mode); inside a transaction
        already, that one."""
        if self._db.in_transaction:
            yield
            return
        self._retry(lambda: self._db.execute("BEGIN"))
        try:
            yield
        finally:
            if self._db.in_transaction:
                self._db.execute("COMMIT")

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read-only statement (the review tables' reads, ``gallery.review``)."""
        return self._db.execute(sql, args).fetchall()

    def has_table(self, name: str) -> bool:
        """Whether the table exists (tables added after schema 1 are made by their first
        write, so a gallery without them reads as having none of their rows)."""
        rows = self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                (name,))  # fmt: skip
        return rows.fetchone() is not None

    def setting(self, key: str) -> str | None:
        """A value kept under ``key`` by a later layer (``pacs.*``: the PACS loop's place in
        its server's change feed)."""
        return self._get(f"x.{key}")

    def set_setting(self, key: str, value: str) -> None:
        with self.transaction() as conn:
            self.put_settings(conn, {key: value})

    def put_settings(self, conn: sqlite3.Connection, values: dict[str, str]) -> None:
        """Set ``values`` inside the caller's transaction (``conn`` from ``transaction()``): a
        later layer's state written together with its own rows."""
        for key, value in values.items():
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"x.{key}", value))

    def delete_settings(self, conn: sqlite3.Connection, keys: list[str]) -> None:
        """Remove values kept with ``put_settings``, inside the caller's transaction."""
        for key in keys:
            conn.execute("DELETE FROM meta WHERE key = ?", (f"x.{key}",))

    def _get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def _bump(self) -> None:
        self._set("revision", str(int(self._get("revision") or 0) + 1))
        self._set("stamp", secrets.token_hex(8))  # names the caches of this exact content

    @property
    def model_version(self) -> str | None:
        """The model every template was made with (None while the gallery is empty)."""
        return self._get("model_version")

    @property
    def revision(self) -> int:
        return int(self._get("revision") or 0)

    def check_model(self, version: str) -> None:
        """GalleryError unless the gallery's templates come from model ``version``."""
        own = self.model_version
        if own is not None and own != version:
            raise GalleryError(
                f"the gallery {self.path} holds templates of model {own}; this model is "
                f"{version}. Use the model it was enrolled with (--weights), or re-enroll "
                "its scans into a new gallery"
            )

    # -- enrollment ------------------------------------------------------------------------
    def find_digest(self, digest: str) -> str | None:
        """The patient a scan with this content digest is enrolled under, if any."""
        row = self._db.execute("SELECT patient_id FROM scans WHERE digest = ?", (digest,))
        hit = row.fetchone()
        return None if hit is None else str(hit[0])

    def known_series(self, retry_failed: bool = False) -> set[str]:
        """Series UIDs enrolled, and (unless ``retry_failed``) those that failed before (from
        the failure's source label ``<patient>/<series UID>``): an archive rerun skips them
        without reading their files."""
        known = set(self.series_patients())
        if not retry_failed:
            known |= {str(r[0]).rsplit("/", 1)[-1] for r in self._db.execute(
                "SELECT source FROM failures")}  # fmt: skip
        return known

    def series_patients(self) -> dict[str, str]:
        """Enrolled series UID -> the patient ID it is filed under."""
        rows = self._db.execute(
            "SELECT series_uid, patient_id FROM scans WHERE series_uid IS NOT NULL"
        )
        return {str(a): str(b) for a, b in rows}

    def refile(self, moves: dict[str, tuple[str, str]]) -> int:
        """File the scans of the given series UIDs under new patient IDs, with the PatientID
        tag as now read: ``{series UID: (patient ID, tag)}`` (an archive whose PatientIDs were
        corrected); patients left without scans are removed. One transaction; returns the
        number of scans moved."""
        moved = 0
        with self.transaction() as db:
            for series_uid, (pid, tag) in moves.items():
                db.execute("INSERT OR IGNORE INTO patients VALUES (?, ?)", (pid, _now()))
                cur = db.execute(
                    "UPDATE scans SET patient_id = ?, dicom_patient_id = ? "
                    "WHERE series_uid = ? AND patient_id != ?",
                    (pid, tag, series_uid, pid),
                )
                moved += cur.rowcount
            db.execute("DELETE FROM patients WHERE patient_id NOT IN "
                       "(SELECT DISTINCT patient_id FROM scans)")  # fmt: skip
            if moved:
                self._bump()
        return moved

    def failure(self, digest: str) -> tuple[str, str] | None:
        row = self._db.execute("SELECT code, reason FROM failures WHERE digest = ?", (digest,))
        hit = row.fetchone()
        return None if hit is None else (str(hit[0]), str(hit[1]))

    def add_scan(
        self, patient_id: str, record: ScanRecord, template: np.ndarray, model_version: str
    ) -> int:
        """Enroll one scan under ``patient_id`` (created if new); one transaction."""
        if not patient_id.strip():
            raise GalleryError("the patient ID is empty")
        vec = np.asarray(template, dtype="<f4")
        with self.transaction() as db:
            self.check_model(model_version)
            if self.model_version is None:
                self._set("model_version", model_version)
                self._set("dimension", str(vec.size))
            elif int(self._get("dimension") or vec.size) != vec.size:
                raise GalleryError(
                    f"template has {vec.size} numbers, the gallery's have {self._get('dimension')}"
                )
            db.execute("INSERT OR IGNORE INTO patients VALUES (?, ?)", (patient_id, _now()))
            cur = db.execute(
                "INSERT INTO scans (patient_id, digest, source, series_uid, study_uid, "
                "dicom_patient_id, acquisition, quality, model_version, template, enrolled_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (patient_id, record.digest, record.source, record.series_uid, record.study_uid,
                 record.dicom_patient_id, json.dumps(record.acquisition),
                 json.dumps(record.quality), model_version, vec.tobytes(), _now()),
            )  # fmt: skip
            db.execute("DELETE FROM failures WHERE digest = ?", (record.digest,))
            self._bump()
        return int(cur.lastrowid or 0)

    def add_failure(self, digest: str, source: str, code: str, reason: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?)",
                (digest, source, code, reason, _now()),
            )

    # -- reading ---------------------------------------------------------------------------
    def templates(self, cache: bool = False) -> GalleryTemplates:
        """All templates, by scan key. ``cache``: also keep them in a ``.npz`` beside the
        database, named by the gallery revision, and read that when it is current (reading a
        million rows from SQLite takes seconds, the cache a fraction of one)."""
        with self.snapshot():  # one read snapshot: the stamp and the rows agree
            stamp = f"{self.revision}-{self._get('stamp') or 'new'}"
            cached = self.path.with_name(f"{self.path.name}.r{stamp}.npz")
            if cache and cached.is_file():
                with np.load(cached) as z:
                    ids = z["patient_ids"].tolist()
                    return GalleryTemplates(z["vectors"], ids, z["scan_keys"], stamp)
            rows = self._db.execute(
                "SELECT scan_key, patient_id, template FROM scans ORDER BY scan_key"
            ).fetchall()
            dim = int(self._get("dimension") or 0)
        vec = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), dim)
        keys = np.array([r[0] for r in rows], dtype=np.int64)
        out = GalleryTemplates(vec.astype(np.float32), [r[1] for r in rows], keys, stamp)
        if cache and len(rows) >= CACHE_MIN:
            # the temporary name is per process (two may write the same cache) and hidden from
            # the glob below; a read-only folder: read the rows next time
            with contextlib.suppress(OSError, OutputError):
                for old in self.path.parent.glob(f"{self.path.name}.r*.npz"):
                    old.unlink(missing_ok=True)
                save_npz_atomic(cached, vectors=out.vectors,
                                patient_ids=np.array(out.patient_ids), scan_keys=keys)  # fmt: skip
        return out

    def scans(
        self, patient_id: str | None = None, scan_keys: list[int] | None = None
    ) -> list[StoredScan]:
        """Stored scans (all, one patient's, or the given keys), by patient and key."""
        if scan_keys is not None and len(scan_keys) > KEYS_PER_QUERY:  # SQLite's variable limit
            chunks = [scan_keys[i : i + KEYS_PER_QUERY]
                      for i in range(0, len(scan_keys), KEYS_PER_QUERY)]  # fmt: skip
            with self.snapshot():
                found = [s for chunk in chunks for s in self.scans(scan_keys=chunk)]
            return sorted(found, key=lambda s: (s.patient_id, s.scan_key))
        sql = (
            "SELECT scan_key, patient_id, digest, source, series_uid, study_uid, "
            "dicom_patient_id, acquisition, quality, model_version, enrolled_at FROM scans"
        )
        args: tuple[Any, ...] = ()
        if patient_id is not None:
            sql, args = sql + " WHERE patient_id = ?", (patient_id,)
        elif scan_keys is not None:
            marks = ", ".join("?" * len(scan_keys))
            sql, args = sql + f" WHERE scan_key IN ({marks})", tuple(scan_keys)
        out = []
        for r in self._db.execute(sql + " ORDER BY patient_id, scan_key", args):
            rec = ScanRecord(r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), json.loads(r[8]))
            out.append(StoredScan(int(r[0]), str(r[1]), rec, str(r[9]), str(r[10])))
        return out

    def is_empty(self) -> bool:
        """No patient enrolled (one query, whatever the gallery's size)."""
        return not self._db.execute("SELECT EXISTS(SELECT 1 FROM patients)").fetchone()[0]

    def patients(self) -> list[tuple[str, int]]:
        """(patient ID, number of scans), sorted by ID."""
        rows = self._db.execute(
            "SELECT p.patient_id, COUNT(s.scan_key) FROM patients p LEFT JOIN scans s "
            "ON s.patient_id = p.patient_id GROUP BY p.patient_id ORDER BY p.patient_id"
        )
        return [(str(a), int(b)) for a, b in rows]

    def failures(self) -> list[dict[str, str]]:
        rows = self._db.execute("SELECT digest, source, code, reason, at FROM failures")
        return [dict(zip(("digest", "source", "code", "reason", "at"), r, strict=True))
                for r in rows]  # fmt: skip

    # -- removal ---------------------------------------------------------------------------
    def remove_patient(self, patient_id: str) -> int:
        """Remove a patient and all their scans; returns the number of scans removed."""
        with self.transaction() as db:
            n = db.execute("SELECT COUNT(*) FROM scans WHERE patient_id = ?", (patient_id,))
            count = int(n.fetchone()[0])
            if db.execute("DELETE FROM patients WHERE patient_id = ?", (patient_id,)).rowcount == 0:
                raise UnknownEntryError(f"no patient {patient_id!r} in {self.path}")
            self._bump()
        return count

    def remove_scan(self, scan_key: int) -> str:
        """Remove one scan (and its patient when it was the last); returns the patient ID."""
        with self.transaction() as db:
            row = db.execute("SELECT patient_id FROM scans WHERE scan_key = ?", (scan_key,))
            hit = row.fetchone()
            if hit is None:
                raise UnknownEntryError(f"no scan {scan_key} in {self.path}")
            db.execute("DELETE FROM scans WHERE scan_key = ?", (scan_key,))
            db.execute(
                "DELETE FROM patients WHERE patient_id = ? AND NOT EXISTS "
                "(SELECT 1 FROM scans WHERE patient_id = ?)",
                (hit[0], hit[0]),
            )
            self._bump()
        return str(hit[0])

    # -- site calibration ------------------------------------------------------------------
    def save_calibration(self, cal: Calibration) -> None:
        """Store ``cal`` (scores as float64, provenance as JSON), replacing an earlier one."""
        with self.transaction() as db:
            db.execute(CALIBRATION_TABLE)
            db.execute(
                "INSERT OR REPLACE INTO calibration VALUES (1, ?, ?, ?, ?, ?)",
                (cal.model_version, json.dumps(cal.provenance),
                 np.asarray(cal.genuine, "<f8").tobytes(),
                 np.asarray(cal.impostor, "<f8").tobytes(), _now()),
            )  # fmt: skip

    def calibration(self) -> Calibration | None:
        """The stored site calibration; None when there is none (or no table: an older
        gallery)."""
        if not self.has_table("calibration"):
            return None
        row = self._db.execute(
            "SELECT model_version, provenance, genuine, impostor FROM calibration"
        ).fetchone()
        if row is None:
            return None
        gen, imp = (np.frombuffer(b, "<f8").astype(np.float64) for b in row[2:])
        return Calibration(str(row[0]), gen, imp, json.loads(row[1]), "gallery")

    def stats(self) -> dict[str, Any]:
        with self.snapshot():
            return self._stats()

    def _stats(self) -> dict[str, Any]:
        counts = [n for _, n in self.patients()]
        (failed,) = self._db.execute("SELECT COUNT(*) FROM failures").fetchone()
        ok = self._db.execute("PRAGMA integrity_check").fetchone()[0]
        return {
            "path": str(self.path),
            "patients": len(counts),
            "scans": int(sum(counts)),
            "scans_per_patient": {"min": min(counts, default=0), "max": max(counts, default=0)},
            "failures_to_acquire": int(failed),
            "model_version": self.model_version,
            "revision": self.revision,
            "created_at": self._get("created_at"),
            "calibration": cal.label if (cal := self.calibration()) else None,
            "size_bytes": self.path.stat().st_size,
            "integrity": ok,
        }

    def export(self, include_templates: bool = True) -> dict[str, Any]:
        """Everything in the gallery as JSON-ready data (``ctface gallery export``): format
        ``EXPORT_FORMAT``, ``stats()``, patient IDs, every scan (``StoredScan.to_json``) with
        its template as numbers rounded to 7 places unless ``include_templates`` is False,
        and the failures to acquire."""
        with self.snapshot():  # one state: the rows, templates and counts agree
            t = self.templates()
            vectors = dict(zip(t.scan_keys.tolist(), t.vectors.tolist(), strict=True))
            scans = []
            for s in self.scans():
                row = s.to_json()
                if include_templates:
                    row["template"] = [round(v, 7) for v in vectors[s.scan_key]]
                scans.append(row)
            return {"format": EXPORT_FORMAT, "stats": self.stats(),
                    "patients": [p for p, _ in self.patients()], "scans": scans,
                    "failures_to_acquire": self.failures()}  # fmt: skip


EXPORT_FORMAT = "ctface-gallery-export-1"  # what `GalleryDatabase.export` writes
