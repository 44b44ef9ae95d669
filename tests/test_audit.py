"""The audit log is append-only: the ORM refuses changes, and so does the database (triggers)."""
from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from service import audit
from service.audit import AuditLogIsAppendOnly
from service.models import AuditEntry


def test_entries_cannot_be_changed_or_deleted(app):
    with app.state.sessions() as session:
        audit.record(session, ("cli", "cli"), "user", 1, "create", None, {"username": "a"})
        session.commit()
        entry = session.scalar(select(AuditEntry))
        entry.action = "forged"
        with pytest.raises(AuditLogIsAppendOnly):
            session.flush()
        session.rollback()
        session.delete(session.scalar(select(AuditEntry)))
        with pytest.raises(AuditLogIsAppendOnly):
            session.flush()
        session.rollback()
    for statement in ("UPDATE audit_log SET action = 'forged'", "DELETE FROM audit_log"):
        with app.state.engine.connect() as conn:
            with pytest.raises(DBAPIError, match="append-only"):
                conn.execute(text(statement))
    with app.state.sessions() as session:
        assert [e.action for e in session.scalars(select(AuditEntry))] == ["create"]
