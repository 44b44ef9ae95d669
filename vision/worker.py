"""The live worker: one thread per camera runs Source → Detector → Tracker → Zones/Rules → Evidence,
and a sender thread drains the durable outbox to the review API.

A camera that fails (corrupt file, unreachable stream) is reported and retried with back-off; it never
takes the other cameras or the worker down.
"""
from __future__ import annotations

import logging
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

from vision.config import Camera, Compound, SiteConfig, Zone, is_stream_url, resolve_path, _expand_env
from vision.detector import OnnxDetector, build_detector
from vision.errors import CompoundEyeError, SourceError
from vision.evidence import ClipRecorder, sidecar_json, write_crop, write_snapshot
from vision.reinspect import Reinspector
from vision.outbox import Outbox, OutboxSender
from vision.rules import build_rules
from vision.rules.base import RuleEvent
from vision.sources import FileSource
from vision.tracker import Tracker
from vision.types import Detections, Frame, Violation

log = logging.getLogger(__name__)


def iso(time_s: float) -> str:
    return datetime.fromtimestamp(time_s, timezone.utc).isoformat()


def violation_to_event(v: Violation, source: str, evidence_sha: dict[str, str]) -> dict:
    """The JSON body (``ViolationCreate``) the API expects for one violation."""
    return {
        "id": v.id, "rule": v.rule, "compound_id": v.compound_id, "camera_id": v.camera_id, "zone_id": v.zone,
        "start_time": iso(v.start_time_s), "last_seen_time": iso(v.last_seen_time_s),
        "end_time": iso(v.end_time_s) if v.end_time_s is not None else None,
        "confidence": round(float(v.confidence), 4), "model_version": v.model_version, "source": source,
        "boxes": [{"time": iso(b.time_s), "xyxy": [round(float(c), 1) for c in b.xyxy], "class_name": b.class_name,
                   "confidence": round(float(b.confidence), 4), "track_id": int(b.track_id)} for b in v.boxes],
        "evidence": {f"{k}_sha256": evidence_sha.get(k) for k in ("snapshot", "clip", "sidecar", "crop")},
    }


@dataclass
class _Pending:
    """A violation whose snapshot is written and whose clip is still being recorded."""

    violation: Violation
    files: dict[str, Path]
    sha: dict[str, str]
    frames_boxes: dict = field(default_factory=dict)


