"""``/cases``: rectification cases — list, read, assign, rectify, re-inspect (worker/scheduler), close,
reopen, and their before/after snapshots. See :mod:`service.cases` for the state machine."""
from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile, status
from fastapi.responses import StreamingResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import func, select

from service import cases
from service.auth import Principal
from service.deps import CurrentPrincipal, SessionDep, StoreDep
from service.errors import InvalidEvent
from service.ingest import declared_type_problem
from service.models import Case, Violation, utcnow
from service.schemas import Identifier
from service.routers.common import scope_to_compounds

router = APIRouter(prefix="/cases", tags=["cases"])
CaseState = Literal["open", "rectified", "reinspected", "closed", "overdue", "reopened"]
ERRORS = {401: {"description": "missing, unknown or revoked API key or token"},
          403: {"description": "the caller's role in the case's compound may not do this"},
          404: {"description": "no such case, or its compound is foreign to the caller"}}
MOVE_ERRORS = {**ERRORS, 409: {"description": "not allowed in the case's current state; nothing changed"}}


class InspectionPublic(BaseModel):
    id: int
    inspected_at: dt.datetime
    frame_time: dt.datetime
    scene_clear: bool
    outcome: str
    inspected_by: str
    before_url: str | None
    after_url: str


class CasePublic(BaseModel):
    id: int
    violation_id: str
    violation_ids: list[str]
    compound_id: str
    camera_id: str
    zone_id: str
    rule: str
    state: CaseState
    assignee: str | None
    assigned_by: Literal["grid", "manual"] | None = Field(
        description="grid: assigned on confirmation to the person the grid names for the zone; manual: through "
                    "the assign endpoint; null with no assignee: no grid entry covers the zone")
    deadline: dt.datetime | None
    overdue: bool
    rectification_note: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    rectified_at: dt.datetime | None
    reinspected_at: dt.datetime | None
    closed_at: dt.datetime | None
    proposal: Literal["close"] | None
    inspections: list[InspectionPublic]


class CaseList(BaseModel):
    items: list[CasePublic]
    total: int


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AssignIn(Strict):
    assignee: Annotated[str, Field(min_length=1, max_length=200)]
    deadline: AwareDatetime


class RectifyIn(Strict):
    note: Annotated[str, Field(min_length=1, max_length=2000)]


class ReopenIn(Strict):
    deadline: AwareDatetime | None = None


class ReinspectionReport(Strict):
    """What the worker reports with the fresh snapshot: the frame time and whether the case's rule is
    still active in the zone (``rule_active: false`` = scene clear)."""

    frame_time: AwareDatetime
    rule_active: bool


def case_public(session, case: Case, request: Request) -> CasePublic:
    """The API view of ``case`` with its violations and snapshot URLs."""
    ids = session.scalars(select(Violation.id).where(Violation.case_id == case.id)
                          .order_by(Violation.start_time)).all()

    def url(inspection_id: int, which: str) -> str:
        return str(request.app.url_path_for("get_case_snapshot", case_id=case.id, inspection_id=inspection_id,
                                            which=which))
    inspections = [InspectionPublic(id=i.id, inspected_at=i.inspected_at, frame_time=i.frame_time,
                                    scene_clear=i.scene_clear, outcome=i.outcome, inspected_by=i.inspected_by,
                                    before_url=url(i.id, "before") if i.before_key else None,
                                    after_url=url(i.id, "after")) for i in case.inspections]
    overdue = case.state == "overdue" or (case.state in ("open", "reopened") and case.deadline is not None
                                          and case.deadline <= utcnow())
    return CasePublic(id=case.id, violation_id=case.violation_id, violation_ids=list(ids) or [case.violation_id],
                      compound_id=case.compound_id, camera_id=case.camera_id, zone_id=case.zone_id, rule=case.rule,
                      state=case.state, assignee=case.assignee, assigned_by=case.assigned_by,
                      deadline=case.deadline, overdue=overdue,
                      rectification_note=case.rectification_note, created_at=case.created_at,
                      updated_at=case.updated_at, rectified_at=case.rectified_at,
                      reinspected_at=case.reinspected_at, closed_at=case.closed_at,
                      proposal="close" if case.state == "reinspected" else None, inspections=inspections)


def load_case(session, principal: Principal, case_id: int, action: str = "cases.read") -> Case:
    """The case if the caller may do ``action`` on it; 404 when missing or foreign, 403 wrong role."""
    case = session.get(Case, case_id)
    what = f"case {case_id}"
    if case is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {what}")
    principal.require(action, case.compound_id, what=what)
    return case


@router.get("", response_model=CaseList, responses=ERRORS)
def list_cases(principal: CurrentPrincipal, session: SessionDep, request: Request,
               compound_id: Identifier | None = None, state: CaseState | None = None,
               camera_id: Identifier | None = None, rule: str | None = None,
               assigned: Annotated[bool | None, Query(description="false: only cases nobody is assigned to "
                                                                  "(no grid entry covered the zone)")] = None,
               limit: Annotated[int, Query(ge=1, le=200)] = 50,
               offset: Annotated[int, Query(ge=0)] = 0) -> CaseList:
    """Cases in the caller's compounds, newest first."""
    query = scope_to_compounds(select(Case), Case.compound_id, principal, "cases.read", compound_id)
    for column, value in ((Case.state, state), (Case.camera_id, camera_id), (Case.rule, rule)):
        if value is not None:
            query = query.where(column == value)
    if assigned is not None:
        query = query.where(Case.assignee.is_not(None) if assigned else Case.assignee.is_(None))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Case.created_at.desc(), Case.id.desc()).limit(limit).offset(offset)).all()
    return CaseList(items=[case_public(session, c, request) for c in rows], total=total)


