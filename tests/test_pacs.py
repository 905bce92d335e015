"""`ctface pacs sync` against a real Orthanc with its DICOMweb plugin (Debian packages, started
by the fixture on a loopback port): phantom CT studies uploaded — an enrolled patient's rescan,
a rescan filed under another patient's ID, a stranger, a non-CT study, a study without a face —
then `sync --once`: one ctface SR per CT study with a face, the right decisions, the swapped ID
a finding, the failure recorded, a second run adding nothing, the originals unchanged; Orthanc
stopped mid-run: a clear error, and the next run completes without duplicates."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import Cli, make_cohort

pytest.importorskip("highdicom")
pytest.importorskip("dicomweb_client")
orthanc_server = pytest.importorskip("orthanc_server")

SR = "ctface identification"


def _rewrite(folder: Path, out: Path, **tags: Any) -> Path:
    """A copy of a DICOM series with some header values replaced."""
    import pydicom

    out.mkdir(parents=True)
    for f in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        for k, v in tags.items():
            setattr(ds, k, v)
        ds.save_as(out / f.name)
    return out


def _faceless(template: Path, out: Path) -> Path:
    """A series of the template's geometry holding a water cylinder: a body, no face."""
    import pydicom
    from pydicom.uid import generate_uid

    out.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    for f in sorted(template.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        rows, cols = int(ds.Rows), int(ds.Columns)
        yy, xx = np.mgrid[:rows, :cols]
        hu = np.where((yy - rows / 2) ** 2 + (xx - cols / 2) ** 2 < (rows / 3) ** 2, 20, -1000)
        raw = (hu - float(ds.RescaleIntercept)) / float(ds.RescaleSlope)
        ds.PixelData = raw.astype(ds.pixel_array.dtype).tobytes()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.PatientID, ds.PatientName = "S0009", "NOFACE^PATIENT"
        ds.save_as(out / f.name)
    return out


def _not_ct(template: Path, out: Path) -> Path:
    from pydicom.uid import generate_uid

    one = out / "one"
    shutil.copytree(template, one)
    for f in sorted(one.glob("*.dcm"))[1:]:
        f.unlink()
    return _rewrite(one, out / "mr", Modality="MR", StudyInstanceUID=generate_uid(),
                    SeriesInstanceUID=generate_uid())  # fmt: skip


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Three people (two scans each, DICOM), the gallery of the first two's first scans, and
    the studies to send: S0001's rescan, S0002's rescan filed as S0001, S0003 (a stranger), a
    non-CT study and a study without a face."""
    from ctface.api import Gallery

    root = tmp_path_factory.mktemp("pacs")
    cohort = root / "cohort"
    make_cohort(cohort, subjects=3, scans_min=2, scans_max=2, seed=23, dicom_fraction=1.0)

    def series(name: str) -> Path:
        return cohort / name[:5] / f"{name}_dicom"

    db = root / "gallery.db"
    with Gallery.open(db) as g:
        for pid in ("S0001", "S0002"):
            (out,) = g.enroll(series(f"{pid}_01"), pid)
            assert out.status == "enrolled"
    send = root / "send"
    studies = {
        "rescan": series("S0001_02"),
        "swapped": _rewrite(series("S0002_02"), send / "swapped", PatientID="S0001"),
        "stranger": series("S0003_02"),
        "not-ct": _not_ct(series("S0003_01"), send / "notct"),
        "no-face": _faceless(series("S0003_01"), send / "noface"),
    }
    return {"db": db, "studies": studies}


def _study_uid(folder: Path) -> str:
    import pydicom

    first = sorted(folder.glob("*.dcm"))[0]
    return str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Any]:
    orthanc_server.skip_without_orthanc()
    with orthanc_server.running_orthanc(tmp_path / "orthanc") as o:
        yield o


def _sync(cli: Cli, o: Any, db: Path, *extra: str) -> Any:
    return cli("pacs", "sync", "--dicomweb", o.dicomweb_url, "--orthanc", o.url, "--db",
               str(db), "--once", "--json", *extra)  # fmt: skip


def _srs(o: Any, study_uid: str) -> list[Any]:
    from dicomweb_client.api import DICOMwebClient

    web = DICOMwebClient(o.dicomweb_url)
    out = []
    for s in web.search_for_series(study_uid):
        if s.get("00080060", {}).get("Value") == ["SR"]:
            out += web.retrieve_series(study_uid, s["0020000E"]["Value"][0])
    return [ds for ds in out if ds.SeriesDescription == SR]


def _digests(o: Any) -> dict[str, str]:
    """Every instance Orthanc stores, by its SOP instance UID: the bytes' digest."""
    import requests

    out = {}
    for iid in requests.get(f"{o.url}/instances", timeout=30).json():
        tags = requests.get(f"{o.url}/instances/{iid}/simplified-tags", timeout=30).json()
        body = requests.get(f"{o.url}/instances/{iid}/file", timeout=30).content
        out[tags["SOPInstanceUID"]] = hashlib.sha256(body).hexdigest()
    return out


def test_sync_answers_each_ct_study_once(
    hospital: dict[str, Any], orthanc: Any, tmp_path: Path, cli: Cli
) -> None:
    from ctface.gallery.review import list_findings
    from ctface.gallery.store import GalleryDatabase
    from ctface.pacs.report import read_identification_sr

    db = tmp_path / "gallery.db"
    shutil.copy(hospital["db"], db)
    studies = hospital["studies"]
    for folder in studies.values():
        orthanc_server.upload(orthanc, sorted(folder.glob("*.dcm")))
    orthanc_server.wait_stable(orthanc, timeout=60)
    originals = _digests(orthanc)

    r = _sync(cli, orthanc, db, "--enroll-confirmed")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    by_study = {s["study_uid"]: s for s in out["studies"]}
    uid = {k: _study_uid(v) for k, v in studies.items()}
    assert set(by_study) == {uid["rescan"], uid["swapped"], uid["stranger"]}
    assert by_study[uid["rescan"]]["decision"]["patient_id"] == "S0001"
    assert not by_study[uid["rescan"]]["mismatch"]
    assert by_study[uid["swapped"]]["decision"]["patient_id"] == "S0002"
    assert by_study[uid["swapped"]]["mismatch"]
    assert by_study[uid["stranger"]]["decision"]["patient_id"] is None
    assert not by_study[uid["stranger"]]["mismatch"]
    (failed,) = out["failed"]
    assert failed["study_uid"] == uid["no-face"] and failed["code"] == "no-face"

    for name in ("rescan", "swapped", "stranger"):
        (sr,) = _srs(orthanc, uid[name])
        read = read_identification_sr(sr)
        assert read["patient_id"] == by_study[uid[name]]["decision"]["patient_id"]
        assert sr.PatientID == ("S0001" if name != "stranger" else "S0003")
    for name in ("not-ct", "no-face"):
        assert _srs(orthanc, uid[name]) == []
    with GalleryDatabase(db) as g:
        found, _ = list_findings(g, kind=None)
        assert [f.kind for f in found] == ["pacs-mismatch"]
        assert found[0].detail["header_patient_id"] == "S0001"
        assert any(f["code"] == "no-face" for f in g.failures())
        # --enroll-confirmed: the confirmed rescan and the new patient, not the swapped study
        assert dict(g.patients()) == {"S0001": 2, "S0002": 1, "S0003": 1}

    again = _sync(cli, orthanc, db)  # idempotent: nothing new
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"studies": [], "failed": []}
    now = _digests(orthanc)
    assert {k: v for k, v in now.items() if k in originals} == originals  # untouched
    assert len(now) == len(originals) + 3 + 1  # three SRs, one KOS (the swapped study)

    # without the change feed (any DICOMweb server): studies found by QIDO-RS; a new gallery
    # answers none twice (their SRs are found) and records the faceless study's failure
    fresh = tmp_path / "fresh.db"
    shutil.copy(hospital["db"], fresh)
    qido = cli("pacs", "sync", "--dicomweb", orthanc.dicomweb_url, "--db", str(fresh), "--once",
               "--json")  # fmt: skip
    assert qido.returncode == 0, qido.stderr
    out = json.loads(qido.stdout)
    assert out["studies"] == [] and [f["study_uid"] for f in out["failed"]] == [uid["no-face"]]
    assert len(_digests(orthanc)) == len(now)


