"""What the service is told at start (``ctface serve``'s options)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_UPLOAD = 2 * 1024**3  # bytes of one request's body
DEFAULT_TIMEOUT_S = 600.0  # the time a request's heavy work may take
DEFAULT_BODY_IDLE_S = 60.0  # the longest wait for the next piece of a request's body


@dataclass(frozen=True)
class ServiceSettings:
    db: Path  # the gallery file (made by the first enrollment)
    token_file: Path
    workers: int = 1  # worker processes that hold the model
    queue: int = 4  # requests that may wait for a worker beyond those running (then 503)
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    timeout_s: float = DEFAULT_TIMEOUT_S
    body_idle_s: float = DEFAULT_BODY_IDLE_S  # a body stalled longer: 408, its slot freed
    weights: Path | None = None  # the recognition model (default: the shipped one)
    temp_dir: Path | None = None  # where uploads are unpacked (default: the system's)
    threads_per_worker: int = 1

    @property
    def capacity(self) -> int:
        """Heavy requests admitted at once: running plus waiting."""
        return self.workers + self.queue
