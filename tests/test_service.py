"""`ctface serve`: the real server on a loopback port (tests/service_server.py), one worker and
no queue (a second heavy request while one runs gets 503). Tokens, upload limits, corrupt and
hostile uploads, a scan without a face, identify / verify / enroll of phantom rescans, the
findings and their decisions (an audit trail), images, metrics, and that every refused
request leaves the gallery file as it was and no upload behind."""

from __future__ import annotations

import contextlib
import hashlib
import io
import socket
import sqlite3
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_server import Server, no_face_scan, running_server

requests = pytest.importorskip("requests")
pytest.importorskip("fastapi")

MAX_UPLOAD_MB = 60  # the test server's limit (a phantom NIfTI is ~27 MB)
BODY_TIMEOUT_S = 3  # the test server's --body-timeout


def _scan(people: Path, name: str) -> Path:
    return people / name.split("_")[0] / f"{name}.nii.gz"


@pytest.fixture(scope="module")
def server(people: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A gallery of S0001_01 and S0002_01 (enrolled with the library), served with one
    worker, no queue, a 60 MB upload limit and its own folder for uploads."""
    from ctface.api import Gallery

    folder = tmp_path_factory.mktemp("service")
    db = folder / "gallery.db"
    with Gallery.open(db) as g:
        for name in ("S0001_01", "S0002_01"):
            (out,) = g.enroll(_scan(people, name), name[:5])
            assert out.status == "enrolled"
    uploads = folder / "uploads"
    uploads.mkdir()
    with running_server(db, folder, "--workers", "1", "--queue", "0", "--max-upload-mb",
                        str(MAX_UPLOAD_MB), "--temp-dir", str(uploads), "--body-timeout",
                        str(BODY_TIMEOUT_S)) as s:  # fmt: skip
        yield s
    assert "Traceback" not in s.log.read_text()


def _state(server: Server) -> str:
    """The gallery's committed content, every table (its file's bytes may change with no
    write: a write-ahead-log checkpoint moves pages into it)."""
    with contextlib.closing(sqlite3.connect(server.db)) as db:
        return hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()


def _no_uploads_left(server: Server) -> None:
    assert list((server.db.parent / "uploads").iterdir()) == []


def _post(server: Server, route: str, files: Any = None, **kw: Any) -> Any:
    return requests.post(f"{server.url}{route}", files=files, headers=server.headers(),
                         timeout=300, **kw)  # fmt: skip


def _file(path: Path, field: str = "file") -> list[tuple[str, Any]]:
    return [(field, (path.name, path.read_bytes()))]


def _error(r: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["message"]
    if code is not None:
        assert body["code"] == code, body
    return body  # type: ignore[no-any-return]


def test_every_route_but_healthz_needs_a_token(server: Server) -> None:
    before = _state(server)
    assert requests.get(f"{server.url}/healthz", timeout=10).json()["status"] == "ok"
    for route in ("/v1/patients", "/v1/findings", "/v1/scans/1", "/metrics", "/openapi.json"):
        _error(requests.get(f"{server.url}{route}", timeout=10), 401, "unauthorized")
        bad = {"Authorization": "Bearer " + "x" * 43}
        _error(requests.get(f"{server.url}{route}", headers=bad, timeout=10), 401)
    for route in ("/v1/identify", "/v1/enroll", "/v1/verify", "/v1/findings/1/decision"):
        _error(requests.post(f"{server.url}{route}", data=b"x", timeout=10), 401)
    assert _state(server) == before
    schema = requests.get(f"{server.url}/openapi.json", headers=server.headers(), timeout=10)
    assert "/v1/identify" in schema.json()["paths"]
    assert requests.get(f"{server.url}/docs", timeout=10).status_code in (401, 404)


def test_identify_a_rescan(server: Server, people: Path) -> None:
    r = _post(server, "/v1/identify", _file(_scan(people, "S0001_02")),
              data={"label": "ACC-1"}, params={"top_k": 2})  # fmt: skip
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["decision"]["patient_id"] == "S0001" and out["decision"]["in_gallery"]
    assert [c["patient_id"] for c in out["candidates"]] == ["S0001", "S0002"]
    # the same JSON as `ctface identify --json`, plus the finding kept for review
    assert {"scan", "decision", "candidates", "gallery", "model_version", "probe_quality",
            "seconds", "finding_id"} == set(out)  # fmt: skip
    f = requests.get(f"{server.url}/v1/findings/{out['finding_id']}", headers=server.headers(),
                     timeout=10).json()  # fmt: skip
    assert f["kind"] == "identification" and f["status"] == "open" and f["has_probe_image"]
    probe = requests.get(f"{server.url}/v1/findings/{out['finding_id']}/probe",
                         headers=server.headers(), timeout=10)  # fmt: skip
    assert probe.headers["content-type"] == "image/png" and probe.content[:4] == b"\x89PNG"
    _no_uploads_left(server)


def test_a_zipped_body_is_a_scan(server: Server, people: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.write(_scan(people, "S0002_02"), "series/S0002_02.nii.gz")
    r = requests.post(f"{server.url}/v1/identify", data=buf.getvalue(), timeout=300,
                      params={"record": "false"},
                      headers={**server.headers(), "Content-Type": "application/zip"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["decision"]["patient_id"] == "S0002" and "finding_id" not in r.json()


def _raw_request(server: Server, head: str) -> str:
    """Send a request head alone (a body it announces is never sent); the status line."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(head.encode())
        return s.recv(4096).decode(errors="replace").splitlines()[0]


