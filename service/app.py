"""The FastAPI application. Run it with ``uvicorn service.app:create_app --factory``.

``create_app`` reads the settings once, migrates the database (unless told not to), opens the
evidence store and wires the routers; nothing happens at import time.
"""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError, TimeoutError as PoolTimeout

from service.catalog import register_site
from service.login_throttle import LoginThrottle
from service.db import make_engine, session_factory, statistics_warning, upgrade
from service.errors import AlreadyReviewed, Conflict, InvalidEvent, StorageError, UploadTooLarge, http_answer
from service.live import LiveHub
from service.routers import events, evidence, feed, health, reviews
from service.routers import camera_health, grid, leases, rescans
from service.routers import reports as reports_router
from service.routers.workflow import ROUTERS as workflow_routers
from service import pages
from service.security import install_security
from service.settings import Settings
from service.storage import store_from_url
from vision.config import load_site_config

log = logging.getLogger(__name__)
DATABASE_RETRY_AFTER_S = 2


def _error(status_code: int, detail, exc: Exception | None = None) -> JSONResponse:
    if status_code >= 500 and exc is not None:
        log.error("%s", exc, exc_info=exc)
    return JSONResponse({"detail": detail}, status_code=status_code)


def install_error_handlers(app: FastAPI) -> None:
    """Map the project's errors to HTTP: 422 invalid event, 413 too large, 409 already reviewed,
    500 integrity failed or evidence missing, 503 evidence store unavailable, 503 database unreachable
    (SQLAlchemy's OperationalError / InterfaceError / pool timeout, with ``Retry-After``)."""
    async def handler(_request: Request, exc: Exception) -> JSONResponse:
        status_code, detail = http_answer(exc)
        return _error(status_code, detail, exc)
    for exc_class in (InvalidEvent, UploadTooLarge, AlreadyReviewed, Conflict, StorageError):
        app.add_exception_handler(exc_class, handler)

    async def database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        # The database is down, restarting or out of connections: the request may be retried as it is
        # (a worker's outbox does), so 503 with Retry-After rather than 500. The transaction was rolled
        # back with the session, and ingest leaves no half-written violation (service/ingest.py).
        log.warning("database unavailable: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        response = _error(503, "database unavailable; retry shortly")
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        return response
    for exc_class in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(exc_class, database_unavailable)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API for ``settings`` (default: read from ``COMPOUNDEYE_*`` environment variables, once).

    Runs migrations to head when ``settings.migrate_on_startup``; registers the compounds and cameras of
    ``settings.site_config`` when given. Raises ``ConfigError`` / ``StorageError`` when those are wrong."""
    settings = settings if settings is not None else Settings()
    if settings.migrate_on_startup:
        upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    if warning := statistics_warning(engine):
        log.warning(warning)
    sessions = session_factory(engine)
    store = store_from_url(settings)
    site = load_site_config(settings.site_config) if settings.site_config else None
    if site is not None:
        with sessions() as session:
            register_site(session, site)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        engine.dispose()

    app = FastAPI(title="CompoundEye", version="0.1.0", lifespan=lifespan,
                  description="Violations found by the compound cameras, their evidence, and reviewers' decisions.")
    app.state.settings, app.state.engine, app.state.sessions = settings, engine, sessions
    app.state.store, app.state.site = store, site
    app.state.live_hub = LiveHub()
    app.state.login_throttle = LoginThrottle(settings.login_limit_per_user, settings.login_limit_per_address,
                                             settings.rate_limit_storage)
    install_security(app, settings)  # body limits, CORS when origins are listed, security headers
    install_error_handlers(app)
    app.include_router(health.router)
    for router in (events.router, evidence.router, reviews.router, *workflow_routers, feed.router):
        app.include_router(router, prefix="/api/v1")
    app.include_router(camera_health.router, prefix="/api/v1")
    app.include_router(leases.router, prefix="/api/v1")
    app.include_router(rescans.router, prefix="/api/v1")
    app.include_router(reports_router.router, prefix="/api/v1")
    app.include_router(grid.router, prefix="/api/v1")
    app.include_router(pages.router)
    return app
