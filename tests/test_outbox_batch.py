"""The worker's outbox sends a backlog in batch requests (``POST /api/v1/events/batch``) to a real API on
loopback: one request for many events, each event settled on its own result, and a fallback to single
posts for an API without the endpoint, a batch refused as a whole or one broken off on its way (issue 11)."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import struct
import threading
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from service.models import EvidenceObject, Violation
from vision.outbox import Outbox, OutboxSender

from browser_support import LiveServer, free_port
from workflow import queue_in_outbox

START = dt.datetime(2026, 3, 1, 10, tzinfo=dt.timezone.utc)


class CountRequests:
    """Test-only ASGI middleware: counts POSTs by path; answers 404 for the batch path when ``no_batch``
    (an API from before the endpoint existed)."""

    def __init__(self, app, no_batch: bool = False):
        self.app, self.no_batch, self.posts = app, no_batch, Counter()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST":
            self.posts[scope["path"]] += 1
            if self.no_batch and scope["path"] == "/api/v1/events/batch":
                await send({"type": "http.response.start", "status": 404,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": b'{"detail":"Not Found"}'})
                return
        await self.app(scope, receive, send)


def queue(outbox: Outbox, make_event, folder, minute: int, spoil=None):
    post = make_event(start=START + dt.timedelta(minutes=minute))
    if spoil:
        spoil(post)
    queue_in_outbox(outbox, post, folder / f"work-{minute}-{time.monotonic_ns()}")
    return post


def stored_ids(app) -> tuple[list[str], int]:
    with app.state.sessions() as session:
        return (sorted(session.scalars(select(Violation.id))),
                session.scalar(select(func.count()).select_from(EvidenceObject)))


def big_sidecar(post):
    """A 2.5 MB sidecar (valid JSON, its sha256 claimed): the test API takes 5 MB per upload, plus 1 MB of
    form, so three such events fit alone but not together."""
    post.files["sidecar"] = json.dumps({"pad": "x" * 2_500_000}).encode()
    post.event["evidence"]["sidecar_sha256"] = hashlib.sha256(post.files["sidecar"]).hexdigest()


@pytest.fixture
def served(settings):
    with LiveServer(settings, wrap=CountRequests) as server:
        yield server


@pytest.fixture
def outbox(tmp_path):
    box = Outbox(tmp_path / "outbox")
    yield box
    box.close()


@pytest.fixture
def sender_for(outbox):
    """``sender_for(api_url, api_key, **options)``: an OutboxSender on the test's outbox, stopped (without
    draining) at the end of the test, whether it passed or not."""
    made = []

    def make(api_url: str, api_key: str, **options) -> OutboxSender:
        made.append(OutboxSender(outbox, api_url, api_key, **options))
        return made[-1]
    yield make
    for sender in made:
        sender.stop(drain_s=0)


def test_a_backlog_goes_in_one_batch_request_and_each_event_is_stored_once(served, make_event, tmp_path, caplog,
                                                                           sender_for, outbox):
    sender = sender_for(served.url, served.key("worker"))
    posts = [queue(outbox, make_event, tmp_path, m) for m in range(7)]
    with caplog.at_level("INFO", logger="vision.outbox"):
        assert sender.run_once() == 7
    assert served.served.posts == {"/api/v1/events/batch": 1}
    assert outbox.counts() == {}
    assert stored_ids(served.app) == (sorted(p.id for p in posts), 21)
    assert sum("delivered (new)" in r.message for r in caplog.records) == 7

    # the acknowledgement lost on the way: the same events queued again are found already stored
    for m in range(3):
        queue(outbox, make_event, tmp_path, m)
    with caplog.at_level("INFO", logger="vision.outbox"):
        assert sender.run_once() == 3
    assert sum("delivered (already there)" in r.message for r in caplog.records) == 3
    assert stored_ids(served.app)[1] == 21


def test_a_refused_event_is_parked_and_the_others_of_its_batch_delivered(served, make_event, tmp_path, sender_for,
                                                                         outbox):
    sender = sender_for(served.url, served.key("worker"))
    good = [queue(outbox, make_event, tmp_path, m) for m in range(2)]

    def wrong_sha(post):
        post.event["evidence"]["clip_sha256"] = "0" * 64
    bad = queue(outbox, make_event, tmp_path, 5, spoil=wrong_sha)
    assert sender.run_once() == 2
    assert served.served.posts == {"/api/v1/events/batch": 1}
    assert outbox.counts() == {"rejected": 1}
    reason = outbox._db.execute("SELECT last_error FROM outbox WHERE id=?", (bad.id,)).fetchone()[0]
    assert reason.startswith("HTTP 422") and "clip sha256" in reason
    assert stored_ids(served.app)[0] == sorted(p.id for p in good)


def test_batches_are_cut_by_count_and_by_bytes(served, make_event, tmp_path, sender_for, outbox):
    posts = [queue(outbox, make_event, tmp_path, m) for m in range(5)]
    one_event = sum(path.stat().st_size for path in outbox.due()[0].files.values())
    sender = sender_for(served.url, served.key("worker"), batch_events=2)
    assert [len(b) for b in sender.batches(outbox.due())] == [2, 2, 1]
    sender.batch_events, sender.batch_bytes = 20, 2 * one_event + 1
    assert [len(b) for b in sender.batches(outbox.due())] == [2, 2, 1]
    sender.batch_bytes = one_event // 2    # every event alone, however large
    assert [len(b) for b in sender.batches(outbox.due())] == [1, 1, 1, 1, 1]
    sender.batch_bytes = 3 * one_event
    assert sender.run_once() == 5
    assert served.served.posts == {"/api/v1/events/batch": 2}   # 3 events, then 2
    assert stored_ids(served.app)[0] == sorted(p.id for p in posts)


def test_an_event_whose_file_is_gone_goes_alone(served, make_event, tmp_path, sender_for, outbox):
    posts = [queue(outbox, make_event, tmp_path, m) for m in range(3)]
    items = outbox.due()
    items[1].files["clip"].unlink()
    sender = sender_for(served.url, served.key("worker"))
    assert [[i.id for i in b] for b in sender.batches(items)] == [[posts[0].id], [posts[1].id], [posts[2].id]]
    assert sender.run_once() == 2
    assert outbox.counts() == {"pending": 1}


def test_an_api_without_the_batch_endpoint_gets_single_posts(settings, make_event, tmp_path, sender_for, outbox):
    with LiveServer(settings, wrap=lambda app: CountRequests(app, no_batch=True)) as server:
        sender = sender_for(server.url, server.key("worker"))
        posts = [queue(outbox, make_event, tmp_path, m) for m in range(3)]
        assert sender.run_once() == 3
        assert server.served.posts == {"/api/v1/events/batch": 1, "/api/v1/events": 3}
        more = [queue(outbox, make_event, tmp_path, m) for m in range(3, 5)]
        assert sender.run_once() == 2       # it does not ask again
        assert server.served.posts == {"/api/v1/events/batch": 1, "/api/v1/events": 5}
        assert stored_ids(server.app)[0] == sorted(p.id for p in posts + more)


def test_api_unreachable_every_event_of_the_batch_waits_for_a_retry(make_event, tmp_path, sender_for, outbox):
    sender = sender_for(f"http://127.0.0.1:{free_port()}", "ce_0123456789abcdef_" + "A" * 43, timeout_s=5)
    for m in range(4):
        queue(outbox, make_event, tmp_path, m)
    assert sender.run_once() == 0
    pending = outbox.due(now=time.time() + 3600)
    assert len(pending) == 4 and all(p.attempts == 1 for p in pending)
    assert all(path.exists() for p in pending for path in p.files.values())


def test_a_batch_over_the_api_upload_limit_falls_back_to_single_posts(served, make_event, tmp_path, sender_for,
                                                                      outbox):
    """Three events of 2.5 MB each (``big_sidecar``) fit the test API's limit alone, not together."""
    posts = [queue(outbox, make_event, tmp_path, m, spoil=big_sidecar) for m in range(3)]
    sender = sender_for(served.url, served.key("worker"))
    assert sender.run_once() == 3
    assert served.served.posts == {"/api/v1/events/batch": 1, "/api/v1/events": 3}
    assert stored_ids(served.app)[0] == sorted(p.id for p in posts)