@router.get("/due", response_model=CaseList, responses=ERRORS)
def due_cases(principal: CurrentPrincipal, session: SessionDep, request: Request) -> CaseList:
    """Cases due for re-inspection (rectified, or past the deadline and not closed) where the caller
    may re-inspect: what the scheduler asks for before sending fresh snapshots."""
    principal.require_any("cases.reinspect")
    rows = session.scalars(cases.due_cases_query(principal.compounds_for("cases.reinspect"), utcnow())).all()
    return CaseList(items=[case_public(session, c, request) for c in rows], total=len(rows))


@router.get("/{case_id}", response_model=CasePublic, responses=ERRORS)
def get_case(case_id: int, principal: CurrentPrincipal, session: SessionDep, request: Request) -> CasePublic:
    """One case with its violations and inspections."""
    return case_public(session, load_case(session, principal, case_id), request)


@router.post("/{case_id}/assign", response_model=CasePublic, responses=MOVE_ERRORS)
def assign_case(case_id: int, body: AssignIn, principal: CurrentPrincipal, session: SessionDep,
                request: Request) -> CasePublic:
    """Set assignee and deadline (open, reopened or overdue cases)."""
    case = load_case(session, principal, case_id, "cases.manage")
    return case_public(session, cases.assign(session, case, principal, body.assignee, body.deadline), request)


@router.post("/{case_id}/rectify", response_model=CasePublic, responses=MOVE_ERRORS)
def rectify_case(case_id: int, body: RectifyIn, principal: CurrentPrincipal, session: SessionDep,
                 request: Request) -> CasePublic:
    """Mark an assigned case rectified with a note."""
    case = load_case(session, principal, case_id, "cases.rectify")
    return case_public(session, cases.rectify(session, case, principal, body.note), request)


@router.post("/{case_id}/close", response_model=CasePublic, responses=MOVE_ERRORS)
def close_case(case_id: int, principal: CurrentPrincipal, session: SessionDep, request: Request) -> CasePublic:
    """Close (销号) a case whose re-inspection found the scene clear."""
    case = load_case(session, principal, case_id, "cases.manage")
    return case_public(session, cases.close(session, case, principal), request)


@router.post("/{case_id}/reopen", response_model=CasePublic, responses=MOVE_ERRORS)
def reopen_case(case_id: int, principal: CurrentPrincipal, session: SessionDep, request: Request,
                body: ReopenIn | None = None) -> CasePublic:
    """Reopen a rectified, re-inspected, overdue or closed case, optionally with a new deadline."""
    case = load_case(session, principal, case_id, "cases.manage")
    deadline = body.deadline if body is not None else None
    return case_public(session, cases.reopen(session, case, principal, deadline), request)


@router.post("/{case_id}/reinspect", response_model=CasePublic, status_code=status.HTTP_201_CREATED,
             responses={**MOVE_ERRORS, 415: {"description": "snapshot declared as another type than image/jpeg"},
                        422: {"description": "invalid report or snapshot"}})
def reinspect_case(
    case_id: int, principal: CurrentPrincipal, session: SessionDep, store: StoreDep, request: Request,
    report: Annotated[str, Form(description='JSON: {"frame_time": ISO 8601, "rule_active": bool}')],
    snapshot: Annotated[UploadFile, File(description="a fresh JPEG of the case's camera")],
) -> CasePublic:
    """Record a re-inspection: attach before/after snapshots, propose closing when the scene is clear
    (``rule_active`` false), else flag the case overdue (past deadline) or back to open."""
    case = load_case(session, principal, case_id, "cases.reinspect")
    try:
        parsed = ReinspectionReport.model_validate(json.loads(report))
    except (ValueError, ValidationError) as exc:
        raise InvalidEvent(f"invalid re-inspection report: {exc}") from None
    if problem := declared_type_problem("snapshot", snapshot.content_type):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, problem)
    data = snapshot.file.read(cases.MAX_SNAPSHOT_BYTES + 1)
    cases.reinspect(session, store, case, principal, parsed.frame_time, parsed.rule_active, data)
    return case_public(session, case, request)


@router.get("/{case_id}/inspections/{inspection_id}/{which}", name="get_case_snapshot",
            response_class=StreamingResponse, responses=ERRORS)
def get_case_snapshot(case_id: int, inspection_id: int, which: Literal["before", "after"],
                      principal: CurrentPrincipal, session: SessionDep, store: StoreDep) -> StreamingResponse:
    """The before or after JPEG of one re-inspection."""
    case = load_case(session, principal, case_id)
    inspection = next((i for i in case.inspections if i.id == inspection_id), None)
    key = None if inspection is None else (inspection.before_key if which == "before" else inspection.after_key)
    if key is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"case {case_id} has no {which} snapshot {inspection_id}")
    return StreamingResponse(store.open_range(key), media_type="image/jpeg",
                             headers={"Cache-Control": "private, max-age=3600"})