def test_refused_requests_change_nothing(server: Server, people: Path, tmp_path: Path) -> None:
    """413 (announced and streamed), corrupt and hostile zips 400, no face 422 with its code,
    bad parameters 400: the gallery file is byte for byte as before, no upload is left."""
    before = _state(server)
    big = MAX_UPLOAD_MB * 1024**2 + 1
    status = _raw_request(server, f"POST /v1/identify HTTP/1.1\r\nHost: x\r\nAuthorization: "
                          f"Bearer {server.token}\r\nContent-Type: application/zip\r\n"
                          f"Content-Length: {big}\r\n\r\n")  # fmt: skip
    assert " 413 " in status

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b"PK\x03\x04"
        for _ in range(MAX_UPLOAD_MB + 2):
            yield bytes(1024**2)

    r = requests.post(f"{server.url}/v1/identify", data=chunks(), timeout=120,
                      headers={**server.headers(), "Content-Type": "application/zip"})  # fmt: skip
    _error(r, 413, "too-large")

    corrupt = b"PK\x03\x04" + bytes(range(256)) * 40
    _error(_post(server, "/v1/identify", [("file", ("series.zip", corrupt))]), 400, "bad-input")
    r = requests.post(f"{server.url}/v1/identify", data=corrupt, timeout=30,
                      headers={**server.headers(), "Content-Type": "application/zip"})  # fmt: skip
    _error(r, 400, "bad-input")
    for member in ("../../escape.dcm", "/abs/path.dcm", "a/../../b.dcm"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(member, b"x" * 10)
        body = _error(_post(server, "/v1/identify", [("file", ("a.zip", buf.getvalue()))]), 400)
        assert "leaves its folder" in body["message"] and "ctface-upload" not in body["message"]
    assert not (server.db.parent / "escape.dcm").exists()
    _error(_post(server, "/v1/identify", [("file", ("x.dcm", b"not dicom"))]), 400, "bad-input")
    # a header naming a file of the server is never followed
    mhd = b"ObjectType = Image\nNDims = 3\nDimSize = 64 64 64\nElementType = MET_SHORT\n"
    for name, header in (("a.mha", mhd + f"ElementDataFile = {server.db}\n".encode()),
                         ("a.mhd", mhd + b"ElementDataFile = a.raw\n"),
                         ("a.nrrd", b"NRRD0004\ntype: short\ndimension: 3\nsizes: 64 64 64\n"
                                    b"encoding: raw\ndata file: /etc/passwd\n\n")):  # fmt: skip
        body = _error(_post(server, "/v1/identify", [("file", (name, header))]), 400)
        assert "separate data file" in body["message"]
    # a small route's body is limited to 64 kB, and read only after the token is checked
    route = f"{server.url}/v1/findings/1/decision"
    big = {"Content-Type": "application/json"}
    _error(requests.post(route, data=b"[" * 200_000, headers=big, timeout=30), 413)
    _error(requests.post(route, data=b"{", headers=big, timeout=30), 401)
    _error(_post(server, "/v1/identify", data={"label": "x"}), 400, "bad-input")  # no file
    json_body = {**server.headers(), "Content-Type": "application/json"}
    _error(requests.post(f"{server.url}/v1/identify", data=b"{}", timeout=10,
                         headers=json_body), 400)  # fmt: skip
    _error(_post(server, "/v1/identify", _file(_scan(people, "S0001_02")),
                 params={"fmr": "2"}), 400, "bad-input")  # fmt: skip

    cylinder = _file(no_face_scan(tmp_path / "cylinder.nii.gz"))
    body = _error(_post(server, "/v1/identify", cylinder), 422, "no-face")
    assert "failure to acquire" in body["message"]
    enrolled = _post(server, "/v1/enroll", cylinder,
                     data={"patient_id": "S0009"})  # fmt: skip
    _error(enrolled, 422, "no-face")  # and not recorded as a failure in the gallery
    _error(_post(server, "/v1/enroll", _file(_scan(people, "S0001_02"))), 400, "bad-input")
    assert _state(server) == before
    _no_uploads_left(server)


def test_beyond_the_queue_gets_503(server: Server, people: Path) -> None:
    """One worker, no queue: while one identify runs, the next is refused at once with
    Retry-After, and changes nothing."""
    scan = _file(_scan(people, "S0002_02"))
    first: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: first.update(r=_post(
        server, "/v1/identify", scan, params={"record": "false"})))  # fmt: skip
    worker.start()
    deadline = time.monotonic() + 60
    while requests.get(f"{server.url}/healthz", timeout=10).json()["queue"] < 1:
        assert time.monotonic() < deadline, "the first request never reached the worker"
        time.sleep(0.05)
    before = _state(server)
    r = _post(server, "/v1/identify", [("file", ("small.dcm", b"x" * 1000))])
    _error(r, 503, "queue-full")  # refused before its upload is read
    assert int(r.headers["Retry-After"]) > 0
    assert _state(server) == before
    worker.join()
    assert first["r"].status_code == 200, first["r"].text
    metrics = requests.get(f"{server.url}/metrics", headers=server.headers(), timeout=10).text
    assert 'ctface_failures_total{code="queue-full"} 1.0' in metrics
    assert "ctface_queue_depth 0.0" in metrics and "ctface_queue_capacity 1.0" in metrics
    assert 'ctface_request_seconds_count{route="/v1/identify"}' in metrics


