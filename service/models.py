"""The ORM models (SQLAlchemy 2, typed). Times are stored in UTC and always come back timezone-aware.

Neither what a worker sends nor what a reviewer sees: those are the schemas in ``service.schemas``.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (JSON, Boolean, CheckConstraint, DateTime, Float, ForeignKey, Index, Integer, MetaData, String,
                        Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

ROLES = ("worker", "viewer", "reviewer", "supervisor", "admin")  # what an API key may carry
USER_ROLES = ("viewer", "reviewer", "supervisor", "admin")  # what a person is granted per compound
CASE_STATES = ("open", "rectified", "reinspected", "closed", "overdue", "reopened")
OPEN_CASE_STATES = ("open", "rectified", "reinspected", "overdue", "reopened")  # every state but closed
SOURCES = ("live", "rescan")
REVIEW_STATES = ("unreviewed", "confirmed", "rejected")
VERDICTS = ("confirm", "reject")
REJECT_REASONS = ("false_alarm", "not_a_violation", "duplicate", "already_handled")
EVIDENCE_KINDS = ("snapshot", "clip", "sidecar", "crop")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend. SQLite keeps no zone, so values are stored as
    naive UTC there and given ``tzinfo=UTC`` back on load; naive input is refused."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: CompoundEye stores timezone-aware times only")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    })


class Compound(Base):
    """A residential compound (小区); every violation belongs to exactly one."""

    __tablename__ = "compounds"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # the property company (物业公司) and the district (区/街道) from the site file (issue 12), or None
    company: Mapped[str | None] = mapped_column(String(100), index=True)
    district: Mapped[str | None] = mapped_column(String(100), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Camera(Base):
    """A camera of one compound. Camera ids are unique across the site."""

    __tablename__ = "cameras"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    compound_id: Mapped[str] = mapped_column(ForeignKey("compounds.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    """A machine or person key (the architecture's "worker key"). Only the sha256 of the key is kept.

    ``compounds`` is the scope: a JSON list of compound ids, or ``["*"]`` for every compound."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint(_one_of("role", ROLES), name="role"),)
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16))
    compounds: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Violation(Base):
    """What a rule found, one row per deterministic id. Its evidence objects are ``evidence``."""

    __tablename__ = "violations"
    __table_args__ = (
        CheckConstraint(_one_of("source", SOURCES), name="source"),
        CheckConstraint(_one_of("review_state", REVIEW_STATES), name="review_state"),
        CheckConstraint("confidence >= 0 AND confidence <= 1", name="confidence"),
        Index("ix_violations_compound_start", "compound_id", "start_time"),
        Index("ix_violations_camera_start", "camera_id", "start_time"),
        Index("ix_violations_start_time", "start_time"),
        Index("ix_violations_state_compound_start", "review_state", "compound_id", "start_time"),  # review queue
    )
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    rule: Mapped[str] = mapped_column(String(64))
    compound_id: Mapped[str] = mapped_column(ForeignKey("compounds.id"))
    camera_id: Mapped[str] = mapped_column(ForeignKey("cameras.id"))
    zone_id: Mapped[str] = mapped_column(String(64))
    start_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    end_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    confidence: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16))
    boxes: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    review_state: Mapped[str] = mapped_column(String(16), default="unreviewed")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # A reviewer's claim ("principal id", e.g. "user:3" or "key:ab12…") and until when it holds.
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # The rectification case this confirmed violation opened or joined (None until confirmed).
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id", use_alter=True), index=True)

    evidence: Mapped[list[EvidenceObject]] = relationship(
        back_populates="violation", lazy="selectin", cascade="all, delete-orphan", passive_deletes=True)
    review: Mapped[Review | None] = relationship(back_populates="violation", lazy="selectin")

    def evidence_of(self, kind: str) -> EvidenceObject | None:
        """The stored object of ``kind`` (snapshot, clip, sidecar, crop), or None."""
        return next((e for e in self.evidence if e.kind == kind), None)


