"""Soak test of ``ctface serve``: a bounded, realistic load for minutes, watching for errors,
memory growth, file descriptors, leftover uploads and latency drift.

Run: .venv/bin/python benchmarks/soak.py [--minutes 10] [--clients 4] [--seed 3]
     [--workers 2] [--work DIR] [--max-requests N] [--sample-s 3]
     [--out benchmarks/results/soak.json] [--png docs/soak.png]

Data (``prepare``; cached in ``--work DIR``, a temp folder by default): a phantom cohort of 4
people x 2 NIfTI scans (``--seed``; the coarse, fast acquisitions of the tests' phantoms:
0.9-1 mm pixels, 2-3 mm slices) and the same seed's first 3 people x 2 scans as DICOM series
(the same scans: a scan's randomness depends on the seed and its indices only). A gallery of
S0001-S0003, each enrolled from their first NIfTI scan (``ctface.api.Gallery.enroll``), is
kept in the work folder and copied for every run. Probes: the second scans of S0001-S0003, as
NIfTI files and as zipped DICOM series (every file, deflated). S0004 is not in the gallery at
the start: the load enrolls S0004's scans (201 the first time, 200 afterwards). A water
cylinder (a body, no face) is the no-face scan.

Server: the real ``ctface serve`` (``tests/service_server.py``: a fresh token, a free port on
127.0.0.1 and ``--host 127.0.0.1``), ``--workers W --queue C`` (C = clients: every client's
heavy request is admitted, so a 503 is an error), ``--max-upload-mb 64``, ``--temp-dir`` a
folder of the run (where upload folders are counted).

Load: ``--clients`` threads, each with its own ``requests.Session`` (keep-alive, as a script
would), send requests one after the other, each drawn at random (weights ``KINDS``; seed
``--seed`` and the client's number) until ``--minutes`` have passed or ``--max-requests`` were
sent in all; the request in flight then finishes. With two or more clients, the last one is a
reviewer / monitoring client: light requests only (no scan upload), 0.25 s apart; the others
draw from the whole mix without pause. The mix: identify (NIfTI multipart, zipped DICOM
multipart, zip body; a third kept for review), verify (two scans; a scan against an enrolled
patient), enroll (S0004: 201 or 200; an enrolled scan under another ID: 409), a scan without a
face (422), GET patients / scans / scan images / findings / a finding / a probe image / healthz
/ metrics, the review page (login: 303 with its session cookie; the worklist page), a decision
on a finding, and bad requests: a bad token (401), a corrupt zip and a non-DICOM file (400), an
out-of-range parameter (400), an unknown scan (404), a body over the limit announced by
Content-Length (413, raw socket) and one streamed without it (413), and an upload the client
gives up half-way (raw socket closed: no answer expected). Every kind has its expected status
(and error code); an *unexpected* answer is any other status, any 5xx, a connection error or
timeout, or a wrong error code. After the load the server's own count (``/metrics``) must hold
no 5xx either (an abandoned upload is no error of the server's). A 2xx identify or verify whose
decision is wrong (a phantom rescan not found) is counted apart as ``wrong_answers`` (accuracy,
not the service's health).

Watched (a sampler thread every ``--sample-s`` seconds, psutil): RSS, open file descriptors
and threads of the server process and of every process under it (the forkserver, the resource
tracker, the workers: the forkserver's children); the upload folders in the temp folder; the
gallery file's size; the 1-minute load average. Before the load and after it (every client
done and its connections closed, 2 s later) the server's descriptors and the upload folders
are counted again: after the load, no upload folder may be left.

Verdicts (in the JSON, stated with their bounds):
- ``no_unexpected_errors``: zero unexpected answers, and no 5xx in the server's own count;
- ``memory_flat``: after the first minute (warm-up: the workers' buffers grow to the scans'
  sizes), the median RSS of the whole server tree in the last third of the load is at most
  ``MEMORY_GROWTH_BOUND`` (5 %) above its median in the first third (runs under 3 minutes: not
  judged); least-squares slopes (MiB/min) after the warm-up and over the second half are
  reported per process group;
- ``latency_stable``: for each route with >= ``MIN_WINDOW_REQUESTS`` expected 2xx answers in
  both windows (and the scan routes pooled: a few answers per minute each), the p95 of the
  last minute is at most ``LATENCY_FACTOR`` (2x) the p95 of the first two minutes, or at most
  ``LATENCY_FLOOR_S`` (0.1 s) above it: routes that answer in tens of milliseconds vary by
  that much from minute to minute on a shared, oversubscribed machine without any trend (a
  first 10-minute run at load average ~8 on 2 CPUs: per-minute p95 of 13-190 ms); runs shorter
  than 3 minutes are not judged;
- ``no_leftover_uploads``: no upload folder in the temp folder after the load;
- ``descriptors_flat``: the server's open descriptors after the load at most
  ``FD_SLACK`` (5) above their number before it.
The machine may be shared (other work on its CPUs): the load average is sampled throughout, and
the latency verdict compares the run with itself.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))

from identify import load_note, machine, phantom_cohort  # noqa: E402
from service_server import Server, no_face_scan, running_server  # noqa: E402

RESULTS = Path(__file__).parent / "results"
FACE_MODEL = ROOT.parent / "shared" / "data" / "face_model" / "ict_facekit_light.npz"
MAX_UPLOAD_MB = 64
HTTP_TIMEOUT_S = 300
MEMORY_GROWTH_BOUND = 0.05
LATENCY_FACTOR = 2.0
LATENCY_FLOOR_S = 0.1  # a route answering in milliseconds may take this much more (see below)
SCAN_ROUTES = ("POST /v1/identify", "POST /v1/verify", "POST /v1/enroll")
SCAN_UPLOADS = "scan uploads (identify, verify, enroll)"
MIN_WINDOW_REQUESTS = 5
FD_SLACK = 5
WARMUP_S = 60.0  # the first minute: workers' buffers grow to the scans' size
LIGHT_PAUSE_S = 0.25


# -- data -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """What the load sends: files on disk (read once into memory by ``Load``)."""

    gallery: Path  # the template gallery (copied for every run)
    nifti: list[tuple[Path, str]]  # probes (rescans) and their person
    dicom_zips: list[tuple[Path, str]]  # the same rescans as zipped DICOM series
    newcomer: list[Path]  # scans of a person not in the gallery at the start
    newcomer_id: str
    conflict: tuple[Path, str]  # an enrolled scan and another person's ID
    noface: Path
    description: dict[str, Any] = field(default_factory=dict)


def fast_nuisance() -> Any:
    """The tests' coarse acquisitions (``tests/conftest.py`` FAST)."""
    from ctface.phantom.params import NuisanceConfig

    return NuisanceConfig(pixel_mm=(0.9, 1.0), slice_thickness_mm=(2.0, 3.0),
                          p_overlapping_slices=0.0)  # fmt: skip


