"""Live stream cameras of a worker: one decoding thread per camera, one shared detector for all.

Per camera (:class:`StreamCamera`), on its own thread::

    RtspSource (reconnects) ─► frame at sample_fps ─► clip ring (packets) ─► health (≤ 1/s)
        ─► due for detection? ─► MotionGate: still → reuse the last detections (the scene is unchanged)
                                             motion / recheck → InferenceQueue ─► SharedInference
        ◄─ detections ─ Tracker ─► Rules ─► violation started → MQTT now, API after the clip's post-roll

Decoding threads spend their time inside FFmpeg (which releases the GIL); the detector runs on one
thread, so the number of cameras never multiplies onnxruntime's thread pools. What the camera
thread does per frame is bounded, so a slow detector shows up as dropped frames (metrics), never as a
growing queue or a stream that falls behind.

:class:`LiveCameras` owns the shared parts (inference, metrics, health delivery, MQTT) and the threads.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Callable

import httpx

from vision.config import Camera, Compound, _expand_env
from vision.health import CameraHealth, HealthEvent, HealthThresholds
from vision.metrics import WorkerMetrics
from vision.rtsp import Backoff, RtspSource, StreamStatus, mask_text
from vision.scheduler import InferenceRequest, MotionGate, SharedInference
from vision.types import Detections, Frame
from vision.worker import CameraPipeline

if TYPE_CHECKING:
    from vision.worker import Worker

log = logging.getLogger(__name__)


class LivePipeline(CameraPipeline):
    """``CameraPipeline`` split in two halves, so that a shared detector can sit between them:
    :meth:`push` (the frame into the clip ring, on the camera thread) and :meth:`apply` (detections
    through the tracker and rules, whenever the shared detector answers). ``on_rule_event(event,
    frame)`` is told of every violation start and end (MQTT, latency metrics)."""

    on_rule_event: Callable | None = None

    def push(self, frame: Frame) -> list:
        """Returns the ``(event, files)`` pairs whose clips are complete."""
        self.frames_seen += 1
        self.last_frame, self.last_frame_wall_s = frame, time.time()  # for re-inspections
        ready = []
        for violation_id, clip in self.recorder.push(frame):
            ready.extend(self._finish(violation_id, clip))
        return ready

    def due_for_detection(self, frame: Frame) -> bool:
        return self._due_for_detection(frame)

    def apply(self, frame: Frame, detections: Detections) -> None:
        self.inferences += 1
        tracks = self.tracker.update(detections, frame.time_s)
        self.last_tracks = tracks
        for rule in self.rules:
            for event in rule.update(frame.time_s, tracks, (frame.width, frame.height), frame.image):
                self._on_rule_event(event, frame)

    def _on_rule_event(self, event, frame: Frame) -> None:
        super()._on_rule_event(event, frame)
        if self.on_rule_event is not None:
            self.on_rule_event(event, frame)


def apply_worker_options(site, shard: str | None = None, metrics_port: int | None = None):
    """The site as the ``worker`` command's ``--shard i/n`` and ``--metrics-port`` change it."""
    from vision.scheduler import parse_shard, shard_site
    if shard:
        index, count = parse_shard(shard)
        site = shard_site(site, index, count)
        log.info("shard %d/%d: cameras %s", index, count, [cam.id for _, cam in site.cameras()])
    if metrics_port:
        site = site.model_copy(update={"live": site.live.model_copy(update={"metrics_port": metrics_port})})
    return site


def worker_name() -> str:
    """``host-pid-random``: names this worker in MQTT, leases and logs (unique even for two workers
    in one process)."""
    import os
    import secrets
    import socket
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def thresholds(config) -> HealthThresholds:
    """``HealthThresholds`` from the site's ``live.health`` section."""
    return HealthThresholds(offline_after_s=config.offline_after_s, frozen_after_s=config.frozen_after_s,
                            covered_after_s=config.covered_after_s, focus_after_s=config.focus_after_s,
                            moved_after_s=config.moved_after_s, clear_after_s=config.clear_after_s,
                            focus_ratio=config.focus_ratio, view_min_match=config.view_min_match)


