"""Evidence through the API on both stores (local folder and real S3 ``weed mini``) and both databases:
download, ranges, browser links (presigned S3 / HMAC-signed API URLs), integrity on read, verify."""
from __future__ import annotations

import hashlib
import time
import urllib.parse
import urllib.request

import pytest
from sqlalchemy import select

from service import evidence_links
from service.integrity import verify_all
from service.models import AuditEntry, EvidenceObject

pytestmark = pytest.mark.parametrize("store_kind", ["local", "s3"])


def _stored_key(app, violation_id: str, kind: str) -> str:
    with app.state.sessions() as session:
        return session.get(EvidenceObject, (violation_id, kind)).key


def test_post_twice_stores_once_and_reads_back(client, worker, make_event, evidence_bytes, stored_objects):
    post = make_event(crop=True)
    assert post.post(client, worker).status_code == 201
    assert post.post(client, worker).status_code == 200
    assert len(stored_objects()) == 4
    for kind in ("snapshot", "clip", "sidecar", "crop"):
        response = client.get(f"/api/v1/events/{post.id}/evidence/{kind}", headers=worker)
        assert response.status_code == 200 and response.content == evidence_bytes[kind]
        assert response.headers["etag"] == f'"{hashlib.sha256(evidence_bytes[kind]).hexdigest()}"'


def test_range_reads_and_416(client, worker, make_event, evidence_bytes):
    post = make_event()
    assert post.post(client, worker).status_code == 201
    clip, url = evidence_bytes["clip"], f"/api/v1/events/{post.id}/evidence/clip"
    response = client.get(url, headers={**worker, "Range": "bytes=100-199"})
    assert response.status_code == 206 and response.content == clip[100:200]
    assert response.headers["content-range"] == f"bytes 100-199/{len(clip)}"
    assert client.get(url, headers={**worker, "Range": "bytes=0-"}).content == clip
    assert client.get(url, headers={**worker, "Range": f"bytes={len(clip)}-"}).status_code == 416


def test_browser_link_plays_without_headers(client, worker, make_event, evidence_bytes, store_kind):
    post = make_event()
    assert post.post(client, worker).status_code == 201
    link = client.get(f"/api/v1/events/{post.id}/evidence/clip/link", headers=worker)
    assert link.status_code == 200
    body = link.json()
    assert body["sha256"] == hashlib.sha256(evidence_bytes["clip"]).hexdigest() and body["content_type"] == "video/mp4"
    clip = evidence_bytes["clip"]
    if store_kind == "s3":                          # presigned: the browser goes to S3 itself
        assert body["url"].startswith("http://127.0.0.1:") and "X-Amz-Signature" in body["url"]
        assert "X-Amz-Expires=300" in body["url"]
        with urllib.request.urlopen(body["url"]) as response:
            assert response.read() == clip and response.headers["Content-Type"] == "video/mp4"
        with urllib.request.urlopen(urllib.request.Request(body["url"], headers={"Range": "bytes=0-9"})) as response:
            assert response.status == 206 and response.read() == clip[:10]
        return
    assert body["url"].startswith(f"/api/v1/events/{post.id}/evidence/clip/signed?expires=")
    whole = client.get(body["url"])                 # no X-API-Key
    assert whole.status_code == 200 and whole.content == clip
    assert whole.headers["content-type"] == "video/mp4" and whole.headers["accept-ranges"] == "bytes"
    ranged = client.get(body["url"], headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.content == clip[10:20]
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(body["url"]).query))
    other_kind = body["url"].replace("/clip/", "/snapshot/")
    forged = body["url"][:-3] + ("AAA" if not body["url"].endswith("AAA") else "BBB")
    for bad in (other_kind, forged, f"/api/v1/events/{post.id}/evidence/clip/signed?expires={int(query['expires']) + 60}&sig={query['sig']}"):
        assert client.get(bad).status_code == 403, bad
    secret = evidence_links.link_secret(client.app.state)
    past = int(time.time()) - 1
    expired = f"/api/v1/events/{post.id}/evidence/clip/signed?expires={past}&sig=" + \
        evidence_links.signature(secret, post.id, "clip", past)
    response = client.get(expired)
    assert response.status_code == 403 and "expired" in response.json()["detail"]


def test_corrupt_object_is_reported_and_never_served(app, client, worker, make_event, evidence_bytes):
    post = make_event()
    assert post.post(client, worker).status_code == 201
    key = _stored_key(app, post.id, "snapshot")
    bad = bytearray(evidence_bytes["snapshot"])
    bad[-3] ^= 0xFF                                 # same size, other bytes
    app.state.store.put(key, bytes(bad), "image/jpeg")
    for headers in (worker, {**worker, "Range": "bytes=0-99"}):
        response = client.get(f"/api/v1/events/{post.id}/evidence/snapshot", headers=headers)
        assert response.status_code == 500 and key in response.json()["detail"]
        assert "integrity check failed" in response.json()["detail"] and bytes(bad[:100]) not in response.content
    link = client.get(f"/api/v1/events/{post.id}/evidence/snapshot/link", headers=worker)
    if link.status_code == 200:                     # local: the signed URL is checked when fetched
        assert client.get(link.json()["url"]).status_code == 500
    else:                                           # S3: no presigned URL for a bad object
        assert link.status_code == 500
    with app.state.sessions() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "integrity_failed")).all()
        assert entries and entries[0].entity_id == f"{post.id}:snapshot" and entries[0].before["key"] == key
        report = verify_all(session, app.state.store)
    assert report.checked == 3 and list(report.problems) == [key]
    assert client.get(f"/api/v1/events/{post.id}/evidence/clip", headers=worker).status_code == 200