@pytest.mark.slow
def test_orthanc_stopped_mid_run(hospital: dict[str, Any], orthanc: Any, tmp_path: Path) -> None:
    """Orthanc killed while sync works: a one-line error (exit 8); after a restart the next run
    completes, and every CT study with a face has exactly one SR."""
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    db = tmp_path / "gallery.db"
    shutil.copy(hospital["db"], db)
    studies = {k: v for k, v in hospital["studies"].items() if k != "not-ct"}
    for folder in studies.values():
        orthanc_server.upload(orthanc, sorted(folder.glob("*.dcm")))
    orthanc_server.wait_stable(orthanc, timeout=60)
    cmd = [sys.executable, "-m", "ctface", "pacs", "sync", "--dicomweb", orthanc.dicomweb_url,
           "--orthanc", orthanc.url, "--db", str(db), "--once"]  # fmt: skip
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def answered() -> int:
        try:
            with sqlite3.connect(db) as c:
                return int(c.execute("SELECT COUNT(*) FROM pacs_studies").fetchone()[0])
        except sqlite3.OperationalError:  # no table yet
            return 0

    deadline = time.monotonic() + 120
    while answered() < 1:
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "no study answered in 120 s"
        time.sleep(0.1)
    orthanc.stop(kill=True)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 8, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("ctface: error:")
    assert answered() < 4  # it stopped before the end

    orthanc.restart()  # the next run polls (no --once) until SIGTERM, which it obeys cleanly
    poll = [c for c in cmd if c != "--once"] + ["--interval", "1"]
    again = subprocess.Popen(poll, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while answered() < 4:
        assert again.poll() is None, again.communicate()
        assert time.monotonic() < deadline, "the second run did not finish in 300 s"
        time.sleep(0.2)
    again.send_signal(signal.SIGTERM)
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    for name in ("rescan", "swapped", "stranger"):
        assert len(_srs(orthanc, _study_uid(studies[name]))) == 1, name
    with sqlite3.connect(db) as c:
        rows = dict(c.execute("SELECT study_uid, status FROM pacs_studies").fetchall())
    assert sorted(rows.values()) == ["done", "done", "done", "failed"] or sorted(
        rows.values()) == ["answered", "done", "done", "failed"]  # fmt: skip


def test_sync_with_credentials(tmp_path: Path, cli: Cli, hospital: dict[str, Any]) -> None:
    """An Orthanc that asks for credentials: refused without them (exit 8, one line), served
    with --auth (nothing to do yet: exit 0); a bad --auth is a usage error (4)."""
    orthanc_server.skip_without_orthanc()
    db = tmp_path / "gallery.db"
    shutil.copy(hospital["db"], db)
    with orthanc_server.running_orthanc(tmp_path / "o", user="ctface", password="s3cret") as o:
        base = ("pacs", "sync", "--dicomweb", o.dicomweb_url, "--orthanc", o.url, "--db",
                str(db), "--once", "--json")  # fmt: skip
        refused = cli(*base)
        assert refused.returncode == 8 and "401" in refused.stderr, refused.stderr
        ok = cli(*base, "--auth", "ctface:s3cret")
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout) == {"studies": [], "failed": []}
        assert cli(*base, "--auth", "no-colon").returncode == 4