class HealthSender:
    """Delivers health events to ``POST {api}/api/v1/camera-health`` on a thread, retrying with back-off.
    Memory is bounded: beyond ``max_pending`` the oldest undelivered events are dropped (the newest
    state of a camera matters most)."""

    def __init__(self, api_url: str, api_key: str, max_pending: int = 10_000, timeout_s: float = 10.0):
        self.url = api_url.rstrip("/") + "/api/v1/camera-health"
        self.api_key = api_key
        self.pending: deque[HealthEvent] = deque(maxlen=max_pending)
        self.delivered = 0
        self._client = httpx.Client(timeout=timeout_s)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="health-sender", daemon=True)

    def start(self) -> "HealthSender":
        self._thread.start()
        return self

    def add(self, event: HealthEvent) -> None:
        self.pending.append(event)
        self._wake.set()

    def send_pending(self) -> bool:
        """Try every pending event in order; True when all were delivered."""
        while self.pending:
            event = self.pending[0]
            try:
                resp = self._client.post(self.url, json=event.to_json(), headers={"X-API-Key": self.api_key})
            except httpx.HTTPError as exc:
                log.debug("health event %s not delivered: %s", event.id, exc)
                return False
            if resp.status_code in (200, 201):
                self.delivered += 1
            elif resp.status_code < 500:
                log.error("health event %s refused: HTTP %s %s", event.id, resp.status_code, resp.text[:300])
            else:
                return False
            self.pending.popleft()
        return True

    def _loop(self) -> None:
        backoff = Backoff(0.5, 30.0)
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            if self.pending and not self.send_pending():
                self._stop.wait(backoff.next_delay())
            else:
                backoff.reset()

    def stop(self, drain_s: float = 3.0) -> None:
        deadline = time.monotonic() + drain_s
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(10)
        while self.pending and time.monotonic() < deadline and self.send_pending() is False:
            time.sleep(0.2)
        self._client.close()


