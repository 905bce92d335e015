"""A real Orthanc (Debian's ``orthanc`` and ``orthanc-dicomweb`` packages) in a subprocess on a
free port, with its DICOMweb plugin: the PACS the ``ctface pacs`` tests talk to.

``running_orthanc(folder)`` writes ``folder/orthanc.json`` (storage, index and log in
``folder``), starts ``/usr/sbin/Orthanc`` and yields an :class:`Orthanc` once ``GET /system``
answers; ``Orthanc.stop()`` / ``Orthanc.restart()`` stop it mid-test and start it again on the
same storage, index and port. Timings here (Orthanc 1.10.1, DICOMweb 1.7): start 0.05-0.2 s
(empty or 75-instance index alike); stop about 2.5 s after SIGTERM (its HTTP server takes 2 s
to close), at once with ``stop(kill=True)``; a study is stable ``stable_age_s`` + up to ~1 s after
its last instance.

What this Orthanc does that a client may not expect:

- no option binds the HTTP server to one address: it listens on every interface, and
  ``RemoteAccessAllowed: false`` refuses requests from elsewhere than loopback. The DICOM
  server is disabled (no DICOM port).
- the not-yet-stable studies are kept in memory only: a study still within ``StableAge`` when
  Orthanc stops (SIGTERM or kill) is ``IsStable`` after the restart but never gets a
  ``StableStudy`` change. A study that gets a new instance later gets another ``StableStudy``.
- ``/changes`` is paged with ``since`` and ``limit`` (default 100) until ``Done``; sequence
  numbers and entries survive a restart.
- DICOMweb builds RetrieveURL and BulkDataURI from the request's Host header, which
  dicomweb-client sends without the port; the configuration hard-codes ``DicomWeb.Host``.
- WADO-RS bulk data and frames: dicomweb-client's default ``Accept: multipart/related;
  type="*/*"`` gets a 400; pass ``media_types=("application/octet-stream",)``.
- STOW-RS takes only ``multipart/related; type="application/dicom"`` (415 otherwise) and
  answers 409 with a FailedSOPSequence for an instance of another study than the URL's.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


def skip_without_orthanc() -> None:
    """Skip the calling test when Orthanc or its DICOMweb plugin is not installed."""
    missing = [str(p) for p in (ORTHANC, DICOMWEB_PLUGIN) if not p.is_file()]
    if missing:
        pytest.skip(
            f"Orthanc not installed: {', '.join(missing)} missing "
            "(apt-get install orthanc orthanc-dicomweb; .ci/run does)"
        )


def _free_port() -> int:
    # Orthanc listens on every interface (0.0.0.0), so the port must be free on all of them.
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def orthanc_config(
    folder: Path, port: int, *, user: str | None, password: str | None, stable_age_s: int
) -> dict[str, Any]:
    """The configuration ``running_orthanc`` writes (``folder/orthanc.json``)."""
    auth = user is not None
    return {
        "Name": "ctface-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpServerEnabled": True,
        "HttpPort": port,
        "RemoteAccessAllowed": False,  # loopback clients only (there is no bind address)
        "AuthenticationEnabled": auth,
        "RegisteredUsers": {user: password or ""} if auth else {},
        "DicomServerEnabled": False,  # no DICOM port
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": True,
            "WadoRoot": "/wado",
            # DICOMweb 1.7 builds RetrieveURL and BulkDataURI from the request's Host header,
            # and dicomweb-client sends "Host: 127.0.0.1" without the port: hard-code it.
            "Host": f"127.0.0.1:{port}",
            "Ssl": False,
            # every tag of every instance in /metadata (read from the stored files)
            "StudiesMetadata": "Full",
            "SeriesMetadata": "Full",
        },
        "StableAge": stable_age_s,
        "ConcurrentJobs": 1,
        "SaveJobs": False,
        "JobsHistorySize": 10,
        "OverwriteInstances": False,
        "StorageCompression": False,
        "MaximumStorageSize": 0,
        "MaximumPatientCount": 0,
        "LimitFindResults": 0,
        "LimitFindInstances": 0,
        "StorageAccessOnFind": "Always",
        "HttpDescribeErrors": True,
        "HttpCompressionEnabled": False,
        "ExecuteLuaEnabled": False,
        "RestApiWriteToFileSystemEnabled": False,
        "CheckRevisions": False,
    }


@dataclass
class Orthanc:
    """A running (or, after ``stop()``, stopped) Orthanc. ``url`` is its REST API,
    ``dicomweb_url`` its DICOMweb root (no trailing slash; QIDO/WADO/STOW-RS below it),
    ``auth`` the ``(user, password)`` to send (``None``: authentication disabled)."""

    url: str
    dicomweb_url: str
    folder: Path
    log: Path
    process: subprocess.Popen[bytes] | None
    auth: tuple[str, str] | None = None
    start_timeout: float = 30.0

    @property
    def config(self) -> Path:
        return self.folder / "orthanc.json"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def get(self, path: str, **kw: Any) -> requests.Response:
        """``GET url + path`` with ``auth``; raises on an HTTP error."""
        r = requests.get(f"{self.url}{path}", auth=self.auth, timeout=30, **kw)
        r.raise_for_status()
        return r

    def start(self) -> None:
        """Start Orthanc on ``config`` (no-op when running); return once ``/system`` answers."""
        if self.running:
            return
        with open(self.log, "ab") as fh:
            fh.write(f"--- ctface test: starting {ORTHANC} {self.config}\n".encode())
            fh.flush()
            self.process = subprocess.Popen(
                [str(ORTHANC), str(self.config)], stdout=fh, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"Orthanc exited ({self.process.returncode}): {self.log.read_text()[-4000:]}"
                )
            try:
                if requests.get(f"{self.url}/system", auth=self.auth, timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                self.stop(kill=True)
                raise RuntimeError(f"Orthanc did not start: {self.log.read_text()[-4000:]}")
            time.sleep(0.05)

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """SIGTERM (then SIGKILL after ``timeout`` s), or SIGKILL at once with ``kill=True``
        (a crash); returns once the process is gone. The storage and index stay."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self, *, kill: bool = False) -> None:
        """Stop (if running) and start again: same storage, index, port and credentials."""
        self.stop(kill=kill)
        self.start()


