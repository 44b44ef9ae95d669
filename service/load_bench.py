"""Load benchmark of the review API on loopback (issue 11): event posts with small real evidence and,
at the same time, reviewers listing and deciding.

    python -m service.load_bench --database sqlite --events 20000 --json
    python -m service.load_bench --database postgresql --events 20000 --json

It migrates a fresh database (a SQLite file in WAL mode in a temporary folder, or a new database
``ce_bench_<random>`` on the PostgreSQL server of ``--pg-admin-url``, dropped afterwards), starts
``uvicorn service.app:create_app --factory`` in its own processes (``--server-workers``) on a free
127.0.0.1 port with a local evidence folder, and then runs, in one asyncio process (each simulated client
with a keep-alive HTTP/1.1 connection and request bytes built in advance, so that the client, which
shares the machine's cores with the server, costs little CPU per request):

- ``--posters`` clients posting ``--events`` new violations in all, each with a real JPEG snapshot, a
  real one-second H.264 clip and a sidecar (the API decodes and checks all three, as for a worker);
  with ``--batch N`` each request is a ``POST /api/v1/events/batch`` of N events, as a worker's outbox
  sends its backlog;
- ``--readers`` clients (20 by default) that, until the posts are done, list ``/api/v1/events``, read
  the review queue and decide one violation from it (confirm or reject; a 409 because another reviewer
  decided it first is counted as a conflict, not an error).

It prints one JSON object: events per second, p50/p95/p99 latency per kind of request, the answers
by status, the CPU seconds the server processes and the client used (server CPU per request tells how
many cores a target rate needs), errors (any answer other than 2xx, or 409 on a review, or no answer) and whether the
database holds exactly the violations posted. Figures depend on the machine; see RELIABILITY.md.

PostgreSQL plans from the statistics that ``ANALYZE`` gathers, and autovacuum runs it once a table has
changed by 10 % (checking every ``autovacuum_naptime``, 60 s by default). The bench reports the server's
``autovacuum`` setting; where it is off (the test server here), a table filled from empty is planned
as if it held a few rows, and a page's evidence is read by a scan of the whole evidence table.
``--analyze-every S`` has the bench run ``ANALYZE`` every S seconds while it posts, standing in for
autovacuum on such a server.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import io
import itertools
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import psutil

from service.db import make_engine, session_factory, upgrade
from service.keys import create_key
from service.storage import LocalStore
from vision.types import violation_id

DEFAULT_PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def evidence_files(folder: Path) -> dict[str, bytes]:
    """A real JPEG snapshot (320x180), a real 1 s H.264 MP4 (128x72, 10 fps) and a sidecar, as bytes."""
    image = np.full((180, 320, 3), 60, np.uint8)
    cv2.rectangle(image, (40, 60), (200, 150), (0, 0, 220), -1)
    cv2.putText(image, "fire lane", (50, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    clip_path = folder / "clip.mp4"
    with av.open(str(clip_path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=10, options={"preset": "veryfast", "g": "10"})
        stream.width, stream.height, stream.pix_fmt = 128, 72, "yuv420p"
        for i in range(10):
            frame = np.zeros((72, 128, 3), np.uint8)
            frame[:, i * 10:i * 10 + 10] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    sidecar = {"schema": "compoundeye.sidecar/1", "frame_width": 128, "frame_height": 72, "clip_start_s": 0.0,
               "frames": [{"time_s": 0.5, "clip_offset_s": 0.5, "boxes": [
                   {"xyxy": [10, 20, 110, 70], "class_name": "car", "confidence": 0.91, "track_id": 1}]}]}
    return {"snapshot": jpeg.tobytes(), "clip": clip_path.read_bytes(), "sidecar": json.dumps(sidecar).encode()}


def event_json(n: int, sha: dict[str, str], compound_id: str = "bench") -> str:
    """The ``n``-th distinct violation (its own start time, so its own deterministic id)."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(seconds=n)
    camera, rule, zone = f"cam{n % 8}", "fire_lane", "lane"
    return json.dumps({
        "id": violation_id(camera, rule, zone, start.timestamp()), "rule": rule, "compound_id": compound_id,
        "camera_id": camera, "zone_id": zone, "start_time": start.isoformat(),
        "last_seen_time": (start + dt.timedelta(seconds=60)).isoformat(), "end_time": None, "confidence": 0.8,
        "model_version": "car-v1", "source": "live",
        "boxes": [{"time": (start + dt.timedelta(seconds=20)).isoformat(), "xyxy": [10, 20, 110, 70],
                   "class_name": "car", "confidence": 0.9, "track_id": 1}],
        "evidence": {"snapshot_sha256": sha["snapshot"], "clip_sha256": sha["clip"],
                     "sidecar_sha256": sha["sidecar"], "crop_sha256": None}})


