"""``/api/v1/camera-health``: workers report camera health conditions as they start and end;
staff list them (current problems first) to send someone to the camera."""
from __future__ import annotations

import datetime as dt
import hashlib
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import select

from service.deps import CurrentPrincipal, SessionDep
from service.health_events import CameraHealthEvent, record
from service.schemas import Identifier
from service.routers.common import scope_to_compounds

router = APIRouter(prefix="/camera-health", tags=["camera health"])
HealthKind = Literal["offline", "frozen", "covered", "out_of_focus", "view_moved"]


class HealthEventCreate(BaseModel):
    """What a worker sends (``vision.health.HealthEvent.to_json``). Times are UTC epoch seconds."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[0-9a-f]{32}$")
    compound_id: Identifier
    camera_id: Identifier
    kind: HealthKind
    state: Literal["started", "ended"]
    onset_s: float = Field(gt=0, lt=1e11)  # epoch seconds: finite, before the year 5000
    time_s: float = Field(gt=0, lt=1e11)
    detail: str = Field("", max_length=2000)

    @model_validator(mode="after")
    def _id_matches(self) -> "HealthEventCreate":
        key = f"{self.camera_id}|{self.kind}|{round(self.onset_s * 1000)}"
        if hashlib.sha256(key.encode()).hexdigest()[:32] != self.id:
            raise ValueError("id does not match camera_id|kind|onset")
        return self


class HealthEventPublic(BaseModel):
    id: str
    compound_id: str
    camera_id: str
    kind: HealthKind
    started_at: dt.datetime
    ended_at: dt.datetime | None
    active: bool
    detail: str


def _public(row: CameraHealthEvent) -> HealthEventPublic:
    return HealthEventPublic(id=row.id, compound_id=row.compound_id, camera_id=row.camera_id, kind=row.kind,
                             started_at=row.started_at, ended_at=row.ended_at, active=row.ended_at is None,
                             detail=row.detail)


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=HealthEventPublic,
             responses={200: {"description": "already known; nothing changed"}})
def post_health_event(body: HealthEventCreate, principal: CurrentPrincipal, session: SessionDep,
                      response: Response) -> HealthEventPublic:
    """Record a condition's start or end (workers). 201 when it changed something, 200 when repeated."""
    principal.require("events.post", body.compound_id)
    row, changed = record(session, id=body.id, compound_id=body.compound_id, camera_id=body.camera_id,
                          kind=body.kind, state=body.state, onset=_utc(body.onset_s), at=_utc(body.time_s),
                          detail=body.detail)
    if (row.compound_id, row.camera_id, row.kind) != (body.compound_id, body.camera_id, body.kind):
        raise HTTPException(status.HTTP_409_CONFLICT, "id already used by another camera or kind")
    if not changed:
        response.status_code = status.HTTP_200_OK
    return _public(row)


@router.get("", response_model=list[HealthEventPublic])
def list_health_events(principal: CurrentPrincipal, session: SessionDep,
                       compound_id: Identifier | None = None, camera_id: Identifier | None = None,
                       active: Annotated[bool | None, Query(description="only current (true) or ended (false)")] = None,
                       limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[HealthEventPublic]:
    """Health events in the caller's compounds, newest first."""
    query = scope_to_compounds(select(CameraHealthEvent), CameraHealthEvent.compound_id, principal, "events.read",
                               compound_id)
    if camera_id is not None:
        query = query.where(CameraHealthEvent.camera_id == camera_id)
    if active is not None:
        query = query.where(CameraHealthEvent.ended_at.is_(None) if active else CameraHealthEvent.ended_at.is_not(None))
    rows = session.scalars(query.order_by(CameraHealthEvent.started_at.desc(), CameraHealthEvent.id).limit(limit))
    return [_public(r) for r in rows]