@contextmanager
def running_orthanc(
    folder: Path,
    *,
    user: str | None = None,
    password: str | None = None,
    stable_age_s: int = 1,
) -> Iterator[Orthanc]:
    """Orthanc with DICOMweb on a free port, its files in ``folder`` (``orthanc.json``,
    ``storage/``, ``index/``, ``orthanc.log``), ready when entered; stopped (SIGTERM, then
    SIGKILL after 10 s) when left. ``user``/``password``: HTTP basic authentication on (every
    request, DICOMweb included, then needs them). ``stable_age_s``: Orthanc's ``StableAge``, the
    seconds without a new instance after which a study is stable (``StableStudy`` in
    ``/changes``; Orthanc checks about once a second).

    Orthanc 1.10.1 + DICOMweb 1.7 start in 0.05-0.2 s on this machine and stop in ~2.5 s."""
    skip_without_orthanc()
    folder.mkdir(parents=True, exist_ok=True)
    auth = (user, password or "") if user is not None else None
    log = folder / "orthanc.log"
    orthanc: Orthanc | None = None
    try:
        for attempt in range(3):  # another process may take the free port before Orthanc does
            port = _free_port()
            cfg = orthanc_config(
                folder, port, user=user, password=password, stable_age_s=stable_age_s
            )
            (folder / "orthanc.json").write_text(json.dumps(cfg, indent=2))
            url = f"http://127.0.0.1:{port}"
            orthanc = Orthanc(url, f"{url}/dicom-web", folder, log, None, auth)
            try:
                orthanc.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        assert orthanc is not None
        yield orthanc
    finally:
        if orthanc is not None:
            orthanc.stop()


