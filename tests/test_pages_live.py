"""The endpoints behind the pages, over real HTTP on loopback: the SSE alert feed (scoped by compound,
filtered, resumable), the multiplexed wall stream (scoped, carrying real JPEG frames with status
records), the camera list, and the static files (nothing outside ``service/static``)."""
from __future__ import annotations

import datetime as dt
import json
import threading
import time

import cv2
import httpx
import numpy as np
import pytest

from browser_support import PASSWORD, LiveServer, make_evidence, post_event, wait_until
from service.live import WALL_MEDIA_TYPE, read_wall_parts
from service.settings import Settings
from vision.config import Camera, Zone
from vision.types import Frame

START = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def server(database_url, tmp_path):
    with LiveServer(Settings(database_url=database_url, storage_url=f"file://{tmp_path / 'evidence'}")) as live:
        yield live


def token(server: LiveServer, username: str) -> dict[str, str]:
    response = httpx.post(f"{server.url}/api/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


class FeedReader:
    """Reads an SSE feed in a thread and keeps its events as ``(event, data, id)``."""

    def __init__(self, url: str, headers: dict[str, str]):
        self.events: list[tuple[str, dict, str | None]] = []
        self.status: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, headers), daemon=True)
        self._thread.start()

    def _run(self, url, headers):
        try:
            self._read(url, headers)
        except httpx.HTTPError:  # the server stops at the end of the test while the feed is open
            pass

    def _read(self, url, headers):
        with httpx.Client(timeout=httpx.Timeout(60, read=None)) as client, client.stream("GET", url, headers=headers) as r:
            self.status = r.status_code
            event, data, event_id = "message", [], None
            for line in r.iter_lines():
                if self._stop.is_set():
                    return
                if line == "":
                    if data:
                        self.events.append((event, json.loads("\n".join(data)), event_id))
                    event, data, event_id = "message", [], None
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].strip())
                elif line.startswith("id:"):
                    event_id = line[3:].strip()

    def violations(self) -> list[dict]:
        return [data for event, data, _ in self.events if event == "violation"]

    def wait_hello(self):
        wait_until(lambda: any(e == "hello" for e, _, _ in self.events), 15, "the feed's hello")

    def close(self):
        self._stop.set()


def test_alert_feed_sends_new_violations_only_to_readers_of_their_compound(server):
    server.user("alice", {"c1": "reviewer"})
    server.user("bob", {"c2": "viewer"})
    worker = server.key("worker")
    feed_url = f"{server.url}/api/v1/feed/alerts"
    alice, bob = FeedReader(feed_url, token(server, "alice")), FeedReader(feed_url, token(server, "bob"))
    alice_bins = FeedReader(feed_url + "?rule=bin_overflow", token(server, "alice"))
    try:
        for reader in (alice, bob, alice_bins):
            reader.wait_hello()
        evidence = make_evidence()
        first = post_event(server.url, worker, evidence, compound_id="c1", camera_id="cam1", start=START)
        second = post_event(server.url, worker, evidence, compound_id="c2", camera_id="cam2", start=START)
        third = post_event(server.url, worker, evidence, compound_id="c1", camera_id="cam1", rule="bin_overflow",
                           zone_id="bins", start=START)
        wait_until(lambda: len(alice.violations()) == 2 and len(bob.violations()) == 1
                   and len(alice_bins.violations()) == 1, 15, "the alerts")
        assert [v["id"] for v in alice.violations()] == [first["id"], third["id"]]
        assert [v["id"] for v in bob.violations()] == [second["id"]]
        assert [v["id"] for v in alice_bins.violations()] == [third["id"]]
        assert alice.violations()[0]["evidence"]["clip"]["sha256"] == first["evidence"]["clip"]["sha256"]
        # A repeated post (200, already stored) is not a new alert.
        post_event(server.url, worker, evidence, compound_id="c1", camera_id="cam1", start=START, expect=200)
        time.sleep(1.0)
        assert len(alice.violations()) == 2
    finally:
        for reader in (alice, bob, alice_bins):
            reader.close()

    # A feed that reconnects with Last-Event-ID gets what it missed, in its scope only.
    replay = FeedReader(feed_url, {**token(server, "alice"), "Last-Event-ID": "0"})
    try:
        wait_until(lambda: len(replay.violations()) == 2, 15, "the replayed alerts")
        assert [v["id"] for v in replay.violations()] == [first["id"], third["id"]]
    finally:
        replay.close()


def test_alert_feed_refuses_unknown_callers_and_foreign_compounds(server):
    server.user("alice", {"c1": "reviewer"})
    assert httpx.get(f"{server.url}/api/v1/feed/alerts", timeout=10).status_code == 401
    assert httpx.get(f"{server.url}/api/v1/feed/alerts", headers={"Authorization": "Bearer nope"},
                     timeout=10).status_code == 401
    foreign = httpx.get(f"{server.url}/api/v1/feed/alerts?compound_id=c2", headers=token(server, "alice"), timeout=10)
    assert foreign.status_code == 404


def _camera(camera_id: str) -> Camera:
    zone = Zone(id="lane", kind="fire_lane", polygon=((0.1, 0.1), (0.9, 0.1), (0.9, 0.9)), rules=("fire_lane",))
    return Camera(id=camera_id, name=f"Camera {camera_id}", source="unused.mp4", zones=(zone,))


def _frame(camera_id: str, time_s: float) -> Frame:
    image = np.full((360, 640, 3), 60, np.uint8)
    cv2.circle(image, (int(time_s * 10) % 640, 180), 30, (0, 200, 255), -1)
    return Frame(camera_id=camera_id, time_s=time_s, image=image)


