"""Helpers for the review-workflow tests: users with bearer tokens, seeded events, cases."""
from __future__ import annotations

import datetime as dt
import json

from service.models import utcnow
from service.users import create_user

PASSWORD = "correct horse battery"


def make_user(app, client, username: str, grants: dict[str, str]) -> dict[str, str]:
    """Create a user with ``grants`` and log in; return ``{"Authorization": "Bearer …"}``."""
    with app.state.sessions() as session:
        create_user(session, username, PASSWORD, grants)
        session.commit()
    response = client.post("/api/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def post_event(client, make_event, worker_headers, **kwargs) -> str:
    post = make_event(**kwargs)
    response = post.post(client, worker_headers)
    assert response.status_code == 201, response.text
    return post.id


def post_batch(client, headers, posts, events: str | None = None, parts: list | None = None):
    """Send ``posts`` (conftest's EventPost) as one ``POST /api/v1/events/batch``; ``events`` replaces
    the events field, ``parts`` adds ``(name, (filename, bytes, type))`` file parts."""
    files = [(f"{i}.{kind}", (f"{kind}.bin", data, post.content_types[kind]))
             for i, post in enumerate(posts) for kind, data in post.files.items()]
    body = events if events is not None else json.dumps([post.event for post in posts])
    return client.post("/api/v1/events/batch", data={"events": body}, files=files + (parts or []), headers=headers)


def queue_in_outbox(outbox, post, folder) -> None:
    """Write ``post``'s files (conftest's EventPost) into the new folder ``folder`` and queue the event in
    the worker's ``outbox``, as a camera pipeline does."""
    folder.mkdir(parents=True)
    files = {}
    for kind, data in post.files.items():
        files[kind] = folder / f"{kind}.{ {'snapshot': 'jpg', 'clip': 'mp4', 'sidecar': 'json', 'crop': 'jpg'}[kind]}"
        files[kind].write_bytes(data)
    assert outbox.add(post.event, files)


def review(client, headers, violation_id: str, verdict: str = "confirm", reason: str | None = None):
    body = {"verdict": verdict, **({"reason": reason} if reason else {})}
    return client.post(f"/api/v1/events/{violation_id}/review", json=body, headers=headers)


def past(hours: float = 1) -> str:
    return (utcnow() - dt.timedelta(hours=hours)).isoformat()


def future(hours: float = 24) -> str:
    return (utcnow() + dt.timedelta(hours=hours)).isoformat()


def reinspect(client, headers, case_id: int, jpeg: bytes, rule_active: bool,
              frame_time: str = "2026-03-05T10:00:00+08:00"):
    report = json.dumps({"frame_time": frame_time, "rule_active": rule_active})
    return client.post(f"/api/v1/cases/{case_id}/reinspect", data={"report": report},
                       files={"snapshot": ("after.jpg", jpeg, "image/jpeg")}, headers=headers)


def audit_count(app) -> int:
    from sqlalchemy import func, select
    from service.models import AuditEntry
    with app.state.sessions() as session:
        return session.scalar(select(func.count()).select_from(AuditEntry))


def insert_violations(sessions, count: int, start: dt.datetime, compound_id: str = "c1",
                      camera_id: str = "cam1") -> list[str]:
    """``count`` unreviewed fire-lane violations of ``compound_id``/``camera_id``, one a minute from
    ``start``, inserted as rows with their compound and camera (what is tested is listing them, not
    posting them); their ids, oldest first."""
    from sqlalchemy import insert

    from service.models import Camera, Compound, Violation
    rows = [dict(id=f"v{n:05d}", rule="fire_lane", compound_id=compound_id, camera_id=camera_id, zone_id="lane",
                 start_time=start + dt.timedelta(minutes=n), last_seen_time=start + dt.timedelta(minutes=n),
                 confidence=0.9, model_version="m", source="live", boxes=[], review_state="unreviewed",
                 created_at=start) for n in range(count)]
    with sessions() as session:
        session.execute(insert(Compound.__table__), [dict(id=compound_id, name=compound_id)])
        session.execute(insert(Camera.__table__), [dict(id=camera_id, compound_id=compound_id, name=camera_id,
                                                        created_at=start)])
        session.execute(insert(Violation.__table__), rows)
        session.commit()
    return [row["id"] for row in rows]
