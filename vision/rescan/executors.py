"""Where files are scanned: in this process, in a local process pool, or on a Dask cluster.

Each executor runs :func:`vision.rescan.scan.scan_file` on every task and hands back each
:class:`FileResult` as it completes, with per-file progress and cancellation; the results do not
depend on the executor (each file is scanned whole by one worker with the same code and settings).

Dask: ``DaskExecutor(scheduler="tcp://host:8786")`` uses a running cluster (deployed with
dask-kubernetes, dask-jobqueue or ``dask scheduler``/``dask worker``); without a scheduler it starts a
``LocalCluster`` on 127.0.0.1 with ``processes`` single-threaded workers. Progress travels as
worker events (``log_event`` → ``subscribe_topic``), cancellation as a ``distributed.Event``.
"""
from __future__ import annotations

import logging
import multiprocessing
import queue
import secrets
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable

from vision.rescan.scan import FileResult, FileTask, ScanSettings, scan_file

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, float], None]
ResultFn = Callable[[FileResult], None]


class LocalExecutor:
    """``processes=1``: scan in this process, one file after another. More: a pool of that many
    processes (spawned, so onnxruntime and FFmpeg state are never forked)."""

    name = "local"

    def __init__(self, processes: int = 1):
        if processes < 1:
            raise ValueError("processes must be at least 1")
        self.processes = processes

    def run(self, tasks: list[FileTask], settings: ScanSettings, on_progress: ProgressFn, on_result: ResultFn,
            stop: threading.Event) -> None:
        if self.processes == 1:
            for task in tasks:
                if stop.is_set():
                    return
                on_result(scan_file(task, settings, on_progress, stop.is_set))
            return
        ctx = multiprocessing.get_context("spawn")
        with ctx.Manager() as manager:
            progress_q, remote_stop = manager.Queue(), manager.Event()
            drain = _QueueDrain(progress_q, on_progress)
            drain.start()
            try:
                with ProcessPoolExecutor(max_workers=self.processes, mp_context=ctx) as pool:
                    pending = {pool.submit(_pool_scan, task, settings, progress_q, remote_stop) for task in tasks}
                    while pending:
                        done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                        for future in done:
                            if not future.cancelled():
                                on_result(future.result())
                        if stop.is_set() and not remote_stop.is_set():
                            remote_stop.set()
                            for future in pending:
                                future.cancel()
            finally:
                drain.stop()


class _QueueDrain(threading.Thread):
    def __init__(self, q, on_progress: ProgressFn):
        super().__init__(daemon=True, name="rescan-progress")
        self.q, self.on_progress, self._stop_flag = q, on_progress, threading.Event()

    def run(self) -> None:
        while not self._stop_flag.is_set():
            try:
                name, fraction = self.q.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                return
            self.on_progress(name, fraction)

    def stop(self) -> None:
        self._stop_flag.set()
        self.join(timeout=2)


class _RemoteStop:
    """``should_stop()`` for a worker: asks the shared flag at most once a second."""

    def __init__(self, flag_is_set: Callable[[], bool]):
        self.flag_is_set, self.last, self.value = flag_is_set, 0.0, False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.value and now - self.last >= 1.0:
            self.last = now
            try:
                self.value = bool(self.flag_is_set())
            except Exception:  # the job's side went away: keep scanning, the result is just dropped
                return False
        return self.value


def _pool_scan(task: FileTask, settings: ScanSettings, progress_q, remote_stop) -> FileResult:
    return scan_file(task, settings, lambda name, fraction: progress_q.put((name, fraction)),
                     _RemoteStop(remote_stop.is_set))


def _dask_scan(task: FileTask, settings: ScanSettings, topic: str, stop_event: str) -> FileResult:
    from distributed import Event, get_worker
    worker = get_worker()
    stop = Event(stop_event)
    return scan_file(task, settings, lambda name, fraction: worker.log_event(topic, {"name": name, "fraction": fraction}),
                     _RemoteStop(stop.is_set))


class DaskExecutor:
    """Spread files over a Dask distributed cluster (``scheduler`` address), or over a LocalCluster
    on 127.0.0.1 with ``processes`` workers when no address is given."""

    name = "dask"

    def __init__(self, scheduler: str | None = None, processes: int = 2):
        self.scheduler = scheduler
        self.processes = processes

    def _client(self):
        from distributed import Client, LocalCluster
        if self.scheduler:
            return Client(self.scheduler, timeout="30s"), None
        cluster = LocalCluster(n_workers=self.processes, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None, silence_logs=logging.WARNING)
        return Client(cluster), cluster

    def run(self, tasks: list[FileTask], settings: ScanSettings, on_progress: ProgressFn, on_result: ResultFn,
            stop: threading.Event) -> None:
        from distributed import Event, as_completed
        client, cluster = self._client()
        job = secrets.token_hex(6)
        topic, stop_name = f"compoundeye-rescan-{job}", f"compoundeye-rescan-stop-{job}"
        try:
            client.subscribe_topic(topic, lambda event: on_progress(event[1]["name"], event[1]["fraction"]))
            remote_stop = Event(stop_name, client=client)
            remote_stop.clear()
            settings_future = client.scatter(settings, broadcast=True)
            futures = [client.submit(_dask_scan, task, settings_future, topic, stop_name, pure=False, retries=1,
                                     key=f"rescan-{job}-{i}") for i, task in enumerate(tasks)]
            completed = as_completed(futures)
            watcher = threading.Thread(target=self._watch_stop, args=(stop, remote_stop, futures, client), daemon=True)
            watcher.start()
            for future in completed:
                if future.cancelled() or future.status == "cancelled":
                    continue
                on_result(future.result())
        finally:
            try:
                client.unsubscribe_topic(topic)
            except Exception:
                pass
            client.close()
            if cluster is not None:
                cluster.close()

    @staticmethod
    def _watch_stop(stop: threading.Event, remote_stop, futures, client) -> None:
        while not all(f.done() for f in futures):
            if stop.wait(0.5):
                remote_stop.set()
                client.cancel([f for f in futures if f.status == "pending"])
                return


def make_executor(name: str, processes: int = 1, scheduler: str | None = None):
    """``"local"`` or ``"dask"``."""
    if name == "local":
        return LocalExecutor(processes)
    if name == "dask":
        return DaskExecutor(scheduler, processes)
    raise ValueError(f"executor must be local or dask, got {name!r}")
