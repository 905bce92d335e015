"""The real ``ctface serve`` in a subprocess on a free loopback port (the service's HTTP and
browser tests, and ``benchmarks/service.py``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    url: str
    token: str
    db: Path
    log: Path
    pid: int = 0  # the server process (benchmarks/soak.py samples its process tree)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def make_token(token_file: Path, user: str = "alice") -> str:
    """A new token for ``user`` through ``ctface serve --add-token``."""
    out = subprocess.run(
        [sys.executable, "-m", "ctface", "serve", "--token-file", str(token_file),
         "--add-token", user],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out.stdout.strip()


@contextmanager
def running_server(
    db: Path, folder: Path, *args: str, start_timeout: float = 120.0
) -> Iterator[Server]:
    """``ctface serve --db DB`` with a fresh token file in ``folder``, ready (``/healthz``)
    when entered; stopped with SIGTERM (then killed) when left."""
    tokens = folder / "tokens"
    token = make_token(tokens)
    port = free_port()
    log = folder / f"serve-{port}.log"
    cmd = [sys.executable, "-m", "ctface", "serve", "--db", str(db), "--token-file",
           str(tokens), "--port", str(port), *args]  # fmt: skip
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"ctface serve exited ({proc.returncode}): {log.read_text()}")
            try:
                if requests.get(f"{url}/healthz", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"ctface serve did not start: {log.read_text()}")
            time.sleep(0.3)
        yield Server(url, token, db, log, proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def no_face_scan(path: Path) -> Path:
    """A water cylinder in air at ``path`` (NIfTI; made once): a body, no face."""
    import numpy as np
    import SimpleITK as sitk

    if not path.exists():
        hu = np.full((60, 160, 160), -1000, np.int16)
        yy, xx = np.mgrid[:160, :160]
        hu[:, (yy - 80) ** 2 + (xx - 80) ** 2 < 60**2] = 20
        image = sitk.GetImageFromArray(hu)
        image.SetSpacing((1.0, 1.0, 2.0))
        sitk.WriteImage(image, str(path))
    return path
