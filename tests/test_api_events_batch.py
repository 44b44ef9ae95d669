"""``POST /api/v1/events/batch``: several events with their evidence in one request, each stored (or
refused) exactly as a single post of it would be, with one result per event (issue 11: a worker's
outbox sends its backlog this way)."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy.exc import OperationalError

from service.ingest import BATCH_MAX_EVENTS

from workflow import post_batch

START = dt.datetime(2026, 3, 1, 10, tzinfo=dt.timezone.utc)


def several(make_event, n, **kwargs):
    return [make_event(start=START + dt.timedelta(minutes=i), **kwargs) for i in range(n)]


def staging_each(stage):
    """A store's ``stage_many`` made of ``stage`` (a faulty one in a test): all or nothing, as the real one."""
    def stage_many(items):
        staged = []
        try:
            for key, data, content_type in items:
                staged.append(stage(key, data, content_type))
        except BaseException:
            for obj in staged:
                obj.discard()
            raise
        return staged
    return stage_many


def test_batch_stores_each_event_once_and_a_second_send_finds_them(client, worker, make_event, stored_objects,
                                                                   violation_count):
    posts = several(make_event, 3)
    posts[1] = make_event(start=START + dt.timedelta(minutes=1), crop=True)
    response = post_batch(client, worker, posts)
    assert response.status_code == 200, response.text
    assert response.json() == [{"index": i, "id": post.id, "status": 201, "detail": None} for i, post in enumerate(posts)]
    assert violation_count() == 3
    objects = stored_objects()
    assert len(objects) == 3 * 3 + 1
    for post in posts:
        stored = client.get(f"/api/v1/events/{post.id}", headers=worker).json()
        assert stored["evidence"]["clip"]["sha256"] == post.event["evidence"]["clip_sha256"]
        clip = client.get(stored["evidence"]["clip"]["url"], headers=worker)
        assert clip.status_code == 200 and clip.content == post.files["clip"]
    assert set(client.get(f"/api/v1/events/{posts[1].id}", headers=worker).json()["evidence"]) == {
        "snapshot", "clip", "sidecar", "crop"}

    again = post_batch(client, worker, posts)
    assert [r["status"] for r in again.json()] == [200, 200, 200]
    assert violation_count() == 3 and stored_objects() == objects


def test_an_event_already_posted_alone_is_200_in_a_batch(client, worker, make_event, violation_count):
    posts = several(make_event, 2)
    assert posts[0].post(client, worker).status_code == 201
    assert [r["status"] for r in post_batch(client, worker, posts).json()] == [200, 201]
    assert violation_count() == 2


def test_the_same_event_twice_in_one_batch_is_stored_once(client, worker, make_event, violation_count):
    post = make_event()
    results = post_batch(client, worker, [post, post]).json()
    assert [(r["id"], r["status"]) for r in results] == [(post.id, 201), (post.id, 200)]
    assert violation_count() == 1


def test_refused_events_do_not_hold_back_the_others(client, make_key, make_event, stored_objects, violation_count):
    """Each event gets the answer a single post would have had; only the good ones are stored."""
    worker = make_key("worker", ["c1"])
    good = several(make_event, 2)
    sha_mismatch = make_event(start=START + dt.timedelta(minutes=10))
    sha_mismatch.event["evidence"]["clip_sha256"] = "0" * 64
    foreign = make_event(compound_id="c9", camera_id="cam9", start=START + dt.timedelta(minutes=11))
    wrong_type = make_event(start=START + dt.timedelta(minutes=12))
    wrong_type.content_types["snapshot"] = "text/html"
    missing_clip = make_event(start=START + dt.timedelta(minutes=13))
    del missing_clip.files["clip"]
    not_an_event = make_event(start=START + dt.timedelta(minutes=14))
    not_an_event.event["confidence"] = 7
    posts = [good[0], sha_mismatch, foreign, wrong_type, missing_clip, not_an_event, good[1]]

    response = post_batch(client, worker, posts)
    assert response.status_code == 200, response.text
    results = response.json()
    assert [r["status"] for r in results] == [201, 422, 404, 415, 422, 422, 201]
    assert [r["id"] for r in results] == [None if post is not_an_event else post.id for post in posts]
    assert "clip sha256" in results[1]["detail"]
    assert results[2]["detail"] == "no compound 'c9'"
    assert "text/html" in results[3]["detail"]
    assert results[4]["detail"][0]["loc"] == ["body", "4.clip"]
    assert results[5]["detail"][0]["loc"] == ["body", "events", 5, "confidence"]
    assert violation_count() == 2
    assert len(stored_objects()) == 6


