"""The review queue and decisions: ``GET /review-queue``, ``POST|DELETE /events/{id}/claim``,
``POST /events/{id}/review`` (the first decision wins) and ``POST /reviews/bulk``."""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, Field

from service import review_queue
from service.deps import CurrentPrincipal, SessionDep, SettingsDep
from service.routers.common import bounded_total, violation_public, violations_public
from service.schemas import Identifier, ReviewCreate, ReviewPublic, ViolationList, ViolationPublic
from service.scorecard import table_for

router = APIRouter(tags=["reviews"])

ERRORS = {401: {"description": "missing, unknown or revoked API key or token"},
          403: {"description": "the caller's role in the violation's compound may not review (viewer, worker)"},
          404: {"description": "no such violation, or its compound is foreign to the caller"}}


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.timezone.utc) if value is not None and value.tzinfo is None else value


@router.get("/review-queue", response_model=ViolationList, responses=ERRORS)
def get_queue(
    principal: CurrentPrincipal, session: SessionDep, request: Request,
    compound_id: Identifier | None = None, camera_id: Identifier | None = None, rule: str | None = None,
    since: Annotated[dt.datetime | None, Query(description="start_time at or after (UTC if no zone)")] = None,
    until: Annotated[dt.datetime | None, Query(description="start_time before (UTC if no zone)")] = None,
    include_claimed: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> ViolationList:
    """Unreviewed violations the caller may review, oldest first; claimed by others left out unless asked."""
    if compound_id is None:
        principal.require_any("review")
    query = review_queue.queue_query(principal, compound_id, camera_id, rule, _utc(since), _utc(until),
                                     include_claimed)
    total, capped = bounded_total(session, query, offset, limit)
    return ViolationList(items=violations_public(session, query.limit(limit).offset(offset), request),
                         total=total, total_capped=capped, limit=limit, offset=offset)


@router.post("/events/{violation_id}/claim", response_model=ViolationPublic,
             responses={**ERRORS, 409: {"description": "already reviewed, or claimed by someone else"}})
def claim_event(violation_id: str, principal: CurrentPrincipal, session: SessionDep,
                request: Request) -> ViolationPublic:
    """Claim the violation for 15 minutes (claiming again extends one's own claim)."""
    return violation_public(review_queue.claim(session, principal, violation_id), request)


@router.delete("/events/{violation_id}/claim", status_code=status.HTTP_204_NO_CONTENT,
               responses={**ERRORS, 409: {"description": "claimed by someone else"}})
def release_event(violation_id: str, principal: CurrentPrincipal, session: SessionDep) -> Response:
    """Give up one's own claim."""
    review_queue.release(session, principal, violation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/events/{violation_id}/review", status_code=status.HTTP_201_CREATED, response_model=ReviewPublic,
             responses={**ERRORS,
                        409: {"description": "already reviewed (the first decision stands), or claimed by someone else"},
                        422: {"description": "invalid decision (a reject needs a reason)"}})
def review_event(violation_id: str, decision: ReviewCreate, principal: CurrentPrincipal,
                 session: SessionDep, settings: SettingsDep) -> ReviewPublic:
    """Record the decision and set the violation's review state; a confirmation opens or joins a case (a new
    case is assigned to the grid's person for its zone, with its item's deadline)."""
    return ReviewPublic.model_validate(review_queue.decide(session, principal, violation_id, decision,
                                                           table_for(settings)))


class BulkReview(ReviewCreate):
    """One decision for several violations (e.g. reject a burst of duplicates)."""

    violation_ids: Annotated[list[str], Field(min_length=1, max_length=200)]


class BulkResult(BaseModel):
    violation_id: str
    status: int
    detail: str | dict | list


@router.post("/reviews/bulk", response_model=list[BulkResult], responses=ERRORS)
def review_many(body: BulkReview, principal: CurrentPrincipal, session: SessionDep,
                settings: SettingsDep) -> list[BulkResult]:
    """Decide each violation on its own: one result per id, ``status`` 201 decided, 404, 403 or 409."""
    principal.require_any("review")
    decision = ReviewCreate(verdict=body.verdict, reason=body.reason, note=body.note)
    results = review_queue.decide_many(session, principal, body.violation_ids, decision, table_for(settings))
    return [BulkResult(**r) for r in results]
