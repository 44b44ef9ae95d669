"""Bad input through the real API (issue 11), on SQLite and PostgreSQL: bodies over the limits,
wrong content types, images that do not decode, MP4s whose header lies, path tricks in keys and ids,
huge and deeply nested JSON. Each is refused with a clear 4xx, and afterwards the database holds no
violation, case inspection or health event from it and the evidence store holds no object."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json

import av
import cv2
import numpy as np
import pytest
from sqlalchemy import func, select

from service.health_events import CameraHealthEvent
from service.models import CaseInspection
from workflow import past, reinspect, review

MB = 1024 * 1024


@pytest.fixture
def admin(make_key):
    return make_key("admin", "*")


@pytest.fixture
def nothing_stored(app, stored_objects, violation_count, evidence_dir):
    """``nothing_stored()`` asserts no violation, inspection or health row and no evidence object
    (nor any file next to the evidence folder that a path trick could have written)."""
    def check(violations: int = 0, objects: int = 0) -> None:
        assert violation_count() == violations
        assert len(stored_objects()) == objects
        with app.state.sessions() as session:
            assert session.scalar(select(func.count()).select_from(CaseInspection)) == 0
            assert session.scalar(select(func.count()).select_from(CameraHealthEvent)) == 0
        strays = sorted(p.name for p in evidence_dir.parent.iterdir()
                        if p.name != "evidence" and not p.name.startswith("compoundeye.db"))
        assert strays == [], strays
    return check


def _replace(post, kind: str, data: bytes) -> None:
    post.files[kind] = data
    post.event["evidence"][f"{kind}_sha256"] = hashlib.sha256(data).hexdigest()


def _refused(response, status: int, *words: str) -> str:
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    text = detail if isinstance(detail, str) else json.dumps(detail)
    for word in words:
        assert word in text, text
    return text


# --- size limits ---------------------------------------------------------------------------------------

def test_upload_over_the_limit_is_413(client, worker, make_event, nothing_stored):
    post = make_event()
    _replace(post, "clip", post.files["clip"] + b"\0" * (6 * MB))  # the tests' limit is 5 MB + 1 MB of form
    _refused(post.post(client, worker), 413, "max_upload_mb")
    nothing_stored()


def test_chunked_upload_without_length_over_the_limit_is_413(client, worker, make_event, nothing_stored):
    """No Content-Length to refuse up front: the body is counted as it arrives."""
    post = make_event()
    boundary = "bad-input-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"event\"\r\n\r\n{json.dumps(post.event)}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"clip\"; filename=\"clip.mp4\"\r\n"
            f"Content-Type: video/mp4\r\n\r\n").encode() + b"\0" * (7 * MB) + f"\r\n--{boundary}--\r\n".encode()
    chunks = (body[i:i + MB] for i in range(0, len(body), MB))
    response = client.post("/api/v1/events", content=chunks,
                           headers={**worker, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    _refused(response, 413, "max_upload_mb")
    nothing_stored()


def test_huge_json_body_is_413(client, admin, make_event, nothing_stored):
    body = json.dumps({"verdict": "confirm", "violation_ids": ["0" * 32] * 60_000}).encode()  # ~2 MB
    assert len(body) > 1024 * 1024
    response = client.post("/api/v1/reviews/bulk", content=body,
                           headers={**admin, "Content-Type": "application/json"})
    _refused(response, 413, "max_request_kb")
    chunked = client.post("/api/v1/reviews/bulk", content=(body[i:i + 65536] for i in range(0, len(body), 65536)),
                          headers={**admin, "Content-Type": "application/json"})
    _refused(chunked, 413, "max_request_kb")
    nothing_stored()


def test_huge_event_json_in_the_form_is_refused(client, worker, make_event, nothing_stored):
    post = make_event()
    post.event["boxes"] = post.event["boxes"] * 20_000  # ~3 MB of boxes; the schema allows 1000
    _refused(post.post(client, worker), 400, "maximum size")  # Starlette's limit on a form field: 1 MiB
    nothing_stored()


# --- content types -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, declared", [("snapshot", "text/html"), ("clip", "image/jpeg"),
                                            ("sidecar", "application/javascript"), ("clip", "video/quicktime")])
def test_part_declared_as_another_type_is_415(client, worker, make_event, nothing_stored, kind, declared):
    post = make_event()
    post.content_types = {**post.content_types, kind: declared}
    _refused(post.post(client, worker), 415, kind, declared)
    nothing_stored()


def test_generic_part_type_is_accepted_and_checked_by_its_bytes(client, worker, make_event, nothing_stored):
    post = make_event()
    post.content_types = {kind: "application/octet-stream" for kind in post.content_types}
    assert post.post(client, worker).status_code == 201
    nothing_stored(violations=1, objects=3)


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/x-www-form-urlencoded"])
def test_event_post_that_is_not_multipart_is_422(client, worker, make_event, content_type, nothing_stored):
    body = json.dumps(make_event().event).encode()
    response = client.post("/api/v1/events", content=body, headers={**worker, "Content-Type": content_type})
    _refused(response, 422, "snapshot")
    nothing_stored()


def test_json_endpoint_with_a_non_json_body_is_422(client, admin, nothing_stored):
    response = client.post("/api/v1/reviews/bulk", content=b"verdict=confirm",
                           headers={**admin, "Content-Type": "text/plain"})
    assert response.status_code == 422, response.text
    nothing_stored()


# --- images and videos that lie ------------------------------------------------------------------------

def _png() -> bytes:
    ok, data = cv2.imencode(".png", np.zeros((32, 32, 3), np.uint8))
    return data.tobytes()


def _mpeg4_clip(tmp_path) -> bytes:
    """A real MP4 whose video is MPEG-4 Part 2, not H.264."""
    path = tmp_path / "mpeg4.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 128, 72, "yuv420p"
        for _ in range(5):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((72, 128, 3), np.uint8), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes()


def _audio_only_mp4(tmp_path) -> bytes:
    path = tmp_path / "audio.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        for _ in range(4):
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes()


def _claims_size(jpeg: bytes, height: int, width: int) -> bytes:
    """``jpeg`` with its frame header (SOF0) claiming ``width`` x ``height`` pixels: a tiny file that
    would make a decoder allocate the claimed size."""
    data = bytearray(jpeg)
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 7], data[sof + 7:sof + 9] = height.to_bytes(2, "big"), width.to_bytes(2, "big")
    return bytes(data)


IMAGE_CASES = {
    "claims_40000x40000": (lambda ev, tmp: _claims_size(ev["snapshot"], 40000, 40000), "decompression bomb"),
    "claims_7000x9000": (lambda ev, tmp: _claims_size(ev["snapshot"], 7000, 9000), "the limit is 50000000 pixels"),
    "png_as_jpeg": (lambda ev, tmp: _png(), "not a decodable JPEG"),
    "empty": (lambda ev, tmp: b"", "not a decodable JPEG"),
    "magic_then_noise": (lambda ev, tmp: b"\xff\xd8\xff\xe0" + np.random.default_rng(1).bytes(4000),
                         "not a decodable JPEG"),
    "truncated_two_thirds": (lambda ev, tmp: ev["snapshot"][: len(ev["snapshot"]) * 2 // 3], "JPEG"),
    "truncated_tail": (lambda ev, tmp: ev["snapshot"][:-2], "not a decodable JPEG"),  # only the end marker cut
}
CLIP_CASES = {
    "jpeg_renamed": (lambda ev, tmp: ev["snapshot"], "not an MP4"),
    "ftyp_then_garbage": (lambda ev, tmp: ev["clip"][:32] + np.random.default_rng(2).bytes(20_000), "clip"),
    "truncated_half": (lambda ev, tmp: ev["clip"][: len(ev["clip"]) // 2], "truncated"),
    "truncated_tail": (lambda ev, tmp: ev["clip"][:-100], "truncated"),
    "header_only": (lambda ev, tmp: ev["clip"][:2000], "clip"),
    "mpeg4_not_h264": (lambda ev, tmp: _mpeg4_clip(tmp), "not H.264"),
    "audio_only": (lambda ev, tmp: _audio_only_mp4(tmp), "no video stream"),
}


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
@pytest.mark.parametrize("kind", ["snapshot", "crop"])
def test_image_that_does_not_decode_is_422(client, worker, make_event, evidence_bytes, tmp_path_factory,
                                           nothing_stored, case, kind):
    make, words = IMAGE_CASES[case]
    post = make_event(crop=True)
    _replace(post, kind, make(evidence_bytes, tmp_path_factory.mktemp("media")))
    _refused(post.post(client, worker), 422, kind, words)
    nothing_stored()


@pytest.mark.parametrize("case", sorted(CLIP_CASES))
def test_clip_whose_header_lies_is_422(client, worker, make_event, evidence_bytes, tmp_path_factory, nothing_stored,
                                      case):
    make, words = CLIP_CASES[case]
    post = make_event()
    _replace(post, "clip", make(evidence_bytes, tmp_path_factory.mktemp("media")))
    _refused(post.post(client, worker), 422, words)
    nothing_stored()


def test_a_good_clip_still_passes_after_the_refusals(client, worker, make_event, evidence_bytes, nothing_stored):
    bad = make_event()
    _replace(bad, "clip", evidence_bytes["clip"][:-100])
    assert bad.post(client, worker).status_code == 422
    assert make_event().post(client, worker).status_code == 201
    nothing_stored(violations=1, objects=3)


def _due_case(client, make_key, make_event, admin) -> int:
    post = make_event(compound_id="c1")
    assert post.post(client, make_key("worker")).status_code == 201
    assert review(client, admin, post.id).status_code == 201
    case_id = client.get(f"/api/v1/events/{post.id}", headers=admin).json()["case_id"]
    assign = client.post(f"/api/v1/cases/{case_id}/assign", json={"assignee": "team B", "deadline": past()},
                         headers=admin)
    assert assign.status_code == 200, assign.text
    return case_id


@pytest.mark.parametrize("snapshot, declared, status, words", [
    (lambda ev: ev["snapshot"], "image/png", 415, "image/jpeg"),
    (lambda ev: ev["snapshot"][:-400], "image/jpeg", 422, "JPEG"),
    (lambda ev: ev["clip"], "image/jpeg", 422, "JPEG"),
    (lambda ev: _claims_size(ev["snapshot"], 30000, 30000), "image/jpeg", 422, "pixels"),
])
def test_reinspection_snapshot_that_lies_is_refused(app, client, make_key, make_event, admin, evidence_bytes,
                                                    stored_objects, snapshot, declared, status, words):
    case_id = _due_case(client, make_key, make_event, admin)
    objects = stored_objects()
    report = json.dumps({"frame_time": "2026-03-05T10:00:00+08:00", "rule_active": False})
    response = client.post(f"/api/v1/cases/{case_id}/reinspect", data={"report": report}, headers=admin,
                           files={"snapshot": ("after.jpg", snapshot(evidence_bytes), declared)})
    _refused(response, status, words)
    assert stored_objects() == objects
    with app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(CaseInspection)) == 0
    assert reinspect(client, admin, case_id, evidence_bytes["snapshot"], rule_active=False).status_code == 201


# --- path tricks in keys and ids -----------------------------------------------------------------------

TRICKS = ["../c1", "../../etc", "/etc/passwd", "c1/../../x", "..", "c1\\..\\x", "%2e%2e%2fx", "c1\x00x"]


@pytest.mark.parametrize("field", ["compound_id", "camera_id", "zone_id"])
@pytest.mark.parametrize("trick", TRICKS)
def test_path_trick_in_an_event_id_field_is_422(client, make_key, make_event, nothing_stored, field, trick):
    post = make_event()
    post.event[field] = trick  # the id no longer matches either, but the field is refused first
    _refused(post.post(client, make_key("admin", "*")), 422, field)
    nothing_stored()


@pytest.mark.parametrize("trick", ["../" * 4 + "etc/passwd".ljust(32, "0"), "/" + "0" * 31, "..%2f" * 6 + "00"])
def test_path_trick_in_the_violation_id_is_422(client, worker, make_event, nothing_stored, trick):
    post = make_event()
    post.event["id"] = trick
    _refused(post.post(client, worker), 422, "id")
    nothing_stored()


@pytest.mark.parametrize("field", ["compound_id", "camera_id"])
@pytest.mark.parametrize("trick", TRICKS[:4])
def test_path_trick_in_a_camera_health_report_is_422(client, make_key, nothing_stored, field, trick):
    report = {"id": "a" * 32, "compound_id": "c1", "camera_id": "cam1", "kind": "offline", "state": "started",
              "onset_s": 1_772_000_000.0, "time_s": 1_772_000_000.0, field: trick}
    response = client.post("/api/v1/camera-health", json=report, headers=make_key("worker"))
    _refused(response, 422, field)
    nothing_stored()


@pytest.mark.parametrize("path", [
    "/api/v1/events/..%2F..%2F..%2Fetc%2Fpasswd",
    "/api/v1/events/%2Fetc%2Fpasswd/evidence/clip",
    "/api/v1/events/{id}/evidence/..%2F..%2Fcompoundeye.db",
    "/api/v1/events/{id}/evidence/..%2Fclip",
    "/api/v1/events/{id}/evidence/clip%2F..%2F..%2F..%2Fcompoundeye.db/link",
    "/api/v1/cases/1/inspections/1/..%2F..%2Fcompoundeye.db",
    "/api/v1/compounds/..%2Fc1/scorecard",
    "/api/v1/compounds/c1/ledger.%2E%2E%2Fdb",
    "/static/..%2F..%2Fpyproject.toml",
    "/static/%2E%2E/%2E%2E/pyproject.toml",
    "/static//etc/passwd",
])
def test_path_trick_in_a_url_is_refused_and_reads_nothing_outside(client, admin, make_event, path):
    post = make_event()
    assert post.post(client, admin).status_code == 201
    response = client.get(path.replace("{id}", post.id), headers=admin)
    assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:200])
    assert b"SQLite format" not in response.content and b"[project]" not in response.content
    assert b"root:" not in response.content


def test_path_trick_in_a_lease_release_is_refused(client, make_key, nothing_stored):
    response = client.delete("/api/v1/leases/..%2F..%2Fx", headers=make_key("worker"))
    assert response.status_code in (404, 422), response.text
    nothing_stored()


# --- deeply nested JSON ----------------------------------------------------------------------------------

def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_body_is_400(client, admin, nothing_stored, depth):
    for path in ("/api/v1/reviews/bulk", "/api/v1/camera-health"):
        response = client.post(path, content=_nested(depth).encode(),
                               headers={**admin, "Content-Type": "application/json"})
        assert response.status_code in (400, 422), (path, response.status_code, response.text[:200])
        assert response.json()["detail"]
    nothing_stored()


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_event_json_is_422(client, worker, make_event, nothing_stored, depth):
    post = make_event()
    post.raw_event = json.dumps(post.event)[:-1] + f', "deep": {_nested(depth)}}}'
    _refused(post.post(client, worker), 422)
    nothing_stored()


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_sidecar_is_422(client, worker, make_event, nothing_stored, depth):
    post = make_event()
    _replace(post, "sidecar", ('{"frames": ' + _nested(depth) + "}").encode())
    _refused(post.post(client, worker), 422, "sidecar")
    nothing_stored()


def test_sidecar_that_is_not_utf8_is_422(client, worker, make_event, nothing_stored):
    post = make_event()
    _replace(post, "sidecar", b'{"frames": "\xff\xfe"}')
    _refused(post.post(client, worker), 422, "sidecar")
    nothing_stored()


# --- what the schema fuzzer (tests/test_schema_fuzz.py) found: each was a 500 ---------------------------

@pytest.mark.parametrize("path", ["/api/v1/cases/9223372036854775808", "/api/v1/events?offset=9223372036854775808",
                                  "/api/v1/cases/99999999999999999999/inspections/1/after",
                                  "/api/v1/users/9223372036854775808/grants/c1"])
def test_integer_out_of_the_databases_range_is_422(client, admin, path):
    method = client.delete if "/grants/" in path else client.get
    _refused(method(path, headers=admin), 422, "out of range")


def test_integer_beyond_postgresqls_integer_is_not_a_500(client, admin, database_url):
    """2**31 fits SQLite's INTEGER (no such case: 404) but not PostgreSQL's (422)."""
    response = client.get("/api/v1/cases/2147483648", headers=admin)
    assert response.status_code == (422 if database_url.startswith("postgresql") else 404), response.text


def test_signed_link_with_a_non_ascii_signature_is_refused(client, admin, make_event):
    post = make_event()
    assert post.post(client, admin).status_code == 201
    response = client.get(f"/api/v1/events/{post.id}/evidence/clip/signed",
                          params={"expires": 4_000_000_000, "sig": "Ā" * 43})
    assert response.status_code == 403, response.text


@pytest.mark.parametrize("compound_id", ["Ā", "c1\x08", "c1\r\nX-Injected: 1"])
@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_ledger_of_a_compound_id_that_is_not_an_id_is_422(client, admin, compound_id, fmt):
    from urllib.parse import quote
    response = client.get(f"/api/v1/compounds/{quote(compound_id, safe='')}/ledger.{fmt}", headers=admin)
    assert response.status_code == 422, response.text
    assert "x-injected" not in response.headers


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_with_nan_or_infinity_is_422(client, admin, worker, make_event, nothing_stored, constant):
    bulk = client.post("/api/v1/reviews/bulk", content=f'{{"verdict": "confirm", "violation_ids": [{constant}]}}',
                       headers={**admin, "Content-Type": "application/json"})
    _refused(bulk, 422, "violation_ids")
    post = make_event()
    post.raw_event = json.dumps(post.event).replace('"confidence": 0.87', f'"confidence": {constant}')
    assert constant in post.raw_event
    _refused(post.post(client, worker), 422, "confidence")
    nothing_stored()


def test_camera_health_with_an_infinite_time_is_422(client, make_key, nothing_stored):
    body = ('{"id": "' + "a" * 32 + '", "compound_id": "c1", "camera_id": "cam1", "kind": "offline", '
            '"state": "started", "onset_s": Infinity, "time_s": 1e308}')
    response = client.post("/api/v1/camera-health", content=body.encode(),
                           headers={**make_key("worker"), "Content-Type": "application/json"})
    _refused(response, 422, "onset_s")
    nothing_stored()
