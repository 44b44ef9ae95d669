"""``/api/v1/camera-health`` on SQLite and PostgreSQL: one row per occurrence, opened by ``started``
and closed by ``ended``, repeats harmless, ids checked, compounds scoped."""
from __future__ import annotations

from vision.health import HealthEvent


def event(state="started", kind="covered", camera="cam1", compound="c1", onset=1_780_000_000.0, at=None):
    return HealthEvent(compound, camera, kind, state, onset, at or onset + 10, "mean 3, std 0.0")


def test_started_then_ended_is_one_row_and_repeats_change_nothing(client, worker, reviewer):
    started = event()
    assert client.post("/api/v1/camera-health", json=started.to_json(), headers=worker).status_code == 201
    assert client.post("/api/v1/camera-health", json=started.to_json(), headers=worker).status_code == 200
    rows = client.get("/api/v1/camera-health", params={"active": True}, headers=reviewer).json()
    assert [(r["id"], r["kind"], r["active"]) for r in rows] == [(started.id, "covered", True)]
    assert rows[0]["started_at"].startswith("2026-05-28T20:26:40")
    ended = event("ended", at=started.onset_s + 60)
    assert ended.id == started.id
    assert client.post("/api/v1/camera-health", json=ended.to_json(), headers=worker).status_code == 201
    assert client.post("/api/v1/camera-health", json=ended.to_json(), headers=worker).status_code == 200
    assert client.get("/api/v1/camera-health", params={"active": True}, headers=reviewer).json() == []
    rows = client.get("/api/v1/camera-health", headers=reviewer).json()
    assert len(rows) == 1 and rows[0]["ended_at"] and not rows[0]["active"]
    # the next occurrence is a new row
    again = event(onset=started.onset_s + 3600)
    assert client.post("/api/v1/camera-health", json=again.to_json(), headers=worker).status_code == 201
    assert len(client.get("/api/v1/camera-health", params={"camera_id": "cam1"}, headers=reviewer).json()) == 2


def test_ended_before_started_creates_the_closed_row(client, worker, reviewer):
    ended = event("ended", kind="offline")
    assert client.post("/api/v1/camera-health", json=ended.to_json(), headers=worker).status_code == 201
    assert client.post("/api/v1/camera-health", json=event(kind="offline").to_json(), headers=worker).status_code == 200
    rows = client.get("/api/v1/camera-health", headers=reviewer).json()
    assert len(rows) == 1 and rows[0]["ended_at"] is not None


def test_bad_events_are_refused_and_compounds_are_scoped(client, worker, reviewer, make_key):
    body = event().to_json()
    assert client.post("/api/v1/camera-health", json={**body, "id": "0" * 32}, headers=worker).status_code == 422
    assert client.post("/api/v1/camera-health", json={**body, "kind": "on_fire"}, headers=worker).status_code == 422
    assert client.post("/api/v1/camera-health", json={**body, "extra": 1}, headers=worker).status_code == 422
    assert client.post("/api/v1/camera-health", json=body).status_code == 401
    assert client.post("/api/v1/camera-health", json=body, headers=reviewer).status_code == 403
    foreign = event(compound="c2").to_json()
    assert client.post("/api/v1/camera-health", json=foreign, headers=worker).status_code == 404
    assert client.post("/api/v1/camera-health", json=foreign, headers=make_key("worker", ("c2",))).status_code == 201
    assert client.get("/api/v1/camera-health", headers=reviewer).json() == []  # c2 is not the reviewer's
    assert client.get("/api/v1/camera-health", params={"compound_id": "c2"}, headers=reviewer).status_code == 404