class Recorder:
    def __init__(self):
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, Counter] = defaultdict(Counter)

    def add(self, kind: str, seconds: float, status: int) -> None:
        self.latency[kind].append(seconds)
        self.status[kind][status] += 1

    def summary(self) -> dict:
        out = {}
        for kind, values in sorted(self.latency.items()):
            ms = np.array(values) * 1000
            out[kind] = {"count": len(values), "p50_ms": round(float(np.percentile(ms, 50)), 1),
                         "p95_ms": round(float(np.percentile(ms, 95)), 1),
                         "p99_ms": round(float(np.percentile(ms, 99)), 1),
                         "max_ms": round(float(ms.max()), 1),
                         "status": {str(k): v for k, v in sorted(self.status[kind].items())}}
        return out

    def errors(self) -> int:
        bad = 0
        for kind, counts in self.status.items():
            for status, n in counts.items():
                ok = 200 <= status < 300 or (kind == "review" and status == 409)
                bad += 0 if ok else n
        return bad


class HttpConnection:
    """One keep-alive HTTP/1.1 connection to the API for one simulated client, sending request bytes
    built in advance. The bench client shares the machine's cores with the server it measures, and a
    general client (httpx) spent about 2.7 ms of CPU per request here, more than the server's own work
    on a list page; this one parses only the status line, ``Content-Length`` (or a chunked body) and
    ``Connection: close``.

    It connects again after ``requests_per_connection`` requests: with ``--server-workers`` processes
    on one port, the kernel hands each new connection to one process, and a few long-lived connections
    left one process doing most of the work while the other idled."""

    def __init__(self, host: str, port: int, requests_per_connection: int = 100):
        self.host, self.port, self.requests_per_connection = host, port, requests_per_connection
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.served = 0

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send one whole request (head and body) and return ``(status, body)``. A connection the server
        closed while idle is opened again once; any other failure raises ``OSError`` (or a subclass)."""
        for attempt in (1, 2):
            if self.served >= self.requests_per_connection:
                await self.close()
            fresh = self.writer is None
            if fresh:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                self.served = 0
            try:
                self.writer.write(data)
                self.served += 1
                return await self._response()
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                await self.close()
                if fresh or attempt == 2:
                    raise ConnectionError(f"no answer: {exc}") from exc
        raise AssertionError("unreachable")

    async def _response(self) -> tuple[int, bytes]:
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, close = None, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = value.strip().lower() == b"close"
        if chunked:
            body = bytearray()
            while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
                body += await self.reader.readexactly(size + 2)
                del body[-2:]
            await self.reader.readuntil(b"\r\n")
            body = bytes(body)
        else:
            body = await self.reader.readexactly(length or 0)
        if close:
            await self.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


def http_request(method: str, target: str, host: str, headers: dict[str, str] | None = None,
                 body: bytes = b"") -> bytes:
    """The bytes of one HTTP/1.1 request (keep-alive)."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class EventPosts:
    """The multipart bodies of event posts: the evidence parts are built once, only the ``event`` part
    (the n-th violation's JSON) changes from post to post. ``batch_request`` builds a batch post."""

    BOUNDARY = "ce-load-bench-7d9f0c2a"
    NAMES = {"snapshot": ("snapshot.jpg", "image/jpeg"), "clip": ("clip.mp4", "video/mp4"),
             "sidecar": ("sidecar.json", "application/json")}

    def __init__(self, files: dict[str, bytes], host: str, worker_key: str):
        self.sha = {kind: hashlib.sha256(data).hexdigest() for kind, data in files.items()}
        self.host, self.worker_key, self.files = host, worker_key, files
        self.closing = f"--{self.BOUNDARY}--\r\n".encode()
        self.file_parts = self._parts("") + self.closing
        self.headers = {"X-API-Key": worker_key, "Content-Type": f"multipart/form-data; boundary={self.BOUNDARY}"}
        self._indexed: list[bytes] = []  # the parts of the i-th event of a batch, built when first needed

    def _parts(self, prefix: str) -> bytes:
        parts = b""
        for kind, (filename, content_type) in self.NAMES.items():
            parts += (f"--{self.BOUNDARY}\r\nContent-Disposition: form-data; name=\"{prefix}{kind}\"; "
                      f"filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n").encode()
            parts += self.files[kind] + b"\r\n"
        return parts

    def _field(self, name: str, value: str) -> bytes:
        return (f"--{self.BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").encode()

    def request(self, n: int) -> bytes:
        body = self._field("event", event_json(n, self.sha)) + self.file_parts
        return http_request("POST", "/api/v1/events", self.host, self.headers, body)

    def batch_request(self, numbers: list[int]) -> bytes:
        """One ``POST /api/v1/events/batch`` of the violations ``numbers``, each with its three files."""
        while len(self._indexed) < len(numbers):
            self._indexed.append(self._parts(f"{len(self._indexed)}."))
        body = self._field("events", "[" + ",".join(event_json(n, self.sha) for n in numbers) + "]")
        body += b"".join(self._indexed[:len(numbers)]) + self.closing
        return http_request("POST", "/api/v1/events/batch", self.host, self.headers, body)


