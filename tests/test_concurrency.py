"""Two writers and a reader on one gallery (issue 23): two `ctface enroll` processes and a
`ctface identify` started together on one database file, repeated; all complete, every scan is
stored once, and a reader checking snapshots all the while never sees a half-written
enrollment (its template count is the rows of its read, every patient has a scan, the revision
counts the scans). The gallery is in WAL mode; an older rollback-journal gallery is switched on
its first opening, and a gallery in a folder that cannot be written still opens for reading."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ctface.gallery import GalleryDatabase, ScanRecord

CLI = [sys.executable, "-m", "ctface"]

# a reader in its own process: snapshots of the gallery until the file STOP appears
READER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ctface.gallery import GalleryDatabase
    db, stop = Path(sys.argv[1]), Path(sys.argv[2])
    checked, bad = 0, []
    with GalleryDatabase(db) as g:
        while not stop.exists() or checked == 0:
            with g.snapshot():
                t = g.templates()
                (rows,) = g.query("SELECT COUNT(*) FROM scans")[0]
                lonely = g.query("SELECT COUNT(*) FROM patients WHERE patient_id NOT IN "
                                 "(SELECT patient_id FROM scans)")[0][0]
                revision = g.revision
            checked += 1
            if len(t.patient_ids) != rows or t.vectors.shape[0] != rows:
                bad.append(f"{len(t.patient_ids)} templates, {rows} rows")
            if lonely:
                bad.append(f"{lonely} patients without a scan")
            if revision != rows:
                bad.append(f"revision {revision}, {rows} scans")
            time.sleep(0.01)
    print(checked, len(bad), "; ".join(bad[:5]))
""")


def _seed(db: Path) -> None:
    """A gallery of one synthetic template of the shipped model (identify needs someone)."""
    from ctface.api import default_model

    v = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    rec = ScanRecord("seed-digest", "seed", None, None, "", {}, {})
    with GalleryDatabase(db, create=True) as g:
        g.add_scan("SEED", rec, v / np.linalg.norm(v), default_model().version)


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def test_two_enrollments_and_an_identify_at_once(people: Path, tmp_path: Path) -> None:
    """Three processes on one gallery, three times: two patients enrolled side by side, or
    the same scan by both writers (stored once: the unique digest decides), while `identify`
    and a snapshot reader run."""
    t0 = time.monotonic()
    scans = {
        p: sorted(str(f) for f in (people / p).glob("*.nii.gz"))[:1] for p in ("S0001", "S0002")
    }
    probe = str(people / "S0001" / "S0001_02.nii.gz")
    rounds = [("S0001", "S0002"), ("S0001", "S0001"), ("S0002", "S0001")]
    for n, (a, b) in enumerate(rounds):
        db = tmp_path / f"g{n}.db"
        _seed(db)
        stop = tmp_path / f"stop{n}"
        reader = subprocess.Popen([sys.executable, "-c", READER, str(db), str(stop)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)  # fmt: skip
        base = ("--db", str(db), "--json")
        procs = [_start("enroll", *scans[a], "--patient-id", a, *base),
                 _start("enroll", *scans[b], "--patient-id", b, *base),
                 _start("identify", probe, "--top-k", "3", *base)]  # fmt: skip
        done = [p.communicate(timeout=300) for p in procs]
        stop.touch()
        out, err = reader.communicate(timeout=60)
        for p, (_, e) in zip(procs, done, strict=True):
            assert p.returncode == 0, e
        e1, e2 = (json.loads(o) for o, _ in done[:2])
        enrolled = e1["enrolled"] + e2["enrolled"]
        if a == b:  # the same scan twice: stored once, the other writer told so
            assert enrolled == 1 and e1["already-enrolled"] + e2["already-enrolled"] == 1
        else:
            assert enrolled == 2
        found = json.loads(done[2][0])
        assert found["gallery"]["scans"] >= 1 and found["candidates"]
        assert reader.returncode == 0, err
        checked, bad, why = out.split(" ", 2)
        assert int(checked) > 0 and int(bad) == 0, why
        with sqlite3.connect(db) as c:
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            digests = [r[0] for r in c.execute("SELECT digest FROM scans")]
        assert len(digests) == len(set(digests)) == 1 + len({*scans[a], *scans[b]})
    assert time.monotonic() - t0 < 240


def test_rollback_journal_galleries_switch_to_wal(tmp_path: Path) -> None:
    """A gallery made by an older ctface (rollback journal) opens as before and is in WAL mode
    from then on; every opening after it finds WAL (the mode is kept in the file)."""
    db = tmp_path / "old.db"
    with GalleryDatabase(db, create=True) as g:
        g.add_scan("A", ScanRecord("d1", "s", None, None, "", {}, {}), np.ones(4) / 2, "v1")
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA journal_mode = DELETE")  # as older versions left it
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    with GalleryDatabase(db) as g:
        assert g.patients() == [("A", 1)]
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_gallery_in_a_read_only_folder_opens_for_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """WAL needs its -shm file beside the database: in a folder that cannot be written (as on
    read-only media) the gallery is opened read-only, reads work, a write is a one-line
    error. (Root writes into any folder: there the folder is reported read-only to ctface.)"""
    from ctface.errors import OutputError

    folder = tmp_path / "media"
    folder.mkdir()
    db = folder / "g.db"
    with GalleryDatabase(db, create=True) as g:
        g.add_scan("A", ScanRecord("d1", "s", None, None, "", {}, {}), np.ones(4) / 2, "v1")
    if os.geteuid() == 0:
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if mode & os.W_OK
                            else real(p, mode, **kw))  # fmt: skip
    folder.chmod(0o555)
    try:
        with GalleryDatabase(db) as g:
            assert g.read_only and g.patients() == [("A", 1)]
            assert len(g.templates().patient_ids) == 1 and g.stats()["integrity"] == "ok"
            with pytest.raises(OutputError, match="cannot write the gallery"):
                g.add_failure("d2", "s", "no-face", "x")
    finally:
        folder.chmod(0o755)


CREATE = textwrap.dedent("""
    import sys
    import numpy as np
    from pathlib import Path
    from ctface.gallery import GalleryDatabase, ScanRecord
    n = int(sys.argv[2])
    with GalleryDatabase(Path(sys.argv[1]), create=True) as g:
        rec = ScanRecord(f"digest{n}", f"scan{n}", None, None, "", {}, {})
        g.add_scan(f"P{n}", rec, np.ones(4, np.float32) / 2, "v1")
""")


def test_writers_creating_one_new_gallery_at_once(tmp_path: Path) -> None:
    """Three processes that create the same new gallery at the same moment: one lays out the
    schema, the others find it; every scan is stored."""
    for n in range(4):
        db = tmp_path / f"new{n}.db"
        procs = [subprocess.Popen([sys.executable, "-c", CREATE, str(db), str(k)],
                                  stderr=subprocess.PIPE, text=True) for k in range(3)]  # fmt: skip
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        with GalleryDatabase(db) as g:
            assert g.patients() == [("P0", 1), ("P1", 1), ("P2", 1)] and g.revision == 3