class _Reply:
    """A STOW-RS answer: what was stored, what failed."""

    def __init__(self, stored: list[str], failed: int) -> None:
        from pydicom import Dataset

        self.ReferencedSOPSequence = [Dataset() for _ in stored]
        for ds, uid in zip(self.ReferencedSOPSequence, stored, strict=True):
            ds.ReferencedSOPInstanceUID = uid
        self.FailedSOPSequence = [Dataset() for _ in range(failed)]


def test_stow_answers_and_http_errors_are_told_apart() -> None:
    """A 200/202 that lists a failure is a refusal; 4xx refuses the study (recorded, the loop
    goes on), no answer / 5xx / 429 stop the run (tried again next time)."""
    import requests
    from pydicom import Dataset

    from ctface.errors import RemoteError
    from ctface.pacs.sync import PacsSettings, _store, remote

    sr = Dataset()
    sr.SOPInstanceUID = "1.2.3"

    class Web:
        def __init__(self, reply: Any) -> None:
            self.reply = reply

        def store_instances(self, datasets: list[Any], study: str) -> Any:
            return self.reply

    settings = PacsSettings("http://pacs/dicom-web")
    _store(Web(_Reply(["1.2.3"], 0)), settings, "9", [sr])  # stored: no error
    for reply in (_Reply(["1.2.3"], 1), _Reply([], 0)):
        with pytest.raises(RemoteError) as e:
            _store(Web(reply), settings, "9", [sr])
        assert not e.value.transient
    for status, transient in ((409, False), (400, False), (503, True), (429, True)):
        response = requests.Response()
        response.status_code = status
        error = requests.HTTPError(f"{status}", response=response)
        assert remote("storing", "http://pacs", error).transient is transient
    assert remote("storing", "http://pacs", requests.ConnectionError("refused")).transient
