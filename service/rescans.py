"""Re-scans started through the API (issue 10): check the source, queue the job, run it in the API
process, keep its progress in the ``rescan_jobs`` row and on the live feed, store what it finds as
events, cancel it, and take over a job whose API process died.

The scanning itself is :class:`vision.rescan.RescanJob` (the same code as ``compoundeye rescan``):
the service gives it the S3 prefix, its site file (only the job's compound) and model, and the
configured executor. One :class:`RescanRunner` thread per API process takes the oldest queued job
(the table is the queue: a conditional ``UPDATE … WHERE status = 'queued'`` claims it, so several API
processes never run the same job), runs it, and about once a second writes its progress and a
heartbeat to the row, publishes it on the feed and reads the row's ``cancel_requested`` (a cancel sent
to another API process reaches it that way; one sent to this process stops the job at once).

Violations are stored as each file finishes, through the event-ingest path of ``POST /events``
(:func:`service.ingest.check_uploads` / :func:`~service.ingest.store_event`) with the evidence the job
kept: a violation already stored (an earlier run, the live worker) is left as it is, so a second run
adds nothing. A new one is published on the alert feed like a posted one.

A running job whose heartbeat stops (its process died; or, on this host, its process is gone) is
queued again and resumed from its checkpoint: files already finished are not scanned again. A job
stopped by an orderly shutdown is queued again the same way.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import secrets
import socket
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select, update
from starlette.requests import Request

from service.ingest import check_uploads, store_event
from service.models import RescanJob, utcnow
from service.routers.common import violation_public
from service.routers.feed import publish_rescan, publish_violation
from service.schemas import ViolationCreate

log = logging.getLogger(__name__)

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
EVIDENCE_KINDS = ("snapshot", "clip", "sidecar", "crop")


class SourceRefused(ValueError):
    """A re-scan source that is not an ``s3://bucket/prefix`` of the service's S3 server."""


