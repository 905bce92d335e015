"""`ctface serve`: the HTTP service and its review page (``ctface.service``), on uvicorn.

The token file holds one ``USER TOKEN`` per line; ``--add-token USER`` appends a new token and
prints it. Listens on 127.0.0.1 unless ``--host`` says otherwise.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import typer

from ctface.cli.main import app, err
from ctface.errors import InvalidInputError


def _default_tokens() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "ctface" / "tokens"


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port."),
    db: Path | None = typer.Option(None, "--db", help="Gallery database (default as enroll)."),
    token_file: Path | None = typer.Option(
        None, "--token-file", help="'USER TOKEN' lines (default ~/.config/ctface/tokens)."
    ),
    workers: int = typer.Option(
        1, "--workers", min=1, help="Worker processes (each holds the models, one CPU core)."
    ),  # fmt: skip
    queue: int = typer.Option(
        4,
        "--queue",
        min=0,
        help="Requests that may wait for a worker (beyond that: 503 with Retry-After).",
    ),  # fmt: skip
    max_upload_mb: float = typer.Option(
        2048, "--max-upload-mb", min=1, help="Largest request body (413 beyond)."
    ),  # fmt: skip
    timeout: float = typer.Option(
        600, "--timeout", min=1, help="Seconds a request's scan work may take (504 beyond)."
    ),  # fmt: skip
    body_timeout: float = typer.Option(
        60,
        "--body-timeout",
        min=1,
        help="Seconds to wait for the next piece of a request body (408 beyond: a stalled "
        "upload gives its worker slot back).",
    ),  # fmt: skip
    weights: Path | None = typer.Option(None, "--weights", help="Recognition model file."),
    temp_dir: Path | None = typer.Option(
        None,
        "--temp-dir",
        help="Where uploads are unpacked, in a private folder per request "
        "(default: the system's temporary folder).",
    ),
    ssl_certfile: Path | None = typer.Option(
        None, "--ssl-certfile", help="TLS certificate (PEM): serve HTTPS."
    ),
    ssl_keyfile: Path | None = typer.Option(None, "--ssl-keyfile", help="Its private key."),
    add_token: str | None = typer.Option(
        None,
        "--add-token",
        metavar="USER",
        help="Append a new token for USER to the token file, print it, exit.",
    ),  # fmt: skip
) -> None:
    """Serve the library API over HTTP (/v1; OpenAPI schema at /openapi.json) and the review
    page (/review)."""
    from ctface.extras import require
    from ctface.gallery import default_path

    tokens = token_file or _default_tokens()
    if add_token is not None:
        from ctface.service.auth import new_token

        print(new_token(tokens, add_token))
        err.print(f"added a token for {add_token} to {tokens}", highlight=False, markup=False)
        return
    uvicorn = require("uvicorn", "ctface serve")
    require("fastapi", "ctface serve")
    from ctface.service.app import create_app
    from ctface.service.settings import ServiceSettings

    if weights is not None and not weights.is_file():
        raise InvalidInputError(f"--weights {weights} is not a file")
    if temp_dir is not None and not temp_dir.is_dir():
        raise InvalidInputError(f"--temp-dir {temp_dir} is not a folder")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise InvalidInputError("--ssl-certfile and --ssl-keyfile go together")
    for tls in (ssl_certfile, ssl_keyfile):
        if tls is not None and not tls.is_file():
            raise InvalidInputError(f"{tls} is not a file")
    settings = ServiceSettings(
        db=db or default_path(), token_file=tokens, workers=workers, queue=queue,
        max_upload_bytes=int(max_upload_mb * 1024**2), timeout_s=timeout,
        body_idle_s=body_timeout, weights=weights, temp_dir=temp_dir,
    )  # fmt: skip
    application = create_app(settings)  # the token file is read here: errors before listening
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if ssl_certfile is None and host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"warning: serving plain HTTP on {host}: tokens and scans cross the network "
                  "unencrypted (give --ssl-certfile/--ssl-keyfile, or a TLS proxy in front)",
                  highlight=False, markup=False)  # fmt: skip
    scheme = "http" if ssl_certfile is None else "https"
    err.print(
        f"ctface service: {scheme}://{host}:{port}/ (review page /review, OpenAPI schema "
        f"/openapi.json), gallery {settings.db}, {workers} workers",
        highlight=False,
        markup=False,
    )
    uvicorn.run(application, host=host, port=port, access_log=False, log_config=None,
                timeout_graceful_shutdown=10,
                ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
                ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None)  # fmt: skip