def read_wall(url: str, headers: dict[str, str], until, timeout_s: float = 20) -> list[tuple[dict, bytes]]:
    """Wall records until ``until(records)`` holds."""
    records, rest = [], b""
    deadline = time.monotonic() + timeout_s
    with httpx.stream("GET", url, headers=headers, timeout=httpx.Timeout(30, read=30)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"] == WALL_MEDIA_TYPE
        for chunk in response.iter_bytes():
            parts, rest = read_wall_parts(rest + chunk)
            records.extend(parts)
            if until(records):
                return records
            assert time.monotonic() < deadline, f"wall stream: condition not met, got {[h for h, _ in records]}"
    raise AssertionError("the wall stream ended")


def test_wall_stream_carries_frames_and_status_of_visible_cameras_only(server):
    server.user("alice", {"c1": "viewer"})
    hub = server.app.state.live_hub
    hub.register(_camera("cam1"), compound_id="c1")
    hub.register(_camera("cam2"), compound_id="c2")
    hub.register(_camera("loose"))  # no compound: only for callers with every compound
    stop = threading.Event()

    def publish():
        t = 1_000.0
        while not stop.is_set():
            for cam in ("cam1", "cam2", "loose"):
                hub.publish(cam, _frame(cam, t), None)
            t += 0.3
            time.sleep(0.3)
    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    try:
        headers = token(server, "alice")
        cameras = httpx.get(f"{server.url}/api/v1/cameras/live", headers=headers).json()
        assert [c["id"] for c in cameras] == ["cam1"] and cameras[0]["zones"][0]["rules"] == ["fire_lane"]

        def enough(records):
            return sum(1 for h, _ in records if h["type"] == "frame") >= 3 and any(
                h["type"] == "status" for h, _ in records)
        records = read_wall(f"{server.url}/api/v1/live/wall", headers, enough)
        frames = [(h, body) for h, body in records if h["type"] == "frame"]
        assert {h["camera_id"] for h, _ in frames} == {"cam1"}
        assert len({h["seq"] for h, _ in frames}) == len(frames)  # each frame sent once
        image = cv2.imdecode(np.frombuffer(frames[0][1], np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (360, 640, 3)
        status = next(h for h, _ in records if h["type"] == "status")
        assert [c["id"] for c in status["cameras"]] == ["cam1"] and status["cameras"][0]["age_s"] < 5

        admin = {"X-API-Key": server.key("viewer", ["*"])}
        records = read_wall(f"{server.url}/api/v1/live/wall?cameras=cam2,loose", admin,
                            lambda r: {h.get("camera_id") for h, _ in r if h["type"] == "frame"} == {"cam2", "loose"})
        assert {c["id"] for c in next(h for h, _ in records if h["type"] == "status")["cameras"]} == {"cam2", "loose"}
        assert httpx.get(f"{server.url}/api/v1/live/wall?compound_id=c2", headers=headers).status_code == 404
        assert httpx.get(f"{server.url}/api/v1/live/wall").status_code == 401
    finally:
        stop.set()
        publisher.join(timeout=5)


def test_a_stalled_camera_reports_its_age(server):
    hub = server.app.state.live_hub
    hub.register(_camera("cam1"), compound_id="c1")
    hub.publish("cam1", _frame("cam1", 5.0), None)
    time.sleep(1.5)
    status = httpx.get(f"{server.url}/api/v1/cameras/live", headers={"X-API-Key": server.key("viewer", ["c1"])}).json()
    assert status[0]["age_s"] >= 1.4 and status[0]["last_frame_time"] == 5.0


def test_pages_and_static_files(server):
    for path in ("/", "/login", "/review", "/cases", "/scorecard"):
        response = httpx.get(server.url + path)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/html"), path
        assert "/static/common.js" in response.text, path
    assert httpx.get(server.url + "/static/common.js").status_code == 200
    for bad in ("/static/../pages.py", "/static/%2e%2e/pages.py", "/static/nothing.js", "/static/"):
        assert httpx.get(server.url + bad).status_code == 404, bad
    config = httpx.get(server.url + "/api/v1/ui/config").json()
    assert config["timezone"] == "Asia/Shanghai" and config["default_language"] == "zh-CN"


def test_compound_list_shows_only_the_callers_compounds(server):
    server.user("alice", {"c1": "reviewer"})
    worker = server.key("worker")
    evidence = make_evidence()
    post_event(server.url, worker, evidence, compound_id="c1", camera_id="cam1", start=START)
    post_event(server.url, worker, evidence, compound_id="c2", camera_id="cam2", start=START)
    compounds = httpx.get(f"{server.url}/api/v1/compounds", headers=token(server, "alice")).json()
    assert compounds == [{"id": "c1", "name": "c1", "role": "reviewer", "cameras": [{"id": "cam1", "name": "cam1"}]}]


def test_streams_end_when_the_viewer_goes_away(server):
    """A closed wall stream or alert feed stops costing the server (no generator left writing to nothing)."""
    hub, alerts = server.app.state.live_hub, None
    hub.register(_camera("cam1"), compound_id="c1")
    hub.publish("cam1", _frame("cam1", 5.0), None)
    headers = {"X-API-Key": server.key("viewer", ["c1"])}
    read_wall(f"{server.url}/api/v1/live/wall", headers, lambda r: any(h["type"] == "frame" for h, _ in r))
    wait_until(lambda: hub.wall_viewers == 0, 10, "the wall stream to end")

    from service.routers.feed import alert_hub
    alerts = alert_hub(server.app)
    with httpx.stream("GET", f"{server.url}/api/v1/feed/alerts", headers=headers, timeout=30) as response:
        assert response.status_code == 200
        wait_until(lambda: alerts.subscriber_count == 1, 10, "the feed to subscribe")
    wait_until(lambda: alerts.subscriber_count == 0, 10, "the alert feed to end")
