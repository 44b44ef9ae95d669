"""``/feedback``: reviewer decisions as a YOLO dataset (zip) and false-alarm rates. Supervisors and admins,
over the compounds where they hold that role."""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Response

from service import feedback
from service.deps import CurrentPrincipal, SessionDep, StoreDep
from service.schemas import Identifier

router = APIRouter(prefix="/feedback", tags=["feedback"])
ERRORS = {403: {"description": "not a supervisor or admin anywhere"},
          404: {"description": "compound_id is foreign to the caller"}}


def _scope(principal, compound_id: str | None) -> frozenset[str] | None:
    if compound_id is not None:
        principal.require("feedback.export", compound_id)
        return frozenset({compound_id})
    principal.require_any("feedback.export")
    return principal.compounds_for("feedback.export")


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.timezone.utc) if value is not None and value.tzinfo is None else value


@router.get("/dataset.zip", response_class=Response, responses={**ERRORS, 200: {"content": {"application/zip": {}}}})
def get_dataset(principal: CurrentPrincipal, session: SessionDep, store: StoreDep,
                compound_id: Identifier | None = None,
                since: Annotated[dt.datetime | None, Query()] = None,
                until: Annotated[dt.datetime | None, Query()] = None) -> Response:
    """Confirmed (boxes as labels) and rejected-as-false-alarm (empty labels) snapshots, YOLO layout."""
    data = feedback.dataset_zip(session, store, _scope(principal, compound_id), _utc(since), _utc(until))
    return Response(data, media_type="application/zip",
                    headers={"Content-Disposition": 'attachment; filename="compoundeye-feedback.zip"'})


@router.get("/false-alarms", responses=ERRORS)
def get_false_alarms(principal: CurrentPrincipal, session: SessionDep,
                     compound_id: Identifier | None = None) -> list[dict]:
    """Per camera and rule: confirmed, false alarms, rate and a suggested confidence threshold."""
    return feedback.false_alarm_rates(session, _scope(principal, compound_id))