def upload(orthanc: Orthanc, paths: Iterable[Path]) -> list[str]:
    """POST each DICOM file to ``/instances`` (Orthanc's REST API, not STOW-RS); the Orthanc
    instance IDs, in order (a file already stored gives its existing ID)."""
    ids = []
    with requests.Session() as s:
        s.auth = orthanc.auth
        for p in paths:
            r = s.post(
                f"{orthanc.url}/instances",
                data=Path(p).read_bytes(),
                headers={"Content-Type": "application/dicom"},
                timeout=60,
            )
            r.raise_for_status()
            ids.append(str(r.json()["ID"]))
    return ids


def changes(orthanc: Orthanc, since: int = 0, page: int = 100) -> list[dict[str, Any]]:
    """Every entry of ``/changes`` after ``since``, oldest first (paged with ``since``/``limit``
    until ``Done``)."""
    out: list[dict[str, Any]] = []
    while True:
        body = orthanc.get("/changes", params={"since": since, "limit": page}).json()
        out += body["Changes"]
        since = int(body["Last"])
        if body["Done"] or not body["Changes"]:
            return out


def wait_stable(
    orthanc: Orthanc, timeout: float = 30.0, *, require_change: bool = True
) -> list[str]:
    """Wait until every study in Orthanc is stable: ``IsStable`` in ``/studies/{id}`` and (with
    ``require_change``) a ``StableStudy`` entry in ``/changes`` for it. The Orthanc study IDs.

    Orthanc keeps its list of not-yet-stable resources in memory only: a study whose
    ``StableAge`` had not run out when Orthanc stopped (SIGTERM or kill) is ``IsStable`` after
    the restart but never gets a ``StableStudy`` change. Pass ``require_change=False`` then."""
    deadline = time.monotonic() + timeout
    while True:
        studies = [str(s) for s in orthanc.get("/studies").json()]
        unstable = [s for s in studies if not orthanc.get(f"/studies/{s}").json()["IsStable"]]
        why = "IsStable false"
        if not unstable and require_change:
            logged = {c["ID"] for c in changes(orthanc) if c["ChangeType"] == "StableStudy"}
            unstable = [s for s in studies if s not in logged]
            why = "IsStable but no StableStudy in /changes (stored before a restart?)"
        if not unstable:
            return studies
        if time.monotonic() > deadline:
            raise TimeoutError(f"Orthanc studies not stable after {timeout} s ({why}): {unstable}")
        time.sleep(0.2)


def stow(orthanc: Orthanc, files: Iterable[Path | bytes], study_uid: str | None = None) -> Any:
    """STOW-RS: POST the DICOM files (paths or Part-10 bytes) as one
    ``multipart/related; type="application/dicom"`` request to ``{dicomweb}/studies`` (or
    ``/studies/{study_uid}``); the response's DICOM JSON (``00081199`` ReferencedSOPSequence,
    ``00081198`` FailedSOPSequence), also for a 409 (an instance refused, e.g. of another study
    than ``study_uid``). DICOMweb 1.7 answers 415 to a body that is not multipart/related with
    ``type=application/dicom`` (a bare ``application/dicom`` POST or a missing ``type``)."""
    boundary = uuid.uuid4().hex
    body = b""
    for f in files:
        data = f if isinstance(f, bytes) else Path(f).read_bytes()
        body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    url = f"{orthanc.dicomweb_url}/studies" + (f"/{study_uid}" if study_uid else "")
    r = requests.post(
        url,
        data=body,
        auth=orthanc.auth,
        timeout=60,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Accept": "application/dicom+json",
        },
    )
    if r.status_code != 409:  # 409: some or all failed, listed in the response
        r.raise_for_status()
    return r.json()
