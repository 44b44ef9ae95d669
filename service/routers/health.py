"""``GET /healthz``: is the service up and can it reach its database."""
from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from service.db import ping
from service.schemas import Health

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health,
            responses={503: {"model": Health, "description": "database unreachable"}})
def healthz(request: Request):
    """``{"status": "ok", "database": "ok"}``, or 503 when a ``SELECT 1`` fails."""
    try:
        ping(request.app.state.engine)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("health check: database unreachable: %s", exc)
        return JSONResponse({"status": "error", "database": "unreachable"}, status_code=503)
    return Health(status="ok", database="ok")
