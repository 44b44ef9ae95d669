"""Evidence retention: delete evidence objects whose time is up, per review state, never while the
violation's rectification case is not closed.

Ages count from the review decision for reviewed violations (``rejected`` / ``confirmed``) and from
arrival (``created_at``) for ``unreviewed`` ones, so a re-scan of old footage is not pruned on arrival.
The violation row, its review and its audit trail stay: only the objects and their ``evidence_objects``
rows go, each deletion with an audit entry (``evidence``/``pruned``).
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from service.errors import StorageError
from service.models import Case, Review, Violation, utcnow
from service.settings import Settings
from service.storage import ObjectStore

log = logging.getLogger(__name__)
CLOSED = "closed"


@dataclass(frozen=True)
class RetentionPolicy:
    """Days evidence is kept, per review state."""

    unreviewed_days: int = 30
    rejected_days: int = 7
    confirmed_days: int = 365

    @classmethod
    def from_settings(cls, settings: Settings) -> "RetentionPolicy":
        return cls(settings.retention_unreviewed_days, settings.retention_rejected_days,
                   settings.retention_confirmed_days)

    def days(self) -> dict[str, int]:
        return {"unreviewed": self.unreviewed_days, "rejected": self.rejected_days,
                "confirmed": self.confirmed_days}


@dataclass
class PruneReport:
    """What a prune did (or, with ``dry_run``, would do)."""

    dry_run: bool
    violations: list[str] = field(default_factory=list)
    objects: int = 0
    bytes: int = 0
    kept_for_open_case: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"dry_run": self.dry_run, "violations": self.violations, "objects": self.objects,
                "bytes": self.bytes, "kept_for_open_case": self.kept_for_open_case, "failed": self.failed}


def _held_by_open_case():
    """Ids of violations whose case is not closed (opened by them, or joined by them)."""
    joined = select(Violation.id).join(Case, Violation.case_id == Case.id).where(Case.state != CLOSED)
    opened = select(Case.violation_id).where(Case.state != CLOSED)
    return joined.union(opened)


def _expired(policy: RetentionPolicy, now: dt.datetime):
    reference = func.coalesce(Review.decided_at, Violation.created_at)
    return or_(*(and_(Violation.review_state == state, reference < now - dt.timedelta(days=days))
                 for state, days in policy.days().items()))


def due_for_pruning(session: Session, policy: RetentionPolicy, now: dt.datetime | None = None
                    ) -> tuple[list[Violation], list[str]]:
    """``(violations whose evidence is past retention, ids past retention but held by an open case)``,
    oldest first; only violations that still have evidence objects."""
    now = now or utcnow()
    base = (select(Violation).outerjoin(Review, Review.violation_id == Violation.id)
            .where(Violation.evidence.any(), _expired(policy, now)).order_by(Violation.created_at, Violation.id))
    held = set(session.scalars(_held_by_open_case()).all())
    candidates = session.scalars(base).unique().all()
    return [v for v in candidates if v.id not in held], sorted(v.id for v in candidates if v.id in held)


def prune(session: Session, store: ObjectStore, policy: RetentionPolicy, *, dry_run: bool = False,
          now: dt.datetime | None = None, actor=("cli", "evidence prune")) -> PruneReport:
    """Delete the evidence past retention (see :func:`due_for_pruning`); return the report.

    Per violation: the objects are deleted from the store, then their rows, with an audit entry, in one
    commit. A store failure skips that violation (reported in ``failed``, retried by the next run:
    deleting an object already gone is not an error)."""
    from service import audit
    due, held = due_for_pruning(session, policy, now)
    report = PruneReport(dry_run=dry_run, kept_for_open_case=held)
    for violation in due:
        objects = list(violation.evidence)
        if not dry_run:
            try:
                for obj in objects:
                    store.delete(obj.key)
            except StorageError as exc:
                log.error("prune: evidence of %s not deleted: %s", violation.id, exc)
                report.failed[violation.id] = str(exc)
                continue
            audit.record(session, actor, "evidence", violation.id, "pruned",
                         {"review_state": violation.review_state,
                          "objects": {o.kind: {"key": o.key, "sha256": o.sha256, "size": o.size} for o in objects}},
                         None, compound_id=violation.compound_id)
            for obj in objects:
                violation.evidence.remove(obj)
            session.commit()
        report.violations.append(violation.id)
        report.objects += len(objects)
        report.bytes += sum(o.size for o in objects)
    return report
