"""A re-scan job: discover the footage, tell each file's camera and start time, skip what the
checkpoint says is finished, scan the rest on an executor, keep evidence and the checkpoint, post
the violations (optional) and write the report.

The job's state folder (by default ``var/rescan/<fingerprint>``, where the fingerprint covers the
source, the mode, the sampling rate, the naming pattern, the site file's and the model's bytes)
holds ``checkpoint.jsonl`` (one line per finished file), ``evidence/<violation id>/`` and, when
posting, the outbox. Re-running the same job resumes it: finished files are skipped and their
results are read back, so a resumed run reports exactly what an uninterrupted one does.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from vision.config import SiteConfig
from vision.errors import CompoundEyeError
from vision.rescan.discover import Discovery, discover
from vision.rescan.naming import DEFAULT_PATTERN, NamingError, NamingPattern
from vision.rescan.report import build_report
from vision.rescan.scan import FileResult, FileTask, ScanSettings

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
EXIT_OK, EXIT_PARTIAL, EXIT_CANCELLED = 0, 3, 4


class CheckpointMismatch(CompoundEyeError):
    """The state folder belongs to another job (different source, settings, site file or model)."""


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class JobSpec:
    """What a re-scan is asked to do.

    Attributes:
        source: folder, glob or ``s3://bucket/prefix``.
        site: the parsed site file; ``site_sha256`` its bytes' hash (part of the fingerprint).
        model_path: the ONNX model (default: the site file's detector model).
        mode, fps: see :class:`ScanSettings`.
        pattern: the naming pattern (see :mod:`vision.rescan.naming`).
        camera_id: give every file this camera (a folder of one camera's footage); the start time
            still comes from the name or the sidecar.
        state_dir: the job's state folder (default ``var/rescan/<fingerprint>``).
    """

    source: str
    site: SiteConfig
    site_sha256: str
    model_path: str
    mode: str = "sampled"
    fps: float | None = None
    pattern: str = DEFAULT_PATTERN
    camera_id: str | None = None
    state_dir: Path | None = None
    threads: int = 1

    def fingerprint(self) -> str:
        facts = {"source": self.source.rstrip("/"), "mode": self.mode, "fps": self.fps, "pattern": self.pattern,
                 "camera": self.camera_id, "site": self.site_sha256, "model": file_sha256(self.model_path)}
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


@dataclass
class JobProgress:
    """Live figures of a running job (what the progress bars and the API show)."""

    files_total: int = 0
    files_done: int = 0
    files_bad: int = 0
    files_skipped: int = 0
    bytes_total: int = 0
    bytes_done: int = 0
    footage_done_s: float = 0.0
    violations: int = 0
    started: float = field(default_factory=time.monotonic)
    current: dict[str, float] = field(default_factory=dict)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    @property
    def x_realtime(self) -> float | None:
        return self.footage_done_s / self.elapsed_s if self.elapsed_s > 0 and self.footage_done_s else None

    @property
    def eta_s(self) -> float | None:
        if not self.bytes_done or self.bytes_done >= self.bytes_total:
            return None
        return self.elapsed_s * (self.bytes_total - self.bytes_done) / self.bytes_done

    def as_dict(self) -> dict:
        return {"files_total": self.files_total, "files_done": self.files_done, "files_bad": self.files_bad,
                "files_skipped": self.files_skipped, "bytes_total": self.bytes_total, "bytes_done": self.bytes_done,
                "footage_done_s": round(self.footage_done_s, 3), "violations": self.violations,
                "elapsed_s": round(self.elapsed_s, 3),
                "x_realtime": round(self.x_realtime, 2) if self.x_realtime else None,
                "eta_s": round(self.eta_s, 1) if self.eta_s is not None else None,
                "current": {k: round(v, 3) for k, v in self.current.items()}}


class Checkpoint:
    """``checkpoint.jsonl``: a header naming the job, then one line per finished file (its result
    without evidence bytes). Lines are appended and flushed to disk one at a time, so a crash loses
    at most the file being written."""

    def __init__(self, path: Path, fingerprint: str, fresh: bool = False):
        self.path = path
        self.finished: dict[str, dict] = {}
        if fresh and path.exists():
            path.unlink()
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            header = json.loads(lines[0]) if lines else {}
            if header.get("job") != fingerprint:
                raise CheckpointMismatch(f"{path} belongs to another job (source, settings, site file or model "
                                         "differ); use another state folder or --fresh")
            for line in lines[1:]:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash: that file is scanned again
                self.finished[record["key"]] = record
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._append({"job": fingerprint, "version": CHECKPOINT_VERSION})

    def _append(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def record(self, summary: dict) -> None:
        self._append(summary)
        self.finished[summary["key"]] = summary


class RescanJob:
    """Run one re-scan. Callbacks: ``on_progress(JobProgress)`` after every change,
    ``on_file(summary)`` after each finished file. ``cancel()`` stops it (files in flight are
    dropped and will be scanned by the next run)."""

    def __init__(self, spec: JobSpec, executor, state_root: Path = Path("var/rescan"), fresh: bool = False,
                 s3=None, on_progress: Callable[[JobProgress], None] | None = None,
                 on_file: Callable[[dict], None] | None = None):
        self.spec = spec
        self.executor = executor
        self.fingerprint = spec.fingerprint()
        self.state_dir = Path(spec.state_dir) if spec.state_dir else Path(state_root) / self.fingerprint[:16]
        self.fresh = fresh
        self.s3 = s3
        self.on_progress = on_progress or (lambda p: None)
        self.on_file = on_file or (lambda s: None)
        self.progress = JobProgress()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.results: list[dict] = []
        self.cancelled = False

    def cancel(self) -> None:
        self._stop.set()

    # -- steps -----------------------------------------------------------------------------------
    def _identify(self, discovery: Discovery) -> tuple[list[FileTask], list[dict]]:
        """Tasks for the files whose camera and start time are known; bad-file summaries for the rest."""
        pattern = NamingPattern(self.spec.pattern)
        site = self.spec.site
        cameras = {cam.id: compound.id for compound, cam in site.cameras()}
        tasks, bad = [], []
        for f in discovery.files:
            try:
                if f.sidecar_error:
                    raise NamingError(f.sidecar_error)
                sidecar = dict(f.sidecar or {})
                if self.spec.camera_id and "camera_id" not in sidecar:
                    sidecar["camera_id"] = self.spec.camera_id
                ident = pattern.parse(f.name, site.tz, sidecar or None)
                if ident.camera_id not in cameras:
                    raise NamingError(f"{f.name}: camera {ident.camera_id!r} is not in the site file")
            except NamingError as exc:
                bad.append(FileResult(f.name, f.location, f.key, "bad", reason=f"wrongly named: {exc}").summary())
                continue
            url = self.s3.presign(f.location) if f.location.startswith("s3://") else None
            tasks.append(FileTask(f, cameras[ident.camera_id], ident.camera_id, ident.start_time_s, url))
        return tasks, bad

    def _keep_evidence(self, result: FileResult) -> None:
        for vid, files in result.evidence.items():
            folder = self.state_dir / "evidence" / vid
            folder.mkdir(parents=True, exist_ok=True)
            for kind, (suffix, data) in files.items():
                tmp = folder / f".{kind}{suffix}.partial"
                tmp.write_bytes(data)
                os.replace(tmp, folder / f"{kind}{suffix}")

    def _finished(self, summary: dict, fresh_result: bool) -> None:
        with self._lock:
            p = self.progress
            if summary["status"] == "bad":
                p.files_bad += 1
            else:
                p.files_done += 1
                p.footage_done_s += summary.get("duration_s") or 0.0
            p.violations += len(summary.get("violations") or [])
            p.current.pop(summary["name"], None)
            self.results.append(summary)
        self.on_file(summary)
        self.on_progress(self.progress)

    def _on_result(self, result: FileResult, sizes: dict[str, int]) -> None:
        if result.status == "cancelled":
            with self._lock:
                self.progress.current.pop(result.name, None)
            return
        self._keep_evidence(result)
        summary = result.summary()
        self.checkpoint.record(summary)
        with self._lock:
            self.progress.bytes_done += sizes.get(result.key, 0)
        self._finished(summary, True)

    def _on_file_progress(self, name: str, fraction: float) -> None:
        with self._lock:
            if fraction < 1.0:
                self.progress.current[name] = fraction
        self.on_progress(self.progress)

    def run(self) -> dict:
        """Run the job to the end (or until cancelled); returns the report (also kept as ``self.report``)."""
        began_wall = dt.datetime.now(dt.timezone.utc)
        self.progress = JobProgress()
        self.checkpoint = Checkpoint(self.state_dir / "checkpoint.jsonl", self.fingerprint, fresh=self.fresh)
        if self.fresh:
            shutil.rmtree(self.state_dir / "evidence", ignore_errors=True)
        if self.spec.source.startswith("s3://") and self.s3 is None:
            from vision.rescan.s3 import S3Footage
            self.s3 = S3Footage.from_env()
        discovery = discover(self.spec.source, self.s3)
        tasks, bad = self._identify(discovery)
        p = self.progress
        p.files_total = len(discovery.files)
        todo = []
        for task in tasks:
            if task.file.key in self.checkpoint.finished:
                p.files_skipped += 1
                self._finished(self.checkpoint.finished[task.file.key], False)
            else:
                todo.append(task)
                p.bytes_total += task.file.size
        for summary in bad:
            self._finished(summary, False)
        self.on_progress(p)
        settings = ScanSettings(self.spec.site, self.spec.model_path, self.spec.mode, self.spec.fps, self.spec.threads)
        sizes = {t.file.key: t.file.size for t in todo}
        run_began = time.perf_counter()
        footage_before = p.footage_done_s
        if todo:
            self.executor.run(todo, settings, self._on_file_progress, lambda r: self._on_result(r, sizes), self._stop)
        elapsed = time.perf_counter() - run_began
        scanned_keys = set(self.checkpoint.finished)
        self.cancelled = self._stop.is_set() and any(t.file.key not in scanned_keys for t in todo)
        run_info = {
            "started": began_wall.isoformat(), "finished": dt.datetime.now(dt.timezone.utc).isoformat(),
            "elapsed_s": round(elapsed, 3), "files_scanned": len(todo) - sum(
                1 for t in todo if t.file.key not in scanned_keys), "files_resumed": p.files_skipped,
            "footage_scanned_s": round(p.footage_done_s - footage_before, 3),
            "x_realtime": round((p.footage_done_s - footage_before) / elapsed, 2) if elapsed > 0 and
            p.footage_done_s > footage_before else None,
            "executor": getattr(self.executor, "name", type(self.executor).__name__),
            "processes": getattr(self.executor, "processes", 1), "cancelled": self.cancelled,
        }
        self.report = build_report(self.spec, self.fingerprint, self.state_dir, discovery, self.results, run_info)
        return self.report

    @property
    def exit_code(self) -> int:
        if self.cancelled:
            return EXIT_CANCELLED
        return EXIT_PARTIAL if self.report["totals"]["files_bad"] else EXIT_OK


def post_violations(report: dict, state_dir: Path, api_url: str, api_key: str, rounds: int = 3) -> dict:
    """Create the report's violations through the API (``POST /api/v1/events``) via the durable
    outbox in ``state_dir/outbox``. Idempotent: the API answers 200 for an id it already has, so a
    second run adds nothing. Returns ``{"url", "queued", "delivered", "pending", "parked"}``."""
    from vision.outbox import Outbox, OutboxSender
    outbox = Outbox(state_dir / "outbox")
    sender = OutboxSender(outbox, api_url, api_key)
    queued = 0
    try:
        staging = state_dir / "outbox" / "staging"
        for event in report["violations"]:
            event = {k: v for k, v in event.items() if k != "file"}
            folder = state_dir / "evidence" / event["id"]
            files = {}
            if folder.is_dir():
                for path in sorted(folder.iterdir()):
                    if path.name.startswith("."):
                        continue
                    copy = staging / event["id"] / path.name
                    copy.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, copy)
                    files[path.stem] = copy
            queued += outbox.add(event, files)
            shutil.rmtree(staging / event["id"], ignore_errors=True)
        delivered = 0
        for _ in range(rounds):
            if not outbox.due(now=float("inf")):
                break
            delivered += sender.run_once(ignore_backoff=True)
        counts = outbox.counts()
    finally:
        sender.stop(drain_s=0)
        outbox.close()
    return {"url": api_url, "queued": queued, "delivered": delivered, "pending": counts.get("pending", 0),
            "parked": counts.get("rejected", 0)}
