"""Helpers shared by the routers: scope a listing to the caller's compounds, load a violation the caller
may see, and present it."""
from __future__ import annotations

from fastapi import HTTPException, Request, status
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from service.auth import Principal
from service.models import Violation
from service.schemas import EvidencePublic, ReviewPublic, ViolationPublic


def scope_to_compounds(query: Select, column, principal: Principal, action: str,
                       compound_id: str | None) -> Select:
    """``query`` narrowed to the compounds where the caller may do ``action``: to ``compound_id`` when
    given (404/403 if it is foreign or not allowed), else to every compound the caller has it in."""
    if compound_id is not None:
        principal.require(action, compound_id)
        return query.where(column == compound_id)
    readable = principal.compounds_for(action)
    return query if readable is None else query.where(column.in_(sorted(readable)))


def load_violation(session: Session, key: Principal, violation_id: str, action: str = "events.read",
                   for_update: bool = False) -> Violation:
    """The violation ``violation_id`` if the caller may do ``action`` on it: 404 when there is none or
    its compound is foreign to the caller (the same answer, so ids do not leak), 403 when the caller's
    role in its compound may not do ``action``. ``for_update`` locks the row (PostgreSQL)."""
    query = select(Violation).where(Violation.id == violation_id)
    violation = session.scalar(query.with_for_update() if for_update else query)
    what = f"violation with id {violation_id!r}"
    if violation is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {what}")
    key.require(action, violation.compound_id, what=what)
    return violation


def violation_public(violation: Violation, request: Request) -> ViolationPublic:
    """The reviewer's view of ``violation``, with evidence URLs under this API."""
    root = request.scope.get("root_path", "").rstrip("/")
    evidence = {
        obj.kind: EvidencePublic(
            url=root + request.app.url_path_for("get_evidence", violation_id=violation.id, kind=obj.kind),
            sha256=obj.sha256, size=obj.size, content_type=obj.content_type)
        for obj in violation.evidence
    }
    review = violation.review
    return ViolationPublic(
        id=violation.id, rule=violation.rule, compound_id=violation.compound_id, camera_id=violation.camera_id,
        zone_id=violation.zone_id, start_time=violation.start_time, last_seen_time=violation.last_seen_time,
        end_time=violation.end_time, confidence=violation.confidence, model_version=violation.model_version,
        source=violation.source, boxes=violation.boxes, review_state=violation.review_state,
        created_at=violation.created_at, evidence=evidence, claimed_by=violation.claimed_by,
        claimed_until=violation.claimed_until, case_id=violation.case_id,
        review=ReviewPublic.model_validate(review) if review is not None else None)