class StreamCamera:
    """One live camera: its stream(s), pipeline, health and motion gate (see the module docstring)."""

    def __init__(self, live: "LiveCameras", compound: Compound, camera: Camera):
        self.live, self.compound, self.camera = live, compound, camera
        worker = live.worker
        cfg = worker.site.live
        self.pipeline = LivePipeline(worker.site, compound, camera, worker.detector, worker.work_dir)
        self.pipeline.on_rule_event = self._on_rule_event
        worker.pipelines[camera.id] = self.pipeline
        self.health = CameraHealth(compound.id, camera.id, thresholds(cfg.health))
        self.gate = (MotionGate(cfg.motion.pixel_threshold, cfg.motion.changed_fraction, cfg.motion.recheck_s)
                     if cfg.motion.enabled else None)
        self._lock = threading.Lock()  # pipeline and health: camera thread vs inference and ticker threads
        self.in_flight = 0
        self.last_detections: Detections | None = None
        self.last_applied_s = float("-inf")
        self._last_health_s = float("-inf")
        self._decoded_seen = 0
        m = live.metrics
        self._m_decoded = m.frames_decoded.labels(camera.id)
        self._m_sampled = m.frames_sampled.labels(camera.id)
        self._m_inferences = m.inferences.labels(camera.id)
        self._m_skipped = m.motion_skipped.labels(camera.id)
        m.camera_online.labels(camera.id).set(0)
        for kind in ("offline", "frozen", "covered", "out_of_focus", "view_moved"):
            m.camera_health.labels(camera.id, kind).set(0)
        has_main = bool(camera.main_source)
        timeouts = dict(open_timeout_s=cfg.open_timeout_s, read_timeout_s=cfg.read_timeout_s)
        self.source = RtspSource(_expand_env(camera.source), camera.id, sample_fps=camera.sample_fps,
                                 backoff=Backoff(0.5, cfg.reconnect_max_s), on_status=self._on_status,
                                 packet_sink=None if has_main else self.pipeline.recorder.push_packet,
                                 keyframes_only=camera.keyframes_only, **timeouts)
        # the main stream is only demuxed: its packets become the evidence clips, nothing is decoded
        self.main_source = (RtspSource(_expand_env(camera.main_source), camera.id, decode=False,
                                       backoff=Backoff(0.5, cfg.reconnect_max_s),
                                       packet_sink=self.pipeline.recorder.push_packet, **timeouts)
                            if has_main else None)
        self.threads: list[threading.Thread] = []

    # -- threads ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.threads.append(threading.Thread(target=self._run, name=f"camera-{self.camera.id}", daemon=True))
        if self.main_source is not None:
            self.threads.append(threading.Thread(target=self._drain_main, name=f"camera-{self.camera.id}-main",
                                                 daemon=True))
        for t in self.threads:
            t.start()

    def close(self) -> None:
        self.source.close()
        if self.main_source is not None:
            self.main_source.close()

    def _drain_main(self) -> None:
        for _ in self.main_source:  # decode=False yields nothing; returns when closed
            pass

    def _run(self) -> None:
        try:
            for frame in self.source:
                self._on_frame(frame)
        except Exception as exc:  # a bug here must not take the worker down; the camera is reported
            self.live.worker.camera_errors[self.camera.id] = f"{type(exc).__name__}: {mask_text(str(exc))}"
            log.exception("camera %s: stopped by an error", self.camera.id)

    # -- per frame -------------------------------------------------------------------------------
    def _on_frame(self, frame: Frame) -> None:
        decoded = self.source.frames_decoded
        self._m_decoded.inc(decoded - self._decoded_seen)
        self._decoded_seen = decoded
        self._m_sampled.inc()
        live, worker = self.live, self.live.worker
        with self._lock:
            ready = self.pipeline.push(frame)
            if frame.time_s - self._last_health_s >= worker.site.live.health.check_interval_s:
                self._last_health_s = frame.time_s
                health_events = self.health.observe(frame.image, frame.time_s, time.time())
            else:
                health_events = []
            due = self.pipeline.due_for_detection(frame)
        for event, files in ready:
            worker.outbox.add(event, files)
        for event in health_events:
            live.emit_health(event)
        if worker.on_frame is not None:
            worker.on_frame(self.camera.id, frame, self.pipeline.last_tracks)
        if not due:
            return
        if self.gate is not None:
            decision = self.gate.check(frame.image, frame.time_s)
            if decision == "still":
                self._m_skipped.inc()
                with self._lock:
                    # unchanged scene: the last detections still hold, so dwell times keep counting
                    if self.in_flight == 0 and self.last_detections is not None and frame.time_s > self.last_applied_s:
                        self.pipeline.apply(frame, self.last_detections)
                        self.last_applied_s = frame.time_s
                return
            self.gate.inferred(frame.image, frame.time_s)
        with self._lock:
            self.in_flight += 1
        live.inference.submit(InferenceRequest(self.camera.id, frame, self._on_detections))

    def _on_detections(self, frame: Frame, detections: Detections) -> None:
        """On the inference thread."""
        self._m_inferences.inc()
        latency = time.time() - frame.time_s
        self.live.metrics.inference_latency.observe(max(0.0, latency))
        self.live.latency_samples.append(latency)
        with self._lock:
            self.in_flight -= 1
            if frame.time_s > self.last_applied_s:
                self.pipeline.apply(frame, detections)
                self.last_applied_s = frame.time_s
                self.last_detections = detections

    def on_dropped(self) -> None:
        with self._lock:
            self.in_flight = max(0, self.in_flight - 1)

    def _on_rule_event(self, event, frame: Frame) -> None:
        """A violation started or ended (on whichever thread applied the detections)."""
        v = event.violation
        latency = max(0.0, time.time() - frame.time_s)
        self.live.metrics.event_latency.labels("violation").observe(latency)
        if self.live.mqtt is not None:
            self.live.mqtt.publish_violation(v.compound_id, v.camera_id, v.rule, {
                "id": v.id, "state": event.kind, "rule": v.rule, "compound_id": v.compound_id,
                "camera_id": v.camera_id, "zone_id": v.zone, "start_time_s": v.start_time_s,
                "last_seen_time_s": v.last_seen_time_s, "end_time_s": v.end_time_s,
                "confidence": round(float(v.confidence), 4), "model_version": v.model_version,
                "frame_time_s": frame.time_s})

    # -- connection and liveness -----------------------------------------------------------------
    def _on_status(self, status: StreamStatus) -> None:
        m = self.live.metrics
        m.camera_online.labels(self.camera.id).set(1 if status.online else 0)
        worker = self.live.worker
        if status.online:
            worker.camera_errors.pop(self.camera.id, None)
            if self.source.connects > 1:
                m.reconnects.labels(self.camera.id).inc()
            return
        worker.camera_errors[self.camera.id] = status.reason or "stream offline"
        with self._lock:
            events = self.health.connection(False, status.time_s, status.reason)
        for event in events:
            self.live.emit_health(event)

    def tick(self, now_s: float) -> None:
        with self._lock:
            events = self.health.tick(now_s)
        for event in events:
            self.live.emit_health(event)


