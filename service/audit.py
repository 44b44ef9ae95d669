"""The append-only audit log: every state change (review, claim, case transition, user, grant, key)
is written as an :class:`AuditEntry` in the same transaction as the change itself.

Append-only is enforced three times: this module only ever adds rows, the ORM refuses to flush an
update or delete of an entry, and the database has triggers (migration 0002) that abort one.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from service.models import AuditEntry, utcnow

SYSTEM_ACTOR = ("system", "system")


class AuditLogIsAppendOnly(RuntimeError):
    """Something tried to change or delete an audit entry."""


def record(session: Session, actor: tuple[str, str] | Any, entity: str, entity_id: str | int, action: str,
           before: dict | None = None, after: dict | None = None, compound_id: str | None = None) -> AuditEntry:
    """Add one entry to ``session`` (committed with the caller's change) and return it.

    ``actor`` is a :class:`service.auth.Principal` or an ``(actor, name)`` pair such as ``("cli", "cli")``;
    ``before`` / ``after`` are JSON-able snapshots of what changed (None for a creation / deletion)."""
    actor_id, actor_name = (actor.actor, actor.name) if hasattr(actor, "actor") else actor
    entry = AuditEntry(at=utcnow(), actor=actor_id, actor_name=actor_name, compound_id=compound_id,
                       entity=entity, entity_id=str(entity_id), action=action,
                       before=_jsonable(before), after=_jsonable(after))
    session.add(entry)
    return entry


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


@event.listens_for(Session, "before_flush")
def _refuse_changes(session: Session, _context, _instances) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEntry) and (obj in session.deleted or session.is_modified(obj)):
            raise AuditLogIsAppendOnly(f"audit entry {obj.id} cannot be changed or deleted")
