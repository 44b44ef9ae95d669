"""Re-scan one stored file: feed :class:`vision.worker.CameraPipeline` — the live per-camera logic,
with the same rules and settings — with the file's frames on true frame time, and collect the
violations it raises with their evidence.

Modes:

- ``sampled``: every frame on the sampling ticks (``fps``; by default the camera's ``sample_fps``,
  exactly as the live worker samples) through :class:`vision.sources.FileSource`.
- ``keyframes``: only the keyframes are decoded (the fast first pass); the pipeline sees one frame
  per keyframe interval, so rules with a short dwell or confirmation window see fewer frames than
  live.
- ``adaptive``: a keyframe pass finds where something may be happening — an object of a rule's
  classes on or near an armed zone standing still (twice the rules' tolerance) on keyframes spanning
  nearly the shortest dwell (every rule here is about an object *standing still*) — and only those
  stretches, with margins for the
  rules' warm-up, dwell, grace/clear and the clip post-roll, are decoded like the sampled mode, on
  the same ticks, through one pipeline (so rule state such as cooldowns carries across stretches).
  Rules that judge from pixels (bin overflow, corridor clutter) or a dwell shorter than two keyframe
  intervals make the file fall back to the sampled mode (said in the result).

:func:`scan_file` is a plain function of picklable arguments, so the same code runs in-process, in
a process pool or on a Dask worker.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vision.config import Camera, Compound, SiteConfig
from vision.detector import OnnxDetector
from vision.errors import CompoundEyeError, SourceError
from vision.rescan.decode import keyframe_interval_s, keyframes, merge_stretches, sampled_stretches
from vision.rescan.discover import FootageFile
from vision.sources import FileSource, probe
from vision.types import Frame
from vision.worker import CameraPipeline

log = logging.getLogger(__name__)

MODES = ("sampled", "keyframes", "adaptive")
PIXEL_RULES = frozenset({"bin_overflow", "corridor_clutter"})
# adaptive: an object counts as still across keyframes within this many times the rules' own
# stationarity tolerance (generous: a keyframe pass must not miss what the sampled mode finds)
STILL_TOLERANCE_FACTOR = 1.0
# adaptive: an armed zone's bounding box is grown by this fraction of its size on each side
ZONE_MARGIN = 0.25


class Cancelled(CompoundEyeError):
    """The job was cancelled while this file was being scanned."""


@dataclass(frozen=True)
class ScanSettings:
    """What every file of a job is scanned with (picklable; sent to each worker once per file).

    Attributes:
        site: the site configuration (cameras, zones, rules, evidence settings, detector thresholds).
        model_path: the ONNX model; its card next to it. On a cluster it must exist at this path on
            every worker (the same image), see docs/rescan.md.
        mode: ``sampled``, ``keyframes`` or ``adaptive``.
        fps: sampling rate of the sampled mode and of adaptive's dense stretches; None: the camera's
            ``sample_fps`` (what the live worker uses).
        threads: onnxruntime intra-op threads per worker process.
    """

    site: SiteConfig
    model_path: str
    mode: str = "sampled"
    fps: float | None = None
    threads: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")


@dataclass(frozen=True)
class FileTask:
    """One file to scan: the file, its camera and start time, and (S3) a presigned URL to fetch it."""

    file: FootageFile
    compound_id: str
    camera_id: str
    start_time_s: float
    fetch_url: str | None = None


@dataclass
class FileResult:
    """What scanning one file gave. ``status`` is ``done``, ``bad`` (``reason`` says why) or ``cancelled``.

    ``violations`` are the events the pipeline produced (the API's ``ViolationCreate`` JSON, source
    ``rescan``); ``evidence`` maps a violation id to its files as ``{kind: (suffix, bytes)}``."""

    name: str
    location: str
    key: str
    status: str
    reason: str | None = None
    camera_id: str | None = None
    start_time_s: float | None = None
    duration_s: float = 0.0
    decoded_frames: int = 0
    inferences: int = 0
    dense_s: float | None = None
    fallback: str | None = None
    elapsed_s: float = 0.0
    violations: list[dict] = field(default_factory=list)
    evidence: dict[str, dict[str, tuple[str, bytes]]] = field(default_factory=dict)

    def summary(self) -> dict:
        """Everything but the evidence bytes (what the checkpoint and the report keep)."""
        out = {k: v for k, v in self.__dict__.items() if k != "evidence"}
        return out


_DETECTORS: dict[tuple, OnnxDetector] = {}


def _detector(settings: ScanSettings) -> OnnxDetector:
    """One detector per process and model (building an onnxruntime session takes a while)."""
    d = settings.site.detector
    key = (settings.model_path, d.confidence, d.iou, settings.threads)
    if key not in _DETECTORS:
        _DETECTORS[key] = OnnxDetector(settings.model_path, confidence=d.confidence, iou=d.iou,
                                       threads=settings.threads)
    return _DETECTORS[key]


def _camera(site: SiteConfig, compound_id: str, camera_id: str) -> tuple[Compound, Camera]:
    for compound, camera in site.cameras():
        if compound.id == compound_id and camera.id == camera_id:
            return compound, camera
    raise KeyError(camera_id)


class _Collector:
    """Feeds a pipeline and gathers its ready events with their evidence bytes."""

    def __init__(self, pipeline: CameraPipeline, result: FileResult):
        self.pipeline, self.result = pipeline, result

    def take(self, ready) -> None:
        for event, files in ready:
            self.result.violations.append(event)
            self.result.evidence[event["id"]] = {kind: (Path(p).suffix, Path(p).read_bytes())
                                                 for kind, p in files.items()}

    def feed(self, frame: Frame, detections=None) -> None:
        self.result.decoded_frames += 1
        self.take(self.pipeline.process(frame, detections))

    def finish(self) -> None:
        self.take(self.pipeline.flush())
        self.result.inferences = self.pipeline.inferences


def _candidate_zones(pipeline: CameraPipeline) -> list[tuple[np.ndarray, frozenset[str]]]:
    """Per armed detection rule: its zone's bounding box grown by :data:`ZONE_MARGIN` (normalised
    x1, y1, x2, y2) and the classes it watches."""
    out = []
    for rule in pipeline.rules:
        pts = np.asarray(rule.zone.polygon, dtype=np.float32)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        grow = (hi - lo) * ZONE_MARGIN
        out.append((np.concatenate([lo - grow, hi + grow]), frozenset(rule.params.classes)))
    return out


class _StillChains:
    """Objects standing still across keyframes, the way the rules judge it: a box whose bottom-centre
    stays within ``tolerance`` × its diagonal of where it was first seen. A chain survives
    ``keep_s`` without a sighting (a missed detection); it counts once it spans ``need_s``."""

    def __init__(self, tolerance: float, keep_s: float, need_s: float):
        self.tolerance, self.keep_s, self.need_s = tolerance, keep_s, need_s
        self.chains: list[list] = []  # [anchor (2,), diagonal, first_t, last_t]

    def update(self, t: float, boxes_px: np.ndarray) -> list[tuple[float, float]]:
        """Feed one keyframe's boxes (pixels); returns the ``(first_t, last_t)`` of every chain
        seen now that spans long enough."""
        self.chains = [c for c in self.chains if t - c[3] <= self.keep_s]
        for box in boxes_px:
            anchor = np.array([(box[0] + box[2]) / 2, box[3]])
            best, best_d = None, None
            for chain in self.chains:
                d = float(np.hypot(*(anchor - chain[0])))
                if d <= self.tolerance * chain[1] and (best_d is None or d < best_d):
                    best, best_d = chain, d
            if best is None:
                self.chains.append([anchor, float(np.hypot(box[2] - box[0], box[3] - box[1])), t, t])
            else:
                best[3] = t
        return [(c[2], c[3]) for c in self.chains if c[3] == t and c[3] - c[2] >= self.need_s]


def _near_zone_boxes(detections, frame_wh, zones) -> np.ndarray:
    """Pixel boxes of the detections of a watched class that overlap a grown armed zone."""
    if len(detections) == 0:
        return np.zeros((0, 4), np.float32)
    boxes = detections.xyxy / np.array([*frame_wh, *frame_wh], dtype=np.float32)
    names = detections.names()
    keep = np.zeros(len(detections), dtype=bool)
    for rect, classes in zones:
        cls_ok = np.fromiter((n in classes for n in names), dtype=bool, count=len(names))
        overlap = ((boxes[:, 0] < rect[2]) & (boxes[:, 2] > rect[0]) & (boxes[:, 1] < rect[3]) & (boxes[:, 3] > rect[1]))
        keep |= cls_ok & overlap
    return detections.xyxy[keep]


def _stretch_margins(pipeline: CameraPipeline, keyframe_s: float, sample_fps: float) -> tuple[float, float]:
    """How long before the first and after the last "still" keyframe a dense stretch must reach for
    the rules to see what the sampled mode sees: tracker warm-up and the object's arrival before,
    grace/clear (the end of the violation) and the clip's post-roll after."""
    params = [r.params for r in pipeline.rules]
    confirm_s = max((p.confirm_n for p in params), default=5) / sample_fps
    before = 2 * keyframe_s + confirm_s + 10.0
    # the violation ends clear_s/grace_s after the object was last seen (cooldowns run from there),
    # and its clip runs post_roll_s past the trigger, which is at the latest one keyframe interval on
    after = keyframe_s + max(max((max(p.grace_s, p.clear_s) for p in params), default=30.0),
                             pipeline.site.evidence.post_roll_s) + 2.0
    return before, after