def test_enroll_and_verify(server: Server, people: Path) -> None:
    r = _post(server, "/v1/enroll", _file(_scan(people, "S0002_02")),
              data={"patient_id": "S0002"})  # fmt: skip
    assert r.status_code == 201, r.text
    key = r.json()["scan_key"]
    again = _post(server, "/v1/enroll", _file(_scan(people, "S0002_02")),
                  data={"patient_id": "S0002"})  # fmt: skip
    assert again.status_code == 200 and again.json()["status"] == "already-enrolled"
    other = _post(server, "/v1/enroll", _file(_scan(people, "S0002_02")),
                  data={"patient_id": "S0001"})  # fmt: skip
    _error(other, 409, "conflict")
    scan = requests.get(f"{server.url}/v1/scans/{key}", headers=server.headers(), timeout=10)
    assert scan.json()["patient_id"] == "S0002" and "template" not in scan.json()
    assert scan.json()["source"].startswith("service upload")  # not the deleted temp path
    patients = requests.get(f"{server.url}/v1/patients", headers=server.headers(), timeout=10)
    assert {"patient_id": "S0002", "scans": 2} in patients.json()["patients"]
    _error(requests.get(f"{server.url}/v1/scans/9999", headers=server.headers(), timeout=10),
           404, "not-found")  # fmt: skip

    same = _post(server, "/v1/verify", _file(_scan(people, "S0001_02"), "a"),
                 params={"patient_id": "S0001"})  # fmt: skip
    assert same.status_code == 200, same.text
    assert same.json()["decision"]["same_person"] and same.json()["score"] > 0.5
    files = _file(_scan(people, "S0001_02"), "a") + _file(_scan(people, "S0002_01"), "b")
    different = _post(server, "/v1/verify", files)
    assert different.status_code == 200 and not different.json()["decision"]["same_person"]
    _error(_post(server, "/v1/verify", _file(_scan(people, "S0001_02"), "a"),
                 params={"patient_id": "NOBODY"}), 404)  # fmt: skip
    _no_uploads_left(server)


def test_scan_images(server: Server) -> None:
    """A scan enrolled by the library: rendered from its source in a worker, then kept."""
    r = requests.get(f"{server.url}/v1/scans/1/image", headers=server.headers(), timeout=120)
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"
    with sqlite3.connect(server.db) as db:
        assert db.execute("SELECT COUNT(*) FROM scan_images WHERE scan_key = 1").fetchone()[0]


