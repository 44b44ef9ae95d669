"""Shared fixtures: a migrated database on SQLite *and* PostgreSQL, the app with local evidence
storage, API keys, and events with real evidence bytes (a JPEG from OpenCV, an H.264 MP4 from PyAV).

PostgreSQL is the real server on 127.0.0.1:5432. When it cannot be reached the PostgreSQL tests fail
loudly; set ``COMPOUNDEYE_TEST_NO_PG=1`` to skip them on a machine without it.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field

import av
import cv2
import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from service.app import create_app
from service.db import upgrade
from service.keys import create_key
from service.models import Violation
from service.settings import Settings
from vision.types import violation_id

from s3_weed import WeedServer  # tests/ is on sys.path (rootdir conftest)

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_LOGINS = [(user, db) for user in ("postgres", "root") for db in ("test", "postgres")]


def _pg_admin() -> tuple[psycopg.Connection, str]:
    """An autocommit connection to a maintenance database, and the user it logged in as."""
    problems = []
    for user, dbname in PG_LOGINS:
        try:
            conn = psycopg.connect(host=PG_HOST, port=PG_PORT, user=user, dbname=dbname,
                                   connect_timeout=3, autocommit=True)
            return conn, user
        except psycopg.Error as exc:
            problems.append(f"{user}@{dbname}: {exc}".strip())
    pytest.fail(f"PostgreSQL on {PG_HOST}:{PG_PORT} is not reachable ({'; '.join(problems)}). "
                "Start it, or set COMPOUNDEYE_TEST_NO_PG=1 to skip the PostgreSQL half of the tests.")


@pytest.fixture(scope="session")
def pg_template():
    """A fresh database ``ce_test_<random>`` migrated to head, dropped after the session; each test
    gets its own copy (``CREATE DATABASE … TEMPLATE``) so tests never see each other's rows."""
    if os.environ.get("COMPOUNDEYE_TEST_NO_PG") == "1":
        pytest.skip("COMPOUNDEYE_TEST_NO_PG=1")
    admin, user = _pg_admin()
    name = f"ce_test_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        upgrade(f"postgresql+psycopg://{user}@{PG_HOST}:{PG_PORT}/{name}")
        yield admin, user, name
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A database URL, once for SQLite (a file in tmp_path) and once for PostgreSQL (a per-test copy of
    the migrated template). The SQLite one is migrated by ``create_app`` like a real start."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'compoundeye.db'}"
        return
    admin, user, template = request.getfixturevalue("pg_template")
    name = f"{template}_{secrets.token_hex(3)}"
    admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield f"postgresql+psycopg://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def evidence_dir(tmp_path):
    return tmp_path / "evidence"


@pytest.fixture(scope="session")
def weed():
    """One real S3 server (SeaweedFS ``weed mini`` on loopback) for the whole session."""
    server = WeedServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def store_kind() -> str:
    """Which evidence store the app uses: ``"local"`` here; parametrise with ``["local", "s3"]``
    to run a test against both (``pytest.mark.parametrize("store_kind", [...])``)."""
    return "local"


def s3_settings(weed, bucket: str | None = None, prefix: str = "evidence") -> dict:
    """Settings fields for a fresh bucket (created by the store on first use) on ``weed``."""
    bucket = bucket or f"ce-{secrets.token_hex(6)}"
    return {"storage_url": f"s3://{bucket}/{prefix}", "s3_endpoint": weed.endpoint,
            "s3_access_key": weed.access_key, "s3_secret_key": weed.secret_key}


@pytest.fixture
def settings(request, database_url, evidence_dir, store_kind) -> Settings:
    storage = {"storage_url": f"file://{evidence_dir}"}
    if store_kind == "s3":
        storage = s3_settings(request.getfixturevalue("weed"))
    # the ledger scheduler (issue 12) is off: its tests start it with a clock of their own
    return Settings(database_url=database_url, max_upload_mb=5, site_config=None, migrate_on_startup=True,
                    report_schedule=False, **storage)


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def client(app):
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def make_key(app):
    """``make_key(role, compounds=("c1",)) -> {"X-API-Key": key}`` headers for a new key."""
    def make(role: str, compounds=("c1",), name: str | None = None) -> dict[str, str]:
        with app.state.sessions() as session:
            key = create_key(session, name or f"test {role}", role, compounds)
        return {"X-API-Key": key}
    return make


@pytest.fixture
def worker(make_key):
    return make_key("worker")


@pytest.fixture
def reviewer(make_key):
    return make_key("reviewer")


# --- real evidence bytes -------------------------------------------------------------------------

def _jpeg(seed: int = 0) -> bytes:
    image = np.full((72, 128, 3), 40, np.uint8)
    cv2.rectangle(image, (10 + seed % 50, 10), (60 + seed % 50, 50), (0, 0, 255), -1)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return data.tobytes()


