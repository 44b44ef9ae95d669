"""Scheduling inference for many live cameras on a small server.

- :class:`MotionGate`: a cheap per-camera test (a 160×90 grey difference, ~0.1 ms) that lets a due
  frame skip the detector when the scene has not changed since the camera's last inference — yet
  re-runs the detector every ``recheck_s`` regardless, because a car standing still on a fire lane is
  exactly what must keep being confirmed.
- :class:`InferenceQueue`: bounded by construction — at most one waiting frame per camera. A newer
  frame replaces the waiting one (counted as a ``replaced`` drop) and a frame that waited longer than
  ``max_age_s`` is dropped as ``stale``; the queue never grows with the number of frames.
- :class:`SharedInference`: one thread and one detector (one onnxruntime session) for every camera
  of the worker, taking up to ``max_batch`` frames per run (``detect_batch``: one batched session
  run when the model's batch axis is dynamic, else one run per frame without thread switching),
  cameras served oldest-first so none starves.
"""
from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from vision.types import Detections, Frame

log = logging.getLogger(__name__)

GATE_SIZE = (160, 90)


class MotionGate:
    """Decides, per due frame, whether the detector must run.

    ``check(image, time_s)`` returns ``"first"`` (no inference yet), ``"motion"`` (more than
    ``changed_fraction`` of the image differs by more than ``pixel_threshold`` grey levels from the
    frame of the last inference), ``"recheck"`` (unchanged, but ``recheck_s`` have passed) or
    ``"still"`` (skip). Call :meth:`inferred` with the frame that was sent to the detector.
    """

    def __init__(self, pixel_threshold: float = 20.0, changed_fraction: float = 0.002, recheck_s: float = 10.0):
        self.pixel_threshold = pixel_threshold
        self.changed_fraction = changed_fraction
        self.recheck_s = recheck_s
        self._reference: np.ndarray | None = None
        self._reference_time_s = -np.inf
        self.last_changed_fraction = 0.0

    @staticmethod
    def _small(image: np.ndarray) -> np.ndarray:
        grey = cv2.cvtColor(cv2.resize(image, GATE_SIZE, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        return cv2.GaussianBlur(grey, (3, 3), 0)  # sensor noise is not motion

    def check(self, image: np.ndarray, time_s: float) -> str:
        if self._reference is None:
            return "first"
        changed = cv2.absdiff(self._small(image), self._reference) > self.pixel_threshold
        self.last_changed_fraction = float(np.count_nonzero(changed)) / changed.size
        if self.last_changed_fraction > self.changed_fraction:
            return "motion"
        if time_s - self._reference_time_s >= self.recheck_s:
            return "recheck"
        return "still"

    def inferred(self, image: np.ndarray, time_s: float) -> None:
        self._reference = self._small(image)
        self._reference_time_s = time_s


@dataclass
class InferenceRequest:
    """One frame waiting for the shared detector; ``on_result(frame, detections, latency_s)`` is
    called on the inference thread."""

    camera_id: str
    frame: Frame
    on_result: Callable[[Frame, Detections], None]
    queued_at: float = field(default_factory=time.monotonic)


class InferenceQueue:
    """At most one waiting request per camera, served oldest-first. Thread-safe."""

    def __init__(self, max_age_s: float = 2.0, on_drop: Callable[[str, str], None] | None = None):
        self.max_age_s = max_age_s
        self.on_drop = on_drop
        self._waiting: OrderedDict[str, InferenceRequest] = OrderedDict()
        self._cond = threading.Condition()
        self.drops = {"replaced": 0, "stale": 0}

    def __len__(self) -> int:
        with self._cond:
            return len(self._waiting)

    def _drop(self, camera_id: str, reason: str) -> None:
        self.drops[reason] += 1
        if self.on_drop is not None:
            self.on_drop(camera_id, reason)

    def put(self, request: InferenceRequest) -> bool:
        """Queue ``request``; returns False when it replaced the camera's waiting one (a drop)."""
        with self._cond:
            replaced = self._waiting.pop(request.camera_id, None) is not None
            self._waiting[request.camera_id] = request
            self._cond.notify()
        if replaced:
            self._drop(request.camera_id, "replaced")
        return not replaced

    def take(self, max_n: int, timeout_s: float) -> list[InferenceRequest]:
        """Up to ``max_n`` fresh requests, oldest first; waits up to ``timeout_s`` for the first one."""
        stale = []
        with self._cond:
            if not self._waiting:
                self._cond.wait(timeout_s)
            now = time.monotonic()
            batch = []
            while self._waiting and len(batch) < max_n:
                _, request = self._waiting.popitem(last=False)
                (stale if now - request.queued_at > self.max_age_s else batch).append(request)
        for request in stale:
            self._drop(request.camera_id, "stale")
        return batch

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class SharedInference:
    """The one detector of a worker, run on its own thread for every camera's requests.

    Args:
        detector: anything with ``detect_batch(images) -> list[Detections]`` (``OnnxDetector``).
        max_batch: frames per run.
        max_age_s: a request older than this when its turn comes is dropped as stale.
        on_drop: called with ``(camera_id, reason)`` for every dropped request.
        on_batch: called with ``(batch_size, seconds)`` after every run (metrics).
    """

    def __init__(self, detector, max_batch: int = 8, max_age_s: float = 2.0,
                 on_drop: Callable[[str, str], None] | None = None,
                 on_batch: Callable[[int, float], None] | None = None):
        self.detector = detector
        self.max_batch = max_batch
        self.queue = InferenceQueue(max_age_s, on_drop)
        self.on_batch = on_batch
        self.runs = 0
        self.frames = 0
        self.busy_s = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def submit(self, request: InferenceRequest) -> bool:
        """Queue a frame; False when it replaced an older waiting frame of the same camera."""
        return self.queue.put(request)

    def run_once(self, timeout_s: float = 0.2) -> int:
        """Take one batch and run it; returns how many frames were inferred."""
        batch = self.queue.take(self.max_batch, timeout_s)
        if not batch:
            return 0
        started = time.perf_counter()
        try:
            results = self.detector.detect_batch([r.frame.image for r in batch])
        except Exception:  # one bad frame must not stop inference for every camera
            log.exception("shared inference failed for %s", [r.camera_id for r in batch])
            return 0
        elapsed = time.perf_counter() - started
        self.runs += 1
        self.frames += len(batch)
        self.busy_s += elapsed
        if self.on_batch is not None:
            self.on_batch(len(batch), elapsed)
        for request, detections in zip(batch, results):
            try:
                request.on_result(request.frame, detections)
            except Exception:
                log.exception("camera %s: handling detections failed", request.camera_id)
        return len(batch)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()

    def start(self) -> "SharedInference":
        self._thread = threading.Thread(target=self._loop, name="shared-inference", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self.queue.wake()
        if self._thread is not None:
            self._thread.join(timeout_s)


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0 ≤ i < n) → ``(i, n)``; raises ValueError with the reason."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"expected a shard as i/n, e.g. 0/3, got {text!r}") from None
    if not 0 <= index < count:
        raise ValueError(f"shard {text!r}: need 0 <= i < n")
    return index, count


def camera_shard(camera_id: str, count: int) -> int:
    """The shard a camera belongs to: a stable hash of its id (the same on every machine and run), so
    that ``n`` workers started with ``--shard 0/n`` … ``--shard n-1/n`` split the cameras without
    talking to each other."""
    return zlib.crc32(camera_id.encode()) % count


def shard_site(site, index: int, count: int):
    """The site with only the cameras of shard ``index`` of ``count`` (compounds left without a
    camera are kept, empty)."""
    compounds = tuple(c.model_copy(update={"cameras": tuple(cam for cam in c.cameras
                                                            if camera_shard(cam.id, count) == index)})
                      for c in site.compounds)
    return site.model_copy(update={"compounds": compounds})