def zip_series(series: Path, out: Path) -> Path:
    if not out.exists():
        tmp = out.with_suffix(".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for f in sorted(p for p in series.rglob("*") if p.is_file()):
                z.write(f, f"{series.name}/{f.relative_to(series).as_posix()}")
        tmp.replace(out)
    return out


def _mb(path: Path) -> float:
    return round(path.stat().st_size / 2**20, 1)


def prepare(work: Path, seed: int, people: int = 3, dicom_people: int = 3) -> Scenario:
    """The phantoms, gallery and uploads of a soak in ``work`` (reused when there)."""
    from ctface.api import Gallery
    from ctface.phantom import CohortSpec

    if not FACE_MODEL.is_file():
        raise SystemExit(f"face model not found at {FACE_MODEL} (../shared beside the repo)")
    work.mkdir(parents=True, exist_ok=True)
    nuisance = fast_nuisance()
    common = {"scans_min": 2, "scans_max": 2, "seed": seed, "face_model": str(FACE_MODEL),
              "nuisance": nuisance}  # fmt: skip
    spec = CohortSpec(subjects=people + 1, dicom_fraction=0.0, **common)
    dspec = CohortSpec(subjects=dicom_people, dicom_fraction=1.0, **common)
    t = time.perf_counter()
    rows, _ = phantom_cohort(spec, work / "cohort-nifti", jobs=1)
    drows, _ = phantom_cohort(dspec, work / "cohort-dicom", jobs=1)
    generated = time.perf_counter() - t
    by_id = {r["scan_id"]: r for r in rows}
    ids = [f"S{i:04d}" for i in range(1, people + 2)]
    enrolled, newcomer = ids[:people], ids[people]
    gallery = work / f"gallery-s{seed}-p{people}.db"
    t = time.perf_counter()
    if not gallery.exists():
        tmp = gallery.with_name(gallery.name + ".tmp")
        tmp.unlink(missing_ok=True)
        with Gallery.open(tmp) as g:
            for pid in enrolled:
                (out,) = g.enroll(work / "cohort-nifti" / by_id[f"{pid}_01"]["path"], pid)
                if out.status != "enrolled":
                    raise SystemExit(f"enrolling {pid} failed: {out}")
        tmp.replace(gallery)
    enroll_s = time.perf_counter() - t
    zips = work / "zips"
    zips.mkdir(exist_ok=True)
    dicom = [
        (zip_series(work / "cohort-dicom" / r["path"], zips / f"{r['scan_id']}.zip"),
         r["subject_id"])
        for r in drows if r["scan_id"].endswith("_02")
    ]  # fmt: skip
    return Scenario(
        gallery=gallery,
        nifti=[(work / "cohort-nifti" / by_id[f"{p}_02"]["path"], p) for p in enrolled],
        dicom_zips=dicom,
        newcomer=[work / "cohort-nifti" / by_id[f"{newcomer}_0{k}"]["path"] for k in (1, 2)],
        newcomer_id=newcomer,
        conflict=(work / "cohort-nifti" / by_id[f"{enrolled[0]}_01"]["path"], enrolled[-1]),
        noface=no_face_scan(work / "cylinder.nii.gz"),
        description={
            "cohort": f"phantom seed {seed}: {people + 1} people x 2 NIfTI scans, the first "
            f"{dicom_people} also as DICOM series (the same scans); coarse acquisitions: "
            "0.9-1 mm pixels, 2-3 mm slices",
            "gallery": f"{', '.join(enrolled)}: each from their first NIfTI scan",
            "probes": "the second scans of the gallery's people as NIfTI files and as zipped "
            "DICOM series",
            "probe_mb": {"nifti": [_mb(work / "cohort-nifti" / by_id[f"{p}_02"]["path"])
                                   for p in enrolled],
                         "dicom_zip": [_mb(z) for z, _ in dicom]},
            "newcomer": f"{newcomer} (2 scans), enrolled by the load",
            "setup_s": {"phantoms": round(generated, 1), "gallery": round(enroll_s, 1)},
        },
    )  # fmt: skip


# -- the load ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    name: str
    route: str  # the route as /metrics names it
    weight: float
    expect: tuple[int, ...]
    code: str | None = None  # the expected error code of a 4xx
    heavy: bool = False  # takes a worker slot

    @property
    def light(self) -> bool:
        """In the light client's mix: no scan upload (the review page, monitoring)."""
        return not self.heavy and self.name != "oversize-streamed"


KINDS = (
    Kind("identify-nifti", "POST /v1/identify", 14, (200,), heavy=True),
    Kind("identify-dicom-zip", "POST /v1/identify", 10, (200,), heavy=True),
    Kind("identify-zip-body", "POST /v1/identify", 4, (200,), heavy=True),
    Kind("verify-pair", "POST /v1/verify", 4, (200,), heavy=True),
    Kind("verify-patient", "POST /v1/verify", 4, (200,), heavy=True),
    Kind("enroll", "POST /v1/enroll", 3, (200, 201), heavy=True),
    Kind("enroll-conflict", "POST /v1/enroll", 1.5, (409,), "conflict", heavy=True),
    Kind("no-face", "POST /v1/identify", 1.5, (422,), "no-face", heavy=True),
    Kind("patients", "GET /v1/patients", 8, (200,)),
    Kind("scan", "GET /v1/scans/{scan_key}", 6, (200,)),
    Kind("scan-image", "GET /v1/scans/{scan_key}/image", 4, (200,)),
    Kind("findings", "GET /v1/findings", 6, (200,)),
    Kind("finding", "GET /v1/findings/{finding_id}", 3, (200,)),
    Kind("probe-image", "GET /v1/findings/{finding_id}/probe", 2, (200,)),
    Kind("decision", "POST /v1/findings/{finding_id}/decision", 2, (201,)),
    Kind("healthz", "GET /healthz", 6, (200,)),
    Kind("metrics", "GET /metrics", 3, (200,)),
    Kind("bad-token", "GET /v1/patients", 3, (401,), "unauthorized"),
    Kind("bad-token-upload", "POST /v1/identify", 1.5, (401,), "unauthorized"),
    Kind("corrupt-zip", "POST /v1/identify", 2, (400,), "bad-input", heavy=True),
    Kind("not-dicom", "POST /v1/enroll", 1.5, (400,), "bad-input", heavy=True),
    Kind("bad-parameter", "POST /v1/identify", 1.5, (400,), "bad-input"),
    Kind("unknown-scan", "GET /v1/scans/{scan_key}", 2, (404,), "not-found"),
    Kind("oversize-announced", "POST /v1/identify", 1.5, (413,), "too-large"),
    Kind("oversize-streamed", "POST /v1/identify", 0.5, (413,), "too-large"),
    Kind("client-abort", "POST /v1/identify", 3, (0,), heavy=True),
    Kind("review-login", "POST /review/login", 1, (303,)),
    Kind("review-page", "GET /review", 3, (200,)),
)


@dataclass
class Answer:
    status: int  # 0: no answer (connection error, timeout)
    body: Any = None  # JSON, when there is
    error: str | None = None  # the exception's type, when there was no answer


class Load:
    """The requests of ``KINDS`` against one server; what the clients learn as they go
    (finding IDs, scan keys) shared under a lock."""

    def __init__(self, server: Server, scenario: Scenario, scan_keys: list[int]) -> None:
        self.server, self.s = server, scenario
        self.data: dict[Path, bytes] = {}
        for p in ([q for q, _ in scenario.nifti] + [z for z, _ in scenario.dicom_zips]
                  + scenario.newcomer + [scenario.conflict[0], scenario.noface]):  # fmt: skip
            self.data[p] = p.read_bytes()
        self.lock = threading.Lock()
        self.scan_keys = list(scan_keys)
        self.findings: list[int] = []
        self.corrupt = b"PK\x03\x04" + bytes(range(256)) * 40
        self.limit = MAX_UPLOAD_MB * 1024**2
        login = requests.post(self.url("/review/login"), data={"token": server.token},
                              allow_redirects=False, timeout=60)  # fmt: skip
        self.cookies = login.cookies  # the review page's session

    def ready(self, kind: Kind) -> Kind:
        """``kind``, or the findings list while no finding is kept yet to read or decide."""
        if kind.name in ("finding", "probe-image", "decision"):
            with self.lock:
                if not self.findings:
                    return next(k for k in KINDS if k.name == "findings")
        return kind

    def url(self, route: str) -> str:
        return f"{self.server.url}{route}"

    def _file(self, field_name: str, path: Path, mime: str = "application/octet-stream") -> Any:
        return (field_name, (path.name, self.data[path], mime))

    def send(self, kind: Kind, http: Any, rng: random.Random) -> tuple[Answer, str | None]:
        """One request of ``kind``: the answer, and what was wrong with a 2xx (or None)."""
        fn: Callable[[Any, random.Random], tuple[Any, str | None]] = getattr(
            self, "k_" + kind.name.replace("-", "_"))  # fmt: skip
        r, wrong = fn(http, rng)
        if isinstance(r, Answer):
            return r, wrong
        try:
            body = r.json()
        except ValueError:
            body = None
        return Answer(r.status_code, body), wrong if r.status_code < 300 else None

    def post(self, http: Any, route: str, **kw: Any) -> Any:
        kw.setdefault("headers", self.server.headers())
        return http.post(self.url(route), timeout=HTTP_TIMEOUT_S, **kw)

    def get(self, http: Any, route: str, **kw: Any) -> Any:
        kw.setdefault("headers", self.server.headers())
        return http.get(self.url(route), timeout=HTTP_TIMEOUT_S, **kw)

    # identify ---------------------------------------------------------------------------------

    def _identify(self, r: Any, expected: str) -> str | None:
        if r.status_code != 200:
            return None
        out = r.json()
        if out.get("finding_id") is not None:
            with self.lock:
                self.findings.append(int(out["finding_id"]))
        got = (out.get("decision") or {}).get("patient_id")
        return None if got == expected else f"identified as {got!r}, not {expected!r}"

    def _record(self, rng: random.Random) -> str:
        return "true" if rng.random() < 1 / 3 else "false"

    def k_identify_nifti(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        path, pid = rng.choice(self.s.nifti)
        r = self.post(http, "/v1/identify", files=[self._file("file", path)],
                      data={"label": f"ACC-{rng.randrange(10**6)}"},
                      params={"record": self._record(rng), "top_k": 3})  # fmt: skip
        return r, self._identify(r, pid)

    def k_identify_dicom_zip(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        path, pid = rng.choice(self.s.dicom_zips)
        r = self.post(http, "/v1/identify", files=[self._file("file", path, "application/zip")],
                      params={"record": self._record(rng)})  # fmt: skip
        return r, self._identify(r, pid)

    def k_identify_zip_body(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        path, pid = rng.choice(self.s.dicom_zips)
        headers = {**self.server.headers(), "Content-Type": "application/zip"}
        r = self.post(http, "/v1/identify", data=self.data[path], headers=headers,
                      params={"record": "false"})  # fmt: skip
        return r, self._identify(r, pid)

    def k_no_face(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        return self.post(http, "/v1/identify", files=[self._file("file", self.s.noface)],
                         params={"record": "false"}), None  # fmt: skip

    # verify / enroll ----------------------------------------------------------------------------

    def _verify(self, r: Any, same: bool) -> str | None:
        if r.status_code != 200:
            return None
        got = bool((r.json().get("decision") or {}).get("same_person"))
        return None if got == same else f"same_person {got}, expected {same}"

    def k_verify_pair(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        a, pa = rng.choice(self.s.nifti)
        b, pb = rng.choice(self.s.dicom_zips)
        files = [self._file("a", a), self._file("b", b, "application/zip")]
        r = self.post(http, "/v1/verify", files=files)
        return r, self._verify(r, pa == pb)

    def k_verify_patient(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        a, pa = rng.choice(self.s.nifti)
        pid = rng.choice([p for _, p in self.s.nifti])
        r = self.post(http, "/v1/verify", files=[self._file("a", a)], params={"patient_id": pid})
        return r, self._verify(r, pa == pid)

    def k_enroll(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        path = rng.choice(self.s.newcomer)
        r = self.post(http, "/v1/enroll", files=[self._file("file", path)],
                      data={"patient_id": self.s.newcomer_id})  # fmt: skip
        if r.status_code in (200, 201):
            out = r.json()
            want = "enrolled" if r.status_code == 201 else "already-enrolled"
            if out.get("status") != want:
                return r, f"status {out.get('status')!r} with {r.status_code}"
            if out.get("scan_key") is not None:
                with self.lock:
                    self.scan_keys.append(int(out["scan_key"]))
        return r, None

    def k_enroll_conflict(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        path, other = self.s.conflict
        return self.post(http, "/v1/enroll", files=[self._file("file", path)],
                         data={"patient_id": other}), None  # fmt: skip

    # reads ------------------------------------------------------------------------------------

    def k_patients(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        r = self.get(http, "/v1/patients")
        ok = r.status_code != 200 or r.json()["count"] >= len(self.s.nifti)
        return r, None if ok else "fewer patients than enrolled"

    def _key(self, rng: random.Random) -> int:
        with self.lock:
            return rng.choice(self.scan_keys)

    def _finding(self, rng: random.Random) -> int:
        with self.lock:
            return rng.choice(self.findings)

    def k_scan(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        return self.get(http, f"/v1/scans/{self._key(rng)}"), None

    def k_scan_image(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        r = self.get(http, f"/v1/scans/{self._key(rng)}/image")
        return r, None if r.status_code != 200 or r.content[:4] == b"\x89PNG" else "not a PNG"

    def k_findings(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        params = {"status": rng.choice(["open", "decided", "all"]),
                  "sort": rng.choice(["score", "time"]), "order": rng.choice(["asc", "desc"]),
                  "limit": rng.choice([10, 100])}  # fmt: skip
        if rng.random() < 0.5:
            params["kind"] = "identification"
        return self.get(http, "/v1/findings", params=params), None

    def k_finding(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        return self.get(http, f"/v1/findings/{self._finding(rng)}"), None

    def k_probe_image(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        r = self.get(http, f"/v1/findings/{self._finding(rng)}/probe")
        return r, None if r.status_code != 200 or r.content[:4] == b"\x89PNG" else "not a PNG"

    def k_decision(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        fid = self._finding(rng)
        d = rng.choice([("note", f"soak note {rng.randrange(10**6)}"), ("accept", ""),
                        ("reject", "checked")])  # fmt: skip
        return self.post(http, f"/v1/findings/{fid}/decision",
                         json={"decision": d[0], "note": d[1]}), None  # fmt: skip

    def k_healthz(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        return http.get(self.url("/healthz"), timeout=HTTP_TIMEOUT_S), None

    def k_metrics(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        r = self.get(http, "/metrics")
        ok = r.status_code != 200 or "ctface_requests_total" in r.text
        return r, None if ok else "no request counter"

    # bad requests -------------------------------------------------------------------------------

    def bad_headers(self, rng: random.Random) -> dict[str, str]:
        return {"Authorization": "Bearer " + "".join(rng.choices("abcdefghXYZ0123_-", k=43))}

    def k_bad_token(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        return self.get(http, "/v1/patients", headers=self.bad_headers(rng)), None

    def k_bad_token_upload(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        path, _ = rng.choice(self.s.nifti)
        return self.post(http, "/v1/identify", files=[self._file("file", path)],
                         headers=self.bad_headers(rng)), None  # fmt: skip

    def k_corrupt_zip(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        files = [("file", ("series.zip", self.corrupt, "application/zip"))]
        return self.post(http, "/v1/identify", files=files), None

    def k_not_dicom(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        files = [("file", ("x.dcm", b"not dicom " * 100))]
        return self.post(http, "/v1/enroll", files=files, data={"patient_id": "S9999"}), None

    def k_bad_parameter(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        files = [("file", ("x.dcm", b"x" * 1000))]
        params = rng.choice([{"fmr": "2"}, {"top_k": "0"}, {"fmr": "abc"}])
        return self.post(http, "/v1/identify", files=files, params=params), None

    def k_unknown_scan(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        return self.get(http, f"/v1/scans/{900000 + rng.randrange(1000)}"), None

    def k_oversize_announced(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        """A request head announcing a body over the limit; the body is never sent."""
        host, port = _host_port(self.server.url)
        head = (f"POST /v1/identify HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer "
                f"{self.server.token}\r\nContent-Type: application/zip\r\nContent-Length: "
                f"{self.limit + 1 + rng.randrange(10**6)}\r\n\r\n")  # fmt: skip
        try:
            with socket.create_connection((host, port), timeout=60) as s:
                s.sendall(head.encode())
                raw = b""
                while b"\r\n\r\n" not in raw or not _complete(raw):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    raw += chunk
        except OSError as e:
            return Answer(0, error=type(e).__name__), None
        try:
            status = int(raw.split(b"\r\n", 1)[0].split()[1])
            body = json.loads(raw.split(b"\r\n\r\n", 1)[1] or b"null")
        except (IndexError, ValueError):
            return Answer(0, error="malformed answer"), None
        return Answer(status, body), None

    def k_client_abort(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        """An upload the client gives up half-way (a script killed, a dropped connection):
        nothing to answer; the server must clean up and count no error of its own."""
        path, _ = rng.choice(self.s.nifti)
        data = self.data[path]
        b = f"soak{rng.randrange(16**12):012x}"
        part = (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"'
                "\r\nContent-Type: application/octet-stream\r\n\r\n").encode()  # fmt: skip
        end = f"\r\n--{b}--\r\n".encode()
        host, port = _host_port(self.server.url)
        head = (f"POST /v1/identify?record=false HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: Bearer {self.server.token}\r\n"
                f"Content-Type: multipart/form-data; boundary={b}\r\n"
                f"Content-Length: {len(part) + len(data) + len(end)}\r\n\r\n").encode()  # fmt: skip
        cut = rng.randrange(len(data) // 4, 3 * len(data) // 4)
        try:
            with socket.create_connection((host, port), timeout=60) as s:
                s.sendall(head + part + data[:cut])
                time.sleep(0.2)
        except OSError as e:
            return Answer(-1, error=type(e).__name__), None
        return Answer(0, error="aborted by the client"), None

    def k_review_login(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        r = http.post(self.url("/review/login"), data={"token": self.server.token},
                      allow_redirects=False, timeout=HTTP_TIMEOUT_S)  # fmt: skip
        if r.status_code == 303:
            with self.lock:
                self.cookies = r.cookies
        return r, None if r.status_code != 303 or "ctface_session" in r.cookies else "no cookie"

    def k_review_page(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        with self.lock:
            cookies = self.cookies
        params = {"sort": rng.choice(["score", "time"])}
        r = requests.get(self.url("/review"), cookies=cookies, params=params,
                         timeout=HTTP_TIMEOUT_S)  # fmt: skip
        return r, None if r.status_code != 200 or "ctface review" in r.text else "not the page"

    def k_oversize_streamed(self, http: Any, rng: random.Random) -> tuple[Any, str | None]:
        limit = self.limit

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
            yield b"PK\x03\x04"
            for _ in range(limit // 2**20 + 2):
                yield bytes(2**20)

        headers = {**self.server.headers(), "Content-Type": "application/zip"}
        return self.post(http, "/v1/identify", data=chunks(), headers=headers), None


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _complete(raw: bytes) -> bool:
    head, _, body = raw.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


def server_counts(metrics: str) -> dict[str, Any]:
    """The server's own count of its answers (``/metrics``): by status, and its failures
    by code."""
    by_status: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for line in metrics.splitlines():
        m = re.match(r"ctface_requests_total\{(.*)\} ([0-9.e+]+)$", line)
        if m:
            status = re.search(r'status="(\d+)"', m.group(1))
            by_status[status.group(1) if status else "?"] += int(float(m.group(2)))
        m = re.match(r'ctface_failures_total\{code="([^"]*)"\} ([0-9.e+]+)$', line)
        if m:
            failures[m.group(1)] += int(float(m.group(2)))
    fivexx = sum(n for k, n in by_status.items() if k.startswith("5"))
    return {"by_status": dict(sorted(by_status.items())), "5xx": fivexx,
            "failures": dict(sorted(failures.items()))}  # fmt: skip


def error_code(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("code"))
    return None


# -- watching the server -------------------------------------------------------------------------


def upload_folders(temp_dir: Path) -> int:
    return sum(1 for _ in temp_dir.glob("ctface-upload-*"))


class Sampler(threading.Thread):
    """The server's process tree every ``interval`` s: RSS, descriptors, threads per role."""

    def __init__(self, pid: int, temp_dir: Path, db: Path, t0: float, interval: float) -> None:
        super().__init__(daemon=True)
        import psutil

        self.psutil = psutil
        self.root = psutil.Process(pid)
        self.temp_dir, self.db, self.t0, self.interval = temp_dir, db, t0, interval
        self.stop_event = threading.Event()
        self.samples: list[dict[str, Any]] = []
        self.worker_pids: set[int] = set()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()

    def tree(self) -> dict[str, Any]:
        """Per role (server, workers, helpers): RSS MB, descriptors, threads, processes."""
        ps = self.psutil
        out: dict[str, Any] = {r: {"rss_mb": 0.0, "fds": 0, "threads": 0, "n": 0}
                               for r in ("server", "workers", "helpers")}  # fmt: skip
        try:
            procs = [(self.root, "server")]
            for child in self.root.children(recursive=True):
                try:
                    parent = child.ppid()
                    cmd = " ".join(child.cmdline())
                except (ps.NoSuchProcess, ps.ZombieProcess, ps.AccessDenied):
                    continue
                helper = parent == self.root.pid or "resource_tracker" in cmd
                procs.append((child, "helpers" if helper else "workers"))
        except ps.NoSuchProcess:
            return out
        workers_rss = []
        for proc, role in procs:
            try:
                with proc.oneshot():
                    rss = proc.memory_info().rss / 2**20
                    fds, threads = proc.num_fds(), proc.num_threads()
            except (ps.NoSuchProcess, ps.ZombieProcess, ps.AccessDenied):
                continue
            o = out[role]
            o["rss_mb"] += rss
            o["fds"] += fds
            o["threads"] += threads
            o["n"] += 1
            if role == "workers":
                self.worker_pids.add(proc.pid)
                workers_rss.append(round(rss, 1))
        out["worker_rss_mb"] = workers_rss
        return out

    def sample(self) -> None:
        tree = self.tree()
        db_bytes = sum(p.stat().st_size for p in self.db.parent.glob(self.db.name + "*")
                       if p.is_file() and not p.name.endswith(".log"))  # fmt: skip
        self.samples.append({
            "t_s": round(time.monotonic() - self.t0, 1),
            "server_rss_mb": round(tree["server"]["rss_mb"], 1),
            "workers_rss_mb": round(tree["workers"]["rss_mb"], 1),
            "helpers_rss_mb": round(tree["helpers"]["rss_mb"], 1),
            "total_rss_mb": round(sum(tree[r]["rss_mb"] for r in
                                      ("server", "workers", "helpers")), 1),  # fmt: skip
            "worker_rss_mb": tree["worker_rss_mb"],
            "workers": tree["workers"]["n"],
            "server_fds": tree["server"]["fds"],
            "tree_fds": sum(tree[r]["fds"] for r in ("server", "workers", "helpers")),
            "server_threads": tree["server"]["threads"],
            "upload_folders": upload_folders(self.temp_dir),
            "gallery_mb": round(db_bytes / 2**20, 2),
            "load_1min": round(os.getloadavg()[0], 2),
        })  # fmt: skip


# -- one soak ------------------------------------------------------------------------------------


@dataclass
class Raw:
    """Everything a soak saw, before it is summarized."""

    rows: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    seconds: float  # first request sent -> last answer
    duration: float  # the time in which requests were sent (the soak's length)
    before: dict[str, Any]
    after: dict[str, Any]
    worker_pids: int
    log_problems: list[str]
    server_args: list[str]


def run_soak(
    scenario: Scenario,
    run: Path,
    seconds: float,
    clients: int,
    seed: int,
    workers: int = 2,
    max_requests: int = 100_000,
    sample_s: float = 3.0,
    progress: Callable[[str], None] | None = None,
    opening: tuple[str, ...] = (),
) -> Raw:
    """Serve a copy of the scenario's gallery from ``run`` and load it for ``seconds``
    (``opening``: kinds the first client sends first, in order, before its random draws)."""
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    db = run / "gallery.db"
    shutil.copyfile(scenario.gallery, db)
    with sqlite3.connect(db) as c:
        keys = [int(k) for (k,) in c.execute("SELECT scan_key FROM scans ORDER BY scan_key")]
    temp_dir = run / "uploads"
    temp_dir.mkdir()
    args = ["--host", "127.0.0.1", "--workers", str(workers), "--queue", str(max(clients, 1)),
            "--max-upload-mb", str(MAX_UPLOAD_MB), "--temp-dir", str(temp_dir)]  # fmt: skip
    rows: list[dict[str, Any]] = []
    rows_lock = threading.Lock()
    sent = [0]
    with running_server(db, run, *args) as server:
        assert server.url.startswith("http://127.0.0.1:"), server.url
        load = Load(server, scenario, keys)
        t0 = time.monotonic()
        sampler = Sampler(server.pid, temp_dir, db, t0, sample_s)
        before = {"server_fds": sampler.tree()["server"]["fds"],
                  "upload_folders": upload_folders(temp_dir)}  # fmt: skip
        sampler.start()
        deadline = t0 + seconds

        def client(i: int) -> None:
            rng = random.Random(seed * 1000 + i)
            light = clients > 1 and i == clients - 1  # the reviewer / monitoring client
            kinds = [k for k in KINDS if not light or k.light]
            weights = [k.weight for k in kinds]
            first = [next(k for k in KINDS if k.name == n) for n in opening] if i == 0 else []
            with requests.Session() as http:
                while time.monotonic() < deadline:
                    with rows_lock:
                        if sent[0] >= max_requests:
                            return
                        sent[0] += 1
                    kind = load.ready(first.pop(0) if first else rng.choices(kinds, weights)[0])
                    start = time.monotonic()
                    try:
                        answer, wrong = load.send(kind, http, rng)
                    except requests.RequestException as e:
                        answer, wrong = Answer(0, error=type(e).__name__), None
                    latency = time.monotonic() - start
                    code = error_code(answer.body)
                    problem = None
                    if answer.status not in kind.expect:
                        problem = (f"no answer ({answer.error})" if answer.status == 0
                                   else f"status {answer.status} ({code})")  # fmt: skip
                    elif kind.code is not None and code != kind.code:
                        problem = f"code {code!r}, expected {kind.code!r}"
                    with rows_lock:
                        rows.append({"t_s": round(start - t0, 3), "client": i, "kind": kind.name,
                                     "route": kind.route, "status": answer.status,
                                     "latency_s": round(latency, 4), "unexpected": problem,
                                     "wrong": wrong})  # fmt: skip
                    if light:
                        time.sleep(LIGHT_PAUSE_S)

        threads = [threading.Thread(target=client, args=(i,), daemon=True)
                   for i in range(clients)]  # fmt: skip
        for th in threads:
            th.start()
        while any(th.is_alive() for th in threads):
            for th in threads:
                th.join(timeout=30)
            if progress is not None:
                with rows_lock:
                    n, bad = len(rows), sum(1 for r in rows if r["unexpected"])
                progress(f"  {time.monotonic() - t0:6.0f} s: {n} requests, {bad} unexpected, "
                         f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
        elapsed = time.monotonic() - t0
        time.sleep(2.0)  # the last requests' folders removed, keep-alive connections closed
        sampler.sample()
        sampler.stop()
        queue = requests.get(f"{server.url}/healthz", timeout=30).json()["queue"]
        counted = server_counts(requests.get(f"{server.url}/metrics", timeout=30,
                                             headers=server.headers()).text)  # fmt: skip
        after = {"server_fds": sampler.tree()["server"]["fds"], "healthz_queue": queue,
                 "server_counted": counted,
                 "upload_folders": upload_folders(temp_dir)}  # fmt: skip
    log = server.log.read_text(errors="replace").splitlines()
    problems = [ln for ln in log if "Traceback" in ln or "internal error" in ln
                or " 500 " in ln or "ERROR" in ln]  # fmt: skip
    after["upload_folders_after_stop"] = upload_folders(temp_dir)
    rows.sort(key=lambda r: r["t_s"])
    return Raw(rows, sampler.samples, elapsed, seconds, before, after, len(sampler.worker_pids),
               problems[:20], args)  # fmt: skip


# -- summary -------------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3)


def _lat(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_s": _pct(values, 50), "p95_s": _pct(values, 95),
            "max_s": round(max(values), 3)}  # fmt: skip


def _slope(t: list[float], y: list[float]) -> float | None:
    """Least-squares slope in units per minute."""
    if len(t) < 3:
        return None
    return round(float(np.polyfit(np.array(t) / 60, np.array(y), 1)[0]), 2)


def summarize(raw: Raw) -> dict[str, Any]:
    rows, samples = raw.rows, raw.samples
    minutes = max(1, int(np.ceil(raw.duration / 60 - 1e-9)))
    unexpected = [r for r in rows if r["unexpected"]]
    by_route: dict[str, Counter[int]] = defaultdict(Counter)
    by_kind: dict[str, Counter[int]] = defaultdict(Counter)
    for r in rows:
        by_route[r["route"]][r["status"]] += 1
        by_kind[r["kind"]][r["status"]] += 1

    def minute(r: dict[str, Any]) -> int:
        return min(int(r["t_s"] // 60), minutes - 1)

    def good(r: dict[str, Any]) -> bool:
        return not r["unexpected"] and 200 <= r["status"] < 300

    ok2xx = [r for r in rows if good(r)]
    per_minute = []
    for m in range(minutes):
        in_m = [r for r in rows if minute(r) == m]
        loads = [s["load_1min"] for s in samples if m * 60 <= s["t_s"] < (m + 1) * 60]
        routes: dict[str, list[float]] = defaultdict(list)
        for r in in_m:
            if good(r):
                routes[r["route"]].append(r["latency_s"])
        per_minute.append({
            "minute": m + 1,
            "requests": len(in_m),
            "unexpected": sum(1 for r in in_m if r["unexpected"]),
            "load_1min_mean": round(float(np.mean(loads)), 2) if loads else None,
            "latency_2xx_by_route": {k: _lat(v) for k, v in sorted(routes.items())},
        })  # fmt: skip

    # latency verdict: last minute vs the first two (2xx answers per route)
    latency_checks = []
    if minutes >= 3:
        first: dict[str, list[float]] = defaultdict(list)
        last: dict[str, list[float]] = defaultdict(list)
        for r in ok2xx:
            into = first if minute(r) < 2 else last if minute(r) == minutes - 1 else None
            if into is not None:
                into[r["route"]].append(r["latency_s"])
                if r["route"] in SCAN_ROUTES:  # few per minute each: judged together too
                    into[SCAN_UPLOADS].append(r["latency_s"])
        for route in sorted(set(first) & set(last)):
            a, b = first[route], last[route]
            if len(a) < MIN_WINDOW_REQUESTS or len(b) < MIN_WINDOW_REQUESTS:
                continue
            p_a, p_b = _pct(a, 95), _pct(b, 95)
            latency_checks.append({"route": route, "first_two_minutes": _lat(a),
                                   "last_minute": _lat(b),
                                   "p95_ratio": round(p_b / p_a, 3) if p_a else None,
                                   "ok": p_b <= max(LATENCY_FACTOR * p_a,
                                                    p_a + LATENCY_FLOOR_S)})  # fmt: skip

    # memory verdict: the whole tree after the warm-up, its first third vs its last third
    t_end = raw.seconds
    in_load = [s for s in samples if s["t_s"] <= t_end]
    judged = t_end >= 3 * 60
    lo = WARMUP_S if judged else 0.0
    third = (t_end - lo) / 3

    def window(key: str, which: str) -> list[float]:
        a, b = (lo, lo + third) if which == "first" else (t_end - third, t_end + 1)
        return [s[key] for s in in_load if a <= s["t_s"] < b]

    def med(xs: list[float]) -> float | None:
        return round(float(np.median(xs)), 1) if xs else None

    memory: dict[str, Any] = {}
    for key in ("total_rss_mb", "server_rss_mb", "workers_rss_mb", "helpers_rss_mb"):
        ys = [s[key] for s in in_load]
        ts = [s["t_s"] for s in in_load]
        after = [i for i, t in enumerate(ts) if t >= lo]
        half = [i for i, t in enumerate(ts) if t >= (lo + t_end) / 2]
        memory[key.removesuffix("_rss_mb")] = {
            "start_mb": ys[0] if ys else None,
            "end_mb": ys[-1] if ys else None,
            "max_mb": max(ys) if ys else None,
            "first_third_median_mb": med(window(key, "first")),
            "last_third_median_mb": med(window(key, "last")),
            "slope_mb_per_min": _slope([ts[i] for i in after], [ys[i] for i in after]),
            "slope_second_half_mb_per_min": _slope([ts[i] for i in half], [ys[i] for i in half]),
        }
    first3, last3 = window("total_rss_mb", "first"), window("total_rss_mb", "last")
    growth = (float(np.median(last3)) / float(np.median(first3)) - 1) if first3 and last3 else None
    fds = [s["server_fds"] for s in in_load]

    wrong = [r for r in rows if r["wrong"]]
    verdicts = {
        "no_unexpected_errors": {
            "ok": not unexpected and raw.after["server_counted"]["5xx"] == 0,
            "unexpected": len(unexpected),
            "server_counted_5xx": raw.after["server_counted"]["5xx"],
            "bound": "0 (any 5xx, connection error or timeout, status or error code other "
            "than the expected one), and no 5xx in the server's own count (/metrics)",
        },  # fmt: skip
        "memory_flat": {
            "ok": growth is not None and growth <= MEMORY_GROWTH_BOUND if judged else None,
            "judged": judged,
            "growth_last_vs_first_third": round(growth, 4) if growth is not None else None,
            "slope_after_warmup_mb_per_min": memory["total"]["slope_mb_per_min"],
            "bound": f"median RSS of the server tree (server + workers + helpers) in the last "
            f"third of the load after its first {WARMUP_S:g} s (warm-up: the workers' buffers "
            f"grow to the scans' sizes) <= {1 + MEMORY_GROWTH_BOUND:g} x its median in the "
            "first third; runs under 3 minutes not judged",
        },
        "latency_stable": {
            "ok": all(c["ok"] for c in latency_checks) if latency_checks else None,
            "judged": bool(latency_checks),
            "bound": f"per route (expected 2xx answers, >= {MIN_WINDOW_REQUESTS} in both "
            f"windows; the scan routes also pooled): p95 of the last minute <= "
            f"max({LATENCY_FACTOR:g} x, + {LATENCY_FLOOR_S:g} s) the p95 of the first two "
            "minutes; runs under 3 minutes not judged",
            "routes": latency_checks,
        },
        "no_leftover_uploads": {
            "ok": raw.after["upload_folders"] == 0 and raw.after["upload_folders_after_stop"] == 0,
            "after_load": raw.after["upload_folders"],
            "after_stop": raw.after["upload_folders_after_stop"],
            "max_during_load": max((s["upload_folders"] for s in in_load), default=0),
        },  # fmt: skip
        "descriptors_flat": {
            "ok": raw.after["server_fds"] <= raw.before["server_fds"] + FD_SLACK,
            "server_fds_before": raw.before["server_fds"],
            "server_fds_after": raw.after["server_fds"],
            "server_fds_max_during_load": max(fds, default=None),
            "bound": f"the server's open descriptors after the load (clients "
            f"gone) <= before it + {FD_SLACK}",
        },  # fmt: skip
    }
    all_ok = all(v["ok"] is not False for v in verdicts.values())
    return {
        "requests": len(rows),
        "requests_per_min": round(60 * len(rows) / raw.seconds, 1),
        "load_seconds": round(raw.seconds, 1),
        "unexpected": len(unexpected),
        "unexpected_examples": [
            f"{r['kind']} {r['route']} at {r['t_s']:.0f} s: {r['unexpected']}"
            for r in unexpected[:20]
        ],  # fmt: skip
        "server_counted": raw.after["server_counted"],
        "wrong_answers": len(wrong),
        "wrong_examples": [f"{r['kind']}: {r['wrong']}" for r in wrong[:10]],
        "by_route_status": {
            k: {str(s): n for s, n in sorted(v.items())} for k, v in sorted(by_route.items())
        },  # fmt: skip
        "by_kind_status": {
            k: {str(s): n for s, n in sorted(v.items())} for k, v in sorted(by_kind.items())
        },  # fmt: skip
        "latency_by_kind": {
            k.name: _lat(
                [r["latency_s"] for r in rows if r["kind"] == k.name and not r["unexpected"]]
            )
            for k in KINDS
        },  # fmt: skip
        "per_minute": per_minute,
        "memory": memory,
        "worker_processes_seen": raw.worker_pids,
        "server_log_problems": raw.log_problems,
        "verdicts": verdicts,
        "all_ok": all_ok,
        "series": {
            k: [s[k] for s in samples]
            for k in (
                "t_s",
                "server_rss_mb",
                "workers_rss_mb",
                "helpers_rss_mb",
                "total_rss_mb",
                "workers",
                "server_fds",
                "tree_fds",
                "server_threads",
                "upload_folders",
                "gallery_mb",
                "load_1min",
            )
        },  # fmt: skip
        "series_worker_rss_mb": [s["worker_rss_mb"] for s in samples],
    }


# -- output -------------------------------------------------------------------------------------


def plot(summary: dict[str, Any], png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary["series"]
    t = np.array(s["t_s"]) / 60
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 7.5), sharex=True)
    a1.plot(t, s["total_rss_mb"], label="whole tree", color="k")
    a1.plot(t, s["workers_rss_mb"], label="workers (sum)", color="tab:blue")
    a1.plot(t, s["server_rss_mb"], label="server process", color="tab:orange")
    a1.plot(t, s["helpers_rss_mb"], label="forkserver + resource tracker", color="tab:gray")
    a1.set_ylabel("RSS (MiB)")
    a1.set_ylim(bottom=0)
    a1.grid(alpha=0.3)
    a1.legend(loc="center right", fontsize=8)
    load = a1.twinx()
    load.plot(t, s["load_1min"], color="tab:red", alpha=0.4, lw=1)
    load.set_ylabel("load average (1 min)", color="tab:red")
    load.set_ylim(bottom=0)
    a1.set_title(title, fontsize=9)
    routes: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for m in summary["per_minute"]:
        for route, lat in m["latency_2xx_by_route"].items():
            if lat["n"]:
                routes[route].append((m["minute"] - 0.5, lat["p50_s"], lat["p95_s"]))
    colors = [plt.get_cmap("tab20")(i) for i in range(20)]
    for i, (route, pts) in enumerate(sorted(routes.items())):
        x, p50, p95 = (np.array(v) for v in zip(*pts, strict=True))
        c = colors[i % len(colors)]
        a2.plot(x, p95, "o-", color=c, label=route, ms=3)
        a2.plot(x, p50, "o--", color=c, ms=2, alpha=0.6)
    a2.set_yscale("log")
    a2.set_xlabel("minutes into the load")
    a2.set_ylabel("latency per minute (s): p95 solid, p50 dashed")
    a2.grid(alpha=0.3, which="both")
    a2.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(0, -0.16))
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110, bbox_inches="tight")
    plt.close(fig)


def title_of(out: dict[str, Any]) -> str:
    s, load = out["soak"], out["load"]
    return (f"ctface serve soak: {load['clients']} clients, "
            f"{out['server']['args'][out['server']['args'].index('--workers') + 1]} workers, "
            f"{s['requests']} requests in {s['load_seconds'] / 60:.1f} min, {s['unexpected']} "
            f"unexpected; {out['machine']['cpu_count']} shared CPUs, mean load average "
            f"{out['load_1min_mean']}")  # fmt: skip


def print_table(out: dict[str, Any]) -> None:
    s = out["soak"]
    print(f"\n{out['command']}\n{s['requests']} requests in {s['load_seconds']:.0f} s "
          f"({s['requests_per_min']}/min), {s['unexpected']} unexpected, "
          f"{s['wrong_answers']} wrong answers; load average {out['load_average']['start'][0]} "
          f"-> {out['load_average']['end'][0]} (mean {out['load_1min_mean']})\n")  # fmt: skip
    print("| route | answers (status: n) | p50 s | p95 s | max s |")
    print("|---|---|---:|---:|---:|")
    for route, statuses in s["by_route_status"].items():
        lat = [r["latency_s"] for r in out["_rows"] if r["route"] == route]
        counts = ", ".join(f"{k}: {v}" for k, v in statuses.items())
        print(f"| {route} | {counts} | {_pct(lat, 50):.3f} | {_pct(lat, 95):.3f} | "
              f"{max(lat):.3f} |")  # fmt: skip
    print("\n| minute | requests | unexpected | load | identify 2xx p50 / p95 s |")
    print("|---:|---:|---:|---:|---|")
    for m in s["per_minute"]:
        ident = m["latency_2xx_by_route"].get("POST /v1/identify", {"n": 0})
        cell = f"{ident['p50_s']:.2f} / {ident['p95_s']:.2f}" if ident["n"] else "-"
        print(f"| {m['minute']} | {m['requests']} | {m['unexpected']} | "
              f"{m['load_1min_mean']} | {cell} |")  # fmt: skip
    print("\n| memory | start MiB | end MiB | max MiB | 1st third | last third | MiB/min |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for k, v in s["memory"].items():
        print(f"| {k} | {v['start_mb']} | {v['end_mb']} | {v['max_mb']} | "
              f"{v['first_third_median_mb']} | {v['last_third_median_mb']} | "
              f"{v['slope_mb_per_min']} |")  # fmt: skip
    print("\n| verdict | ok | |")
    print("|---|---|---|")
    for k, v in s["verdicts"].items():
        detail = {kk: vv for kk, vv in v.items() if kk not in ("ok", "bound", "routes")}
        print(f"| {k} | {v['ok']} | {json.dumps(detail)} |")
    for c in s["verdicts"]["latency_stable"]["routes"]:
        print(f"  {c['route']}: p95 {c['first_two_minutes']['p95_s']} s (minutes 1-2) -> "
              f"{c['last_minute']['p95_s']} s (last minute), x{c['p95_ratio']}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="How long the load runs.")
    ap.add_argument("--clients", type=int, default=4, help="Concurrent client threads.")
    ap.add_argument("--seed", type=int, default=3, help="Phantoms and the request mix.")
    ap.add_argument("--workers", type=int, default=2, help="The server's worker processes.")
    ap.add_argument("--max-requests", type=int, default=20_000, help="At most this many.")
    ap.add_argument("--sample-s", type=float, default=3.0, help="Sampling interval (s).")
    ap.add_argument("--work", type=Path, default=None,
                    help="Work folder: phantoms and gallery kept for later runs, the run's "
                    "gallery copy, uploads folder, server log and requests.csv. Default: a "
                    "temporary folder.")  # fmt: skip
    ap.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    ap.add_argument("--png", type=Path, default=ROOT / "docs" / "soak.png")
    args = ap.parse_args()
    load_start = os.getloadavg()
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        print(f"preparing phantoms and gallery in {work}", flush=True)
        scenario = prepare(work, args.seed)
        print(f"  {json.dumps(scenario.description['setup_s'])}", flush=True)
        print(f"soak: {args.minutes:g} min, {args.clients} clients, {args.workers} workers",
              flush=True)  # fmt: skip
        raw = run_soak(scenario, work / "run", args.minutes * 60, args.clients, args.seed,
                       workers=args.workers, max_requests=args.max_requests,
                       sample_s=args.sample_s, progress=lambda m: print(m, flush=True))  # fmt: skip
        with open(work / "run" / "requests.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(raw.rows[0]))
            w.writeheader()
            w.writerows(raw.rows)
    summary = summarize(raw)
    loads = summary["series"]["load_1min"]
    command = (f"python benchmarks/soak.py --minutes {args.minutes:g} --clients {args.clients} "
               f"--seed {args.seed} --workers {args.workers} --max-requests {args.max_requests} "
               f"--sample-s {args.sample_s:g}")  # fmt: skip
    out: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "command": command,
        "machine": machine(),
        "machine_note": f"{os.cpu_count()} CPUs shared with other work: see load_average, "
        "load_1min_mean and the per-minute load; the latency verdict compares the run with "
        "itself",
        "load_average": load_note(load_start),
        "load_1min_mean": round(float(np.mean(loads)), 2) if loads else None,
        "load_1min_max": max(loads) if loads else None,
        "data": scenario.description,
        "server": {
            "args": [a if not a.startswith("/") else "<run folder>" for a in raw.server_args],
            "host": "127.0.0.1",
            "max_upload_mb": MAX_UPLOAD_MB,
        },  # fmt: skip
        "load": {
            "minutes": args.minutes,
            "clients": args.clients,
            "seed": args.seed,
            "max_requests": args.max_requests,
            "sample_s": args.sample_s,
            "mix": {
                k.name: {
                    "route": k.route,
                    "weight": k.weight,
                    "expect": list(k.expect),
                    "code": k.code,
                }
                for k in KINDS
            },
        },  # fmt: skip
        "soak": summary,
        "benchmark_seconds": round(time.perf_counter() - t_all, 1),
    }
    out["_rows"] = raw.rows
    print_table(out)
    del out["_rows"]
    plot(summary, args.png, title_of(out))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out} and {args.png}")
    if not summary["all_ok"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