class EvidenceObject(Base):
    """One stored evidence object of a violation: where it is, its sha256, size and content type."""

    __tablename__ = "evidence_objects"
    __table_args__ = (CheckConstraint(_one_of("kind", EVIDENCE_KINDS), name="kind"),)
    violation_id: Mapped[str] = mapped_column(ForeignKey("violations.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(100))

    violation: Mapped[Violation] = relationship(back_populates="evidence")


class Review(Base):
    """A person's decision on a violation; the unique ``violation_id`` makes the first decision win."""

    __tablename__ = "reviews"
    __table_args__ = (
        CheckConstraint(_one_of("verdict", VERDICTS), name="verdict"),
        CheckConstraint(f"reason IS NULL OR {_one_of('reason', REJECT_REASONS)}", name="reason"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    violation_id: Mapped[str] = mapped_column(ForeignKey("violations.id", ondelete="CASCADE"), unique=True)
    verdict: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    # Exactly one of the two names who decided: an API key or a user.
    reviewer_key_id: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    reviewer_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    violation: Mapped[Violation] = relationship(back_populates="review")


class User(Base):
    """A person who logs in (OAuth2 password flow). Only an argon2 hash of the password is kept;
    what the person may do is in ``grants`` (a role per compound)."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    grants: Mapped[list[RoleGrant]] = relationship(back_populates="user", lazy="selectin",
                                                   cascade="all, delete-orphan", passive_deletes=True)


class RoleGrant(Base):
    """One role of one user in one compound (``compound_id = "*"``: every compound, admins only).

    Not a foreign key to ``compounds``: a grant may be made before the compound's first camera reports."""

    __tablename__ = "role_grants"
    __table_args__ = (CheckConstraint(_one_of("role", USER_ROLES), name="role"),)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    compound_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))

    user: Mapped[User] = relationship(back_populates="grants")


class AccessToken(Base):
    """A bearer token given at login. Only its sha256 is kept; it stops working at ``expires_at``
    or when revoked (logout, user disabled)."""

    __tablename__ = "access_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Case(Base):
    """A rectification case (整改单) opened by a confirmed violation (``violation_id``); later confirmed
    violations of the same compound, camera, zone and rule join it while it is not closed
    (``Violation.case_id``). ``state``: open → rectified → reinspected → closed, or overdue / reopened.

    Evidence retention: a violation's evidence must be kept while ``Violation.case_id`` points at a case
    whose ``state != "closed"`` (see ``service.cases.violations_with_open_cases``)."""

    __tablename__ = "cases"
    __table_args__ = (
        CheckConstraint(_one_of("state", CASE_STATES), name="state"),
        Index("ix_cases_spot", "compound_id", "camera_id", "zone_id", "rule"),
        Index("ix_cases_compound_state", "compound_id", "state"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    violation_id: Mapped[str] = mapped_column(ForeignKey("violations.id"), unique=True)
    compound_id: Mapped[str] = mapped_column(ForeignKey("compounds.id"))
    camera_id: Mapped[str] = mapped_column(ForeignKey("cameras.id"))
    zone_id: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="open")
    assignee: Mapped[str | None] = mapped_column(String(200))
    assigned_by: Mapped[str | None] = mapped_column(String(16))  # "grid" (on confirmation) or "manual"; None: unassigned
    deadline: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    rectification_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    rectified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    reinspected_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    inspections: Mapped[list[CaseInspection]] = relationship(
        back_populates="case", lazy="selectin", order_by="CaseInspection.id",
        cascade="all, delete-orphan", passive_deletes=True)


class CaseInspection(Base):
    """One re-inspection (复查) of a case: the before snapshot (copied from the opening violation) and
    the fresh after snapshot, both in the object store, and whether the scene was clear."""

    __tablename__ = "case_inspections"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    inspected_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    frame_time: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    scene_clear: Mapped[bool] = mapped_column(Boolean)
    outcome: Mapped[str] = mapped_column(String(32))  # "propose_close" or "overdue"
    before_key: Mapped[str | None] = mapped_column(String(512))
    before_sha256: Mapped[str | None] = mapped_column(String(64))
    after_key: Mapped[str] = mapped_column(String(512))
    after_sha256: Mapped[str] = mapped_column(String(64))
    after_size: Mapped[int] = mapped_column(Integer)
    inspected_by: Mapped[str] = mapped_column(String(64))

    case: Mapped[Case] = relationship(back_populates="inspections")


class AuditEntry(Base):
    """One state change, append-only (the ORM refuses updates and deletes; the database has triggers too):
    who (``actor`` like ``user:3`` / ``key:ab12…``), when, which entity, what action, before and after."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity", "entity_id"),
                      Index("ix_audit_log_compound_at", "compound_id", "at"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(64))
    actor_name: Mapped[str] = mapped_column(String(200))
    compound_id: Mapped[str | None] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


RESCAN_STATUSES = ("queued", "running", "done", "partial", "failed", "cancelled")
RESCAN_FINISHED = ("done", "partial", "failed", "cancelled")
RESCAN_MODES = ("sampled", "keyframes", "adaptive")


class RescanJob(Base):
    """A re-scan of an S3 prefix started through the API (``service.rescans`` runs it): queued →
    running → done / partial (bad files or events not stored) / failed / cancelled. Progress columns
    are rewritten about once a second while it runs; ``report`` is the job's JSON report (deferred:
    lists never load it)."""

    __tablename__ = "rescan_jobs"
    __table_args__ = (
        CheckConstraint(_one_of("status", RESCAN_STATUSES), name="status"),
        CheckConstraint(_one_of("mode", RESCAN_MODES), name="mode"),
        Index("ix_rescan_jobs_status_id", "status", "id"),
        Index("ix_rescan_jobs_compound_created", "compound_id", "created_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    compound_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(1024))
    mode: Mapped[str] = mapped_column(String(16))
    fps: Mapped[float | None] = mapped_column(Float)
    fresh: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    created_by: Mapped[str] = mapped_column(String(64))
    created_by_name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    runner: Mapped[str | None] = mapped_column(String(128))  # which API process runs it
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    files_total: Mapped[int] = mapped_column(Integer, default=0)
    files_done: Mapped[int] = mapped_column(Integer, default=0)
    files_bad: Mapped[int] = mapped_column(Integer, default=0)
    files_skipped: Mapped[int] = mapped_column(Integer, default=0)  # finished by an earlier run (checkpoint)
    footage_done_s: Mapped[float] = mapped_column(Float, default=0.0)
    violations_found: Mapped[int] = mapped_column(Integer, default=0)
    violations_new: Mapped[int] = mapped_column(Integer, default=0)  # events this job created
    violations_unstored: Mapped[int] = mapped_column(Integer, default=0)  # found but refused by the store
    current_file: Mapped[str | None] = mapped_column(String(1024))
    current_fraction: Mapped[float | None] = mapped_column(Float)
    x_realtime: Mapped[float | None] = mapped_column(Float)
    eta_s: Mapped[float | None] = mapped_column(Float)
    model: Mapped[str | None] = mapped_column(String(1024))
    site_sha256: Mapped[str | None] = mapped_column(String(64))
    state_dir: Mapped[str | None] = mapped_column(String(1024))
    error: Mapped[str | None] = mapped_column(Text)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)


LEDGER_KINDS = ("monthly_compound", "monthly_company", "bulletin_district")
LEDGER_FORMATS = ("pdf", "html", "xlsx")


class LedgerDocument(Base):
    """A report kept as a ledger document (台账, issue 12): the monthly report of a compound or a
    property company, or a district's bulletin, for one ``period`` in one ``format``, stored in the
    object store under ``key`` with its sha256 and size. One per (kind, scope, period, format): the
    scheduler and the command skip what exists. ``compounds`` lists the compounds whose figures it
    holds — a caller reads it only with ``reports.read`` in every one of them."""

    __tablename__ = "ledger_documents"
    __table_args__ = (
        UniqueConstraint("kind", "scope", "period", "format", name="uq_ledger_documents_scope_period_format"),
        CheckConstraint(_one_of("kind", LEDGER_KINDS), name="kind"),
        CheckConstraint(_one_of("format", LEDGER_FORMATS), name="format"),
        Index("ix_ledger_documents_period", "period"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    scope: Mapped[str] = mapped_column(String(100))  # compound id, company or district
    period: Mapped[str] = mapped_column(String(32))  # YYYY-MM
    format: Mapped[str] = mapped_column(String(8))
    key: Mapped[str] = mapped_column(String(512))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(100))
    compounds: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(64))  # "scheduler", "cli" or "user:<id>"


GRID_SOURCES = ("site", "api")


class GridEntry(Base):
    """Who answers for an area of a compound (网格化, issue 12): the whole compound (every area column
    empty), a ``building``, a ``floor`` of a building, or one zone (``camera_id`` + ``zone_id``). Empty
    strings, not NULLs, mark an unused column so that the unique constraint holds one entry per area.
    ``source``: "site" entries mirror the site file (replaced at start-up, read-only through the API),
    "api" entries are managed through ``/api/v1/compounds/{id}/grid``."""

    __tablename__ = "grid_entries"
    __table_args__ = (
        CheckConstraint(_one_of("source", GRID_SOURCES), name="source"),
        UniqueConstraint("compound_id", "building", "floor", "camera_id", "zone_id", name="uq_grid_entries_area"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    compound_id: Mapped[str] = mapped_column(String(64))
    building: Mapped[str] = mapped_column(String(64), default="")
    floor: Mapped[str] = mapped_column(String(64), default="")
    camera_id: Mapped[str] = mapped_column(String(64), default="")
    zone_id: Mapped[str] = mapped_column(String(64), default="")
    assignee: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(8), default="api")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class GridPlace(Base):
    """Which building and floor a camera (``zone_id = ""``) or one of its zones is in, from the site file;
    what building and floor grid entries are matched against."""

    __tablename__ = "grid_places"
    camera_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    zone_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    compound_id: Mapped[str] = mapped_column(String(64), index=True)
    building: Mapped[str] = mapped_column(String(64), default="")
    floor: Mapped[str] = mapped_column(String(64), default="")
