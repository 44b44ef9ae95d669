"""The worker's durable outbox: events and their evidence files wait here until the API acknowledges them.

Delivery is at-least-once; the API makes it exactly-once by the violation's deterministic id. The
queue is a SQLite database in WAL mode (``synchronous=FULL``) next to a folder of evidence files, so a
crash, a SIGKILL or a power cut loses nothing that ``add`` returned for: the files are fsynced (and
their folder) before the row is committed, and a row is deleted only after the API answered 2xx. On
start the sender picks up whatever is still pending (tests/test_delivery.py kills a worker mid-upload).
"""
from __future__ import annotations

import json
import logging
import os
import random
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

log = logging.getLogger(__name__)

CONTENT_TYPES = {"snapshot": "image/jpeg", "crop": "image/jpeg", "clip": "video/mp4", "sidecar": "application/json"}
# Answers that no retry can change: the event itself is wrong. It is parked, not retried forever.
PERMANENT = {400, 404, 413, 415, 422}


def _fsync(path: Path) -> None:
    """Flush a file's bytes, or a folder's entries (a rename is durable only once its folder is), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class PendingEvent:
    id: str
    event: dict
    files: dict[str, Path]
    attempts: int


class Outbox:
    """A durable queue of events with evidence files.

    ``add`` copies nothing: it takes ownership of the files by moving them into the outbox folder,
    then records the event in one transaction, so a crash between the two leaves at worst a stray
    file, never an event without its evidence.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.files_dir = self.folder / "files"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.folder / "outbox.db", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id TEXT PRIMARY KEY, event TEXT NOT NULL, files TEXT NOT NULL,"
            " state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,"
            " next_attempt REAL NOT NULL DEFAULT 0, last_error TEXT, created REAL NOT NULL)")

    def add(self, event: dict, files: dict[str, Path]) -> bool:
        """Queue one event. Returns False (and leaves the files alone) if the id is already queued."""
        event_id = event["id"]
        with self._lock:
            if self._db.execute("SELECT 1 FROM outbox WHERE id=?", (event_id,)).fetchone():
                return False
            target = self.files_dir / event_id
            target.mkdir(parents=True, exist_ok=True)
            moved = {}
            for kind, path in files.items():
                dest = target / f"{kind}{Path(path).suffix}"
                shutil.move(str(path), dest)
                _fsync(dest)
                moved[kind] = str(dest)
            _fsync(target)
            _fsync(self.files_dir)
            self._db.execute("INSERT INTO outbox (id, event, files, created) VALUES (?,?,?,?)",
                             (event_id, json.dumps(event), json.dumps(moved), time.time()))
        log.info("event %s queued in the outbox", event_id)
        return True

    def due(self, now: float | None = None, limit: int = 20) -> list[PendingEvent]:
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT id, event, files, attempts FROM outbox WHERE state='pending' AND next_attempt<=?"
                " ORDER BY created LIMIT ?", (now, limit)).fetchall()
        return [PendingEvent(r[0], json.loads(r[1]), {k: Path(v) for k, v in json.loads(r[2]).items()}, r[3])
                for r in rows]

    def delivered(self, event_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE id=?", (event_id,))
        shutil.rmtree(self.files_dir / event_id, ignore_errors=True)

    def retry_later(self, event_id: str, attempts: int, error: str, now: float | None = None) -> float:
        """Back off exponentially with jitter (1 s doubling up to 60 s). Returns the delay chosen."""
        delay = min(60.0, 2.0 ** min(attempts, 6)) * random.uniform(0.5, 1.0)
        now = time.time() if now is None else now
        with self._lock:
            self._db.execute("UPDATE outbox SET attempts=?, next_attempt=?, last_error=? WHERE id=?",
                             (attempts + 1, now + delay, error[:500], event_id))
        return delay

    def park(self, event_id: str, error: str) -> None:
        """Keep an event the API refused for good, for a person to look at; it is not retried."""
        with self._lock:
            self._db.execute("UPDATE outbox SET state='rejected', last_error=? WHERE id=?", (error[:2000], event_id))

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        return {state: n for state, n in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()


class OutboxSender:
    """Posts queued events to the API with the worker key, in a thread.

    One event due: ``POST {api_url}/api/v1/events``. Several due (a backlog after the API was away, or a
    busy site): ``POST {api_url}/api/v1/events/batch`` with up to ``batch_events`` of them and at most
    ``batch_bytes`` of evidence per request, one result per event. An API without the batch endpoint
    (404/405) gets single posts from then on; a batch refused as a whole (413, 422) or broken off on its
    way is sent again one event at a time."""

    def __init__(self, outbox: Outbox, api_url: str, api_key: str, timeout_s: float = 30.0, poll_s: float = 0.5,
                 batch_events: int = 20, batch_bytes: int = 8 * 1024 * 1024):
        self.outbox = outbox
        self.url = api_url.rstrip("/") + "/api/v1/events"
        self.batch_url = self.url + "/batch"
        self.api_key = api_key
        self.poll_s = poll_s
        self.batch_events, self.batch_bytes = batch_events, batch_bytes
        self._client = httpx.Client(timeout=timeout_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send_one(self, item: PendingEvent) -> str:
        """Try to deliver one event. Returns 'delivered', 'retry' or 'parked'."""
        handles = {}
        try:
            for kind, path in item.files.items():
                handles[kind] = (path.name, open(path, "rb"), CONTENT_TYPES.get(kind, "application/octet-stream"))
            resp = self._client.post(self.url, headers={"X-API-Key": self.api_key},
                                     data={"event": json.dumps(item.event)}, files=handles)
        except (httpx.HTTPError, OSError) as exc:
            return self._not_sent(item, exc)
        finally:
            for _, fh, _ in handles.values():
                fh.close()
        return self._settle(item, resp.status_code, resp.text)

    def send_batch(self, items: list[PendingEvent]) -> list[str]:
        """Try to deliver ``items`` in one batch request; one outcome per item, as ``send_one``'s."""
        handles = []
        try:
            for index, item in enumerate(items):
                for kind, path in item.files.items():
                    handles.append((f"{index}.{kind}", (path.name, open(path, "rb"),
                                                        CONTENT_TYPES.get(kind, "application/octet-stream"))))
            resp = self._client.post(self.batch_url, headers={"X-API-Key": self.api_key},
                                     data={"events": json.dumps([item.event for item in items])}, files=handles)
        except (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError) as exc:
            # the connection broke while the batch was on its way: an API that refuses a body too large
            # may answer 413 and close before it has read it all. Alone, each event gets its own answer.
            resp, broken = None, exc
        except (httpx.HTTPError, OSError) as exc:
            return [self._not_sent(item, exc) for item in items]
        finally:
            for _, (_, fh, _) in handles:
                fh.close()
        if resp is None:
            log.warning("batch of %d broke off (%s); sending them one by one", len(items), broken)
            return [self.send_one(item) for item in items]
        if resp.status_code in (404, 405):
            log.warning("the API has no batch endpoint (HTTP %s); events are sent one by one", resp.status_code)
            self.batch_events = 1
            return [self.send_one(item) for item in items]
        if resp.status_code in (413, 422):  # the batch as a whole: each event alone gets its own answer
            log.warning("batch of %d refused as a whole (HTTP %s); sending them one by one", len(items), resp.status_code)
            return [self.send_one(item) for item in items]
        if resp.status_code != 200:
            return [self._settle(item, resp.status_code, resp.text) for item in items]
        try:
            results = resp.json()
            answers = [(result["status"], json.dumps(result.get("detail"))) for result in results]
        except (ValueError, TypeError, KeyError) as exc:
            answers = [(0, f"unreadable batch answer: {exc}")] * len(items)
        if len(answers) != len(items):
            answers = [(0, f"batch answer has {len(answers)} results for {len(items)} events")] * len(items)
        return [self._settle(item, status, text) for item, (status, text) in zip(items, answers)]

    def _not_sent(self, item: PendingEvent, exc: Exception) -> str:
        delay = self.outbox.retry_later(item.id, item.attempts, f"{type(exc).__name__}: {exc}")
        log.warning("event %s not delivered (%s); retry in %.1f s", item.id, exc, delay)
        return "retry"

    def _settle(self, item: PendingEvent, status: int, text: str) -> str:
        """Act on the API's answer ``status`` for one event: delivered, parked (refused for good) or retried."""
        if status in (200, 201):
            self.outbox.delivered(item.id)
            log.info("event %s delivered (%s)", item.id, "new" if status == 201 else "already there")
            return "delivered"
        if status in PERMANENT:
            self.outbox.park(item.id, f"HTTP {status}: {text}")
            log.error("event %s refused by the API, parked: HTTP %s %s", item.id, status, text[:300])
            return "parked"
        delay = self.outbox.retry_later(item.id, item.attempts, f"HTTP {status}: {text}")
        log.warning("event %s: HTTP %s; retry in %.1f s", item.id, status, delay)
        return "retry"

    def batches(self, items: list[PendingEvent]) -> list[list[PendingEvent]]:
        """``items`` in order, cut into batches of at most ``batch_events`` events and ``batch_bytes`` of
        evidence (an event larger than that alone in its batch). An event with a file missing goes alone:
        its failure must not hold back the others."""
        batches: list[list[PendingEvent]] = []
        size = 0
        for item in items:
            try:
                item_size = sum(path.stat().st_size for path in item.files.values())
            except OSError:
                batches += [[item], []]
                size = 0
                continue
            if not batches or len(batches[-1]) >= self.batch_events or size + item_size > self.batch_bytes:
                batches.append([])
                size = 0
            batches[-1].append(item)
            size += item_size
        return [batch for batch in batches if batch]

    def run_once(self, ignore_backoff: bool = False) -> int:
        """Deliver everything due now (or everything pending, when ``ignore_backoff``): several in batch
        requests, one alone in a single post. Returns how many were delivered."""
        items = self.outbox.due(now=float("inf") if ignore_backoff else None, limit=max(20, self.batch_events))
        outcomes = []
        for batch in self.batches(items):
            outcomes += self.send_batch(batch) if len(batch) > 1 else [self.send_one(batch[0])]
        return outcomes.count("delivered")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # the sender must outlive any single bad event
                log.exception("outbox sender error")
            self._stop.wait(self.poll_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="outbox-sender", daemon=True)
        self._thread.start()

    def stop(self, drain_s: float = 5.0) -> None:
        """Stop after trying for up to ``drain_s`` to deliver everything pending, backed-off events
        included (the API may have come back since their last attempt); what is not delivered stays
        on disk for the next start."""
        deadline = time.monotonic() + drain_s
        while time.monotonic() < deadline and self.outbox.due(now=float("inf")):
            if self.run_once(ignore_backoff=True) == 0:
                break
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._client.close()