class LiveCameras:
    """The stream cameras of one worker and what they share."""

    def __init__(self, worker: "Worker", metrics: WorkerMetrics, mqtt=None, health_sender: HealthSender | None = None,
                 on_health: Callable[[HealthEvent], None] | None = None):
        cfg = worker.site.live
        self.worker = worker
        self.metrics = metrics
        self.mqtt = mqtt
        self.health_sender = health_sender
        self.on_health = on_health
        self.health_events: deque[HealthEvent] = deque(maxlen=1000)  # recent, for inspection
        self.latency_samples: deque[float] = deque(maxlen=200_000)  # frame time → detections (bench)
        self.cameras: dict[str, StreamCamera] = {}  # running
        self.candidates: dict[str, tuple[Compound, Camera]] = {}  # every stream camera of this worker's site
        self.leases = LeaseKeeper(self, worker.sender.url.removesuffix("/api/v1/events"), worker.sender.api_key,
                                  cfg.lease_ttl_s) if cfg.leases else None
        self._cameras_lock = threading.Lock()
        self.inference = SharedInference(worker.detector, max_batch=cfg.max_batch, max_age_s=cfg.max_frame_age_s,
                                         on_drop=self._on_drop, on_batch=self._on_batch)
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name="camera-health-ticker", daemon=True)

    @classmethod
    def for_worker(cls, worker: "Worker") -> "LiveCameras":
        """Everything from the site's ``live`` section: metrics (served when ``metrics_port`` is set),
        MQTT (when ``mqtt_url`` is set) and health delivery to the worker's API."""
        cfg = worker.site.live
        metrics = WorkerMetrics()
        if cfg.metrics_port:
            port = metrics.serve(cfg.metrics_port)
            log.info("metrics on http://127.0.0.1:%d/metrics", port)
        mqtt = None
        if cfg.mqtt_url:
            from vision.mqtt_out import MqttPublisher
            mqtt = MqttPublisher(_expand_env(cfg.mqtt_url), cfg.mqtt_topic_prefix, worker_id=worker_name())
        api_base = worker.sender.url.removesuffix("/api/v1/events")
        sender = HealthSender(api_base, worker.sender.api_key).start()
        return cls(worker, metrics, mqtt=mqtt, health_sender=sender)

    def add(self, compound: Compound, camera: Camera) -> None:
        """A stream camera of the site: run it (or, with leases, when this worker holds its lease)."""
        self.candidates[camera.id] = (compound, camera)
        if self.leases is None:
            self.cameras[camera.id] = StreamCamera(self, compound, camera)

    def start(self) -> None:
        self.inference.start()
        for cam in self.cameras.values():
            cam.start()
        self._ticker.start()
        if self.leases is not None:
            self.leases.start()

    def threads(self) -> list[threading.Thread]:
        """The threads the worker waits for: every camera's, or the lease keeper's."""
        if self.leases is not None:
            return [self.leases.thread]
        return [t for cam in self.cameras.values() for t in cam.threads]

    def run_only(self, camera_ids: set[str]) -> None:
        """Start the held cameras not running yet and stop those no longer held (lease changes)."""
        with self._cameras_lock:
            for camera_id in sorted(set(self.cameras) - camera_ids):
                cam = self.cameras.pop(camera_id)
                cam.close()
                for t in cam.threads:
                    t.join(15)
                self.worker.pipelines.pop(camera_id, None)
                self.metrics.camera_online.labels(camera_id).set(0)
                log.info("camera %s: lease given up, stopped here", camera_id)
            for camera_id in sorted(camera_ids - set(self.cameras)):
                if camera_id in self.candidates and not self._stop.is_set():
                    cam = StreamCamera(self, *self.candidates[camera_id])
                    self.cameras[camera_id] = cam
                    cam.start()
                    log.info("camera %s: lease taken, started here", camera_id)

    def _on_drop(self, camera_id: str, reason: str) -> None:
        self.metrics.queue_drops.labels(camera_id, reason).inc()
        cam = self.cameras.get(camera_id)
        if cam is not None:
            cam.on_dropped()

    def _on_batch(self, size: int, _seconds: float) -> None:
        self.metrics.batch_size.observe(size)

    def emit_health(self, event: HealthEvent) -> None:
        """A health condition started or ended: log, metrics, MQTT (retained) and the API."""
        log.warning("camera %s: health %s %s (%s)", event.camera_id, event.kind, event.state, event.detail)
        self.health_events.append(event)
        self.metrics.camera_health.labels(event.camera_id, event.kind).set(1 if event.state == "started" else 0)
        self.metrics.event_latency.labels("health").observe(max(0.0, time.time() - event.time_s))
        if self.mqtt is not None:
            self.mqtt.publish_health(event.compound_id, event.camera_id, event.kind, event.to_json())
        if self.health_sender is not None:
            self.health_sender.add(event)
        if self.on_health is not None:
            self.on_health(event)

    def _tick_loop(self) -> None:
        while not self._stop.wait(1.0):
            now = time.time()
            for cam in list(self.cameras.values()):
                cam.tick(now)

    def stop(self, timeout_s: float = 15.0) -> None:
        """Close every stream, wait for the camera threads (each ends within about the read timeout),
        then stop the shared inference."""
        self._stop.set()
        if self.leases is not None:
            self.leases.stop()
        for cam in self.cameras.values():
            cam.close()
        deadline = time.monotonic() + timeout_s
        for cam in self.cameras.values():
            for t in cam.threads:
                t.join(max(0.0, deadline - time.monotonic()))
        self.inference.stop()
        if self._ticker.is_alive():
            self._ticker.join(5)
        if self.health_sender is not None:
            self.health_sender.stop()
        if self.mqtt is not None:
            self.mqtt.close()
        self.metrics.close()


