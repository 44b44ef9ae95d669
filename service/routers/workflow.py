"""The review workflow's routers, in the order the app mounts them under ``/api/v1``."""
from __future__ import annotations

from service.routers import audit, auth, cases, feedback, scorecard

ROUTERS = (auth.router, cases.router, scorecard.router, feedback.router, audit.router)