class CameraPipeline:
    """Everything for one camera, fed frame by frame. Pure of threads, so tests and re-scans can drive it.

    ``process(frame)`` returns the events ready for the outbox: ``(event_json, files)`` pairs.
    """

    def __init__(self, site: SiteConfig, compound: Compound, camera: Camera, detector: OnnxDetector,
                 work_dir: Path, source_kind: str = "live"):
        self.site, self.compound, self.camera = site, compound, camera
        self.rules = build_rules(site, compound, camera, detector.model_version)
        if hasattr(detector, "for_classes"):
            # several models: run on this camera only those that see a class its rules look at
            needed = {c for r in self.rules for c in (*r.params.classes, *getattr(r.params, "person_classes", ()))}
            subset = detector.for_classes(needed)
            if subset is not detector:
                detector = subset
                self.rules = build_rules(site, compound, camera, detector.model_version)
        self.detector = detector
        self.tracker = Tracker(frame_rate=camera.sample_fps)
        self.zones: dict[str, Zone] = {z.id: z for z in camera.zones}
        ev = site.evidence
        # The ring must hold the dwell plus the pre-roll, so the clip shows the object arriving.
        longest_dwell = max((r.params.dwell_s for r in self.rules), default=60.0)
        self.recorder = ClipRecorder(camera.id, out_dir=work_dir,
                                     max_seconds=min(900.0, max(120.0, longest_dwell + ev.pre_roll_s + 30)),
                                     max_bytes=256 << 20, fps=ev.clip_fps, packets=True)
        self.detect_interval_s = 1.0 / camera.sample_fps
        self._next_detect_s: float | None = None
        self.work_dir = work_dir
        self.source_kind = source_kind
        self.pending: dict[str, _Pending] = {}
        self.last_tracks = None
        self.last_frame: Frame | None = None   # the newest frame, for re-inspections (vision/reinspect.py)
        self.last_frame_wall_s = 0.0
        self.frames_seen = 0
        self.inferences = 0

    def _due_for_detection(self, frame: Frame) -> bool:
        if self._next_detect_s is None or frame.time_s >= self._next_detect_s - 1e-6:
            self._next_detect_s = frame.time_s + self.detect_interval_s
            return True
        return False

    def process(self, frame: Frame, detections: Detections | None = None) -> list[tuple[dict, dict[str, Path]]]:
        """Feed one frame; returns the events that became ready. ``detections``: the frame's
        detections by this pipeline's detector when they are already known (a re-scan's keyframe
        pass), used instead of running the model again if the frame is due for detection."""
        self.frames_seen += 1
        self.last_frame, self.last_frame_wall_s = frame, time.time()
        ready = []
        for violation_id, clip in self.recorder.push(frame):
            ready.extend(self._finish(violation_id, clip))
        if not self._due_for_detection(frame):
            return ready
        if detections is None:
            detections = self.detector.detect(frame.image)
            self.inferences += 1
        tracks = self.tracker.update(detections, frame.time_s)
        self.last_tracks = tracks
        for rule in self.rules:
            for event in rule.update(frame.time_s, tracks, (frame.width, frame.height), frame.image):
                self._on_rule_event(event, frame)
        return ready

    def flush(self) -> list[tuple[dict, dict[str, Path]]]:
        """End of stream: write the clips that can still be written."""
        ready = []
        for violation_id, clip in self.recorder.flush():
            ready.extend(self._finish(violation_id, clip))
        return ready

    def _on_rule_event(self, event: RuleEvent, frame: Frame) -> None:
        v = event.violation
        if event.kind != "started":
            log.info("camera %s: violation %s (%s, zone %s) ended at %s", v.camera_id, v.id, v.rule, v.zone,
                     iso(v.end_time_s or frame.time_s))
            return
        log.info("camera %s: violation %s (%s, zone %s) started %s", v.camera_id, v.id, v.rule, v.zone,
                 iso(v.start_time_s))
        folder = Path(tempfile.mkdtemp(prefix=f"{v.id}-", dir=self.work_dir))
        zone = self.zones[v.zone]
        ev = self.site.evidence
        files, sha = {}, {}
        files["snapshot"] = folder / "snapshot.jpg"
        sha["snapshot"] = write_snapshot(frame, v, zone, files["snapshot"], ev.jpeg_quality, tz=self.site.tz)
        files["crop"] = folder / "crop.jpg"
        sha["crop"] = write_crop(frame, v, files["crop"], ev.jpeg_quality)
        self.pending[v.id] = _Pending(v, files, sha)
        self.recorder.request(v.id, v.start_time_s - ev.pre_roll_s, event.trigger_time_s + ev.post_roll_s)

    def _finish(self, violation_id: str, clip) -> list[tuple[dict, dict[str, Path]]]:
        pending = self.pending.pop(violation_id, None)
        if pending is None:
            return []
        folder = pending.files["snapshot"].parent
        pending.files["clip"] = Path(clip.path)
        pending.sha["clip"] = clip.sha256
        sidecar_path = folder / "sidecar.json"
        pending.sha["sidecar"] = sidecar_json(pending.violation, sidecar_path, clip_start_s=clip.first_time_s)
        pending.files["sidecar"] = sidecar_path
        return [(violation_to_event(pending.violation, self.source_kind, pending.sha), pending.files)]