class LeaseKeeper:
    """Claims this worker's camera leases from the API every ``ttl_s / 3`` and makes the running cameras
    follow them (``service/routers/leases.py`` decides). When the API cannot be reached, the cameras
    keep running until the leases are about to expire, then stop — by then another worker may hold them."""

    def __init__(self, live: LiveCameras, api_url: str, api_key: str, ttl_s: float = 30.0):
        self.live = live
        self.url = api_url.rstrip("/") + "/api/v1/leases"
        self.api_key = api_key
        self.ttl_s = ttl_s
        self.renew_s = ttl_s / 3
        self.worker_id = worker_name()
        self.held: set[str] = set()
        self.last_ok: float | None = None
        self._client = httpx.Client(timeout=max(2.0, self.renew_s / 2))
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="lease-keeper", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def claim(self) -> set[str] | None:
        body = {"worker_id": self.worker_id, "ttl_s": self.ttl_s,
                "cameras": [{"compound_id": compound.id, "camera_id": camera.id}
                            for compound, camera in self.live.candidates.values()]}
        try:
            resp = self._client.post(self.url, json=body, headers={"X-API-Key": self.api_key})
        except httpx.HTTPError as exc:
            log.warning("leases: API unreachable (%s)", exc)
            return None
        if resp.status_code != 200:
            log.error("leases: HTTP %s %s", resp.status_code, resp.text[:300])
            return None
        return set(resp.json()["cameras"])

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            granted = self.claim()
            if granted is not None:
                self.last_ok = started
                self.held = granted
            elif self.last_ok is None or time.monotonic() - self.last_ok > self.ttl_s - self.renew_s:
                self.held = set()  # our leases are expiring: another worker may run these cameras now
            self.live.run_only(self.held)
            self._stop.wait(max(0.0, self.renew_s - (time.monotonic() - started)))

    def stop(self) -> None:
        """Stop renewing and give the cameras up at once, so the other workers take them at their next claim."""
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(15)
        try:
            self._client.delete(f"{self.url}/{self.worker_id}", headers={"X-API-Key": self.api_key})
        except httpx.HTTPError:
            pass  # the leases expire by themselves
        self._client.close()
