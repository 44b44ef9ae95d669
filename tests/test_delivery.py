"""Delivery through the worker's outbox (issue 11): a real ``compoundeye worker`` process on the demo's
fire-lane footage against a real API on loopback.

- killed with SIGKILL while it is posting (the API holds its answer to the first post it stored, so the
  worker dies after the row is written and before it hears 2xx), then started again: every violation it
  queued is stored exactly once;
- the API down for 60 s while the worker runs and raises violations, then back: the same.

"Produced" means queued in the outbox (the worker logs ``event <id> queued in the outbox`` once the row is
committed): a violation whose clip is still being recorded when the process dies lives only in memory and
is not produced (RELIABILITY.md).
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from service.db import make_engine, session_factory, upgrade
from service.keys import create_key
from service.models import EvidenceObject, Violation
from service.settings import Settings

from browser_support import LiveServer, absolute_detector_paths, free_port

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.yaml"
COMPOUNDEYE = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin" / "compoundeye"
QUEUED = re.compile(r"event ([0-9a-f]{32}) queued in the outbox")
ALREADY_THERE = re.compile(r"event ([0-9a-f]{32}) delivered \(already there\)")


class HoldAnswers:
    """Test-only ASGI middleware: the answer to ``POST /api/v1/events`` (or ``/batch``) is held back for ``hold_s`` after
    the app has handled the request (row and evidence stored), as if the network stalled on the way back.
    ``stored`` is set once the app has handled one such post."""

    def __init__(self, app, hold_s: float = 0.0):
        self.app = app
        self.hold_s = hold_s
        self.stored = threading.Event()
        self.held = 0

    async def __call__(self, scope, receive, send):
        if (scope["type"] != "http" or scope["method"] != "POST" or not self.hold_s
                or scope["path"] not in ("/api/v1/events", "/api/v1/events/batch")):
            return await self.app(scope, receive, send)
        messages = []

        async def keep(message):
            messages.append(message)
        await self.app(scope, receive, keep)
        self.held += 1
        self.stored.set()
        deadline = time.monotonic() + self.hold_s
        while self.hold_s and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for message in messages:
            await send(message)


class Api(LiveServer):
    """The real API on a fixed loopback port (so a restarted worker finds it), answers held by HoldAnswers."""

    def __init__(self, settings: Settings, port: int, hold_s: float = 0.0):
        super().__init__(settings, port=port, wrap=lambda app: HoldAnswers(app, hold_s), lifespan="off")
        self.holder = self.served

    def __exit__(self, *exc) -> None:
        self.holder.hold_s = 0.0
        super().__exit__(*exc)
        self.app.state.engine.dispose()


def fire_lane_site(tmp_path: Path, cameras: tuple[str, ...], loop: bool) -> Path:
    """The demo site with only copies of its fire-lane gate camera (one violation per pass of the clip
    each), detector paths absolute, the outbox in ``tmp_path``."""
    raw = yaml.safe_load(DEMO.read_text())
    absolute_detector_paths(raw, DEMO.parent)
    raw["detector"]["threads"] = 1
    raw["outbox_dir"] = str(tmp_path / "outbox")
    gate = next(c for c in raw["compounds"][0]["cameras"] if c["id"] == "demo-gate")
    gate["source"] = str((DEMO.parent / gate["source"]).resolve())
    raw["compounds"] = [raw["compounds"][0]]
    raw["compounds"][0]["cameras"] = [{**gate, "id": cam, "loop": loop} for cam in cameras]
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def worker_key(settings: Settings) -> str:
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as session:
        key = create_key(session, "delivery worker", "worker", ["*"])
    engine.dispose()
    return key


def start_worker(site: Path, api_url: str, key: str, log: Path, realtime: bool) -> subprocess.Popen:
    return subprocess.Popen(
        [str(COMPOUNDEYE), "worker", str(site), "--api-url", api_url, "--realtime" if realtime else "--no-realtime"],
        env={**os.environ, "COMPOUNDEYE_API_KEY": key}, stdout=subprocess.DEVNULL, stderr=open(log, "w"),
        cwd=ROOT)


def logged(pattern: re.Pattern, *logs: Path) -> list[str]:
    return [m.group(1) for log in logs if log.exists() for m in pattern.finditer(log.read_text())]


def stored(settings: Settings) -> tuple[list[str], dict[str, set[str]]]:
    """Ids of the stored violations (with repeats, if any) and the evidence kinds of each."""
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            ids = list(session.scalars(select(Violation.id)))
            kinds: dict[str, set[str]] = {}
            for obj in session.scalars(select(EvidenceObject)):
                kinds.setdefault(obj.violation_id, set()).add(obj.kind)
    finally:
        engine.dispose()
    return ids, kinds


def outbox_states(tmp_path: Path) -> dict[str, int]:
    with sqlite3.connect(tmp_path / "outbox" / "outbox.db") as db:
        return dict(db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())


def assert_exactly_once(settings: Settings, produced: list[str]) -> None:
    ids, kinds = stored(settings)
    assert produced, "the worker produced no violation: nothing was tested"
    assert len(produced) == len(set(produced)), "an id was queued twice"
    assert len(ids) == len(set(ids)), "a violation is stored twice"
    assert sorted(ids) == sorted(produced), f"produced {sorted(produced)}, stored {sorted(ids)}"
    assert all({"snapshot", "clip", "sidecar"} <= kinds.get(v, set()) for v in ids), "a violation lacks evidence"


@pytest.fixture
def sqlite_settings(tmp_path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'api.db'}", storage_url=f"file://{tmp_path / 'evidence'}")


def test_worker_killed_mid_upload_delivers_every_violation_exactly_once(sqlite_settings, tmp_path):
    settings = sqlite_settings
    key = worker_key(settings)
    site = fire_lane_site(tmp_path, ("gate-a", "gate-b", "gate-c"), loop=False)
    first_log, second_log = tmp_path / "worker-1.log", tmp_path / "worker-2.log"
    port = free_port()
    with Api(settings, port, hold_s=3600) as api:
        worker = start_worker(site, api.url, key, first_log, realtime=False)
        try:
            assert api.holder.stored.wait(timeout=300), f"no post reached the API: {first_log.read_text()[-2000:]}"
            worker.send_signal(signal.SIGKILL)   # the worker waits for the answer to a post the API has stored
            assert worker.wait(timeout=30) == -signal.SIGKILL
        finally:
            if worker.poll() is None:
                worker.kill()
        api.holder.hold_s = 0.0
        ids_after_kill, _ = stored(settings)
        assert len(ids_after_kill) >= 1
        pending_after_kill = outbox_states(tmp_path).get("pending", 0)
        assert pending_after_kill >= 1, "the event whose answer never came left the outbox"
        killed_mid_post = set(ids_after_kill) & set(logged(QUEUED, first_log))
        assert killed_mid_post

        worker = start_worker(site, api.url, key, second_log, realtime=False)
        try:
            assert worker.wait(timeout=400) == 0, second_log.read_text()[-3000:]
        finally:
            if worker.poll() is None:
                worker.kill()
    produced = logged(QUEUED, first_log, second_log)
    assert_exactly_once(settings, produced)
    # the post the first worker died waiting for was sent again and found already stored (200, no copy)
    assert killed_mid_post <= set(logged(ALREADY_THERE, second_log))
    assert outbox_states(tmp_path) == {}
    print(f"\nproduced {len(produced)} ({len(logged(QUEUED, first_log))} before the kill, "
          f"{pending_after_kill} pending at the kill), stored {len(stored(settings)[0])}")


def test_api_down_for_60_s_during_a_run_then_everything_delivered_once(sqlite_settings, tmp_path):
    settings = sqlite_settings
    key = worker_key(settings)
    site = fire_lane_site(tmp_path, ("gate-a", "gate-b"), loop=True)
    log = tmp_path / "worker.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    worker = None
    try:
        with Api(settings, port):
            worker = start_worker(site, url, key, log, realtime=True)
            time.sleep(8.0)       # the worker is running (models loaded, cameras decoding)
            assert worker.poll() is None, log.read_text()[-2000:]
            assert stored(settings)[0] == []
        down_at = time.monotonic()
        while time.monotonic() - down_at < 60.0:   # the API is down for 60 s
            time.sleep(1.0)
            assert worker.poll() is None, log.read_text()[-2000:]
        produced_while_down = logged(QUEUED, log)
        assert produced_while_down, "no violation was raised while the API was down"
        assert stored(settings)[0] == []
        with Api(settings, port):
            deadline = time.monotonic() + 150   # the sender backs off up to 60 s between attempts
            while set(stored(settings)[0]) != set(logged(QUEUED, log)) or not set(produced_while_down) <= set(stored(settings)[0]):
                assert time.monotonic() < deadline, f"not delivered: {log.read_text()[-3000:]}"
                time.sleep(1.0)
            worker.send_signal(signal.SIGTERM)     # a clean stop drains what is still pending
            assert worker.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
    produced = logged(QUEUED, log)
    assert_exactly_once(settings, produced)
    assert outbox_states(tmp_path) == {}
    print(f"\nproduced {len(produced)} ({len(produced_while_down)} while the API was down), all stored once")
