"""Reading events: list with filters and paging, one event, evidence downloads with byte ranges."""
from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from workflow import insert_violations

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def seeded(client, make_key, make_event):
    """Six violations: c1/cam1 fire_lane at T0+0h..3h, c1/cam2 bin_overflow at T0+4h, c2/cam9 at T0+5h."""
    admin = make_key("admin", "*")
    posts = [make_event(start=T0 + dt.timedelta(hours=h)) for h in range(4)]
    posts.append(make_event(camera_id="cam2", rule="bin_overflow", zone_id="bins", start=T0 + dt.timedelta(hours=4)))
    posts.append(make_event(compound_id="c2", camera_id="cam9", start=T0 + dt.timedelta(hours=5)))
    for post in posts:
        assert post.post(client, admin).status_code == 201
    return posts


def _ids(response):
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def test_list_is_scoped_and_newest_first(client, reviewer, seeded):
    response = client.get("/api/v1/events", headers=reviewer)  # reviewer is scoped to c1
    assert _ids(response) == [p.id for p in reversed(seeded[:5])]
    assert response.json()["total"] == 5


def test_list_filters(client, make_key, seeded):
    everyone = make_key("reviewer", "*")
    get = lambda **params: _ids(client.get("/api/v1/events", params=params, headers=everyone))  # noqa: E731
    assert get(compound_id="c2") == [seeded[5].id]
    assert get(camera_id="cam2") == [seeded[4].id]
    assert get(rule="bin_overflow") == [seeded[4].id]
    assert get(since=(T0 + dt.timedelta(hours=1)).isoformat(), until=(T0 + dt.timedelta(hours=3)).isoformat()) \
        == [seeded[2].id, seeded[1].id]
    assert get(since="2026-03-01T12:30:00") == [seeded[5].id]  # no zone: read as UTC
    assert get(review_state="unreviewed", compound_id="c1", camera_id="cam1") == [p.id for p in reversed(seeded[:4])]
    assert get(review_state="confirmed") == []


def test_list_pagination_with_total(client, reviewer, seeded):
    page1 = client.get("/api/v1/events", params={"limit": 2, "offset": 0}, headers=reviewer).json()
    page3 = client.get("/api/v1/events", params={"limit": 2, "offset": 4}, headers=reviewer).json()
    assert (page1["total"], page1["limit"], page1["offset"]) == (5, 2, 0)
    assert [i["id"] for i in page1["items"]] == [seeded[4].id, seeded[3].id]
    assert [i["id"] for i in page3["items"]] == [seeded[0].id]
    assert client.get("/api/v1/events", params={"limit": 201}, headers=reviewer).status_code == 422
    assert client.get("/api/v1/events", params={"offset": -1}, headers=reviewer).status_code == 422


def test_list_out_of_scope_compound_404(client, reviewer, seeded):
    assert client.get("/api/v1/events", params={"compound_id": "c2"}, headers=reviewer).status_code == 404


def test_list_needs_a_key(client):
    response = client.get("/api/v1/events")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == "ApiKey"


def test_get_one(client, reviewer, seeded):
    post = seeded[4]
    body = client.get(f"/api/v1/events/{post.id}", headers=reviewer).json()
    assert body["id"] == post.id and body["rule"] == "bin_overflow" and body["zone_id"] == "bins"
    assert body["boxes"][0]["xyxy"] == [10, 20, 110, 70] and body["boxes"][0]["track_id"] == 7
    assert body["evidence"]["snapshot"]["url"] == f"/api/v1/events/{post.id}/evidence/snapshot"
    assert "crop" not in body["evidence"]
    assert dt.datetime.fromisoformat(body["start_time"]) == T0 + dt.timedelta(hours=4)


def test_get_one_unknown_and_foreign_both_404(client, reviewer, seeded):
    assert client.get(f"/api/v1/events/{'a' * 32}", headers=reviewer).status_code == 404
    assert client.get(f"/api/v1/events/{seeded[5].id}", headers=reviewer).status_code == 404


@pytest.mark.parametrize("kind,content_type", [("snapshot", "image/jpeg"), ("clip", "video/mp4"),
                                               ("sidecar", "application/json"), ("crop", "image/jpeg")])
def test_evidence_full_download_equals_bytes_posted(client, worker, make_event, evidence_bytes, kind, content_type):
    post = make_event(crop=True)
    assert post.post(client, worker).status_code == 201
    response = client.get(f"/api/v1/events/{post.id}/evidence/{kind}", headers=worker)
    assert response.status_code == 200
    assert response.content == evidence_bytes[kind]
    assert response.headers["content-type"].startswith(content_type)
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-length"] == str(len(evidence_bytes[kind]))
    assert response.headers["etag"] == f'"{hashlib.sha256(evidence_bytes[kind]).hexdigest()}"'


def test_evidence_range_requests(client, worker, make_event, evidence_bytes):
    post = make_event()
    assert post.post(client, worker).status_code == 201
    clip, url = evidence_bytes["clip"], f"/api/v1/events/{post.id}/evidence/clip"
    size = len(clip)

    response = client.get(url, headers={**worker, "Range": "bytes=0-99"})
    assert response.status_code == 206
    assert response.content == clip[:100]
    assert response.headers["content-range"] == f"bytes 0-99/{size}"
    assert response.headers["content-length"] == "100"
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-type"] == "video/mp4"

    middle = client.get(url, headers={**worker, "Range": "bytes=100-"})
    assert middle.status_code == 206 and middle.content == clip[100:]
    assert middle.headers["content-range"] == f"bytes 100-{size - 1}/{size}"
    suffix = client.get(url, headers={**worker, "Range": "bytes=-10"})
    assert suffix.status_code == 206 and suffix.content == clip[-10:]
    past_end = client.get(url, headers={**worker, "Range": f"bytes={size - 5}-{size + 1000}"})
    assert past_end.status_code == 206 and past_end.content == clip[-5:]