class Worker:
    """Runs every camera of a site file until stopped."""

    def __init__(self, site: SiteConfig, site_path: Path, api_key: str, api_url: str | None = None,
                 realtime: bool = True, on_frame: Callable[[str, Frame, object], None] | None = None):
        self.site, self.site_path = site, site_path
        self.detector = build_detector(site, site_path)
        outbox_dir = resolve_path(site_path, site.outbox_dir)
        self.outbox = Outbox(outbox_dir)
        self.work_dir = outbox_dir / "work"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.sender = OutboxSender(self.outbox, api_url or site.api.url, api_key)
        self.realtime = realtime
        self.on_frame = on_frame
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.camera_errors: dict[str, str] = {}
        self.pipelines: dict[str, CameraPipeline] = {}
        self.reinspector = Reinspector(self.pipelines, api_url or site.api.url, api_key)

    def _source(self, camera: Camera, packet_sink: Callable | None = None) -> Iterable[Frame]:
        """The camera's frames; its compressed packets go to ``packet_sink`` (H.264 clips are cut
        from them without re-encoding)."""
        src = _expand_env(camera.source)
        path = resolve_path(self.site_path, src)
        fps = max(camera.sample_fps, self.site.evidence.clip_fps)
        return FileSource(str(path), camera.id, sample_fps=fps, start_time_s=time.time(),
                          realtime=self.realtime, loop=camera.loop, packet_sink=packet_sink)

    def _run_camera(self, compound: Compound, camera: Camera) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            pipeline = CameraPipeline(self.site, compound, camera, self.detector, self.work_dir)
            self.pipelines[camera.id] = pipeline
            try:
                with self._source(camera, pipeline.recorder.push_packet) as source:
                    for frame in source:
                        if self._stop.is_set():
                            break
                        for event, files in pipeline.process(frame):
                            self.outbox.add(event, files)
                        if self.on_frame:
                            self.on_frame(camera.id, frame, pipeline.last_tracks)
                        backoff = 1.0
                        self.camera_errors.pop(camera.id, None)
                for event, files in pipeline.flush():
                    self.outbox.add(event, files)
                if not camera.loop:
                    log.info("camera %s: source finished", camera.id)
                    return
            except (SourceError, CompoundEyeError) as exc:
                self.camera_errors[camera.id] = str(exc)
                if isinstance(exc, SourceError) and not camera.loop and "://" not in camera.source:
                    # a damaged file stays damaged: report it once and leave the camera stopped
                    log.error("camera %s: %s; file source stopped", camera.id, exc)
                    return
                log.error("camera %s: %s; retrying in %.0f s", camera.id, exc, backoff)
            except Exception as exc:  # a bug in one camera's pipeline must not stop the others
                self.camera_errors[camera.id] = f"{type(exc).__name__}: {exc}"
                log.exception("camera %s failed; retrying in %.0f s", camera.id, backoff)
            self._stop.wait(backoff * random.uniform(0.8, 1.2))
            backoff = min(backoff * 2, 60.0)

    def start(self) -> None:
        self.sender.start()
        self.reinspector.start()
        for compound, camera in self.site.cameras():
            if is_stream_url(camera.source):  # live streams: reconnects, health, one shared detector
                if getattr(self, "live", None) is None:
                    from vision.stream_camera import LiveCameras
                    self.live = LiveCameras.for_worker(self)
                self.live.add(compound, camera)
                continue
            t = threading.Thread(target=self._run_camera, args=(compound, camera), name=f"camera-{camera.id}",
                                 daemon=True)
            t.start()
            self._threads.append(t)
        if getattr(self, "live", None) is not None:
            self.live.start()
            self._threads.extend(self.live.threads())

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for every camera thread to finish (file sources without loop). True if all finished."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def stop(self) -> None:
        self._stop.set()
        if getattr(self, "live", None) is not None:
            self.live.stop()
        self.reinspector.stop()
        for t in self._threads:
            t.join(timeout=10)
        self.sender.stop()
        self.outbox.close()