def parse_s3_source(source: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` → ``(bucket, prefix)``, the prefix without a trailing slash.

    Only an S3 prefix is taken (the API must not read the server's own files): a local path, another
    scheme, a host or port instead of a bucket, ``.``/``..`` or empty path segments, backslashes and
    control characters raise :class:`SourceRefused` with the reason."""
    if not source.startswith("s3://"):
        raise SourceRefused(f"source must be s3://bucket/prefix on the service's S3 server, got {source!r}")
    if any(ord(ch) < 32 or ch in "\\\x7f" for ch in source):
        raise SourceRefused("source contains a backslash or a control character")
    bucket, _, prefix = source[len("s3://"):].partition("/")
    if not BUCKET_NAME.match(bucket) or ".." in bucket:
        raise SourceRefused(f"{bucket!r} is not an S3 bucket name (3-63 of a-z 0-9 . -)")
    prefix = prefix[:-1] if prefix.endswith("/") else prefix
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise SourceRefused(f"prefix {prefix!r} has an empty, '.' or '..' segment")
    return bucket, prefix


class RescanPublic(BaseModel):
    """A re-scan job as the API and the feed show it (the report is ``GET …/report``)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    compound_id: str
    source: str
    mode: str
    fps: float | None
    status: str
    created_by: str
    created_by_name: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    cancel_requested: bool
    files_total: int
    files_done: int
    files_bad: int
    files_skipped: int
    footage_done_s: float
    violations_found: int
    violations_new: int
    violations_unstored: int
    current_file: str | None
    current_fraction: float | None
    x_realtime: float | None
    eta_s: float | None
    model: str | None
    error: str | None


def rescan_public(row: RescanJob) -> dict:
    return RescanPublic.model_validate(row).model_dump(mode="json")


def _system_request(app) -> Request:
    """A request scope for building the public view of a violation outside a request (URLs under this app)."""
    return Request({"type": "http", "app": app, "root_path": "", "headers": [], "method": "GET", "path": "/"})


def store_found_violation(app, event: dict, evidence_dir: Path) -> bool:
    """Store one violation a job found, with the evidence it kept in ``evidence_dir``, through the
    event-ingest path of ``POST /events``. True when it is new (then it is published on the alert
    feed), False when its id was stored before. Raises ``InvalidEvent``, ``UploadTooLarge``,
    ``StorageError`` like ``POST /events``."""
    violation_in = ViolationCreate.model_validate({k: v for k, v in event.items() if k != "file"})
    files = {}
    try:
        for kind in EVIDENCE_KINDS:
            path = next(iter(sorted(evidence_dir.glob(f"{kind}.*"))), None) if evidence_dir.is_dir() else None
            files[kind] = open(path, "rb") if path is not None else None
        uploads = check_uploads(violation_in, files, app.state.settings.max_upload_bytes)
        with app.state.sessions() as session:
            violation, created = store_event(session, app.state.store, violation_in, uploads)
            if created:
                request = _system_request(app)
                publish_violation(request, violation_public(violation, request))
        return created
    finally:
        for file in files.values():
            if file is not None:
                file.close()


def s3_footage(settings):
    """The footage reader on the service's S3 server (the evidence store's endpoint and keys)."""
    from vision.rescan.s3 import S3Footage
    return S3Footage(settings.s3_endpoint, settings.s3_access_key, settings.s3_secret_key.get_secret_value(),
                     settings.s3_secure)


def _pid_gone(runner: str | None) -> bool:
    """True when ``runner`` (``host:pid:token``) names a process of this host that no longer exists."""
    try:
        host, pid, _ = (runner or "").rsplit(":", 2)
        if host != socket.gethostname():
            return False
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError, OverflowError):
        return False
    return False


class _Posting:
    """Counts of what a job stored as events (updated from the job's thread)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.new = self.unstored = 0
        self.last_error: str | None = None


class RescanRunner:
    """Runs the queued re-scan jobs of one API process, one at a time (see the module docstring)."""

    poll_s = 2.0   # how often an idle runner looks for queued or orphaned jobs
    flush_s = 1.0  # how often a running job's progress is written and published

    def __init__(self, app):
        self.app = app
        self.runner_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._wake = threading.Event()
        self._tick = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._current: tuple[int, object] | None = None
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="rescan-runner", daemon=True)
                self._thread.start()

    def wake(self) -> None:
        """Look for queued jobs now (called after a job is created)."""
        self._wake.set()

    def cancel(self, rescan_id: int) -> bool:
        """Stop the job now if this process runs it; True if it does."""
        with self._lock:
            if self._current is not None and self._current[0] == rescan_id:
                self._current[1].cancel()
                return True
        return False

    def close(self, timeout_s: float = 60.0) -> None:
        """Stop: the running job is stopped and queued again (resumed by the next start)."""
        self._closing.set()
        self._wake.set()
        with self._lock:
            if self._current is not None:
                self._current[1].cancel()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)

    # -- the loop --------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._closing.is_set():
            claimed = None
            try:
                self._take_over_orphans()
                claimed = self._claim()
            except Exception:  # the database is away: try again later
                log.exception("re-scan runner: cannot read the job queue")
            if claimed is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            try:
                self._run(claimed)
            except Exception:
                log.exception("re-scan job %s: the runner failed", claimed)

    def _take_over_orphans(self) -> None:
        """Queue again (to resume) the running jobs whose process stopped updating them."""
        stale_before = utcnow() - dt.timedelta(seconds=self.app.state.settings.rescan_stale_after_s)
        with self.app.state.sessions() as session:
            rows = session.scalars(select(RescanJob).where(RescanJob.status == "running",
                                                           RescanJob.runner != self.runner_id)).all()
            for row in rows:
                stale = row.heartbeat_at is None or row.heartbeat_at < stale_before
                if not (stale or _pid_gone(row.runner)):
                    continue
                session.execute(update(RescanJob).where(RescanJob.id == row.id, RescanJob.status == "running",
                                                        RescanJob.runner == row.runner)
                                .values(status="queued", runner=None, fresh=False, current_file=None,
                                        current_fraction=None,
                                        error="interrupted (its API process stopped); resumed from its checkpoint"))
                log.warning("re-scan job %s of %s was interrupted; it resumes from its checkpoint", row.id, row.runner)
            session.commit()

    def _claim(self) -> int | None:
        with self.app.state.sessions() as session:
            while True:
                rescan_id = session.scalar(select(RescanJob.id).where(RescanJob.status == "queued")
                                           .order_by(RescanJob.id).limit(1))
                if rescan_id is None:
                    return None
                now = utcnow()
                claimed = session.execute(
                    update(RescanJob).where(RescanJob.id == rescan_id, RescanJob.status == "queued")
                    .values(status="running", runner=self.runner_id, started_at=now, heartbeat_at=now)).rowcount
                session.commit()
                if claimed == 1:
                    return rescan_id

    def _prepare(self, row: RescanJob):
        """The job's spec, S3 reader and executor from the service settings and site file."""
        from vision.config import resolve_path
        from vision.rescan import JobSpec
        from vision.rescan.executors import make_executor
        settings, site = self.app.state.settings, self.app.state.site
        if site is None or settings.site_config is None:
            raise RuntimeError("the service has no site file (COMPOUNDEYE_SITE_CONFIG)")
        compound = next((c for c in site.compounds if c.id == row.compound_id), None)
        if compound is None:
            raise RuntimeError(f"compound {row.compound_id!r} is not in the site file {settings.site_config}")
        # only the job's compound: its cameras are the only ones the job may report on
        site_of_job = site.model_copy(update={"compounds": (compound,)})
        site_sha256 = hashlib.sha256(Path(settings.site_config).read_bytes() + b"\0" + compound.id.encode()).hexdigest()
        model_path = str(resolve_path(Path(settings.site_config), site.detector.model))
        processes = settings.rescan_processes
        threads = max(1, site.detector.threads // processes) if settings.rescan_executor == "local" else 1
        spec = JobSpec(row.source, site_of_job, site_sha256, model_path, row.mode, row.fps, threads=threads)
        executor = make_executor(settings.rescan_executor, processes, settings.rescan_scheduler)
        return spec, executor

    def _run(self, rescan_id: int) -> None:
        from vision.rescan import RescanJob as ScanJob
        app, settings = self.app, self.app.state.settings
        with app.state.sessions() as session:
            row = session.get(RescanJob, rescan_id)
        try:
            spec, executor = self._prepare(row)
        except Exception as exc:
            self._finish(rescan_id, None, "failed", f"cannot start: {exc}", None, _Posting())
            return
        posting = _Posting()

        def on_file(summary: dict) -> None:
            folder_root = job.state_dir / "evidence"
            for event in summary.get("violations") or []:
                try:
                    created = store_found_violation(app, event, folder_root / event["id"])
                except Exception as exc:  # kept in the report and the checkpoint: a re-run stores it
                    log.warning("re-scan job %s: violation %s not stored: %s", rescan_id, event.get("id"), exc)
                    with posting.lock:
                        posting.unstored += 1
                        posting.last_error = f"{event.get('id')}: {exc}"
                    continue
                if created:
                    with posting.lock:
                        posting.new += 1
            self._tick.set()

        job = ScanJob(spec, executor, state_root=Path(settings.rescan_state_dir), fresh=row.fresh,
                      s3=s3_footage(settings), on_file=on_file)
        with app.state.sessions() as session:
            session.execute(update(RescanJob).where(RescanJob.id == rescan_id)
                            .values(model=spec.model_path, site_sha256=spec.site_sha256, state_dir=str(job.state_dir)))
            session.commit()
        with self._lock:
            self._current = (rescan_id, job)
        if row.cancel_requested or self._closing.is_set():
            job.cancel()
        outcome: dict = {}

        def work() -> None:
            try:
                outcome["report"] = job.run()
            except BaseException as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=work, name=f"rescan-job-{rescan_id}", daemon=True)
        thread.start()
        try:
            replay = True  # the first message (running) is kept for reconnecting feeds
            while True:
                try:
                    if self._write_progress(rescan_id, job, posting, replay=replay):
                        job.cancel()
                except Exception:  # the database is away for a moment: the job goes on, the next tick retries
                    log.exception("re-scan job %s: cannot write its progress", rescan_id)
                replay = False
                if not thread.is_alive():
                    break
                self._tick.wait(self.flush_s)  # set when a file finishes: publish that at once
                self._tick.clear()
            thread.join()
        finally:
            with self._lock:
                self._current = None
        error = outcome.get("error")
        report = outcome.get("report")
        if error is not None:
            self._finish(rescan_id, job, "failed", str(error) or type(error).__name__, None, posting)
        elif job.cancelled and self._closing.is_set():
            self._finish(rescan_id, job, "queued", "interrupted by a shutdown; resumes from its checkpoint", report,
                         posting)
        elif job.cancelled:
            self._finish(rescan_id, job, "cancelled", None, report, posting)
        elif posting.unstored:
            self._finish(rescan_id, job, "partial", f"{posting.unstored} violation(s) not stored (last: "
                         f"{posting.last_error}); start the same job again to store them", report, posting)
        else:
            self._finish(rescan_id, job, "partial" if report["totals"]["files_bad"] else "done", None, report,
                         posting)

    def _progress_values(self, job, posting: _Posting) -> dict:
        with job._lock:  # the job's counters change under its lock
            p = job.progress
            values = {"files_total": p.files_total, "files_done": p.files_done, "files_bad": p.files_bad,
                      "files_skipped": p.files_skipped, "footage_done_s": round(p.footage_done_s, 3),
                      "violations_found": p.violations, "x_realtime": round(p.x_realtime, 2) if p.x_realtime else None,
                      "eta_s": round(p.eta_s, 1) if p.eta_s is not None else None}
            current = min(p.current.items(), key=lambda item: item[0]) if p.current else None
        values["current_file"] = current[0] if current else None
        values["current_fraction"] = round(current[1], 3) if current else None
        with posting.lock:
            values["violations_new"], values["violations_unstored"] = posting.new, posting.unstored
        return values

    def _write_progress(self, rescan_id: int, job, posting: _Posting, replay: bool) -> bool:
        """Write the job's progress and heartbeat, publish it; returns whether a cancel was asked for."""
        values = self._progress_values(job, posting)
        with self.app.state.sessions() as session:
            row = session.get(RescanJob, rescan_id)
            for name, value in values.items():
                setattr(row, name, value)
            row.heartbeat_at = utcnow()
            session.commit()
            public, cancel = rescan_public(row), row.cancel_requested
        publish_rescan(self.app, public, replay=replay)
        return cancel

    def _finish(self, rescan_id: int, job, status: str, error: str | None, report: dict | None,
                posting: _Posting) -> None:
        values = self._progress_values(job, posting) if job is not None else {}
        with self.app.state.sessions() as session:
            row = session.get(RescanJob, rescan_id)
            for name, value in values.items():
                setattr(row, name, value)
            row.status = status
            if error is not None or not (row.error or "").startswith("interrupted"):
                row.error = error  # a resumed job that ends well keeps the note that it was interrupted
            row.current_file = row.current_fraction = row.eta_s = None
            if status == "queued":
                row.runner, row.started_at, row.fresh = None, None, False
            else:
                row.finished_at = utcnow()
            if report is not None and status != "queued":
                row.x_realtime = report["run"]["x_realtime"]
                row.report = {**report, "stored": {"new": posting.new, "unstored": posting.unstored,
                                                   "last_error": posting.last_error}}
            session.commit()
            public = rescan_public(row)
        publish_rescan(self.app, public, replay=True)
        log.info("re-scan job %s: %s", rescan_id, status)


def rescan_runner(app) -> RescanRunner:
    """The app's runner (made on first use; started by the rescans router's lifespan or the first job)."""
    runner = getattr(app.state, "rescan_runner", None)
    if runner is None:
        runner = app.state.rescan_runner = RescanRunner(app)
    return runner