async def _timed(recorder: Recorder, kind: str, connection: HttpConnection, data: bytes) -> tuple[int, bytes]:
    started = time.perf_counter()
    try:
        status, body = await connection.request(data)
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
        status, body = 0, b""
        await connection.close()
    recorder.add(kind, time.perf_counter() - started, status)
    return status, body


async def run_load(url: str, worker_key: str, reviewer_key: str, events: int, posters: int, readers: int,
                   files: dict[str, bytes], batch: int = 1, reader_pause: float = 0.0) -> dict:
    """Post ``events`` new events from ``posters`` clients (``batch`` per request when above 1) while
    ``readers`` clients list, read the queue and decide, each pausing ``reader_pause`` seconds between
    rounds (0: without pause, the stress case); return the rate, the latencies and the answers by status."""
    host_port = url.split("://", 1)[1].rstrip("/")
    host, port = host_port.rsplit(":", 1)
    posts = EventPosts(files, host_port, worker_key)
    recorder = Recorder()
    next_event = iter(range(events))
    event_status: Counter = Counter()  # each event's own answer (in a batch: its result's status)
    done = asyncio.Event()
    reviewer = {"X-API-Key": reviewer_key}
    list_request = http_request("GET", "/api/v1/events?limit=50", host_port, reviewer)
    queue_request = http_request("GET", "/api/v1/review-queue?limit=20", host_port, reviewer)
    decisions = [json.dumps({"verdict": "reject", "reason": "false_alarm"}).encode(),
                 json.dumps({"verdict": "confirm"}).encode()]

    async def poster():
        # a new connection every 100 events, batched or not, so that every server process gets some
        connection = HttpConnection(host, int(port), requests_per_connection=max(1, 100 // batch))
        if batch <= 1:
            for n in next_event:
                await _timed(recorder, "post", connection, posts.request(n))
        else:
            while numbers := list(itertools.islice(next_event, batch)):
                status, body = await _timed(recorder, "batch", connection, posts.batch_request(numbers))
                results = json.loads(body) if status == 200 else []
                for result in results:
                    event_status[result["status"]] += 1
                if len(results) != len(numbers):  # the request as a whole failed: its events count under its status
                    event_status[f"request {status}"] += len(numbers) - len(results)
        await connection.close()

    async def reader(i: int):
        connection = HttpConnection(host, int(port))
        turn = 0
        while not done.is_set():
            turn += 1
            await _timed(recorder, "list", connection, list_request)
            status, body = await _timed(recorder, "queue", connection, queue_request)
            items = json.loads(body).get("items", []) if status == 200 else []
            if items:
                target = items[(i + turn) % len(items)]["id"]
                await _timed(recorder, "review", connection, http_request(
                    "POST", f"/api/v1/events/{target}/review", host_port,
                    {**reviewer, "Content-Type": "application/json"}, decisions[(i + turn) % 2]))
                if reader_pause:
                    await asyncio.sleep(reader_pause)
            else:
                await asyncio.sleep(max(0.05, reader_pause))
        await connection.close()

    reader_tasks = [asyncio.create_task(reader(i)) for i in range(readers)]
    started = time.perf_counter()
    await asyncio.gather(*(poster() for _ in range(posters)))
    posting_s = time.perf_counter() - started
    done.set()
    await asyncio.gather(*reader_tasks)
    # a batch answered 200 may still refuse some of its events: those are errors the requests' statuses miss
    refused_in_batches = sum(n for status, n in event_status.items()
                             if isinstance(status, int) and status not in (200, 201))
    if batch <= 1:
        event_status.update(recorder.status["post"])
    posted_ok = sum(n for status, n in event_status.items() if status in (200, 201))
    return {"posting_s": round(posting_s, 2), "events_per_s": round(posted_ok / posting_s, 1),
            "errors": recorder.errors() + refused_in_batches,
            "events_by_status": {str(k): v for k, v in event_status.items()}, "requests": recorder.summary()}


def _server_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) used so far by the uvicorn process and by each of its worker
    processes, by process id."""
    used = {}
    parent = psutil.Process(pid)
    for proc in [parent, *parent.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            used[proc.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return used


def _libpq_url(url: str) -> str:
    """``url`` as psycopg's own ``connect`` takes it (SQLAlchemy's ``postgresql+psycopg://`` scheme dropped)."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def _pg_database(admin_url: str) -> tuple[str, callable]:
    import psycopg
    name = f"ce_bench_{secrets.token_hex(4)}"
    admin_url = _libpq_url(admin_url)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    base = admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return f"{base}/{name}", drop


class Analyzer:
    """Runs ``ANALYZE`` on a PostgreSQL database every ``every`` seconds in a thread until stopped, as
    autovacuum would on a server that has it on; counts the runs."""

    def __init__(self, url: str, every: float):
        self.url, self.every, self.runs = _libpq_url(url), every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="analyze", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.analyze()

    def analyze(self) -> None:
        import psycopg
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("ANALYZE")
        self.runs += 1

    def __enter__(self) -> "Analyzer":
        if self.every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


def read_latency(base: str, reviewer_key: str, requests: int) -> dict:
    """Latencies (``Recorder.summary``: p50, p95, p99, max) of ``requests`` one-at-a-time reads of each
    listing a reviewer's round makes: what one request costs at the table's size now, without the load's
    queueing."""
    recorder = Recorder()
    with httpx.Client(base_url=base, headers={"X-API-Key": reviewer_key}, timeout=60) as client:
        for name, path in (("list", "/api/v1/events?limit=50"), ("queue", "/api/v1/review-queue?limit=20")):
            client.get(path).raise_for_status()
            for _ in range(requests):
                started = time.perf_counter()
                client.get(path).raise_for_status()
                recorder.add(name, time.perf_counter() - started, 200)
    return recorder.summary()


def _pg_setting(url: str, name: str) -> str:
    import psycopg
    with psycopg.connect(_libpq_url(url)) as conn:
        return conn.execute(f"SHOW {name}").fetchone()[0]


def bench(database: str, events: int, posters: int, readers: int, server_workers: int,
          pg_admin_url: str = DEFAULT_PG_ADMIN, batch: int = 1, reader_pause: float = 0.0,
          analyze_every: float = 0.0, read_after: int = 0) -> dict:
    """One run against a fresh database of kind ``database`` ("sqlite" or "postgresql"); returns the figures.
    ``analyze_every`` (PostgreSQL): seconds between the bench's own ``ANALYZE`` runs, 0 for none.
    ``read_after``: after the load, time that many one-at-a-time reads of each listing (on PostgreSQL
    twice: as the load left the statistics, then after an ``ANALYZE``)."""
    work = Path(tempfile.mkdtemp(prefix="ce-load-"))
    drop = None
    server = None
    postgres = {}
    try:
        if database == "sqlite":
            url = f"sqlite:///{work / 'bench.db'}"
        else:
            url, drop = _pg_database(pg_admin_url)
        upgrade(url)
        engine = make_engine(url)
        with session_factory(engine)() as session:
            worker_key = create_key(session, "bench worker", "worker", ["bench"])
            reviewer_key = create_key(session, "bench reviewer", "reviewer", ["bench"])
        port = _free_port()
        env = {**os.environ, "COMPOUNDEYE_DATABASE_URL": url, "COMPOUNDEYE_STORAGE_URL": f"file://{work / 'evidence'}",
               "COMPOUNDEYE_MIGRATE_ON_STARTUP": "false", "COMPOUNDEYE_RESCAN_STATE_DIR": str(work / "rescan")}
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "service.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port), "--workers", str(server_workers), "--log-level", "warning", "--no-access-log"],
            env=env, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"))
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"the API did not start: {(work / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        files = evidence_files(work)
        cpu_before, client_before = _server_cpu_s(server.pid), time.process_time()
        with Analyzer(url, analyze_every if database == "postgresql" else 0) as analyzer:
            result = asyncio.run(run_load(base, worker_key, reviewer_key, events, posters, readers, files, batch,
                                            reader_pause))
        if database == "postgresql":
            postgres = {"autovacuum": _pg_setting(url, "autovacuum"), "analyze_every_s": analyze_every,
                        "analyze_runs": analyzer.runs}
        if read_after:
            result["reads_after_load"] = read_latency(base, reviewer_key, read_after)
            if database == "postgresql":
                Analyzer(url, 0).analyze()
                result["reads_after_analyze"] = read_latency(base, reviewer_key, read_after)
        cpu_after, client_cpu_s = _server_cpu_s(server.pid), time.process_time() - client_before
        per_process = sorted((cpu_after[p] - cpu_before.get(p, 0.0) for p in cpu_after), reverse=True)
        server_cpu_s = sum(per_process)
        requests = sum(r["count"] for r in result["requests"].values())
        result["cpu"] = {"server_s": round(server_cpu_s, 1), "client_s": round(client_cpu_s, 1),
                         "server_processes_s": [round(x, 1) for x in per_process],
                         "server_ms_per_request": round(server_cpu_s * 1000 / max(1, requests), 1),
                         "server_cores_busy": round(server_cpu_s / result["posting_s"], 2)}
        from sqlalchemy import func, select
        from service.models import EvidenceObject, Violation
        with session_factory(engine)() as session:
            stored = session.scalar(select(func.count()).select_from(Violation))
            distinct = session.scalar(select(func.count(func.distinct(Violation.id))))
            objects = session.scalar(select(func.count()).select_from(EvidenceObject))
        engine.dispose()
        return {"database": database, "events": events, "batch": batch, "posters": posters, "readers": readers,
                "reader_pause_s": reader_pause, **({"postgresql": postgres} if postgres else {}),
                "server_workers": server_workers, "evidence_bytes_per_event": sum(map(len, files.values())),
                **result, "stored_violations": stored, "stored_distinct_ids": distinct, "evidence_objects": objects,
                "stored_exactly_once": stored == distinct == events and objects == 3 * events,
                "load_average": [round(x, 2) for x in os.getloadavg()]}
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        if drop is not None:
            drop()
        shutil.rmtree(work, ignore_errors=True)


def store_bench(batches: int, batch: int = 20, folder: str | None = None) -> dict:
    """CPU time of :func:`service.ingest.store_events` alone, per event: ``batches`` groups of ``batch``
    checked events (the bench's evidence) stored in-process into a fresh SQLite database and a local
    store under ``folder`` (a temporary folder; on tmpfs such as ``/dev/shm`` the disk's flush is left
    out, which on a shared disk is most of the time and most of the noise). Median and minimum over the
    groups, in ms: a change to the store step shows here without the HTTP server, the client and the
    upload checks around it."""
    from service.ingest import check_uploads, parse_event, store_events
    work = Path(tempfile.mkdtemp(prefix="ce-store-", dir=folder))
    try:
        url = f"sqlite:///{work / 'bench.db'}"
        upgrade(url)
        engine = make_engine(url)
        sessions = session_factory(engine)
        store = LocalStore(work / "evidence")
        files = evidence_files(work)
        sha = {kind: hashlib.sha256(data).hexdigest() for kind, data in files.items()}
        per_event, numbers = [], itertools.count()
        for _ in range(batches):
            group = []
            for _ in range(batch):
                event = parse_event(event_json(next(numbers), sha))
                group.append((event, check_uploads(event, {k: io.BytesIO(v) for k, v in files.items()}, 1 << 30)))
            with sessions() as session:
                started = time.process_time()
                outcomes = store_events(session, store, group)
                per_event.append((time.process_time() - started) * 1000 / batch)
            if not all(isinstance(outcome, tuple) and outcome[1] for outcome in outcomes):
                raise RuntimeError(f"not every event was stored: {outcomes}")
        engine.dispose()
        per_event.sort()
        return {"store_folder": str(work.parent), "batches": batches, "batch": batch,
                "store_cpu_ms_per_event": {"median": round(per_event[len(per_event) // 2], 3),
                                           "min": round(per_event[0], 3)}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


class FsyncEachStore(LocalStore):
    """A local store that flushes a batch with an fsync per file (the alternative to one ``syncfs``)."""

    def _sync(self, staged) -> None:
        self._fsync_each(staged)


_WRITER = """
import os, sys, time
path, mb_per_s = sys.argv[1], int(sys.argv[2])
block = os.urandom(1 << 20)
while True:  # a recorder or a database between checkpoints: steady writes, never fsynced
    with open(path, "wb") as out:
        for _ in range(30):
            started = time.monotonic()
            for _ in range(mb_per_s):
                out.write(block)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
"""


def flush_bench(seconds: float, batch: int = 20, folder: str | None = None, writer_mb_s: int = 0,
                rounds: int = 2) -> dict:
    """Wall time to stage one batch (``batch`` events, three small files each) in a local store under
    ``folder``: one ``syncfs`` of the file system (what the service does) against an fsync per file,
    in alternating rounds of ``seconds`` each. With ``writer_mb_s``, another process writes that many
    MB per second into the same folder without fsyncing, as a recorder or a database sharing the disk
    would; ``syncfs`` then also waits for that writer's dirty data, an fsync per file for a journal
    commit each."""
    work = Path(tempfile.mkdtemp(prefix="ce-flush-", dir=folder))
    writer = None
    try:
        if writer_mb_s:
            writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(work / "writer.bin"), str(writer_mb_s)])
            time.sleep(2.0)  # let dirty data build up
        data = {kind: os.urandom(size) for kind, size in (("jpg", 3400), ("mp4", 2000), ("json", 250))}
        recorder, numbers = Recorder(), itertools.count()
        for round_ in range(rounds):
            for mode, store in (("syncfs", LocalStore(work / f"syncfs{round_}")),
                                ("fsync_each", FsyncEachStore(work / f"fsync{round_}"))):
                ends = time.monotonic() + seconds
                while time.monotonic() < ends:
                    items = []
                    for _ in range(batch):
                        n = next(numbers)
                        items += [(f"c1/cam{n % 5}/2026-12-07/{n:08d}/evidence.{ext}", body, "application/octet-stream")
                                  for ext, body in data.items()]
                    started = time.perf_counter()
                    staged = store.stage_many(items)
                    recorder.add(mode, time.perf_counter() - started, 200)
                    for obj in staged:
                        obj.publish()
        summary = recorder.summary()
        for figures in summary.values():
            figures.pop("status")
            figures["groups_per_s"] = round(figures["count"] / (seconds * rounds), 1)
        return {"store_folder": str(work.parent), "batch": batch, "files_per_batch": batch * len(data),
                "writer_mb_per_s": writer_mb_s, "seconds_per_round": seconds, "rounds": rounds,
                "flush_ms_per_batch": summary}
    finally:
        if writer is not None:
            writer.kill()
            writer.wait()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--events", type=int, default=2000, help="event posts in all (the issue's target: 20000)")
    parser.add_argument("--posters", type=int, default=8, help="concurrent posting clients")
    parser.add_argument("--readers", type=int, default=20, help="concurrent listing/reviewing clients")
    parser.add_argument("--batch", type=int, default=1,
                        help="events per request: above 1, posters send POST /api/v1/events/batch (at most 50)")
    parser.add_argument("--reader-pause", type=float, default=0.0, metavar="SECONDS",
                        help="each reader's pause between rounds of list, queue and review (default 0: without "
                             "pause, the stress case; a person at a screen takes seconds per decision)")
    parser.add_argument("--analyze-every", type=float, default=0.0, metavar="SECONDS",
                        help="PostgreSQL: run ANALYZE every SECONDS while posting, in place of autovacuum where the "
                             "server has it off (default 0: never)")
    parser.add_argument("--read-after", type=int, default=0, metavar="N",
                        help="after the load, time N one-at-a-time reads of the event list and of the review queue "
                             "(PostgreSQL: also after an ANALYZE)")
    parser.add_argument("--server-workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--pg-admin-url", default=DEFAULT_PG_ADMIN,
                        help="a PostgreSQL URL allowed to CREATE DATABASE (a fresh one is made and dropped)")
    parser.add_argument("--store-only", type=int, default=0, metavar="GROUPS",
                        help="instead of the load: time the store step alone (store_events, in-process, SQLite) "
                             "over GROUPS groups of --batch events")
    parser.add_argument("--store-dir", default=None, metavar="FOLDER",
                        help="with --store-only or --flush-only: where the store's temporary folder goes (e.g. /dev/shm)")
    parser.add_argument("--flush-only", type=float, default=0.0, metavar="SECONDS",
                        help="instead of the load: time the flush of a batch's files, one syncfs against an fsync "
                             "per file, in alternating rounds of SECONDS (in --store-dir)")
    parser.add_argument("--writer-mb-s", type=int, default=0, metavar="MB",
                        help="with --flush-only: another process writes MB per second into the same folder, unsynced")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    if args.flush_only:
        result = flush_bench(args.flush_only, max(2, args.batch), args.store_dir, args.writer_mb_s)
        print(json.dumps(result, indent=2) if args.json else "\n".join(
            f"{mode}: p50 {f['p50_ms']} ms, p99 {f['p99_ms']} ms, {f['groups_per_s']} batches/s"
            for mode, f in result["flush_ms_per_batch"].items()))
        return 0
    if args.store_only:
        result = store_bench(args.store_only, max(1, args.batch), args.store_dir)
        print(json.dumps(result, indent=2) if args.json else
              f"store_events: {result['store_cpu_ms_per_event']['median']} ms CPU per event (median), "
              f"{result['store_cpu_ms_per_event']['min']} ms min")
        return 0
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    results = [bench(kind, args.events, args.posters, args.readers, args.server_workers, args.pg_admin_url, args.batch,
                     args.reader_pause, args.analyze_every, args.read_after)
               for kind in kinds]
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    else:
        for r in results:
            post = r["requests"]["post" if r["batch"] <= 1 else "batch"]
            print(f"{r['database']}: {r['events_per_s']} events/s, post p50 {post['p50_ms']} ms p99 {post['p99_ms']} ms, "
                  f"errors {r['errors']}, stored exactly once: {r['stored_exactly_once']}")
    return 0 if all(r["errors"] == 0 and r["stored_exactly_once"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
