"""tests/orthanc_server.py: a real Orthanc with its DICOMweb plugin (Debian's packages) holds a
phantom CT series, answers QIDO-RS, WADO-RS and STOW-RS, logs StableStudy in /changes, and keeps
its data over a stop and restart on the same port."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import pydicom
import pytest
import requests
from orthanc_server import (
    Orthanc,
    changes,
    running_orthanc,
    skip_without_orthanc,
    stow,
    upload,
    wait_stable,
)
from pydicom.uid import generate_uid

DICOM_JSON = {"Accept": "application/dicom+json"}


@pytest.fixture(autouse=True)
def _needs_orthanc() -> None:
    skip_without_orthanc()  # before dicom_cohort builds a cohort for nothing


def value(item: dict[str, Any], tag: str) -> Any:
    return item[tag]["Value"][0]


def qido(orthanc: Orthanc, path: str, **params: str) -> list[dict[str, Any]]:
    r = requests.get(
        f"{orthanc.dicomweb_url}{path}", params=params, headers=DICOM_JSON, auth=orthanc.auth
    )
    r.raise_for_status()
    return list(r.json())


def stable_studies(orthanc: Orthanc, study: str) -> list[int]:
    """The sequence numbers of ``study``'s StableStudy changes."""
    return [
        c["Seq"] for c in changes(orthanc) if c["ChangeType"] == "StableStudy" and c["ID"] == study
    ]


def wado_series(orthanc: Orthanc, study_uid: str, series_uid: str) -> list[pydicom.Dataset]:
    """WADO-RS retrieve of a series: dicomweb-client when installed (the ``pacs`` extra), else
    the multipart/related response split by hand."""
    try:
        from dicomweb_client.api import DICOMwebClient
    except ImportError:
        r = requests.get(
            f"{orthanc.dicomweb_url}/studies/{study_uid}/series/{series_uid}",
            headers={"Accept": 'multipart/related; type="application/dicom"'},
            auth=orthanc.auth,
        )
        r.raise_for_status()
        boundary = r.headers["Content-Type"].split("boundary=")[1].split(";")[0].strip('"')
        parts = r.content.split(f"--{boundary}".encode())[1:-1]
        return [pydicom.dcmread(io.BytesIO(p.split(b"\r\n\r\n", 1)[1][:-2])) for p in parts]
    client = DICOMwebClient(orthanc.dicomweb_url)
    datasets = client.retrieve_series(study_uid, series_uid)
    meta = client.retrieve_series_metadata(study_uid, series_uid)
    # complete metadata (SeriesMetadata "Full"): geometry tags, pixel data as a bulk data URI
    # that points at this Orthanc's port ("Host" in the plugin's configuration)
    assert len(meta) == len(datasets)
    assert all("00200032" in m and "00280030" in m for m in meta)
    # DICOMweb 1.7 answers 400 to dicomweb-client's default Accept (type="*/*") for bulk data
    # and frames: ask for application/octet-stream
    uri = meta[0]["7FE00010"]["BulkDataURI"]
    pixels = client.retrieve_bulkdata(uri, media_types=("application/octet-stream",))
    assert len(pixels[0]) == 2 * value(meta[0], "00280010") * value(meta[0], "00280011")
    return list(datasets)


def test_orthanc_serves_dicomweb_and_survives_restart(dicom_cohort: Path, tmp_path: Path) -> None:
    files = sorted(dicom_cohort.rglob("*.dcm"))
    assert files
    first = pydicom.dcmread(files[0])
    with running_orthanc(tmp_path / "orthanc") as orthanc:
        assert "dicom-web" in orthanc.get("/plugins").json()
        ids = upload(orthanc, files)
        assert len(set(ids)) == len(files)
        (study,) = wait_stable(orthanc, timeout=15)

        # QIDO-RS lists the study and its one series
        (found,) = qido(orthanc, "/studies")
        assert value(found, "0020000D") == first.StudyInstanceUID
        assert value(found, "00100020") == first.PatientID
        assert value(found, "00080061") == "CT"  # ModalitiesInStudy
        (series,) = qido(orthanc, f"/studies/{first.StudyInstanceUID}/series")
        assert value(series, "0020000E") == first.SeriesInstanceUID

        # WADO-RS gives back every instance, pixels unchanged
        got = wado_series(orthanc, first.StudyInstanceUID, first.SeriesInstanceUID)
        assert {d.SOPInstanceUID for d in got} == {pydicom.dcmread(f).SOPInstanceUID for f in files}
        same = next(d for d in got if d.SOPInstanceUID == first.SOPInstanceUID)
        assert (same.pixel_array == first.pixel_array).all()

        # /changes: one StableStudy for the study, the same list whatever the page size
        assert len(stable_studies(orthanc, study)) == 1
        assert changes(orthanc, page=7) == changes(orthanc)

        # STOW-RS of a copy with a new SOPInstanceUID: stored, and the study is stable again
        # later with a second StableStudy
        copy = pydicom.dcmread(files[0])
        copy.SOPInstanceUID = copy.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        buf = io.BytesIO()
        copy.save_as(buf)
        answer = stow(orthanc, [buf.getvalue()], study_uid=first.StudyInstanceUID)
        assert "Value" not in answer.get("00081198", {})  # FailedSOPSequence empty
        assert value(answer["00081199"]["Value"][0], "00081155") == copy.SOPInstanceUID
        path = f"/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}/instances"
        assert len(qido(orthanc, path)) == len(files) + 1
        assert wait_stable(orthanc, timeout=15) == [study]
        deadline = time.monotonic() + 5
        while len(stable_studies(orthanc, study)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(stable_studies(orthanc, study)) == 2
        seq = changes(orthanc)[-1]["Seq"]

        # stop mid-test, restart on the same storage and port: same data, same changes
        url = orthanc.url
        orthanc.stop()
        assert not orthanc.running
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/system", timeout=2)
        orthanc.restart()
        assert orthanc.running and orthanc.url == url
        assert len(orthanc.get("/instances").json()) == len(files) + 1
        assert changes(orthanc)[-1]["Seq"] == seq
        assert len(qido(orthanc, path)) == len(files) + 1
    assert not orthanc.running


def test_orthanc_authentication(tmp_path: Path) -> None:
    with running_orthanc(tmp_path / "orthanc", user="alice", password="s3cret") as orthanc:
        assert orthanc.auth == ("alice", "s3cret")
        assert requests.get(f"{orthanc.url}/system").status_code == 401
        assert requests.get(f"{orthanc.dicomweb_url}/studies").status_code == 401
        assert qido(orthanc, "/studies") == []
        assert wait_stable(orthanc) == []
