"""The service's HTTP API (FastAPI; its OpenAPI schema at ``/openapi.json``).

Every route but ``/healthz`` needs ``Authorization: Bearer <token>`` (or the review page's
session cookie). Scans are uploaded as multipart files (``uploads``) and acquired in a worker
(``pool``); the gallery is read and written here, one connection per request, through
``ctface.api.Gallery``. A refused request (401, 400, 413, 422, 503, ...) leaves the gallery as
it was. Logs carry request IDs, routes, statuses, times, users and patient IDs, never file
names or header values.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ctface.api import Gallery
from ctface.errors import CtfaceError, FailureCode
from ctface.gallery.acquire import Acquisition, frontal_from_source
from ctface.service.auth import Sessions, Tokens
from ctface.service.errors import ServiceError, from_ctface, from_failure, not_found
from ctface.service.metrics import Metrics
from ctface.service.pool import Slot, WorkerPool, acquire_scan
from ctface.service.settings import ServiceSettings
from ctface.service.uploads import Upload, sweep, uploaded

log = logging.getLogger("ctface.service")
COOKIE = "ctface_session"
VERSION = "v1"


def multipart(*fields: str, text: dict[str, str] | None = None) -> dict[str, Any]:
    """The OpenAPI request body of an upload (the body is read by ``uploads``, after auth)."""
    props: dict[str, Any] = {f: {"type": "array", "items": {"type": "string", "format":
                                 "binary"}} for f in fields}  # fmt: skip
    props.update({k: {"type": "string", "description": v} for k, v in (text or {}).items()})
    content: dict[str, Any] = {"multipart/form-data": {"schema": {"type": "object",
                               "properties": props, "required": list(fields)}}}  # fmt: skip
    if len(fields) == 1:
        content["application/zip"] = {"schema": {"type": "string", "format": "binary"}}
    return {"requestBody": {"required": True, "content": content}}


class DecisionIn(BaseModel):
    decision: str = Field(description="accept, reject or note")
    note: str = Field("", max_length=2000)


class Service:
    """What the routes share: settings, tokens, sessions, the worker pool, metrics."""

    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.tokens = Tokens(settings.token_file)
        with self.gallery() as g:  # a missing model, a file that is not a gallery: now
            if g.path.exists():
                g.db.check_model(g.model.version)
            g.calibration.threshold(1e-3)
        self.sessions = Sessions()
        self.pool = WorkerPool(settings.workers, settings.capacity, settings.weights,
                               settings.threads_per_worker)  # fmt: skip
        self.metrics = Metrics(lambda: self.pool.admitted, settings.capacity, settings.workers)

    def gallery(self) -> Gallery:
        return Gallery.open(self.settings.db, model=self.settings.weights)

    async def in_gallery(self, fn: Callable[[Gallery], Any]) -> Any:
        """``fn(gallery)`` in a thread (SQLite and NumPy block), one connection per call."""

        def call() -> Any:
            with self.gallery() as g:
                return fn(g)

        return await run_in_threadpool(call)

    def caller(self, request: Request) -> str:
        """The user of a bearer token, or of the review page's session (whose writes must carry
        its CSRF token); 401 otherwise."""
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            user = self.tokens.user(header[7:].strip())
            if user is None:
                raise ServiceError(401, "unauthorized", "unknown token",
                                   {"WWW-Authenticate": "Bearer"})  # fmt: skip
            return user
        session = self.sessions.get(request.cookies.get(COOKIE), self.tokens.users())
        if session is not None:
            sent = request.headers.get("x-csrf-token", "")
            if request.method not in ("GET", "HEAD") and not secrets.compare_digest(
                sent.encode(), session.csrf.encode()
            ):
                raise ServiceError(403, "csrf", "the review page's CSRF token is missing")
            return session.user
        raise ServiceError(401, "unauthorized", "send Authorization: Bearer <token>",
                           {"WWW-Authenticate": "Bearer"})  # fmt: skip

    @asynccontextmanager
    async def received(self, request: Request, *fields: str) -> AsyncIterator[tuple[Upload, Slot]]:
        """A worker slot (503 at once when none is free), then the request's upload."""
        s = self.settings
        with self.pool.slot() as slot:
            async with uploaded(request, fields, s.max_upload_bytes, s.temp_dir) as up:
                yield up, slot

    async def acquire(
        self, up: Upload, slot: Slot, field: str, series_uid: str | None = None
    ) -> Acquisition:
        """The field's scan acquired in a worker; errors name the upload, not its folder."""
        try:
            return await acquire_scan(self.pool, slot, self.settings.timeout_s, up.scans[field],
                                      series_uid)  # fmt: skip
        except ServiceError as e:
            e.message = e.message.replace(str(up.folder), "<upload>")
            raise