def test_evidence_unsatisfiable_range_416(client, worker, make_event, evidence_bytes):
    post = make_event()
    assert post.post(client, worker).status_code == 201
    size = len(evidence_bytes["clip"])
    response = client.get(f"/api/v1/events/{post.id}/evidence/clip", headers={**worker, "Range": f"bytes={size}-"})
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{size}"
    assert "outside" in response.json()["detail"]


def test_evidence_malformed_or_multiple_ranges_serve_whole_object(client, worker, make_event, evidence_bytes):
    post = make_event()
    assert post.post(client, worker).status_code == 201
    for header in ("bytes=5-1", "items=0-1", "bytes=0-1,5-9"):
        response = client.get(f"/api/v1/events/{post.id}/evidence/clip", headers={**worker, "Range": header})
        assert response.status_code == 200 and response.content == evidence_bytes["clip"], header


def test_evidence_missing_kind_and_unknown_kind(client, worker, make_event):
    post = make_event()
    assert post.post(client, worker).status_code == 201
    assert client.get(f"/api/v1/events/{post.id}/evidence/crop", headers=worker).status_code == 404
    assert client.get(f"/api/v1/events/{post.id}/evidence/passwd", headers=worker).status_code == 422


def test_evidence_tampered_on_disk_is_not_served(client, worker, make_event, evidence_dir):
    post = make_event()
    assert post.post(client, worker).status_code == 201
    path = next(evidence_dir.rglob("snapshot.jpg"))
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    response = client.get(f"/api/v1/events/{post.id}/evidence/snapshot", headers=worker)
    assert response.status_code == 500
    assert "integrity check failed" in response.json()["detail"]
    assert bytes(data) not in response.content

    path.write_bytes(bytes(data[:-10]))  # truncated: caught even for a range request
    ranged = client.get(f"/api/v1/events/{post.id}/evidence/snapshot", headers={**worker, "Range": "bytes=0-9"})
    assert ranged.status_code == 500 and "integrity check failed" in ranged.json()["detail"]


def test_evidence_out_of_scope_404(client, make_key, make_event):
    post = make_event(compound_id="c2", camera_id="cam9")
    assert post.post(client, make_key("worker", ["c2"])).status_code == 201
    other = make_key("reviewer", ["c1"])
    assert client.get(f"/api/v1/events/{post.id}/evidence/clip", headers=other).status_code == 404


def test_listing_counts_up_to_1000_or_the_page_end(app, client, reviewer):
    ids = insert_violations(app.state.sessions, 1005, T0)
    first = client.get("/api/v1/events", params={"limit": 50}, headers=reviewer).json()
    assert (first["total"], first["total_capped"]) == (1000, True)   # at least 1000: "1000+"
    assert [item["id"] for item in first["items"]] == ids[::-1][:50]
    deep = client.get("/api/v1/events", params={"limit": 50, "offset": 980}, headers=reviewer).json()
    assert (deep["total"], deep["total_capped"]) == (1005, False)    # counted to past the page: exact
    assert [item["id"] for item in deep["items"]] == ids[::-1][980:]
    beyond = client.get("/api/v1/events", params={"limit": 50, "offset": 1100}, headers=reviewer).json()
    assert (beyond["items"], beyond["total"], beyond["total_capped"]) == ([], 1005, False)
    queue = client.get("/api/v1/review-queue", params={"limit": 20}, headers=reviewer).json()
    assert (queue["total"], queue["total_capped"]) == (1000, True)
    assert [item["id"] for item in queue["items"]] == ids[:20]      # oldest first
    few = client.get("/api/v1/events", params={"rule": "bin_overflow"}, headers=reviewer).json()
    assert (few["total"], few["total_capped"]) == (0, False)


def test_statistics_warning_when_postgresql_has_autovacuum_off(database_url):
    """The service logs why listings slow down when the server will not keep the planner's statistics."""
    from sqlalchemy import text

    from service.db import make_engine, statistics_warning
    engine = make_engine(database_url)
    try:
        if engine.dialect.name != "postgresql":
            assert statistics_warning(engine) is None
            return
        with engine.connect() as conn:
            autovacuum = conn.execute(text("SHOW autovacuum")).scalar()
        warning = statistics_warning(engine)
        assert (warning is not None) == (autovacuum == "off")
        if warning:
            assert "autovacuum off" in warning and "ANALYZE" in warning
    finally:
        engine.dispose()
    unreachable = make_engine("postgresql://postgres@127.0.0.1:1/none")
    assert statistics_warning(unreachable) is None   # the health check reports an unreachable server, not this
    unreachable.dispose()


def test_a_count_that_reaches_the_cap_exactly_is_exact(app, client, reviewer):
    insert_violations(app.state.sessions, 1000, T0)
    page = client.get("/api/v1/events", params={"limit": 50}, headers=reviewer).json()
    assert (page["total"], page["total_capped"]) == (1000, False)
