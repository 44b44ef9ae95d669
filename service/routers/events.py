"""``/api/v1/events``: workers post violations with their evidence; anyone in scope lists and reads them."""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, Response, UploadFile, status
from sqlalchemy import func, select

from service.deps import CurrentKey, SessionDep, SettingsDep, StoreDep, WorkerKey
from service.ingest import check_uploads, declared_type_problem, parse_event, store_event
from service.models import Violation
from service.routers.common import load_violation, scope_to_compounds, violation_public, violations_public
from service.routers.feed import publish_violation
from service.schemas import Identifier, ReviewState, ViolationList, ViolationPublic

router = APIRouter(prefix="/events", tags=["events"])

ERRORS = {401: {"description": "missing, unknown or revoked API key or token"},
          403: {"description": "the caller's role in the compound may not do this"},
          404: {"description": "no such violation or compound, or the caller has no role in its compound"}}


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ViolationPublic,
             responses={**ERRORS, 200: {"model": ViolationPublic, "description": "already stored; nothing new written"},
                        413: {"description": "evidence larger than max_upload_mb"},
                        415: {"description": "a file declared as another type than its kind's"},
                        422: {"description": "invalid event or evidence; nothing stored"}})
def post_event(
    key: WorkerKey, session: SessionDep, store: StoreDep, settings: SettingsDep, request: Request, response: Response,
    event: Annotated[str, Form(description="the violation as JSON (schema ViolationCreate)")],
    snapshot: Annotated[UploadFile, File(description="annotated snapshot, image/jpeg")],
    clip: Annotated[UploadFile, File(description="H.264 clip, video/mp4")],
    sidecar: Annotated[UploadFile, File(description="sidecar metadata, application/json")],
    crop: Annotated[UploadFile | None, File(description="optional crop of the object, image/jpeg")] = None,
) -> ViolationPublic:
    """Store one violation and its evidence: 201 when new, 200 with the stored row when the id exists."""
    violation_in = parse_event(event)
    key.require("events.post", violation_in.compound_id)
    parts = {"snapshot": snapshot, "clip": clip, "sidecar": sidecar, "crop": crop}
    for kind, part in parts.items():
        if part is not None and (problem := declared_type_problem(kind, part.content_type)):
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, problem)
    files = {kind: part.file if part is not None else None for kind, part in parts.items()}
    uploads = check_uploads(violation_in, files, settings.max_upload_bytes)
    violation, created = store_event(session, store, violation_in, uploads)
    if not created:
        key.require("events.post", violation.compound_id, what=f"violation with id {violation.id!r}")
        response.status_code = status.HTTP_200_OK
        return violation_public(violation, request)
    return publish_violation(request, violation_public(violation, request))


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    """Query times without a zone are read as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


@router.get("", response_model=ViolationList, responses=ERRORS)
def list_events(
    key: CurrentKey, session: SessionDep, request: Request,
    compound_id: Identifier | None = None, camera_id: Identifier | None = None, rule: str | None = None,
    review_state: ReviewState | None = None,
    since: Annotated[dt.datetime | None, Query(description="start_time at or after (UTC if no zone)")] = None,
    until: Annotated[dt.datetime | None, Query(description="start_time before (UTC if no zone)")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ViolationList:
    """Violations in the caller's compounds, newest start first, with the total count for paging.
    A ``compound_id`` the caller has no role in is 404."""
    query = scope_to_compounds(select(Violation), Violation.compound_id, key, "events.read", compound_id)
    for column, value in ((Violation.camera_id, camera_id), (Violation.rule, rule),
                          (Violation.review_state, review_state)):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(Violation.start_time >= _utc(since))
    if until is not None:
        query = query.where(Violation.start_time < _utc(until))
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    page = query.order_by(Violation.start_time.desc(), Violation.id.desc()).limit(limit).offset(offset)
    return ViolationList(items=violations_public(session, page, request), total=total or 0,
                         limit=limit, offset=offset)


@router.get("/{violation_id}", response_model=ViolationPublic,
            responses={**ERRORS, 404: {"description": "no such violation"}})
def get_event(violation_id: str, key: CurrentKey, session: SessionDep, request: Request) -> ViolationPublic:
    """One violation with its evidence URLs and review."""
    return violation_public(load_violation(session, key, violation_id), request)
