"""``/api/v1/leases``: workers split the live cameras between them through leases held in the database.

Each worker claims, every ``ttl_s / 3``, the cameras it could run (usually every camera of the site);
the API answers with the ones it holds now. The live workers (a claim within ``ttl_s``) share the
cameras evenly: a worker holding more than its share gives the extra ones up, and a camera whose lease
expired (its worker died or lost the API) goes to the next worker that claims it. With the default
``ttl_s`` of 30 s and claims every 10 s, a dead worker's cameras are running elsewhere within 40 s.

Updates are conditional (``UPDATE … WHERE expires_at <= now``), so two workers racing for one camera
cannot both get it.
"""
from __future__ import annotations

import datetime as dt
import math

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from service.deps import CurrentPrincipal, SessionDep
from service.health_events import WorkerHeartbeat, WorkerLease
from service.models import utcnow
from service.schemas import Identifier

router = APIRouter(prefix="/leases", tags=["worker leases"])


class LeaseCamera(BaseModel):
    model_config = ConfigDict(extra="forbid")
    compound_id: Identifier
    camera_id: Identifier


class LeaseClaim(BaseModel):
    """A worker's claim: the cameras it could run."""

    model_config = ConfigDict(extra="forbid")
    worker_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")
    cameras: list[LeaseCamera] = Field(max_length=5000)
    ttl_s: float = Field(30.0, ge=3, le=600)


class LeaseGrant(BaseModel):
    worker_id: str
    cameras: list[str] = Field(description="the cameras this worker holds now, sorted")
    share: int = Field(description="how many cameras each live worker should hold")
    workers: int = Field(description="live workers (a claim within ttl_s)")
    expires_at: dt.datetime


def _claim_once(session, claim: LeaseClaim, now: dt.datetime) -> LeaseGrant:
    expires = now + dt.timedelta(seconds=claim.ttl_s)
    heartbeat = session.get(WorkerHeartbeat, claim.worker_id)
    if heartbeat is None:
        session.add(WorkerHeartbeat(worker_id=claim.worker_id, seen_at=now))
    else:
        heartbeat.seen_at = now
    session.flush()
    workers = session.scalar(select(func.count()).select_from(WorkerHeartbeat)
                             .where(WorkerHeartbeat.seen_at > now - dt.timedelta(seconds=claim.ttl_s))) or 1
    wanted = sorted({c.camera_id for c in claim.cameras})
    share = math.ceil(len(wanted) / workers) if wanted else 0
    held = sorted(session.scalars(select(WorkerLease.camera_id).where(
        WorkerLease.worker_id == claim.worker_id, WorkerLease.expires_at > now,
        WorkerLease.camera_id.in_(wanted))).all())
    if len(held) > share:  # give the extra cameras up for the workers that joined
        extra = held[share:]
        session.execute(delete(WorkerLease).where(WorkerLease.worker_id == claim.worker_id,
                                                  WorkerLease.camera_id.in_(extra)))
        held = held[:share]
    if held:
        session.execute(update(WorkerLease).where(WorkerLease.worker_id == claim.worker_id,
                                                  WorkerLease.camera_id.in_(held)).values(expires_at=expires))
    mine = set(held)
    taken = {row.camera_id: row for row in session.scalars(
        select(WorkerLease).where(WorkerLease.camera_id.in_(wanted))).all()}
    for camera_id in wanted:
        if len(mine) >= share:
            break
        if camera_id in mine:
            continue
        row = taken.get(camera_id)
        if row is None:
            session.add(WorkerLease(camera_id=camera_id, worker_id=claim.worker_id, expires_at=expires))
            session.flush()
            mine.add(camera_id)
        elif row.expires_at <= now:
            result = session.execute(update(WorkerLease).where(
                WorkerLease.camera_id == camera_id, WorkerLease.expires_at <= now).values(
                worker_id=claim.worker_id, expires_at=expires).execution_options(synchronize_session=False))
            if result.rowcount == 1:
                mine.add(camera_id)
    session.commit()
    return LeaseGrant(worker_id=claim.worker_id, cameras=sorted(mine), share=share, workers=workers,
                      expires_at=expires)


@router.post("", response_model=LeaseGrant)
def claim_leases(claim: LeaseClaim, principal: CurrentPrincipal, session: SessionDep) -> LeaseGrant:
    """Renew this worker's leases and claim free or expired cameras up to its share."""
    for compound_id in sorted({c.compound_id for c in claim.cameras}):
        principal.require("events.post", compound_id)
    for attempt in range(3):
        try:
            return _claim_once(session, claim, utcnow())
        except IntegrityError:  # another worker inserted the same camera or heartbeat first: read again
            session.rollback()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


@router.delete("/{worker_id}", status_code=204)
def release_leases(worker_id: str, principal: CurrentPrincipal, session: SessionDep) -> None:
    """A worker stopping cleanly gives its cameras up at once (the others take them at their next claim)."""
    principal.require_any("events.post")
    session.execute(delete(WorkerLease).where(WorkerLease.worker_id == worker_id))
    session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.worker_id == worker_id))
    session.commit()
