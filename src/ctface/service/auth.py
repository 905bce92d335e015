"""Who may call the service: bearer tokens from the token file (compared in constant time),
and the review page's sessions (an HTTP-only cookie made at login with a token, plus a CSRF
token the page sends back with every decision).

Token file: one ``USER TOKEN`` per line (``#`` starts a comment); a token is at least
``MIN_TOKEN_CHARS`` characters. ``new_token`` appends one (the file made readable by its owner
only).
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ctface.errors import InvalidInputError, MissingDataError, OutputError

MIN_TOKEN_CHARS = 24
SESSION_SECONDS = 8 * 3600


def read_tokens(path: Path) -> dict[str, str]:
    """token -> user; MissingDataError / InvalidInputError with the line at fault."""
    if not path.is_file():
        raise MissingDataError(
            f"no token file at {path}: make one with `ctface serve --add-token USER "
            f"--token-file {path}`"
        )
    tokens: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or len(words[1]) < MIN_TOKEN_CHARS:
            raise InvalidInputError(
                f"{path}:{n}: expected 'USER TOKEN' with a token of {MIN_TOKEN_CHARS}+ characters"
            )
        tokens[words[1]] = words[0]
    if not tokens:
        raise InvalidInputError(f"{path} holds no token (lines 'USER TOKEN')")
    return tokens


def new_token(path: Path, user: str) -> str:
    """Append a new random token for ``user`` to the token file (made 0600); the token."""
    if not user or any(c.isspace() for c in user) or "#" in user:
        raise InvalidInputError(f"a user name is one word without '#', not {user!r}")
    token = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write(f"{user} {token}\n")
    except OSError as e:
        raise OutputError(f"cannot write the token file {path}: {e}") from e
    return token


class Tokens:
    """The token file's users; every lookup compares with every token in constant time. The
    file is read again when it changes (a token removed stops working at once; a file made
    unreadable keeps the tokens last read)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tokens = list(read_tokens(path).items())
        self._stamp = self._mtime()

    def _mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None

    def users(self) -> set[str]:
        self._reload()
        return {user for _, user in self._tokens}

    def _reload(self) -> None:
        stamp = self._mtime()
        if stamp is not None and stamp != self._stamp:
            try:
                self._tokens = list(read_tokens(self.path).items())
            except (InvalidInputError, MissingDataError, OSError):
                return  # half-written or broken: keep the tokens last read
            self._stamp = stamp

    def user(self, token: str | None) -> str | None:
        self._reload()
        found = None
        given = (token or "").encode()
        for known, user in self._tokens:  # no early exit: the time does not tell which matched
            if hmac.compare_digest(known.encode(), given):
                found = user
        return found


@dataclass(frozen=True)
class Session:
    user: str
    csrf: str
    expires: float


class Sessions:
    """The review page's logins, in this process's memory (a restart logs everyone out)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}

    def start(self, user: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(user, secrets.token_urlsafe(24), time.time() + SESSION_SECONDS)
        with self._lock:
            now = time.time()
            self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
            self._sessions[sid] = session
        return sid, session

    def get(self, sid: str | None, users: set[str]) -> Session | None:
        """The live session of a user who still has a token (``users``)."""
        with self._lock:
            s = self._sessions.get(sid or "")
        return s if s is not None and s.expires > time.time() and s.user in users else None

    def end(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)