def test_a_stalled_upload_gets_408_and_frees_its_slot(server: Server) -> None:
    """A client that announces a body and stops sending (slowloris) is answered 408 after
    --body-timeout, and its worker slot (one worker, no queue) is free again."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as conn:
        conn.sendall(f"POST /v1/identify HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer "
                     f"{server.token}\r\nContent-Type: application/zip\r\n"
                     "Content-Length: 100000\r\n\r\n".encode() + b"x" * 1000)  # fmt: skip
        t0 = time.monotonic()
        reply = conn.recv(65536).decode(errors="replace")
        waited = time.monotonic() - t0
        head, _, body = reply.partition("\r\n\r\n")
        length = int(head.lower().split("content-length:")[1].split()[0])
        while len(body.encode()) < length:  # the body may come in a later segment
            more = conn.recv(65536).decode(errors="replace")
            assert more, reply
            body += more
            reply += more
    assert reply.startswith("HTTP/1.1 408"), reply
    assert '"code":"timeout"' in reply.replace(" ", "")
    assert BODY_TIMEOUT_S - 0.5 < waited < BODY_TIMEOUT_S + 30
    deadline = time.monotonic() + 30
    while requests.get(f"{server.url}/healthz", timeout=10).json()["queue"] != 0:
        assert time.monotonic() < deadline, "the stalled request kept its slot"
        time.sleep(0.1)
    _no_uploads_left(server)


def test_decisions_are_an_audit_trail(server: Server, people: Path) -> None:
    found = requests.get(f"{server.url}/v1/findings", params={"kind": "identification"},
                         headers=server.headers(), timeout=10).json()  # fmt: skip
    assert found["total"] >= 1
    fid = found["findings"][0]["finding_id"]
    route = f"/v1/findings/{fid}/decision"
    steps = (("accept", ""), ("note", "checked the chart"), ("reject", "twin"))
    made = [_post(server, route, json={"decision": d, "note": n}) for d, n in steps]
    assert [m.status_code for m in made] == [201, 201, 201], made[-1].text
    assert made[0].json()["user"] == "alice"
    f = requests.get(f"{server.url}/v1/findings/{fid}", headers=server.headers(), timeout=10)
    assert f.json()["status"] == "reject"
    assert [d["decision"] for d in f.json()["decisions"]] == ["accept", "note", "reject"]
    before = _state(server)
    _error(_post(server, route, json={"decision": "approve"}), 400, "bad-input")
    _error(_post(server, route, json={"decision": "note", "note": " "}), 400)
    _error(_post(server, route, json={"decision": "accept", "note": "x" * 3000}), 400)
    _error(_post(server, "/v1/findings/99999/decision", json={"decision": "accept"}), 404)
    broken = requests.post(f"{server.url}{route}", data="{", timeout=10, headers={
        **server.headers(), "Content-Type": "application/json"})  # fmt: skip
    _error(broken, 400)
    assert _state(server) == before
    with sqlite3.connect(server.db) as db, pytest.raises(sqlite3.IntegrityError):
        db.execute("UPDATE decisions SET decision = 'accept'")
    open_only = requests.get(f"{server.url}/v1/findings", params={"status": "open"},
                             headers=server.headers(), timeout=10).json()  # fmt: skip
    assert fid not in [x["finding_id"] for x in open_only["findings"]]
    _error(requests.get(f"{server.url}/v1/findings", params={"sort": "size"},
                        headers=server.headers(), timeout=10), 400)  # fmt: skip


def test_tokens_are_read_again_when_the_file_changes(server: Server) -> None:
    tokens = server.db.parent / "tokens"
    kept = tokens.read_text()
    r = requests.get(f"{server.url}/v1/patients", headers=server.headers(), timeout=10)
    assert r.status_code == 200
    try:
        tokens.write_text("bob " + "b" * 40 + "\n")  # alice's token revoked
        time.sleep(0.05)
        _error(requests.get(f"{server.url}/v1/patients", headers=server.headers(), timeout=10),
               401)  # fmt: skip
        bob = {"Authorization": "Bearer " + "b" * 40}
        assert requests.get(f"{server.url}/v1/patients", headers=bob, timeout=10).ok
    finally:
        tokens.write_text(kept)
        time.sleep(0.05)
    assert requests.get(f"{server.url}/v1/patients", headers=server.headers(), timeout=10).ok


def test_review_login(server: Server) -> None:
    """The login form sets an HTTP-only session cookie; a form posted from another site's page
    is refused; a wrong token gets the form again with 401."""
    route = f"{server.url}/review/login"
    ok = requests.post(route, data={"token": server.token}, allow_redirects=False, timeout=10)
    assert ok.status_code == 303 and ok.headers["location"] == "/review"
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    foreign = requests.post(route, data={"token": server.token}, allow_redirects=False,
                            headers={"Origin": "http://evil.example"}, timeout=10)  # fmt: skip
    _error(foreign, 403)
    wrong = requests.post(route, data={"token": "x" * 40}, allow_redirects=False, timeout=10)
    assert wrong.status_code == 401 and "set-cookie" not in wrong.headers
    page = requests.get(f"{server.url}/review", cookies=ok.cookies, timeout=60)
    assert page.ok and "ctface review" in page.text
    assert "script-src 'nonce-" in page.headers["content-security-policy"]
    # the session cookie reads, but it cannot write without the page's CSRF token
    _error(requests.post(f"{server.url}/v1/findings/1/decision", json={"decision": "accept"},
                         cookies=ok.cookies, timeout=10), 403)  # fmt: skip


def test_logs_carry_no_file_names(server: Server) -> None:
    text = server.log.read_text()
    assert "S0001_02" not in text and "ACC-1" not in text and server.token not in text
    assert "POST /v1/identify 200" in text  # one line per request: ID, route, status, time
    assert "Traceback" not in text and "ctface-upload" not in text
