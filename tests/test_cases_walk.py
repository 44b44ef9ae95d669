"""A scripted walk through one case, from the worker's event to a closed case, on SQLite and PostgreSQL:
every transition, the audit log, the scorecard change; illegal transitions are 409 and change nothing."""
from __future__ import annotations

import datetime as dt

import pytest

from workflow import audit_count, future, make_user, past, post_event, reinspect, review

START = dt.datetime(2026, 3, 4, 2, 0, tzinfo=dt.timezone.utc)  # 10:00 in Asia/Shanghai


@pytest.fixture
def people(app, client):
    return {role: make_user(app, client, role, {"c1": role}) for role in ("admin", "supervisor", "reviewer", "viewer")}


def _case(client, headers, case_id):
    response = client.get(f"/api/v1/cases/{case_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _score(client, headers):
    response = client.get("/api/v1/compounds/c1/scorecard", params={"period": "2026-03"}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_walk_from_event_to_closed_case(app, client, worker, make_event, people, evidence_bytes):
    reviewer, supervisor, viewer = people["reviewer"], people["supervisor"], people["viewer"]
    assert _score(client, viewer)["score"] == 20
    violation_id = post_event(client, make_event, worker, start=START)

    # claim, then a second reviewer is refused while the claim holds
    assert client.post(f"/api/v1/events/{violation_id}/claim", headers=reviewer).status_code == 200
    assert review(client, supervisor, violation_id).status_code == 409
    queue = client.get("/api/v1/review-queue", headers=supervisor).json()
    assert queue["total"] == 0  # claimed by someone else: not in the supervisor's queue
    assert client.get("/api/v1/review-queue", headers=reviewer).json()["total"] == 1

    # viewers cannot decide; the reviewer confirms; a second decision is 409 and changes nothing
    assert review(client, viewer, violation_id).status_code == 403
    assert review(client, reviewer, violation_id).status_code == 201
    before = audit_count(app)
    second = review(client, supervisor, violation_id, verdict="reject", reason="false_alarm")
    assert second.status_code == 409
    assert audit_count(app) == before
    event = client.get(f"/api/v1/events/{violation_id}", headers=viewer).json()
    assert event["review_state"] == "confirmed" and event["review"]["verdict"] == "confirm"
    case_id = event["case_id"]
    assert case_id is not None

    case = _case(client, viewer, case_id)
    assert case["state"] == "open" and case["violation_ids"] == [violation_id]
    card = _score(client, viewer)
    fire = card["sections"][1]["items"][0]
    assert (fire["id"], fire["count"], fire["deducted"]) == ("fire_lane", 1, 1) and card["score"] == 19

    # a second confirmed violation of the same spot joins the open case and does not deduct again
    second_id = post_event(client, make_event, worker, start=START + dt.timedelta(hours=1))
    assert review(client, reviewer, second_id).status_code == 201
    assert _case(client, viewer, case_id)["violation_ids"] == [violation_id, second_id]
    assert _score(client, viewer)["score"] == 19

    # illegal transitions: 409, nothing changes
    before = audit_count(app)
    assert client.post(f"/api/v1/cases/{case_id}/close", headers=supervisor).status_code == 409
    assert client.post(f"/api/v1/cases/{case_id}/rectify", json={"note": "moved"}, headers=reviewer).status_code == 409
    assert reinspect(client, worker, case_id, evidence_bytes["snapshot"], rule_active=False).status_code == 409
    assert audit_count(app) == before and _case(client, viewer, case_id)["state"] == "open"

    # assign (supervisor only), rectify (reviewer), re-inspect (worker), close (supervisor)
    assign = {"assignee": "Property team B", "deadline": future()}
    assert client.post(f"/api/v1/cases/{case_id}/assign", json=assign, headers=reviewer).status_code == 403
    assigned = client.post(f"/api/v1/cases/{case_id}/assign", json=assign, headers=supervisor)
    assert assigned.status_code == 200 and assigned.json()["assignee"] == "Property team B"
    rectified = client.post(f"/api/v1/cases/{case_id}/rectify", json={"note": "car towed"}, headers=reviewer)
    assert rectified.status_code == 200 and rectified.json()["state"] == "rectified"
    due = client.get("/api/v1/cases/due", headers=worker).json()
    assert [c["id"] for c in due["items"]] == [case_id]
    inspected = reinspect(client, worker, case_id, evidence_bytes["crop"], rule_active=False)
    assert inspected.status_code == 201, inspected.text
    body = inspected.json()
    assert body["state"] == "reinspected" and body["proposal"] == "close"
    inspection = body["inspections"][0]
    assert inspection["scene_clear"] is True and inspection["outcome"] == "propose_close"
    before_img = client.get(inspection["before_url"], headers=viewer)
    after_img = client.get(inspection["after_url"], headers=viewer)
    assert before_img.content == evidence_bytes["snapshot"] and after_img.content == evidence_bytes["crop"]
    assert client.post(f"/api/v1/cases/{case_id}/close", headers=reviewer).status_code == 403
    closed = client.post(f"/api/v1/cases/{case_id}/close", headers=supervisor)
    assert closed.status_code == 200 and closed.json()["state"] == "closed" and closed.json()["closed_at"]
    assert client.post(f"/api/v1/cases/{case_id}/close", headers=supervisor).status_code == 409

    # the deduction stays: the violation happened in the period
    assert _score(client, viewer)["score"] == 19

    # the audit log tells the whole story, in order
    log = client.get("/api/v1/audit", params={"entity": "case", "entity_id": str(case_id)}, headers=supervisor).json()
    assert [e["action"] for e in log["items"]] == ["open", "join", "assign", "rectify", "reinspect", "close"]
    assert [e["after"]["state"] for e in log["items"] if e["after"] and "state" in e["after"]] == [
        "open", "open", "rectified", "reinspected", "closed"]
    assert log["items"][-1]["before"]["state"] == "reinspected"
    assert log["items"][-1]["actor"].startswith("user:")
    violation_log = client.get("/api/v1/audit", params={"entity": "violation", "entity_id": violation_id},
                               headers=supervisor).json()
    assert [e["action"] for e in violation_log["items"]] == ["claim", "review"]
    assert violation_log["items"][1]["after"]["review_state"] == "confirmed"


def test_reinspection_not_clear_after_deadline_flags_overdue_then_reopen(app, client, worker, make_event, people,
                                                                         evidence_bytes):
    supervisor = people["supervisor"]
    violation_id = post_event(client, make_event, worker, start=START)
    assert review(client, people["reviewer"], violation_id).status_code == 201
    case_id = client.get(f"/api/v1/events/{violation_id}", headers=supervisor).json()["case_id"]
    # not due before the deadline
    assert client.post(f"/api/v1/cases/{case_id}/assign", json={"assignee": "B", "deadline": future()},
                       headers=supervisor).status_code == 200
    assert reinspect(client, worker, case_id, evidence_bytes["crop"], rule_active=True).status_code == 409
    assert client.post(f"/api/v1/cases/{case_id}/assign", json={"assignee": "B", "deadline": past()},
                       headers=supervisor).status_code == 200
    response = reinspect(client, worker, case_id, evidence_bytes["crop"], rule_active=True)
    assert response.status_code == 201
    assert response.json()["state"] == "overdue" and response.json()["overdue"] is True
    assert response.json()["inspections"][0]["outcome"] == "overdue"
    assert client.post(f"/api/v1/cases/{case_id}/close", headers=supervisor).status_code == 409
    reopened = client.post(f"/api/v1/cases/{case_id}/reopen", json={"deadline": future()}, headers=supervisor)
    assert reopened.status_code == 200 and reopened.json()["state"] == "reopened"
    # a bad snapshot is refused before anything is stored
    assert client.post(f"/api/v1/cases/{case_id}/rectify", json={"note": "done"},
                       headers=people["reviewer"]).status_code == 200
    bad = reinspect(client, worker, case_id, b"not a jpeg", rule_active=False)
    assert bad.status_code == 422
    assert _case(client, supervisor, case_id)["state"] == "rectified"


def test_bulk_reject_duplicates(client, worker, make_event, people):
    ids = [post_event(client, make_event, worker, start=START + dt.timedelta(minutes=i)) for i in range(3)]
    assert review(client, people["reviewer"], ids[0]).status_code == 201
    response = client.post("/api/v1/reviews/bulk", headers=people["reviewer"],
                           json={"violation_ids": ids + ["f" * 32], "verdict": "reject", "reason": "duplicate"})
    assert response.status_code == 200
    assert [r["status"] for r in response.json()] == [409, 201, 201, 404]
    states = [client.get(f"/api/v1/events/{i}", headers=people["viewer"]).json()["review_state"] for i in ids]
    assert states == ["confirmed", "rejected", "rejected"]