class CutBatches:
    """A TCP proxy on loopback in front of the API: a connection whose first request is a batch post is
    reset before its body is read, without an answer (as a proxy with a body limit may do); every other
    connection is passed through as it is."""

    def __init__(self, upstream_port: int):
        self.upstream_port, self.cut = upstream_port, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(65536)
            if not chunk:
                conn.close()
                return
            head += chunk
        if head.startswith(b"POST /api/v1/events/batch "):
            self.cut += 1
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))   # reset, not FIN
            conn.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        upstream.sendall(head)

        def pump(source, target):
            try:
                while data := source.recv(65536):
                    target.sendall(data)
            except OSError:
                pass
            finally:
                for end in (source, target):
                    try:
                        end.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
        threading.Thread(target=pump, args=(upstream, conn), daemon=True).start()
        pump(conn, upstream)

    def close(self):
        self.listener.close()


def test_a_batch_cut_off_on_its_way_is_sent_again_one_by_one(served, make_event, tmp_path, caplog, sender_for,
                                                             outbox):
    """The connection is reset while the 7.5 MB batch is still being written: the sender does not wait for
    a retry of the same batch (which would break off again) but sends the events alone."""
    proxy = CutBatches(served.port)
    posts = [queue(outbox, make_event, tmp_path, m, spoil=big_sidecar) for m in range(3)]
    sender = sender_for(proxy.url, served.key("worker"))
    try:
        with caplog.at_level("WARNING", logger="vision.outbox"):
            assert sender.run_once() == 3
    finally:
        proxy.close()
    assert proxy.cut == 1 and any("broke off" in r.message for r in caplog.records)
    assert served.served.posts == {"/api/v1/events": 3}
    assert stored_ids(served.app)[0] == sorted(p.id for p in posts)
