"""``/api/v1/events``: workers post violations with their evidence; anyone in scope lists and reads them."""
from __future__ import annotations

import datetime as dt
import logging
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, Response, UploadFile, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, TimeoutError as PoolTimeout
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile as FormFile

from service.auth import Principal
from service.deps import CurrentKey, SessionDep, SettingsDep, StoreDep, WorkerKey
from service.errors import CompoundEyeError, InvalidEvent, http_answer
from service.ingest import (BATCH_MAX_EVENTS, StoredViolation, Upload, batch_parts, check_uploads,
                            declared_type_problem, parse_batch, parse_event, rollback_quietly, store_event,
                            store_events)
from service.models import Violation
from service.routers.common import bounded_total, load_violation, scope_to_compounds, violation_public, violations_public
from service.routers.feed import publish_violation
from service.schemas import EventResult, Identifier, ReviewState, ViolationCreate, ViolationList, ViolationPublic
from service.storage import ObjectStore

log = logging.getLogger(__name__)
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
    violation, created = _check_and_store(session, store, key, violation_in, parts, settings.max_upload_bytes)
    if not created:
        response.status_code = status.HTTP_200_OK
        return violation_public(violation, request)
    return publish_violation(request, violation_public(violation, request))


def _check_and_store(session: Session, store: ObjectStore, key: Principal, event: ViolationCreate,
                     parts: dict[str, FormFile | None], max_bytes: int) -> tuple[StoredViolation, bool]:
    """A single post after the caller's role in the event's compound is checked: 415 for a part declared
    as another type, the uploads checked, the event stored; an existing violation comes back only to a
    caller with a role in its compound. (A batch checks each event the same way, ``_check_one``, and
    stores them together.)"""
    violation, created = store_event(session, store, event, _checked_uploads(event, parts, max_bytes))
    if not created:
        key.require("events.post", violation.compound_id, what=f"violation with id {violation.id!r}")
    return violation, created


def _checked_uploads(event: ViolationCreate, parts: dict[str, FormFile | None], max_bytes: int) -> list[Upload]:
    """415 for a part declared as another type than its kind's, then the uploads checked and measured."""
    for kind, part in parts.items():
        if part is not None and (problem := declared_type_problem(kind, part.content_type)):
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, problem)
    return check_uploads(event, {kind: part.file if part is not None else None for kind, part in parts.items()},
                         max_bytes)


REQUIRED_KINDS = ("snapshot", "clip", "sidecar")
BATCH_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["events"],
    "properties": {"events": {"type": "string",
                              "description": f"a JSON array of 1 to {BATCH_MAX_EVENTS} events (schema ViolationCreate)"}},
    "additionalProperties": {"type": "string", "format": "binary"},
    "description": "the evidence of event i as parts named 'i.snapshot' (image/jpeg), 'i.clip' (video/mp4), "
                   "'i.sidecar' (application/json) and optionally 'i.crop' (image/jpeg)"}}}}}


@router.post("/batch", response_model=list[EventResult], openapi_extra=BATCH_BODY,
             responses={**ERRORS, 400: {"description": "not a readable multipart form"},
                        413: {"description": "the request is larger than max_upload_mb"},
                        422: {"description": "no 'events' array of 1 to 50 events, or a part that is not an event's"}})
async def post_events_batch(key: WorkerKey, session: SessionDep, store: StoreDep, settings: SettingsDep,
                            request: Request) -> list[EventResult]:
    """Store several violations with their evidence in one request, each as a single post would: one
    result per event, in order (``status`` 201 new, 200 already stored, 4xx refused, 503 not stored now,
    retry it). A worker's outbox sends its backlog this way; the events are independent, so one refused
    event does not hold back the others. The role is checked per event, as for a single post: 403 in a
    compound where the caller may not post, 404 in one it has no role in."""
    async with request.form(max_files=4 * BATCH_MAX_EVENTS, max_fields=1) as form:
        events = parse_batch(_events_field(form))
        parts = batch_parts([name for name, _ in form.multi_items()], len(events))
        values = [value for _, value in form.multi_items()]
        evidence = [{kind: values[position] for kind, position in event_parts.items()} for event_parts in parts]
        results, stored = await run_in_threadpool(_store_batch, session, store, key, events, evidence,
                                                  settings.max_upload_bytes)
    for violation in stored:
        publish_violation(request, violation_public(violation, request))
    return results


def _events_field(form: FormData) -> str:
    events = form.get("events")
    if not isinstance(events, str):
        raise InvalidEvent([{"type": "missing", "loc": ["body", "events"],
                             "msg": "Field required: a JSON array of events, as a plain form field"}])
    return events


