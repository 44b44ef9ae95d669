"""The S3 server stops mid-run: the API answers 503, the worker's outbox keeps the events and retries,
and once the server is back every event arrives exactly once; then a corrupted object is detected."""
from __future__ import annotations

import datetime as dt
import shutil
import threading
import time

import pytest
import uvicorn
from sqlalchemy import func, select

from service.app import create_app
from service.integrity import verify_all
from service.keys import create_key
from service.models import EvidenceObject, Violation
from service.settings import Settings
from vision.outbox import Outbox, OutboxSender

from conftest import s3_settings
from s3_weed import WeedServer, free_ports
from workflow import queue_in_outbox


@pytest.fixture
def own_weed():
    server = WeedServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def api(own_weed, tmp_path):
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", max_upload_mb=5,
                              **s3_settings(own_weed, bucket="ce-down")))
    port = free_ports(1)[0]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def _queue(outbox, make_event, tmp_path, minute: int):
    post = make_event(start=dt.datetime(2026, 3, 1, 9, minute, tzinfo=dt.timezone.utc))
    queue_in_outbox(outbox, post, tmp_path / f"work-{minute}-{time.monotonic_ns()}")
    return post


def _drain(sender, outbox) -> list[str]:
    """Try every queued event once, ignoring back-off (the test plays the clock)."""
    return [sender.send_one(item) for item in outbox.due(now=time.time() + 3600)]


def test_store_down_nothing_lost_nothing_duplicated(api, own_weed, make_event, tmp_path):
    app, url = api
    with app.state.sessions() as session:
        key = create_key(session, "worker", "worker", ["c1"])
    outbox = Outbox(tmp_path / "outbox")
    sender = OutboxSender(outbox, url, key, timeout_s=30)
    posts = [_queue(outbox, make_event, tmp_path, m) for m in range(2)]
    assert _drain(sender, outbox) == ["delivered", "delivered"]

    own_weed.stop()                                           # the store goes down mid-run
    posts += [_queue(outbox, make_event, tmp_path, m) for m in range(2, 5)]
    assert _drain(sender, outbox) == ["retry"] * 3
    pending = outbox.due(now=time.time() + 3600)
    assert len(pending) == 3 and all(p.attempts == 1 for p in pending)
    assert all(path.exists() for p in pending for path in p.files.values())   # evidence kept locally
    row = outbox._db.execute("SELECT last_error FROM outbox LIMIT 1").fetchone()[0]
    assert row.startswith("HTTP 503") and "evidence store unavailable" in row

    own_weed.start()                                          # back, same ports and data
    deadline = time.monotonic() + 30
    while outbox.due(now=time.time() + 3600) and time.monotonic() < deadline:
        _drain(sender, outbox)
    assert outbox.counts() == {}
    # an acknowledgement lost on the way: the same event once more is "already stored", not a copy
    again = _queue(outbox, make_event, tmp_path, 0)
    assert _drain(sender, outbox) == ["delivered"]
    sender.stop(drain_s=0)
    outbox.close()

    with app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Violation)) == 5
        assert sorted(session.scalars(select(Violation.id)).all()) == sorted(p.id for p in posts)
        assert session.scalar(select(func.count()).select_from(EvidenceObject)) == 15
        store = app.state.store
        names = list(store.client.list_objects(store.bucket, prefix="evidence/", recursive=True))
        assert len(names) == 15
        assert verify_all(session, store).ok
        # a corrupted object is detected on read
        obj = session.scalars(select(EvidenceObject).where(EvidenceObject.kind == "clip")).first()
        store.put(obj.key, b"\x00\x00\x00\x08ftyp" + b"x" * (obj.size - 8), "video/mp4")
        report = verify_all(session, store)
    assert list(report.problems) == [obj.key]
    assert again.id == posts[0].id
