"""Reviewing events: confirm or reject once; the first decision wins."""
from __future__ import annotations

import threading

import pytest

from service.keys import key_id_of


@pytest.fixture
def posted(client, worker, make_event):
    post = make_event()
    assert post.post(client, worker).status_code == 201
    return post


def _review(client, headers, violation_id, **body):
    return client.post(f"/api/v1/events/{violation_id}/review", json=body, headers=headers)


def test_confirm_then_second_review_409(client, reviewer, make_key, posted):
    first = _review(client, reviewer, posted.id, verdict="confirm", note="blocking the lane")
    assert first.status_code == 201, first.text
    decision = first.json()
    assert decision["verdict"] == "confirm" and decision["reason"] is None
    assert decision["reviewer_key_id"] == key_id_of(reviewer["X-API-Key"])

    second = _review(client, make_key("reviewer"), posted.id, verdict="reject", reason="false_alarm")
    assert second.status_code == 409
    assert "already reviewed" in second.json()["detail"]

    event = client.get(f"/api/v1/events/{posted.id}", headers=reviewer).json()
    assert event["review_state"] == "confirmed"
    assert event["review"]["verdict"] == "confirm" and event["review"]["note"] == "blocking the lane"
    listed = client.get("/api/v1/events", params={"review_state": "confirmed"}, headers=reviewer).json()
    assert [item["id"] for item in listed["items"]] == [posted.id]


def test_reject_with_reason(client, reviewer, posted):
    response = _review(client, reviewer, posted.id, verdict="reject", reason="not_a_violation")
    assert response.status_code == 201
    assert client.get(f"/api/v1/events/{posted.id}", headers=reviewer).json()["review_state"] == "rejected"


@pytest.mark.parametrize("body", [{"verdict": "reject"}, {"verdict": "reject", "reason": "bored"},
                                  {"verdict": "confirm", "reason": "duplicate"}, {"verdict": "maybe"}, {}])
def test_invalid_decision_is_422_and_nothing_recorded(client, reviewer, posted, body):
    response = client.post(f"/api/v1/events/{posted.id}/review", json=body, headers=reviewer)
    assert response.status_code == 422
    assert response.json()["detail"]
    assert client.get(f"/api/v1/events/{posted.id}", headers=reviewer).json()["review"] is None


def test_worker_cannot_review_403(client, worker, posted):
    assert _review(client, worker, posted.id, verdict="confirm").status_code == 403


def test_review_out_of_scope_and_unknown_404(client, make_key, posted):
    assert _review(client, make_key("reviewer", ["c7"]), posted.id, verdict="confirm").status_code == 404
    assert _review(client, make_key("reviewer"), "b" * 32, verdict="confirm").status_code == 404


def test_review_needs_a_key(client, posted):
    response = _review(client, {}, posted.id, verdict="confirm")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "ApiKey"


def test_concurrent_decisions_one_wins(client, make_key, posted):
    keys = [make_key("reviewer") for _ in range(4)]
    results, barrier = [], threading.Barrier(len(keys))

    def decide(headers, verdict):
        barrier.wait()
        body = {"verdict": verdict} if verdict == "confirm" else {"verdict": verdict, "reason": "duplicate"}
        results.append((verdict, _review(client, headers, posted.id, **body).status_code))

    threads = [threading.Thread(target=decide, args=(k, "confirm" if i % 2 else "reject")) for i, k in enumerate(keys)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(status for _, status in results) == [201, 409, 409, 409]
    winner = next(verdict for verdict, status in results if status == 201)
    event = client.get(f"/api/v1/events/{posted.id}", headers=keys[0]).json()
    assert event["review"]["verdict"] == winner
    assert event["review_state"] == ("confirmed" if winner == "confirm" else "rejected")