def scan_file(task: FileTask, settings: ScanSettings, progress: Callable[[str, float], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> FileResult:
    """Scan one file. Never raises for a bad file: a file that cannot be fetched, opened or decoded,
    or is truncated, comes back with ``status="bad"`` and the reason (violations raised before the
    damage are dropped: a bad file is re-scanned whole once repaired). ``progress(name, fraction)``
    is called now and then; ``should_stop()`` true cancels (``status="cancelled"``)."""
    f = task.file
    result = FileResult(f.name, f.location, f.key, "done", camera_id=task.camera_id, start_time_s=task.start_time_s)
    began = time.perf_counter()
    local_path, fetched = f.location, None
    work_dir = Path(tempfile.mkdtemp(prefix="compoundeye-rescan-"))
    stop = should_stop or (lambda: False)
    try:
        if f.size == 0:
            raise SourceError(f.location, "zero-length file")
        if task.fetch_url:
            from vision.rescan.s3 import fetch_to_temp
            fetched = fetch_to_temp(task.fetch_url, f.location, os.path.splitext(f.name)[1])
            local_path = str(fetched)
        try:
            info = probe(local_path)
        except SourceError as exc:
            raise SourceError(f.location, exc.reason) from exc
        result.duration_s = float(info["duration_s"] or 0.0)
        compound, camera = _camera(settings.site, task.compound_id, task.camera_id)
        fps = settings.fps or camera.sample_fps
        _run_mode(task, settings, camera, compound, fps, local_path, work_dir, result, progress, stop)
        if stop():
            raise Cancelled(f.location)
    except SourceError as exc:
        # a file fetched from S3 is decoded from a temporary copy: the reason names the S3 object
        reason = exc.reason.replace(local_path, f.location) if fetched is not None else exc.reason
        result.status, result.reason = "bad", reason
        result.violations, result.evidence = [], {}
    except Cancelled:
        result.status, result.reason = "cancelled", "the job was cancelled"
        result.violations, result.evidence = [], {}
    finally:
        if fetched is not None:
            fetched.unlink(missing_ok=True)
        shutil.rmtree(work_dir, ignore_errors=True)
    result.elapsed_s = round(time.perf_counter() - began, 3)
    if progress:
        progress(f.name, 1.0)
    return result


def _run_mode(task: FileTask, settings: ScanSettings, camera: Camera, compound: Compound, fps: float,
              path: str, work_dir: Path, result: FileResult, progress, stop) -> None:
    detector = _detector(settings)
    threads = settings.threads   # decoder threads as many as onnxruntime's: one per core between them
    # a process with the cores to itself decodes the next keyframe while the model runs on this one
    prefetch = threads >= 2
    site = settings.site
    duration = max(result.duration_s, 1e-6)
    name = task.file.name
    tick = _Throttle(progress, name)

    def pipeline_for(rate: float) -> CameraPipeline:
        return CameraPipeline(site, compound, camera.model_copy(update={"sample_fps": rate}), detector,
                              work_dir, source_kind="rescan")

    def wrap(exc: SourceError) -> SourceError:
        return SourceError(task.file.location, exc.reason)

    mode = settings.mode
    if mode == "adaptive":
        probe_pipeline = pipeline_for(fps)
        if any(r.name in PIXEL_RULES for r in probe_pipeline.rules):
            result.fallback = "pixel-based rule armed: sampled mode"
            mode = "sampled"
    if mode == "keyframes" or mode == "adaptive":
        try:
            interval = keyframe_interval_s(path) or 2.0
        except SourceError as exc:
            raise wrap(exc) from exc
    if mode == "adaptive" and any(r.params.dwell_s < 2 * interval for r in probe_pipeline.rules):
        result.fallback = f"a rule's dwell is under two keyframe intervals ({interval:.1f} s): sampled mode"
        mode = "sampled"

    if mode == "sampled":
        pipeline = pipeline_for(fps)
        collect = _Collector(pipeline, result)
        try:
            with FileSource(path, camera.id, sample_fps=fps, start_time_s=task.start_time_s,
                            packet_sink=pipeline.recorder.push_packet, threads=threads) as source:
                for frame in source:
                    collect.feed(frame)
                    tick(frame.time_s - task.start_time_s, duration)
                    if stop():
                        return
        except SourceError as exc:
            raise wrap(exc) from exc
        collect.finish()
        return

    if mode == "keyframes":
        pipeline = pipeline_for(min(camera.sample_fps, 1.0 / interval))
        collect = _Collector(pipeline, result)
        try:
            for decoded in keyframes(path, task.start_time_s, pipeline.recorder.push_packet, stop, threads,
                                     prefetch=prefetch):
                collect.feed(Frame(camera.id, task.start_time_s + decoded.pts_s, decoded.image,
                                   f"{path}@{decoded.pts_s:.3f}"))
                tick(decoded.pts_s, duration)
        except SourceError as exc:
            raise wrap(exc) from exc
        collect.finish()
        return

    # adaptive: keyframe pass (detector only), then dense stretches through one pipeline; the
    # keyframe pass's detections are handed to the pipeline when a dense tick falls on a keyframe
    # (a keyframe decodes to the same pixels either way, so the model need not run twice)
    zones = _candidate_zones(probe_pipeline)
    prepass = probe_pipeline.detector
    known: dict[float, object] = {}
    before, after = _stretch_margins(probe_pipeline, interval, fps)
    params = [r.params for r in probe_pipeline.rules]
    chains = _StillChains(tolerance=STILL_TOLERANCE_FACTOR * max(p.stationary_tolerance for p in params),
                          keep_s=2 * interval + 0.5,
                          need_s=max(0.0, min(p.dwell_s for p in params) - 2 * interval - 1.0))
    stretches, origin = [], None
    inferences = 0
    try:
        for decoded in keyframes(path, 0.0, None, stop, threads, prefetch=prefetch):
            origin = decoded.pts_s if origin is None else origin
            result.decoded_frames += 1
            h, w = decoded.image.shape[:2]
            detections = known[decoded.pts_s] = prepass.detect(decoded.image)
            boxes = _near_zone_boxes(detections, (w, h), zones)
            inferences += 1
            for first_t, last_t in chains.update(decoded.pts_s, boxes):
                stretches.append((first_t - before, last_t + after))
            tick(decoded.pts_s / 2, duration)
    except SourceError as exc:
        raise wrap(exc) from exc
    if stop():
        return
    end_s = (origin or 0.0) + result.duration_s
    stretches = merge_stretches([(max(origin or 0.0, a), min(end_s, b)) for a, b in stretches],
                                join_gap_s=3 * interval)
    result.dense_s = round(sum(b - a for a, b in stretches), 3)
    pipeline = pipeline_for(fps)
    collect = _Collector(pipeline, result)
    dense_total = max(result.dense_s, 1e-6)
    done_before = 0.0
    try:
        current = None
        for decoded in sampled_stretches(path, stretches, fps, origin or 0.0, task.start_time_s,
                                         pipeline.recorder.push_packet, stop, threads):
            collect.feed(Frame(camera.id, task.start_time_s + decoded.pts_s, decoded.image,
                               f"{path}@{decoded.pts_s:.3f}"),
                         known.get(decoded.pts_s) if pipeline.detector is prepass else None)
            while current is None or decoded.pts_s > stretches[current][1]:
                if current is not None:
                    done_before += stretches[current][1] - stretches[current][0]
                current = 0 if current is None else current + 1
            into = min(dense_total, done_before + decoded.pts_s - stretches[current][0])
            tick(duration / 2 + duration / 2 * into / dense_total, duration)
    except SourceError as exc:
        raise wrap(exc) from exc
    collect.finish()
    result.inferences += inferences


class _Throttle:
    """Calls ``progress(name, fraction)`` at most every half second."""

    def __init__(self, progress, name: str, every_s: float = 0.5):
        self.progress, self.name, self.every_s = progress, name, every_s
        self.last = 0.0

    def __call__(self, position_s: float, duration_s: float) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self.progress(self.name, min(1.0, max(0.0, position_s / max(duration_s, 1e-6))))