def _mp4(path, frames: int = 10, fps: int = 10) -> bytes:
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "g": str(fps)})
        stream.width, stream.height, stream.pix_fmt = 128, 72, "yuv420p"
        for i in range(frames):
            image = np.zeros((72, 128, 3), np.uint8)
            image[:, (i * 10) % 128:(i * 10) % 128 + 10] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes()


@pytest.fixture(scope="session")
def evidence_bytes(tmp_path_factory) -> dict[str, bytes]:
    """A real JPEG snapshot and crop, a real H.264 MP4 clip and a JSON sidecar."""
    clip = _mp4(tmp_path_factory.mktemp("clip") / "clip.mp4")
    # The sidecar as the worker writes it (vision.evidence.sidecar_bytes): boxes per frame time, with the
    # clip offset at which each frame shows (the clip is 1 s of 128x72 at 10 fps).
    sidecar = {"schema": "compoundeye.sidecar/1", "frame_width": 128, "frame_height": 72, "clip_start_s": 100.0,
               "frames": [{"time_s": 100.5, "clip_offset_s": 0.5, "boxes": [
                   {"xyxy": [10, 20, 110, 70], "class_name": "car", "confidence": 0.91, "track_id": 7}]}]}
    return {"snapshot": _jpeg(0), "clip": clip, "sidecar": json.dumps(sidecar).encode(),
            "crop": _jpeg(7)}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class EventPost:
    """An event and the files posted with it; ``post(client, headers)`` sends it."""

    event: dict
    files: dict[str, bytes]
    raw_event: str | None = None
    content_types: dict[str, str] = field(default_factory=lambda: {
        "snapshot": "image/jpeg", "clip": "video/mp4", "sidecar": "application/json", "crop": "image/jpeg"})

    @property
    def id(self) -> str:
        return self.event["id"]

    def post(self, client: TestClient, headers: dict[str, str]):
        files = {kind: (f"{kind}.bin", data, self.content_types[kind]) for kind, data in self.files.items()}
        body = self.raw_event if self.raw_event is not None else json.dumps(self.event)
        return client.post("/api/v1/events", data={"event": body}, files=files, headers=headers)


@pytest.fixture
def make_event(evidence_bytes):
    """``make_event(compound_id="c1", camera_id="cam1", rule="fire_lane", zone_id="lane1", start=…,
    crop=False, **overrides) -> EventPost`` with a correct id and correct sha256 claims."""
    def make(compound_id="c1", camera_id="cam1", rule="fire_lane", zone_id="lane1",
             start: dt.datetime = dt.datetime(2026, 3, 1, 10, 0, 0, 250000, tzinfo=dt.timezone.utc),
             crop: bool = False, **overrides) -> EventPost:
        files = {k: v for k, v in evidence_bytes.items() if crop or k != "crop"}
        event = {
            "id": violation_id(camera_id, rule, zone_id, start.timestamp()),
            "rule": rule, "compound_id": compound_id, "camera_id": camera_id, "zone_id": zone_id,
            "start_time": start.isoformat(), "last_seen_time": (start + dt.timedelta(seconds=90)).isoformat(),
            "end_time": None, "confidence": 0.87, "model_version": "yolo11n-ce-2026.02", "source": "live",
            "boxes": [{"time": (start + dt.timedelta(seconds=30)).isoformat(), "xyxy": [10, 20, 110, 70],
                       "class_name": "car", "confidence": 0.91, "track_id": 7}],
            "evidence": {"snapshot_sha256": sha256(files["snapshot"]), "clip_sha256": sha256(files["clip"]),
                         "sidecar_sha256": sha256(files["sidecar"]),
                         "crop_sha256": sha256(files["crop"]) if crop else None},
        }
        event.update(overrides)
        return EventPost(event, files)
    return make


@pytest.fixture
def stored_objects(evidence_dir, app):
    """``stored_objects() -> [key, …]``: every file under the evidence folder (temporary files included),
    or every object under the S3 store's prefix."""
    def list_objects() -> list[str]:
        store = app.state.store
        if hasattr(store, "bucket"):
            names = store.client.list_objects(store.bucket, prefix=f"{store.prefix}/", recursive=True)
            return sorted(o.object_name[len(store.prefix) + 1:] for o in names)
        if not evidence_dir.exists():
            return []
        return sorted(str(p.relative_to(evidence_dir)) for p in evidence_dir.rglob("*") if p.is_file())
    return list_objects


@pytest.fixture
def violation_count(app):
    """``violation_count() -> int``: rows in the violations table."""
    def count() -> int:
        with app.state.sessions() as session:
            return session.scalar(select(func.count()).select_from(Violation))
    return count