def _store_batch(session: Session, store: ObjectStore, key: Principal, events: list[ViolationCreate | InvalidEvent],
                 evidence: list[dict[str, FormFile | str]], max_bytes: int) -> tuple[list[EventResult], list[StoredViolation]]:
    """Each event checked as ``post_event`` would (role, parts, uploads), then the accepted ones stored
    together in one transaction (``store_events``). When the database is unavailable they all get 503
    (nothing of them stored; retry). When the group fails otherwise (the evidence store, an integrity
    check, a concurrent post of the same id) nothing of it is left and the events are stored one by one,
    each in its own transaction, so that the failure is that one event's answer."""
    results: dict[int, EventResult] = {}
    ready: list[tuple[int, ViolationCreate, list[Upload]]] = []
    for index, (event, parts) in enumerate(zip(events, evidence)):
        try:
            ready.append((index, event, _check_one(key, index, event, parts, max_bytes)))
        except HTTPException as exc:
            results[index] = _result(index, event, exc.status_code, exc.detail)
        except CompoundEyeError as exc:
            answer = http_answer(exc)
            if answer is None:
                raise
            results[index] = _result(index, event, *answer)
    stored: list[StoredViolation] = []
    if not ready:
        return [results[index] for index in sorted(results)], stored
    try:
        outcomes = store_events(session, store, [(event, uploads) for _, event, uploads in ready])
    except (OperationalError, InterfaceError, PoolTimeout):
        rollback_quietly(session)
        for index, event, _ in ready:
            results[index] = _result(index, event, 503, "database unavailable; retry shortly")
    except (CompoundEyeError, IntegrityError) as exc:
        log.info("batch of %d stored one by one after %s: %s", len(ready), type(exc).__name__, exc)
        stored = _store_each(session, store, key, ready, results)
    else:
        for (index, event, _), outcome in zip(ready, outcomes):
            results[index] = _outcome(key, index, event, outcome)
            if results[index].status == 201:
                stored.append(outcome[0])
    return [results[index] for index in sorted(results)], stored


def _store_each(session: Session, store: ObjectStore, key: Principal,
                ready: list[tuple[int, ViolationCreate, list[Upload]]],
                results: dict[int, EventResult]) -> list[StoredViolation]:
    """The checked events stored one at a time, each in its own transaction; their results go into
    ``results``. When the database or the evidence store is unavailable, the event and the ones after
    it get 503 and are not tried (each would wait for the same failure). Returns the new violations."""
    stored: list[StoredViolation] = []
    for position, (index, event, uploads) in enumerate(ready):
        try:
            outcome = store_event(session, store, event, uploads)
        except (OperationalError, InterfaceError, PoolTimeout):
            rollback_quietly(session)
            for later, later_event, _ in ready[position:]:
                results[later] = _result(later, later_event, 503, "database unavailable; retry shortly")
            break
        except CompoundEyeError as exc:
            answer = http_answer(exc)
            if answer is None:
                raise
            if answer[0] == 503:  # the evidence store is unavailable: the next events would wait on it too
                for later, later_event, _ in ready[position:]:
                    results[later] = _result(later, later_event, *answer)
                break
            results[index] = _result(index, event, *answer)
            continue
        results[index] = _outcome(key, index, event, outcome)
        if results[index].status == 201:
            stored.append(outcome[0])
    return stored


def _outcome(key: Principal, index: int, event: ViolationCreate,
             outcome: tuple[StoredViolation, bool] | InvalidEvent) -> EventResult:
    """One stored (or refused) event's result; an existing violation is reported only to a caller with a
    role in its compound, as for a single post."""
    if isinstance(outcome, InvalidEvent):
        return _result(index, event, *http_answer(outcome))
    violation, created = outcome
    if not created:
        try:
            key.require("events.post", violation.compound_id, what=f"violation with id {violation.id!r}")
        except HTTPException as exc:
            return _result(index, event, exc.status_code, exc.detail)
    return _result(index, event, 201 if created else 200)


def _result(index: int, event: ViolationCreate | InvalidEvent, status_code: int, detail=None) -> EventResult:
    return EventResult(index=index, id=event.id if isinstance(event, ViolationCreate) else None, status=status_code,
                       detail=detail)


def _check_one(key: Principal, index: int, event: ViolationCreate | InvalidEvent, parts: dict[str, FormFile | str],
               max_bytes: int) -> list[Upload]:
    """One event of a batch checked as a single post of it would be, up to the store: the caller's role in
    its compound, its parts present and files, their declared types, the uploads. Returns them measured."""
    if isinstance(event, InvalidEvent):
        raise event
    key.require("events.post", event.compound_id)
    for kind in REQUIRED_KINDS:
        if kind not in parts:
            raise InvalidEvent([{"type": "missing", "loc": ["body", f"{index}.{kind}"], "msg": "Field required"}])
    for kind, part in parts.items():
        if not isinstance(part, FormFile):
            raise InvalidEvent(f"part {index}.{kind} must be a file")
    return _checked_uploads(event, {kind: parts.get(kind) for kind in (*REQUIRED_KINDS, "crop")}, max_bytes)


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
    total, capped = bounded_total(session, query, offset, limit)
    page = query.order_by(Violation.start_time.desc(), Violation.id.desc()).limit(limit).offset(offset)
    return ViolationList(items=violations_public(session, page, request), total=total, total_capped=capped,
                         limit=limit, offset=offset)


@router.get("/{violation_id}", response_model=ViolationPublic,
            responses={**ERRORS, 404: {"description": "no such violation"}})
def get_event(violation_id: str, key: CurrentKey, session: SessionDep, request: Request) -> ViolationPublic:
    """One violation with its evidence URLs and review."""
    return violation_public(load_violation(session, key, violation_id), request)
