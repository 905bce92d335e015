"""Phase markers for ``benchmarks/kill.py`` (loaded by Python at start-up when this folder is on
``PYTHONPATH``; inert unless ``CTFACE_KILL_LOG`` names a file).

Every process of the command (the CLI and its workers) appends ``<unix time> <pid> <event>``
lines to that file: ``db-begin`` / ``db-commit`` / ``db-end`` around each write transaction of
SQLite (held open ``CTFACE_KILL_HOLD_DB`` seconds before its COMMIT), ``write <name>`` /
``write-end`` around each rename of a file written whole (``os.replace``, held
``CTFACE_KILL_HOLD_WRITE`` s before it), ``http <kind>`` / ``http-end <kind>`` around DICOMweb
requests (``stow``, ``pull``, ``query``; held ``CTFACE_KILL_HOLD_STOW`` s after a STOW's answer)
and ``acquire-start`` / ``acquire-end`` around each scan's acquisition. The holds widen the
windows a kill is aimed at; the command does nothing else differently."""

from __future__ import annotations

import os

LOG = os.environ.get("CTFACE_KILL_LOG")

if LOG:
    import importlib.abc
    import importlib.machinery
    import sqlite3
    import sys
    import time

    def _hold(name: str) -> float:
        return float(os.environ.get(f"CTFACE_KILL_HOLD_{name}", "0") or 0)

    def log(event: str) -> None:
        line = f"{time.time():.4f} {os.getpid()} {event}\n".encode()
        fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    class _Connection(sqlite3.Connection):
        _writing = False

        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:  # type: ignore[override]
            word = sql.strip().upper()
            if word.startswith("BEGIN IMMEDIATE"):
                cur = super().execute(sql, *args)
                self._writing = True
                log("db-begin")
                return cur
            if word == "COMMIT" and self._writing:
                log("db-commit")
                time.sleep(_hold("DB"))
                cur = super().execute(sql, *args)
                self._writing = False
                log("db-end")
                return cur
            if word == "ROLLBACK":
                self._writing = False
            return super().execute(sql, *args)

    _connect = sqlite3.connect

    def _hooked_connect(*args: object, **kw: object) -> sqlite3.Connection:
        kw.setdefault("factory", _Connection)
        return _connect(*args, **kw)  # type: ignore[arg-type]

    sqlite3.connect = _hooked_connect  # type: ignore[assignment]

    _replace = os.replace

    def _hooked_replace(src: object, dst: object, *args: object, **kw: object) -> None:
        log(f"write {os.path.basename(str(dst))}")
        time.sleep(_hold("WRITE"))
        _replace(src, dst, *args, **kw)  # type: ignore[arg-type]
        log("write-end")

    os.replace = _hooked_replace  # type: ignore[assignment]

    def _patch_acquire(module: object) -> None:
        original = module.acquire  # type: ignore[attr-defined]

        def acquire(*args: object, **kw: object) -> object:
            log("acquire-start")
            try:
                return original(*args, **kw)
            finally:
                log("acquire-end")

        module.acquire = acquire  # type: ignore[attr-defined]

    def _patch_requests(module: object) -> None:
        send = module.Session.send  # type: ignore[attr-defined]

        def hooked(self: object, request: object, **kw: object) -> object:
            method, url = str(request.method), str(request.url)  # type: ignore[attr-defined]
            kind = ("stow" if method == "POST" and "/studies" in url else
                    "pull" if method == "GET" and "/series/" in url and "?" not in url
                    and not url.endswith("/metadata") else "query")  # fmt: skip
            log(f"http {kind}")
            response = send(self, request, **kw)
            log(f"http-end {kind}")
            if kind == "stow":
                time.sleep(_hold("STOW"))
            return response

        module.Session.send = hooked  # type: ignore[attr-defined]

    PATCHES = {"ctface.gallery.acquire": _patch_acquire, "requests.sessions": _patch_requests}

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: object, target: object = None) -> object:
            if name not in PATCHES:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)  # type: ignore[arg-type]
            if spec is None or spec.loader is None:
                return spec
            loader, patch = spec.loader, PATCHES[name]
            run = loader.exec_module  # type: ignore[union-attr]

            def exec_module(module: object) -> None:
                run(module)  # type: ignore[arg-type]
                patch(module)

            loader.exec_module = exec_module  # type: ignore[method-assign, union-attr]
            return spec

    sys.meta_path.insert(0, _Finder())
    log("start")