def error_response(e: ServiceError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


HTTP_CODES = {400: "bad-input", 401: "unauthorized", 403: "forbidden", 404: "not-found",
              405: "method-not-allowed", 413: "too-large", 415: "bad-input"}  # fmt: skip


def install_errors(app: FastAPI, metrics: Metrics) -> None:
    """Every error as ``{"error": {"code", "message"}}`` with its status."""

    def answer(e: ServiceError) -> JSONResponse:
        metrics.failure(e.code)
        return error_response(e)

    @app.exception_handler(ServiceError)
    async def _service(_: Request, e: ServiceError) -> JSONResponse:
        return answer(e)

    @app.exception_handler(CtfaceError)
    async def _ctface(_: Request, e: CtfaceError) -> JSONResponse:
        return answer(from_ctface(e))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return answer(ServiceError(400, "bad-input", f"{where}: {first.get('msg', 'invalid')}"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = HTTP_CODES.get(e.status_code, "error")
        return answer(ServiceError(e.status_code, code, str(e.detail), dict(e.headers or {})))


UPLOAD_ROUTES = (f"/{VERSION}/identify", f"/{VERSION}/verify", f"/{VERSION}/enroll")
SMALL_BODY = 64 * 1024  # every other route's body limit (a decision, the login form)
CLIENT_CLOSED = 499  # logged and counted for a client gone before its answer (nginx's code)


class Guard:
    """Outermost layer of the app: a request ID; the body size limit (the upload limit on the
    upload routes, ``SMALL_BODY`` elsewhere: 413 from Content-Length at once, or when the
    streamed body passes it); any error no handler took answered as JSON 500 without its
    message (it may quote input) and not passed on (the server would log its traceback),
    except a client gone mid-request (an upload given up): nobody to answer, no error of the
    server's, logged and counted as 499; one log line and the metrics per request."""

    def __init__(self, app: Any, service: Service) -> None:
        self.app, self.service = app, service

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["path"] in UPLOAD_ROUTES
        limit = self.service.settings.max_upload_bytes if upload else SMALL_BODY
        t0, rid, status = time.perf_counter(), secrets.token_hex(4), [0]
        length = dict(scope.get("headers") or []).get(b"content-length", b"").decode() or "0"
        too_large = ServiceError(413, "too-large", f"the request body is over the limit of "
                                 f"{limit:,} bytes")  # fmt: skip

        async def sending(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        seen, whole = [0], [False]
        idle = self.service.settings.body_idle_s
        stalled = ServiceError(408, "timeout", f"no part of the request body came for {idle:g} s")

        async def receiving() -> dict[str, Any]:
            if whole[0]:  # after the body only a disconnect comes, however late
                return dict(await receive())
            try:  # a client that stops sending mid-body would hold its worker slot for good
                message: dict[str, Any] = await asyncio.wait_for(receive(), idle)
            except TimeoutError:
                raise stalled from None
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                whole[0] = not message.get("more_body", False)
                if seen[0] > limit:
                    raise too_large
            return message

        try:
            if not length.isdigit() or int(length) > limit:
                refused = too_large if length.isdigit() else ServiceError(
                    400, "bad-input", "invalid Content-Length")  # fmt: skip
                self.service.metrics.failure(refused.code)
                await error_response(refused)(scope, receive, sending)
            else:
                await self.app(scope, receiving, sending)
        except ClientDisconnect:  # the upload folder and slot are released on the way out
            status[0] = status[0] or CLIENT_CLOSED
        except Exception as e:  # noqa: BLE001 - no handler took it: a bug, answered plainly
            log.error("%s internal error: %s", rid, type(e).__name__)
            if not status[0]:
                self.service.metrics.failure("internal")
                bug = ServiceError(500, "internal", f"internal error ({type(e).__name__})")
                await error_response(bug)(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            seconds = time.perf_counter() - t0
            self.service.metrics.observe(route, scope["method"], status[0] or 500, seconds)
            log.info("%s %s %s %d %.3fs", rid, scope["method"], route, status[0] or 500, seconds)


def create_app(settings: ServiceSettings) -> FastAPI:
    """The service: the ``/v1`` API, ``/healthz``, ``/metrics`` and the review page."""
    from ctface.service.review_page import review_routes

    service = Service(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        swept = sweep(settings.temp_dir)  # uploads of servers killed before they cleaned up
        if swept:
            log.info("removed %d upload folders left by stopped servers", swept)
        await run_in_threadpool(service.pool.start)  # every worker has its models loaded
        yield
        service.pool.close()

    app = FastAPI(
        docs_url=None,  # Swagger UI would load its scripts from a CDN: the schema is served
        redoc_url=None,
        openapi_url=None,  # below, behind the token like every route but /healthz
        title="ctface",
        version=VERSION,
        lifespan=lifespan,
        description="Which patient a head CT belongs to, from the face surface.",
    )
    app.state.service = service
    install_errors(app, service.metrics)
    api_routes(app, service)
    review_routes(app, service)
    app.add_middleware(Guard, service=service)
    return app


def api_routes(app: FastAPI, svc: Service) -> None:  # noqa: C901 - one route per function
    user = Depends(svc.caller)

    @app.get("/healthz", tags=["service"])
    async def healthz() -> dict[str, Any]:
        """Liveness (no token): the worker queue's state."""
        return {"status": "ok", "workers": svc.settings.workers, "queue": svc.pool.admitted,
                "capacity": svc.settings.capacity}  # fmt: skip

    @app.get("/openapi.json", include_in_schema=False, dependencies=[user])
    async def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/metrics", tags=["service"], dependencies=[user])
    async def metrics() -> Response:
        """Prometheus text format."""
        return Response(svc.metrics.text(), media_type="text/plain; version=0.0.4")

    @app.post(f"/{VERSION}/identify", tags=["recognition"],
              openapi_extra=multipart("file", text={"label": "How the scan is named in the "
                                      "review page (e.g. an accession number)"}))  # fmt: skip
    async def identify(
        request: Request,
        top_k: int = Query(5, ge=1, le=100),
        fmr: float = Query(1e-3, gt=0, lt=1),
        series_uid: str | None = Query(None, max_length=64),
        record: bool = Query(True, description="Keep it for the review page"),
        who: str = user,
    ) -> dict[str, Any]:
        """Who is this? The same JSON as ``ctface identify --json``, plus ``finding_id``
        where the identification was kept for review."""
        t0 = time.perf_counter()
        await svc.in_gallery(lambda g: ready(g, fmr))  # before the upload is read
        async with svc.received(request, "file") as (up, slot):
            probe = await svc.acquire(up, slot, "file", series_uid)
            label = form_text(up, "label") or f"upload {time.strftime('%F %T')}"

        def decide(g: Gallery) -> dict[str, Any]:
            result = g.identify(probe, fmr=fmr, top_k=top_k)
            out = result.summary(label, g.model.version, probe.record.quality,
                                 time.perf_counter() - t0)  # fmt: skip
            if record:
                out["finding_id"] = g.record_identification(result, probe, label)
            log.info("identify by %s: %r", who, result.patient_id or "not in gallery")
            return out

        return await svc.in_gallery(decide)

    @app.post(f"/{VERSION}/verify", tags=["recognition"],
              openapi_extra=multipart("a", "b"))  # fmt: skip
    async def verify(
        request: Request,
        fmr: float = Query(1e-3, gt=0, lt=1),
        patient_id: str | None = Query(
            None,
            max_length=64,
            description=("Verify the scan 'a' against this enrolled patient instead of a scan 'b'"),
        ),
        who: str = user,
    ) -> dict[str, Any]:
        """Are two scans (fields ``a`` and ``b``) the same person, or is scan ``a`` the
        enrolled patient ``patient_id``? Score, decision, FMR and FNMR at the score."""

        def check(g: Gallery) -> None:  # before the upload is read
            g.calibration.threshold(fmr)
            if patient_id:
                patient_template(g, patient_id)

        await svc.in_gallery(check)
        fields = ("a",) if patient_id else ("a", "b")
        async with svc.received(request, *fields) as (up, slot):
            scans = [await svc.acquire(up, slot, f) for f in fields]  # one slot, in turn

        def decide(g: Gallery) -> dict[str, Any]:
            other = scans[1] if len(scans) > 1 else patient_template(g, patient_id or "")
            result = g.verify(scans[0], other, fmr=fmr)
            return {**result.to_json(), "model_version": g.model.version,
                    "patient_id": patient_id}  # fmt: skip

        return await svc.in_gallery(decide)

    @app.post(f"/{VERSION}/enroll", tags=["gallery"], status_code=201,
              openapi_extra=multipart("file", text={"patient_id": "The patient's ID"}))  # fmt: skip
    async def enroll(request: Request, response: Response, who: str = user) -> dict[str, Any]:
        """Store the scan's template under ``patient_id`` (a form field). 201 enrolled, 200
        already enrolled as this patient, 409 enrolled as another; 422 no usable face."""
        async with svc.received(request, "file") as (up, slot):
            pid = form_text(up, "patient_id", required=True)
            label = form_text(up, "label") or time.strftime("%F %T")
            acq = await svc.acquire(up, slot, "file")
        acq = dataclasses.replace(acq, record=dataclasses.replace(
            acq.record, source=f"service upload {label}"))  # fmt: skip

        def store(g: Gallery) -> dict[str, Any]:
            from ctface.gallery.report import png_bytes
            from ctface.gallery.review import save_scan_images

            (outcome,) = g.enroll(acq, pid)
            if outcome.code == FailureCode.CONFLICT:
                raise ServiceError(409, str(outcome.code), outcome.reason or "conflict")
            if outcome.status != "enrolled" and outcome.code is not None:
                raise from_failure(outcome.code, outcome.reason)
            if outcome.scan_key is None:
                response.status_code = 200
            else:  # the review image; the scan is enrolled whether or not it can be kept
                try:
                    save_scan_images(g.db, {outcome.scan_key: png_bytes(acq.frontal)})
                except CtfaceError as e:
                    log.warning("scan %d: review image not kept (%s)", outcome.scan_key,
                                type(e).__name__)  # fmt: skip
            log.info("enroll by %s: %r %s", who, pid, outcome.status)
            return {**outcome.to_json(), "quality": acq.record.quality}

        return await svc.in_gallery(store)

    @app.get(f"/{VERSION}/patients", tags=["gallery"], dependencies=[user])
    async def patients() -> dict[str, Any]:
        """Enrolled patients and their number of scans."""

        def read(g: Gallery) -> dict[str, Any]:
            rows = g.db.patients() if g.path.exists() else []
            return {"patients": [{"patient_id": p, "scans": n} for p, n in rows],
                    "count": len(rows)}  # fmt: skip

        return await svc.in_gallery(read)

    @app.get(f"/{VERSION}/scans/{{scan_key}}", tags=["gallery"], dependencies=[user])
    async def scan(scan_key: int) -> dict[str, Any]:
        """One enrolled scan: patient, UIDs, acquisition, quality, model (no pixels)."""
        return (await svc.in_gallery(lambda g: stored_scan(g, scan_key))).to_json()

    @app.get(f"/{VERSION}/scans/{{scan_key}}/image", tags=["gallery"], dependencies=[user],
             response_class=Response, responses={200: {"content": {"image/png": {}}}})  # fmt: skip
    async def scan_image(scan_key: int) -> Response:
        """The scan's frontal depth image (PNG): kept, else rendered from its source files
        in a worker and kept; 404 when the files are gone."""
        return Response(await scan_png(svc, scan_key), media_type="image/png",
                        headers={"Cache-Control": "private, max-age=3600"})  # fmt: skip

    @app.get(f"/{VERSION}/findings", tags=["review"], dependencies=[user])
    async def findings(
        kind: str | None = None,
        status: str = "all",
        sort: str = "score",
        order: str = Query("desc", pattern="^(asc|desc)$"),
        limit: int = Query(100, ge=1, le=1000),
        offset: int = Query(0, ge=0),
    ) -> dict[str, Any]:
        """Findings kept for review (reconciliations, identifications) with their
        decisions."""

        def read(g: Gallery) -> dict[str, Any]:
            found, total = g.findings(
                kind=kind,
                status=status,
                sort=sort,
                descending=order == "desc",
                limit=limit,
                offset=offset,
            )
            return {"findings": [f.to_json() for f in found], "total": total}

        return await svc.in_gallery(read)

    @app.get(f"/{VERSION}/findings/{{finding_id}}", tags=["review"], dependencies=[user])
    async def finding(finding_id: int) -> dict[str, Any]:
        from ctface.gallery.review import get_finding

        return (await svc.in_gallery(lambda g: get_finding(g.db, finding_id))).to_json()

    @app.get(f"/{VERSION}/findings/{{finding_id}}/probe", tags=["review"], dependencies=[user],
             response_class=Response, responses={200: {"content": {"image/png": {}}}})  # fmt: skip
    async def probe_image(finding_id: int) -> Response:
        """An identification's probe: its frontal depth image (PNG)."""
        from ctface.gallery.review import probe_png

        png = await svc.in_gallery(lambda g: probe_png(g.db, finding_id) if g.path.exists()
                                   else None)  # fmt: skip
        if png is None:
            raise not_found(f"no probe image for finding {finding_id}")
        return Response(png, media_type="image/png")

    body_schema = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": DecisionIn.model_json_schema()}}}}  # fmt: skip

    @app.post(f"/{VERSION}/findings/{{finding_id}}/decision", tags=["review"], status_code=201,
              openapi_extra=body_schema)  # fmt: skip
    async def decision(request: Request, finding_id: int, who: str = user) -> dict[str, Any]:
        """Record accept, reject or a note, with the user and time (never overwritten). The
        body is read after the token is checked."""
        try:
            body = DecisionIn.model_validate_json(await request.body())
        except ValidationError as e:
            why = e.errors()[0]["msg"] if e.errors() else "invalid"
            raise ServiceError(400, "bad-input", f"the decision body: {why}") from None
        made = await svc.in_gallery(lambda g: g.decide(finding_id, body.decision, who, body.note))
        log.info("decision by %s on finding %d: %s", who, finding_id, made.decision)
        return made.to_json()


def form_text(up: Upload, name: str, required: bool = False) -> str:
    """A form field of 1-64 printable characters (an ID, a label); 400 otherwise."""
    value = up.fields.get(name, "").strip()
    if (required and not value) or len(value) > 64 or not value.isprintable():
        need = "give" if required else "the optional"
        raise ServiceError(400, "bad-input", f"{need} form field {name!r}: 1-64 printable "
                           "characters")  # fmt: skip
    return value


def ready(g: Gallery, fmr: float) -> None:
    """409 for a gallery with nobody in it yet; the checks of ``Gallery.check``."""
    if not g.path.exists():
        raise ServiceError(409, "empty-gallery", "the gallery is empty: enroll scans first")
    g.check(fmr)


def stored_scan(g: Gallery, scan_key: int) -> Any:
    scans = g.db.scans(scan_keys=[scan_key]) if g.path.exists() else []
    if not scans:
        raise not_found(f"no scan {scan_key} in the gallery")
    return scans[0]


def patient_template(g: Gallery, patient_id: str) -> Any:
    """The template of the patient's scan that best represents them: their mean template's
    nearest scan (a patient with one scan: that one). One comparison, so the decision's FMR is
    the calibration's (the best of k scans would be about k times as often a false match)."""
    import numpy as np

    if not g.path.exists():
        raise not_found(f"no patient {patient_id!r}: the gallery is empty")
    t = g.db.templates(cache=True)
    rows = [i for i, p in enumerate(t.patient_ids) if p == patient_id]
    if not rows:
        raise not_found(f"no patient {patient_id!r} in the gallery")
    vectors = t.vectors[rows]
    mean = vectors.mean(axis=0)
    return vectors[int(np.argmax(vectors @ mean))]


async def scan_png(svc: Service, scan_key: int) -> bytes:
    """A scan's review image: kept in the gallery, else rendered in a worker and kept."""
    from ctface.gallery.report import png_bytes
    from ctface.gallery.review import save_scan_images, scan_image

    def kept(g: Gallery) -> tuple[bytes | None, Any]:
        return scan_image(g.db, scan_key), stored_scan(g, scan_key).record

    png, record = await svc.in_gallery(kept)
    if png is not None:
        return png
    with svc.pool.slot() as slot:
        image = await svc.pool.run(slot, svc.settings.timeout_s, frontal_from_source, record)
    if image is None:
        raise not_found(f"the source files of scan {scan_key} are no longer readable")
    png = png_bytes(image)
    await svc.in_gallery(lambda g: save_scan_images(g.db, {scan_key: png}))
    return png
