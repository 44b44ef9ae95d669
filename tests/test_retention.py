"""Retention per review state, on both stores and both databases: evidence past its time is deleted
(objects and rows, with an audit entry), never while the violation's rectification case is not closed;
``--dry-run`` deletes nothing."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from service.cli import app as cli
from service.models import AuditEntry, Case, Review, Violation
from service.retention import RetentionPolicy, prune

pytestmark = pytest.mark.parametrize("store_kind", ["local", "s3"])
NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
DAY = dt.timedelta(days=1)


def _seed(app, client, worker, make_event):
    """Six violations: name → (review state, age in days, case state or None)."""
    plan = {"rejected_old": ("rejected", 8, None), "rejected_new": ("rejected", 6, None),
            "unreviewed_old": ("unreviewed", 31, None), "unreviewed_new": ("unreviewed", 29, None),
            "confirmed_open_case": ("confirmed", 400, "open"), "confirmed_closed_case": ("confirmed", 400, "closed")}
    ids = {}
    for i, (name, (state, age, case_state)) in enumerate(plan.items()):
        post = make_event(start=dt.datetime(2026, 1, 1, 8, i, tzinfo=dt.timezone.utc))
        assert post.post(client, worker).status_code == 201
        ids[name] = post.id
        with app.state.sessions() as session:
            violation = session.get(Violation, post.id)
            violation.review_state = state
            violation.created_at = NOW - age * DAY
            if state != "unreviewed":
                session.add(Review(violation_id=post.id, verdict=state[:-2] if state == "confirmed" else "reject",
                                   reason=None if state == "confirmed" else "false_alarm", decided_at=NOW - age * DAY))
            if case_state:
                session.flush()
                case = Case(violation_id=post.id, compound_id="c1", camera_id="cam1", zone_id="lane1",
                            rule="fire_lane", state=case_state)
                session.add(case)
                session.flush()
                violation.case_id = case.id
            session.commit()
    return ids


def test_prune_by_review_state_keeps_open_cases(app, client, worker, make_event, stored_objects):
    ids = _seed(app, client, worker, make_event)
    assert len(stored_objects()) == 18
    policy = RetentionPolicy(unreviewed_days=30, rejected_days=7, confirmed_days=365)
    with app.state.sessions() as session:
        dry = prune(session, app.state.store, policy, dry_run=True, now=NOW)
    assert sorted(dry.violations) == sorted([ids["rejected_old"], ids["unreviewed_old"], ids["confirmed_closed_case"]])
    assert dry.kept_for_open_case == [ids["confirmed_open_case"]] and dry.objects == 9
    assert len(stored_objects()) == 18                       # a dry run deletes nothing

    with app.state.sessions() as session:
        done = prune(session, app.state.store, policy, now=NOW)
    assert sorted(done.violations) == sorted(dry.violations) and not done.failed
    assert len(stored_objects()) == 9
    for name, violation_id in ids.items():
        gone = violation_id in done.violations
        response = client.get(f"/api/v1/events/{violation_id}/evidence/clip", headers=worker)
        assert response.status_code == (404 if gone else 200), name
        assert client.get(f"/api/v1/events/{violation_id}", headers=worker).status_code == 200  # the row stays
    with app.state.sessions() as session:
        audited = session.scalars(select(AuditEntry.entity_id).where(AuditEntry.action == "pruned")).all()
        assert sorted(audited) == sorted(done.violations)
        again = prune(session, app.state.store, policy, now=NOW)
    assert again.violations == []


def test_prune_command_dry_run_then_prune(app, client, worker, make_event, settings, stored_objects, monkeypatch):
    ids = _seed(app, client, worker, make_event)
    for name, value in settings.model_dump().items():
        if value is not None and name.startswith(("database_url", "storage_url", "s3_")):
            monkeypatch.setenv(f"COMPOUNDEYE_{name.upper()}", str(getattr(value, "get_secret_value", lambda: value)()))
    monkeypatch.setenv("COMPOUNDEYE_RETENTION_CONFIRMED_DAYS", "1000")   # from the environment
    result = CliRunner().invoke(cli, ["evidence", "prune", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["dry_run"] and ids["confirmed_closed_case"] not in report["violations"]
    assert len(report["violations"]) >= 2 and len(stored_objects()) == 18     # created_at is "now" - ages
    result = CliRunner().invoke(cli, ["evidence", "verify"])
    assert result.exit_code == 0 and "18 object(s) checked" in result.output
