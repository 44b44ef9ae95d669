"""HTTP hardening of the app (issue 11): security headers on every response, CORS closed unless
origins are listed, and a size limit on every request body.

Three pure-ASGI pieces, installed by :func:`install_security` from ``create_app``:

- :class:`SecurityHeaders` adds ``Content-Security-Policy``, ``X-Content-Type-Options: nosniff``,
  ``X-Frame-Options: DENY`` and ``Referrer-Policy: no-referrer`` to every response (pages, API,
  errors, evidence). The policy is what the pages in ``service/static`` need and no more: scripts and
  styles from this origin only (no inline script; ``style="…"`` attributes are allowed because the
  pages' markup uses them), images and video from this origin, ``blob:`` URLs the pages make from
  fetched bytes, and the S3 endpoint when evidence links are presigned S3 URLs. FastAPI's ``/docs``
  and ``/redoc`` load Swagger UI / ReDoc from their CDN with an inline script, so they get a policy of
  their own that allows exactly that.
- Starlette's ``CORSMiddleware`` only when ``Settings.cors_origins`` lists origins; with none (the
  default) no response carries an ``Access-Control-Allow-Origin``, so other sites' scripts cannot
  read the API.
- :class:`BodyLimit` refuses bodies over the limit with 413: multipart uploads (events, re-inspection
  snapshots) up to ``max_upload_mb`` plus room for the form, every other body (JSON, the login form) up
  to ``max_request_kb``. A declared ``Content-Length`` is refused before a byte is read; a body sent
  without one (chunked) is counted as it arrives and refused when it passes the limit.
- A validation error can echo a body's ``Infinity``/``NaN`` (FastAPI's own handler fails on them).
- An integer the schema allows but the database cannot hold (a case id of 2**31 on PostgreSQL, an
  offset of 2**63) is 422, not 500.
"""
from __future__ import annotations

import math
import urllib.parse

from fastapi import FastAPI, HTTPException
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg.errors import NumericValueOutOfRange
from sqlalchemy.exc import DataError
from starlette.middleware.cors import CORSMiddleware

from service.settings import Settings

FORM_OVERHEAD_BYTES = 1024 * 1024  # room for the event JSON and multipart framing above max_upload_mb
DOCS_PATHS = ("/docs", "/redoc")
DOCS_CDN = "https://cdn.jsdelivr.net"


def evidence_origin(settings: Settings) -> str | None:
    """The origin browsers fetch presigned evidence URLs from (``s3://`` stores), else None."""
    if not settings.storage_url.startswith("s3://"):
        return None
    endpoint = settings.s3_public_endpoint or settings.s3_endpoint
    if "://" not in endpoint:
        endpoint = f"{'https' if settings.s3_secure else 'http'}://{endpoint}"
    parts = urllib.parse.urlsplit(endpoint)
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(settings: Settings) -> str:
    """The CSP of the pages and the API (see the module docstring for why each source is there)."""
    s3 = evidence_origin(settings)
    extra = f" {s3}" if s3 else ""
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        f"img-src 'self' blob: data:{extra}",  # data: only for the empty favicon of the pages
        f"media-src 'self' blob:{extra}",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


DOCS_POLICY = "; ".join([
    "default-src 'self'",
    f"script-src 'self' 'unsafe-inline' {DOCS_CDN}",
    f"style-src 'self' 'unsafe-inline' {DOCS_CDN} https://fonts.googleapis.com",
    "font-src 'self' https://fonts.gstatic.com",
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly",
    "worker-src 'self' blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
])


class SecurityHeaders:
    """Pure ASGI middleware: the security headers on every HTTP response (a header a route set itself
    is kept)."""

    def __init__(self, app, policy: str, docs_policy: str = DOCS_POLICY):
        self.app = app
        common = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                  (b"referrer-policy", b"no-referrer")]
        self.headers = [(b"content-security-policy", policy.encode()), *common]
        self.docs_headers = [(b"content-security-policy", docs_policy.encode()), *common]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        extra = self.docs_headers if path in DOCS_PATHS else self.headers

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in extra if name not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimit:
    """Pure ASGI middleware: 413 for a request body over its limit — ``multipart_bytes`` for
    ``multipart/form-data``, ``other_bytes`` for anything else."""

    def __init__(self, app, multipart_bytes: int, other_bytes: int):
        self.app, self.multipart_bytes, self.other_bytes = app, multipart_bytes, other_bytes

    def _limit(self, scope) -> tuple[int, str]:
        content_type = dict(scope["headers"]).get(b"content-type", b"").lower()
        if content_type.startswith(b"multipart/form-data"):
            return self.multipart_bytes, "max_upload_mb"
        return self.other_bytes, "max_request_kb"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit, setting = self._limit(scope)

        def too_large(size: str) -> str:
            return f"request body is {size} bytes, the limit is {limit} bytes ({setting})"

        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > limit:
            await JSONResponse({"detail": too_large(str(int(length)))}, status_code=413)(scope, receive, send)
            return
        received, started = 0, False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI passes an HTTPException raised while reading the body through as it is.
                    raise HTTPException(413, too_large(f"more than {limit}"))
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except HTTPException as exc:  # raised outside a route (no FastAPI handler on the way out)
            if exc.status_code != 413 or started:
                raise
            await JSONResponse({"detail": exc.detail}, status_code=413)(scope, receive, send)


async def _number_out_of_range(_request, exc: Exception) -> JSONResponse:
    """422 for an integer id or offset the schema allows but the database cannot hold: SQLite's driver
    raises OverflowError above 2**63 - 1, PostgreSQL ``integer out of range`` above 2**31 - 1 for an
    INTEGER key. Any other database error stays a 500."""
    if isinstance(exc, DataError) and not isinstance(exc.orig, NumericValueOutOfRange):
        raise exc
    return JSONResponse({"detail": "a number in the request is out of range for this field"}, status_code=422)


def json_safe(value):
    """``value`` with every non-finite float (a body's ``Infinity`` or ``NaN``) as its string: JSON cannot
    carry them, so echoing such an input back in an error would fail with a 500."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


async def _validation_failed(_request, exc: RequestValidationError) -> JSONResponse:
    # FastAPI's own handler, but able to echo an input of Infinity or NaN
    return JSONResponse({"detail": jsonable_encoder(json_safe(exc.errors()))}, status_code=422)


def install_security(app: FastAPI, settings: Settings) -> None:
    """Add body limits, CORS (only with ``settings.cors_origins``) and the security headers to ``app``
    (the headers outermost, so every response — a 413, a CORS preflight — carries them), and answer a
    number too large for the database with 422 instead of 500."""
    app.add_exception_handler(RequestValidationError, _validation_failed)
    app.add_exception_handler(OverflowError, _number_out_of_range)
    app.add_exception_handler(DataError, _number_out_of_range)
    app.add_middleware(BodyLimit, multipart_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
                       other_bytes=settings.max_request_kb * 1024)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST", "PUT", "DELETE"],
                           allow_headers=["Authorization", "X-API-Key", "Content-Type", "Last-Event-ID", "Range"],
                           max_age=600)
    app.add_middleware(SecurityHeaders, policy=content_security_policy(settings))