@pytest.mark.parametrize("events, says", [
    (None, "events"), ("{not json", "not valid JSON"), ("{}", "JSON array"), ("[]", "JSON array"),
    (json.dumps([{}] * (BATCH_MAX_EVENTS + 1)), "JSON array"), ("[" * 100_000 + "]" * 100_000, "nested")])
def test_a_batch_without_a_readable_events_array_is_422(client, worker, make_event, events, says, violation_count,
                                                        stored_objects):
    post = make_event()
    files = [(f"0.{kind}", (kind, data, post.content_types[kind])) for kind, data in post.files.items()]
    data = {} if events is None else {"events": events}
    response = client.post("/api/v1/events/batch", data=data, files=files, headers=worker)
    assert response.status_code == 422, response.text
    assert says in json.dumps(response.json()["detail"])
    assert violation_count() == 0 and stored_objects() == []


@pytest.mark.parametrize("name", ["1.snapshot", "0.thumbnail", "../0.snapshot", "00.clip", "snapshot", "0.clip"])
def test_a_part_that_belongs_to_no_event_is_422_and_nothing_stored(client, worker, make_event, name,
                                                                   violation_count, stored_objects):
    post = make_event()
    response = post_batch(client, worker, [post], parts=[(name, ("x.bin", b"x", "application/octet-stream"))])
    assert response.status_code == 422, response.text
    assert name in response.json()["detail"]
    assert violation_count() == 0 and stored_objects() == []


def test_batch_needs_a_key_that_may_post(client, reviewer, make_event, violation_count):
    posts = several(make_event, 2)
    assert post_batch(client, {}, posts).status_code == 401
    assert post_batch(client, {"X-API-Key": "not-a-key"}, posts).status_code == 401
    response = post_batch(client, reviewer, posts)   # the role is checked per event, as for a single post
    assert response.status_code == 200
    assert [r["status"] for r in response.json()] == [403, 403] and "events.post" in response.json()[0]["detail"]
    assert violation_count() == 0


def test_a_batch_that_is_not_a_form_is_422(client, worker):
    response = client.post("/api/v1/events/batch", json={"events": []}, headers=worker)
    assert response.status_code == 422


def test_a_batch_over_the_upload_limit_is_413_and_nothing_stored(client, worker, make_event, violation_count,
                                                               stored_objects):
    posts = several(make_event, 2)
    big = json.dumps({"pad": "x" * (6 * 1024 * 1024)}).encode()  # the test limit is 5 MB (plus 1 MB of form)
    posts[1].files["sidecar"] = big
    response = post_batch(client, worker, posts)
    assert response.status_code == 413
    assert violation_count() == 0 and stored_objects() == []


