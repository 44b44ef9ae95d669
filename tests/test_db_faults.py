"""PostgreSQL stopped and started again under load (issue 11): the API answers 503 fast while the
database is down (never 500, never a hang), works again once it is back without a restart of the
service, and leaves no half-written violation: every stored row has all its evidence objects, each
object's bytes match the sha256 recorded, and every object in the store belongs to a stored row.

The database is a private PostgreSQL cluster (tests/pg_private.py), never the shared one on :5432.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import select

from service.models import EvidenceObject, Violation
from service.settings import Settings

from browser_support import LiveServer
from pg_private import PrivatePostgres

DOWN_S = 5.0          # how long the database stays down in each cycle
REQUEST_TIMEOUT_S = 20.0
FAST_S = 4.0          # a 503 must come within this (connect_timeout is 3 s; a refused connect is instant)


@pytest.fixture
def private_pg():
    pg = PrivatePostgres().start()
    try:
        yield pg
    finally:
        pg.close()


@dataclass
class Outcome:
    kind: str          # "post" | "list" | "health"
    started: float     # time.monotonic()
    seconds: float
    status: int        # 0: no HTTP answer (connection error or timeout)
    event_id: str | None = None


class Load:
    """Client threads posting new events and listing them until stopped; every outcome recorded."""

    def __init__(self, url: str, worker_key: str, reviewer_key: str, make_event, posters: int = 4, readers: int = 4):
        self.url, self.worker_key, self.reviewer_key, self.make_event = url, worker_key, reviewer_key, make_event
        self.outcomes: list[Outcome] = []
        self.posted: dict[str, object] = {}   # id -> EventPost, every event ever sent
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._seq = 0
        self.threads = [threading.Thread(target=self._post_loop, daemon=True) for _ in range(posters)]
        self.threads += [threading.Thread(target=self._read_loop, daemon=True) for _ in range(readers)]

    def _next_event(self):
        with self._lock:
            self._seq += 1
            seq = self._seq
        start = dt.datetime(2026, 3, 1, 8, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=seq)
        post = self.make_event(compound_id="c1", camera_id=f"cam{seq % 3}", start=start)
        with self._lock:
            self.posted[post.id] = post
        return post

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def _post_loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S) as client:
            while not self._stop.is_set():
                post = self._next_event()
                outcome = self._timed("post", lambda: post.post(client, {"X-API-Key": self.worker_key}), post.id)
                self._record(outcome)
                if outcome.status not in (200, 201):
                    time.sleep(0.25)  # a worker backs off after a failure (vision/outbox.py)

    def _read_loop(self) -> None:
        with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S) as client:
            while not self._stop.is_set():
                headers = {"X-API-Key": self.reviewer_key}
                self._record(self._timed("list", lambda: client.get("/api/v1/events?limit=20", headers=headers)))
                self._record(self._timed("health", lambda: client.get("/healthz")))
                time.sleep(0.02)

    @staticmethod
    def _timed(kind: str, call, event_id: str | None = None) -> Outcome:
        started = time.monotonic()
        try:
            status = call().status_code
        except httpx.HTTPError:
            status = 0
        return Outcome(kind, started, time.monotonic() - started, status, event_id)

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join(timeout=REQUEST_TIMEOUT_S + 5)

    def since(self, t0: float, t1: float = float("inf")) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.started >= t0 and o.started + o.seconds <= t1]


def test_postgres_restarted_under_load_gives_fast_503s_then_recovers_with_nothing_half_written(
        private_pg, tmp_path, make_event):
    evidence_dir = tmp_path / "evidence"
    settings = Settings(database_url=private_pg.create_database("ce_faults"),
                        storage_url=f"file://{evidence_dir}", migrate_on_startup=True)
    with LiveServer(settings) as api:
        worker_key, reviewer_key = api.key("worker", ["c1"]), api.key("reviewer", ["c1"])
        with Load(api.url, worker_key, reviewer_key, make_event) as load:
            cycles = []
            for mode in ("fast", "immediate"):   # a clean shutdown, then a crash of the server
                time.sleep(3.0)
                private_pg.stop(mode)
                down_from = time.monotonic()
                time.sleep(DOWN_S)
                down_until = time.monotonic()
                private_pg.start()
                up_at = time.monotonic()
                time.sleep(4.0)
                cycles.append((mode, down_from, down_until, up_at))
            end = time.monotonic()

        everything = load.since(0)
        statuses = sorted({o.status for o in everything})
        assert all(o.status != 500 for o in everything), f"500 answers: {statuses}"
        assert all(o.status != 0 for o in everything), "a request got no answer (hang or dropped connection)"
        for mode, down_from, down_until, up_at in cycles:
            down = load.since(down_from, down_until)
            assert len(down) >= 20, f"too little traffic while the database was down ({mode}): {len(down)}"
            assert {o.status for o in down} == {503}, f"{mode}: answers while down {sorted({o.status for o in down})}"
            slowest = max(o.seconds for o in down)
            assert slowest < FAST_S, f"{mode}: a request took {slowest:.1f} s while the database was down"
            print(f"\n{mode} stop: {len(down)} requests while down, all 503, slowest {slowest * 1000:.0f} ms, "
                  f"median {sorted(o.seconds for o in down)[len(down) // 2] * 1000:.0f} ms")
            # recovered without restarting the service: the last seconds after the restart are all 2xx
            recovered = [o for o in load.since(up_at + 2.0, up_at + 4.0)]
            assert recovered and all(o.status in (200, 201) for o in recovered), \
                f"{mode}: after the restart {sorted({o.status for o in recovered})}"
        assert all(o.status in (200, 201) for o in load.since(end - 1.5, end + REQUEST_TIMEOUT_S))

        # The outbox's way: every post that did not get 2xx is sent again, and now succeeds (201, or 200
        # when its commit went through before the connection broke).
        answered = {o.event_id: o.status for o in everything if o.kind == "post" and o.status in (200, 201)}
        failed = [event_id for event_id in load.posted if event_id not in answered]
        assert failed, "no post failed while the database was down: the test did not test anything"
        with httpx.Client(base_url=api.url, timeout=REQUEST_TIMEOUT_S) as client:
            for event_id in failed:
                assert load.posted[event_id].post(client, {"X-API-Key": worker_key}).status_code in (200, 201)

        with api.app.state.sessions() as session:
            rows = session.scalars(select(Violation)).all()
            evidence = session.scalars(select(EvidenceObject)).all()
        stored_ids = [v.id for v in rows]
        assert len(stored_ids) == len(set(stored_ids)) == len(load.posted)
        assert set(stored_ids) == set(load.posted)
        kinds: dict[str, set[str]] = {}
        for obj in evidence:
            kinds.setdefault(obj.violation_id, set()).add(obj.kind)
            path = evidence_dir / obj.key
            assert path.is_file(), f"evidence object {obj.key} of a stored violation is missing"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == obj.sha256
        assert all(kinds.get(v) == {"snapshot", "clip", "sidecar"} for v in stored_ids), "a violation lacks evidence"
        on_disk = {str(p.relative_to(evidence_dir)) for p in evidence_dir.rglob("*") if p.is_file()}
        assert on_disk == {obj.key for obj in evidence}, f"objects without a row: {sorted(on_disk - {o.key for o in evidence})[:5]}"
        print(f"\n{len(everything)} requests, {len(load.posted)} events ({len(failed)} re-sent after 503), "
              f"answers {statuses}")
