"""Posting events: auth, idempotency, validation (nothing stored when invalid), concurrency."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading

import pytest
from sqlalchemy import select

from service.keys import key_id_of, revoke_key
from service.models import Camera, Compound


def test_post_event_201_then_same_event_200_and_one_row(client, worker, make_event, stored_objects, violation_count,
                                                        evidence_bytes):
    post = make_event(crop=True)
    first = post.post(client, worker)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["id"] == post.id and body["review_state"] == "unreviewed" and body["review"] is None
    assert body["start_time"].startswith("2026-03-01T10:00:00.25")
    assert set(body["evidence"]) == {"snapshot", "clip", "sidecar", "crop"}
    assert body["evidence"]["clip"] == {"url": f"/api/v1/events/{post.id}/evidence/clip",
                                        "sha256": post.event["evidence"]["clip_sha256"],
                                        "size": len(evidence_bytes["clip"]), "content_type": "video/mp4"}
    objects = stored_objects()
    assert objects == sorted(f"c1/cam1/2026/03/01/{post.id}/{name}"
                             for name in ("snapshot.jpg", "clip.mp4", "sidecar.json", "crop.jpg"))

    again = post.post(client, worker)
    assert again.status_code == 200, again.text
    assert again.json() == body
    assert violation_count() == 1
    assert stored_objects() == objects


def test_first_event_registers_compound_and_camera(app, client, worker, make_event):
    assert make_event().post(client, worker).status_code == 201
    with app.state.sessions() as session:
        assert session.scalars(select(Compound.id)).all() == ["c1"]
        assert session.execute(select(Camera.id, Camera.compound_id)).all() == [("cam1", "c1")]


def test_camera_cannot_move_to_another_compound(client, make_key, make_event, violation_count):
    admin = make_key("admin", "*")
    assert make_event(compound_id="c1").post(client, admin).status_code == 201
    moved = make_event(compound_id="c2", start=dt.datetime(2026, 3, 2, tzinfo=dt.timezone.utc))
    response = moved.post(client, admin)
    assert response.status_code == 422
    assert "belongs to compound 'c1'" in response.json()["detail"]
    assert violation_count() == 1


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "not-a-key"},
                                     {"X-API-Key": "ce_0123456789abcdef_" + "A" * 43}])
def test_missing_or_wrong_key_is_401_and_nothing_stored(client, headers, make_event, stored_objects,
                                                        violation_count):
    response = make_event().post(client, headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "ApiKey"
    assert response.json()["detail"]
    assert violation_count() == 0 and stored_objects() == []


def test_tampered_secret_is_401(client, worker, make_event):
    key = worker["X-API-Key"]
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert make_event().post(client, {"X-API-Key": tampered}).status_code == 401


def test_revoked_key_is_401(app, client, worker, make_event):
    with app.state.sessions() as session:
        revoke_key(session, key_id_of(worker["X-API-Key"]))
    response = make_event().post(client, worker)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "ApiKey"
    assert client.get("/api/v1/events", headers=worker).status_code == 401


def test_reviewer_cannot_post_403(client, reviewer, make_event, violation_count):
    response = make_event().post(client, reviewer)
    assert response.status_code == 403
    assert "worker or admin" in response.json()["detail"]
    assert violation_count() == 0


def test_out_of_scope_compound_404(client, make_key, make_event, stored_objects, violation_count):
    """A foreign compound is not revealed: 404, as if it did not exist."""
    response = make_event(compound_id="c2").post(client, make_key("worker", ["c1"]))
    assert response.status_code == 404
    assert "'c2'" in response.json()["detail"]
    assert violation_count() == 0 and stored_objects() == []


def test_admin_key_for_all_compounds_can_post(client, make_key, make_event):
    assert make_event(compound_id="c9").post(client, make_key("admin", "*")).status_code == 201


def _bad_json(post):
    post.raw_event = "{not json"


def _missing_field(post):
    del post.event["rule"]


def _wrong_id(post):
    post.event["id"] = "0" * 32


def _id_for_other_start(post):
    post.event["start_time"] = "2026-03-01T10:00:01.250000+00:00"


def _sha_mismatch(post):
    post.files["clip"] = post.files["clip"] + b"\0"


def _not_a_jpeg(post):
    post.files["snapshot"] = b"GIF89a not a jpeg"
    post.event["evidence"]["snapshot_sha256"] = hashlib.sha256(post.files["snapshot"]).hexdigest()


def _jpeg_magic_but_garbage(post):
    post.files["snapshot"] = b"\xff\xd8\xff\xe0" + b"garbage" * 20
    post.event["evidence"]["snapshot_sha256"] = hashlib.sha256(post.files["snapshot"]).hexdigest()


def _clip_not_mp4(post):
    post.files["clip"] = post.files["snapshot"]
    post.event["evidence"]["clip_sha256"] = post.event["evidence"]["snapshot_sha256"]


def _sidecar_not_json(post):
    post.files["sidecar"] = b"{oops"
    post.event["evidence"]["sidecar_sha256"] = hashlib.sha256(b"{oops").hexdigest()


def _crop_without_claim(post):
    post.files["crop"] = post.files["snapshot"]


def _missing_clip_file(post):
    del post.files["clip"]


def _naive_time(post):
    post.event["last_seen_time"] = "2026-03-01T10:01:00"


def _confidence_out_of_range(post):
    post.event["confidence"] = 1.5


def _unknown_rule(post):
    post.event["rule"] = "littering"


def _key_escape_in_camera(post):
    post.event["camera_id"] = "../cam1"


@pytest.mark.parametrize("spoil", [_bad_json, _missing_field, _wrong_id, _id_for_other_start, _sha_mismatch,
                                   _not_a_jpeg, _jpeg_magic_but_garbage, _clip_not_mp4, _sidecar_not_json,
                                   _crop_without_claim, _missing_clip_file, _naive_time, _confidence_out_of_range,
                                   _unknown_rule, _key_escape_in_camera])
def test_malformed_event_is_422_and_nothing_stored(client, worker, make_event, spoil, stored_objects,
                                                   violation_count):
    post = make_event()
    spoil(post)
    response = post.post(client, worker)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]
    assert violation_count() == 0
    assert stored_objects() == []


def test_wrong_id_says_what_was_expected(client, worker, make_event):
    post = make_event()
    expected = post.id
    post.event["id"] = "f" * 32
    detail = post.post(client, worker).json()["detail"]
    assert expected in detail and "cam1" in detail


def test_too_large_upload_is_413_and_nothing_stored(client, worker, make_event, stored_objects, violation_count):
    post = make_event()
    post.files["sidecar"] = json.dumps({"pad": "x" * (5 * 1024 * 1024)}).encode()  # the test limit is 5 MB
    post.event["evidence"]["sidecar_sha256"] = hashlib.sha256(post.files["sidecar"]).hexdigest()
    response = post.post(client, worker)
    assert response.status_code == 413
    assert "max_upload_mb" in response.json()["detail"]
    assert violation_count() == 0 and stored_objects() == []


def test_huge_content_length_is_refused_before_reading(client, worker):
    response = client.post("/api/v1/events", content=b"x" * 100, headers={
        **worker, "Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(50 * 1024 * 1024)})
    assert response.status_code == 413


def test_failed_store_leaves_no_row_and_no_objects(app, client, worker, make_event, stored_objects, violation_count):
    """If the store fails half-way through staging, the objects already staged are dropped and no row is written."""
    from service.errors import StorageError
    real_stage = app.state.store.stage
    calls = []

    def flaky_stage(key, data, content_type):
        calls.append(key)
        if len(calls) == 2:
            raise StorageError(key, "disk full")
        return real_stage(key, data, content_type)

    app.state.store.stage = flaky_stage
    response = make_event().post(client, worker)
    assert response.status_code == 503
    assert "disk full" in response.json()["detail"]
    assert violation_count() == 0 and stored_objects() == []
    app.state.store.stage = real_stage
    assert make_event().post(client, worker).status_code == 201


def test_failed_publish_leaves_no_row_and_no_objects(app, client, worker, make_event, stored_objects, violation_count):
    """If making a staged object visible fails after the row's claim, the objects already published are
    deleted, the other staged ones dropped, and the row is rolled back."""
    from service.errors import StorageError
    real_stage = app.state.store.stage
    staged = []

    class FailingPublish:
        def __init__(self, obj):
            self.obj, self.key = obj, obj.key

        def publish(self):
            if len(staged) > 1 and self is staged[1]:
                raise StorageError(self.key, "rename failed")
            return self.obj.publish()

        def discard(self):
            self.obj.discard()

    def stage(key, data, content_type):
        staged.append(FailingPublish(real_stage(key, data, content_type)))
        return staged[-1]

    app.state.store.stage = stage
    response = make_event().post(client, worker)
    assert response.status_code == 503 and "rename failed" in response.json()["detail"]
    assert len(staged) == 3
    assert violation_count() == 0 and stored_objects() == []
    app.state.store.stage = real_stage
    assert make_event().post(client, worker).status_code == 201


def test_concurrent_duplicate_posts_give_one_201_and_no_500(client, worker, make_event, violation_count,
                                                            stored_objects):
    post = make_event(crop=True)
    statuses, barrier = [], threading.Barrier(4)

    def send():
        barrier.wait()
        statuses.append(post.post(client, worker).status_code)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 200, 201]
    assert violation_count() == 1
    assert len(stored_objects()) == 4
    assert client.get(f"/api/v1/events/{post.id}/evidence/clip", headers=worker).status_code == 200


def test_rescan_source_and_open_ended_violation(client, worker, make_event):
    post = make_event(source="rescan", end_time=None)
    body = post.post(client, worker).json()
    assert body["source"] == "rescan" and body["end_time"] is None