def test_database_lost_during_the_group_insert_leaves_the_batch_503_and_nothing_behind(
        app, client, worker, make_event, violation_count, stored_objects):
    """The batch's events are stored in one transaction: when the database goes away after the rows'
    INSERT and the objects' publishing (at the evidence rows' INSERT), the rows roll back, the objects
    are removed, every event answers 503, and the same batch sent again stores them all."""
    from sqlalchemy import event as sa_event

    def lost_at_evidence_insert(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO evidence_objects"):
            raise OperationalError(statement, {}, Exception("server closed the connection unexpectedly"))

    engine = app.state.engine
    sa_event.listen(engine, "before_cursor_execute", lost_at_evidence_insert)
    posts = several(make_event, 3)
    try:
        results = post_batch(client, worker, posts).json()
    finally:
        sa_event.remove(engine, "before_cursor_execute", lost_at_evidence_insert)
    assert [r["status"] for r in results] == [503, 503, 503]
    assert [r["id"] for r in results] == [post.id for post in posts]
    assert violation_count() == 0 and stored_objects() == []

    assert [r["status"] for r in post_batch(client, worker, posts).json()] == [201, 201, 201]
    assert violation_count() == 3 and len(stored_objects()) == 9


def test_after_a_failed_group_the_events_go_one_by_one_and_a_lost_database_stops_them(
        app, client, worker, make_event, monkeypatch, violation_count, stored_objects):
    """A group that fails otherwise (here a concurrent post of one of its ids) is stored again one event
    at a time; when the database goes away after the first, that one is stored and the others answer
    503 (not tried, nothing of them stored), and the same batch sent again stores them."""
    from sqlalchemy.exc import IntegrityError

    import service.routers.events as events_router
    real_store_event = events_router.store_event
    calls = []

    def concurrent_duplicate(session, store, events):
        raise IntegrityError("INSERT INTO violations", {}, Exception("UNIQUE constraint failed: violations.id"))

    def failing_after_first(session, store, event, uploads):
        calls.append(event.id)
        if len(calls) == 2:
            raise OperationalError("INSERT", {}, Exception("server closed the connection unexpectedly"))
        return real_store_event(session, store, event, uploads)

    monkeypatch.setattr(events_router, "store_events", concurrent_duplicate)
    monkeypatch.setattr(events_router, "store_event", failing_after_first)
    posts = several(make_event, 3)
    results = post_batch(client, worker, posts).json()
    assert [r["status"] for r in results] == [201, 503, 503]
    assert [r["id"] for r in results] == [post.id for post in posts]
    assert len(calls) == 2  # the third was not tried
    assert violation_count() == 1 and len(stored_objects()) == 3

    monkeypatch.setattr(events_router, "store_event", real_store_event)
    assert [r["status"] for r in post_batch(client, worker, posts).json()] == [200, 201, 201]
    assert violation_count() == 3


def test_new_events_of_a_batch_reach_the_alert_feed(app, client, worker, make_event):
    from service.routers.feed import alert_hub
    hub = alert_hub(app)
    seen = []
    real_publish = hub.publish
    hub.publish = lambda item, **kw: (seen.append(item), real_publish(item, **kw))
    try:
        posts = several(make_event, 2)
        assert posts[0].post(client, worker).status_code == 201
        seen.clear()
        post_batch(client, worker, posts)
    finally:
        hub.publish = real_publish
    assert [item["id"] for item in seen] == [posts[1].id]


def test_extra_fields_or_too_many_files_are_400_and_nothing_stored(client, worker, make_event, violation_count,
                                                                  stored_objects):
    post = make_event()
    extra_field = client.post("/api/v1/events/batch", data={"events": json.dumps([post.event]), "other": "x"},
                              files=[("0.snapshot", ("a.jpg", post.files["snapshot"], "image/jpeg"))], headers=worker)
    assert extra_field.status_code == 400 and "Too many fields" in extra_field.json()["detail"]
    files = [(f"{i}.clip", ("a.mp4", b"x", "video/mp4")) for i in range(4 * BATCH_MAX_EVENTS + 1)]
    too_many = client.post("/api/v1/events/batch", data={"events": json.dumps([post.event])}, files=files,
                           headers=worker)
    assert too_many.status_code == 400 and "Too many files" in too_many.json()["detail"]
    assert violation_count() == 0 and stored_objects() == []


def test_store_down_mid_batch_leaves_the_rest_503_and_nothing_of_them_stored(app, client, worker, make_event,
                                                                            violation_count, stored_objects):
    from service.errors import IntegrityFailed, StorageError
    real_stage = app.state.store.stage
    keys = []
    posts = several(make_event, 3)

    def failing_stage(key, data, content_type):
        keys.append(key)
        if posts[1].id in key:    # the store goes away at the second event's first object
            raise StorageError(key, "connection refused")
        return real_stage(key, data, content_type)

    app.state.store.stage = failing_stage
    app.state.store.stage_many = staging_each(failing_stage)
    results = post_batch(client, worker, posts).json()
    # the group fails and leaves nothing; one by one, the first is stored and the third not tried
    assert [r["status"] for r in results] == [201, 503, 503]
    assert "connection refused" in results[1]["detail"]
    assert not [key for key in keys if posts[2].id in key]
    assert violation_count() == 1 and len(stored_objects()) == 3

    # an integrity failure is that event's own (500); the others go on
    def mismatching_stage(key, data, content_type):
        if "/clip" in key and posts[1].id in key:
            raise IntegrityFailed(key, "the bytes stored differ from the bytes uploaded")
        return real_stage(key, data, content_type)
    app.state.store.stage = mismatching_stage
    app.state.store.stage_many = staging_each(mismatching_stage)
    assert [r["status"] for r in post_batch(client, worker, posts).json()] == [200, 500, 201]
    app.state.store.stage = real_stage
    del app.state.store.stage_many
    assert violation_count() == 2


def test_a_new_camera_claimed_by_two_compounds_in_one_batch_goes_to_the_first(client, make_key, make_event,
                                                                             violation_count):
    """The batch's events share one transaction: a camera first seen in it belongs to the first event's
    compound, and a later event that places it in another compound is refused alone, as a single post
    would be once the first was stored."""
    worker = make_key("worker", ["c1", "c2"])
    first = make_event(compound_id="c1", camera_id="cam-new", start=START)
    other = make_event(compound_id="c2", camera_id="cam-new", start=START + dt.timedelta(minutes=1))
    third = make_event(compound_id="c1", camera_id="cam-new", start=START + dt.timedelta(minutes=2))
    results = post_batch(client, worker, [first, other, third]).json()
    assert [r["status"] for r in results] == [201, 422, 201]
    assert results[1]["detail"] == "camera 'cam-new' belongs to compound 'c1', not 'c2'"
    assert violation_count() == 2
    assert other.post(client, worker).json()["detail"] == results[1]["detail"]
