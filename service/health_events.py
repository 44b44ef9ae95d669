"""Camera health events (offline, frozen, covered, out of focus, view moved) as the API stores them:
one row per occurrence, opened by the worker's ``started`` event and closed by its ``ended`` event.
The id is the worker's (``vision.health.HealthEvent.id``), so a retried post changes nothing."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, Session, mapped_column

from service.models import Base, UTCDateTime, utcnow

HEALTH_KINDS = ("offline", "frozen", "covered", "out_of_focus", "view_moved")


class CameraHealthEvent(Base):
    __tablename__ = "camera_health_events"
    __table_args__ = (CheckConstraint("kind IN (" + ", ".join(repr(k) for k in HEALTH_KINDS) + ")", name="kind"),
                      Index("ix_camera_health_events_camera", "compound_id", "camera_id", "started_at"))
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    compound_id: Mapped[str] = mapped_column(String(64))
    camera_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, nullable=True)
    detail: Mapped[str] = mapped_column(String(500), default="")
    reported_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


def record(session: Session, *, id: str, compound_id: str, camera_id: str, kind: str, state: str,
           onset: dt.datetime, at: dt.datetime, detail: str) -> tuple[CameraHealthEvent, bool]:
    """Store a started/ended event; returns the row and whether anything changed. An ``ended`` that
    arrives before its ``started`` (delivery is at-least-once, not ordered) creates the closed row."""
    row = session.get(CameraHealthEvent, id)
    changed = False
    if row is None:
        row = CameraHealthEvent(id=id, compound_id=compound_id, camera_id=camera_id, kind=kind, started_at=onset,
                                detail=detail[:500])
        session.add(row)
        changed = True
    if state == "ended" and row.ended_at is None:
        row.ended_at = at
        changed = True
    if changed:
        row.updated_at = utcnow()
        session.commit()
    return row, changed


class WorkerLease(Base):
    """Which worker runs which camera until ``expires_at`` (renewed while the worker lives); an expired
    lease may be taken by any worker, so a dead worker's cameras move on (``service.routers.camera_health``)."""

    __tablename__ = "worker_leases"
    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    worker_id: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class WorkerHeartbeat(Base):
    """When a worker last claimed its leases: the live workers split the cameras evenly."""

    __tablename__ = "worker_heartbeats"
    worker_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
