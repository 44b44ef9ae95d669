"""Event-level evaluation of the rules on labelled footage: precision, recall and time-to-alert per rule.

Each input is a video file (``clip.mp4`` with its ground truth ``clip.json`` beside it) or a folder of
images (an image sequence, ground truth in ``<folder>/sequence.json`` with ``fps``). The frames go
through the real :class:`vision.worker.CameraPipeline` (detector → tracker → zones → rules → evidence)
exactly as the worker would feed them, by frame time, and every violation the rules *raise* is compared
with the labelled ones.

Ground truth (the sidecar):
- ``expected_violations: [{rule, zone, from_s, to_s}]`` — times in clip seconds: from when the object
  is in place until it is gone;
- the older fire-lane form ``cars[].stopped: {from_s, to_s, zone}`` is read too: a stop in a zone of
  kind ``fire_lane`` is an expected ``fire_lane`` violation (stops in parking bays are not violations);
- ``zones`` (id, kind, polygon) and ``start_time`` (ISO, the frame time of PTS 0).

Which zones and parameters: the site camera named with ``--camera``, else the one whose ``source`` is this clip, if any (so the
demo's shortened dwells are what is measured); otherwise the sidecar's zones, each armed with the rules
of its kind, with the site file's ``rules:`` parameters. A labelled zone id is matched to the camera's
zone of the same id, or else of the same kind whose polygon overlaps it best (IoU ≥ 0.5).

Matching: an expected violation whose duration is shorter than the zone's dwell cannot be raised by a
correct rule and is left out (listed as ``too_short``). A raised violation matches an expected one of
the same rule and zone whose interval overlaps ``[start, end]`` of the raised one (end = clip end while
still open); each expected one matches at most once. Unmatched raised = false positives, unmatched
expected = misses. **Time to alert** = raise time − (expected ``from_s`` + dwell): how much later than a
perfect rule the alert came (negative = earlier).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import shapely

from vision.config import Camera, Compound, SiteConfig, Zone, resolve_path, _expand_env
from vision.errors import CompoundEyeError
from vision.rules.base import RuleEvent
from vision.sources import FileSource
from vision.types import Frame
from vision.worker import CameraPipeline

log = logging.getLogger(__name__)

#: rules armed in a sidecar zone of each kind when no site camera describes the clip
RULES_BY_KIND: dict[str, tuple[str, ...]] = {
    "fire_lane": ("fire_lane",),
    "bin_station": ("bin_overflow",),
    "corridor": ("corridor_clutter", "ebike_indoor"),
    "stairwell": ("corridor_clutter", "ebike_indoor"),
    "lobby": ("corridor_clutter", "ebike_indoor"),
    "elevator": ("ebike_indoor",),
}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SEQUENCE_SIDECAR = "sequence.json"


class EvaluationError(CompoundEyeError):
    """A clip or sequence cannot be evaluated (no ground truth, unreadable sidecar)."""


@dataclass
class Raised:
    """One violation the rules raised, in clip seconds."""

    rule: str
    zone: str
    start_s: float
    raised_s: float
    end_s: float | None
    violation_id: str


@dataclass
class Expected:
    rule: str
    zone: str          # the camera's zone id (after matching the labelled zone)
    from_s: float
    to_s: float
    dwell_s: float | None = None


@dataclass
class ClipResult:
    clip: str
    camera: str
    duration_s: float
    frames: int
    expected: list[Expected]
    too_short: list[Expected]
    raised: list[Raised]
    matches: list[dict] = field(default_factory=list)      # {rule, zone, expected_from_s, raised_s, time_to_alert_s}
    false_positives: list[Raised] = field(default_factory=list)
    misses: list[Expected] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ inputs
def sidecar_path(path: Path) -> Path:
    """The ground-truth file of a clip (``x.mp4`` → ``x.json``) or an image folder (``sequence.json``)."""
    return path / SEQUENCE_SIDECAR if path.is_dir() else path.with_suffix(".json")


def load_ground_truth(path: Path) -> dict:
    side = sidecar_path(path)
    try:
        truth = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EvaluationError(f"{path}: no readable ground truth at {side}: {exc}") from exc
    if "zones" not in truth:
        raise EvaluationError(f"{side}: the ground truth names no zones")
    return truth


def expected_from_truth(truth: dict) -> list[dict]:
    """``expected_violations`` plus the fire-lane stops of the older ``cars[].stopped`` form."""
    out = [dict(e) for e in truth.get("expected_violations", [])]
    kinds = {z["id"]: z["kind"] for z in truth["zones"]}
    for car in truth.get("cars", []):
        stop = car.get("stopped")
        if stop and kinds.get(stop["zone"]) == "fire_lane":
            out.append({"rule": "fire_lane", "zone": stop["zone"], "from_s": float(stop["from_s"]),
                        "to_s": float(stop["to_s"])})
    for e in out:
        missing = {"rule", "zone", "from_s", "to_s"} - set(e)
        if missing:
            raise EvaluationError(f"expected violation {e} lacks {sorted(missing)}")
    return out


def start_time_s(truth: dict) -> float:
    """Frame time of PTS 0: the sidecar's ``start_time`` (so schedules see the footage's clock)."""
    if truth.get("start_time"):
        return dt.datetime.fromisoformat(truth["start_time"]).timestamp()
    return 1_700_000_000.0


def image_sequence(folder: Path, camera_id: str, fps: float, start_s: float) -> Iterator[Frame]:
    """The images of ``folder`` in name order as frames ``1 / fps`` apart."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EvaluationError(f"{folder}: no images")
    for k, f in enumerate(files):
        image = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if image is None:
            raise EvaluationError(f"{f}: not a readable image")
        yield Frame(camera_id, start_s + k / fps, image, f"{f}")


# ------------------------------------------------------------------------------------------ camera
def _polygon_iou(a, b) -> float:
    pa, pb = shapely.Polygon(a), shapely.Polygon(b)
    union = pa.union(pb).area
    return pa.intersection(pb).area / union if union > 0 else 0.0


def camera_for(site: SiteConfig, site_path: Path, media: Path, truth: dict,
               camera_id: str | None = None) -> tuple[Compound, Camera]:
    """The site camera ``camera_id`` (its zones and parameters applied to ``media``, e.g. a clean clip of
    the same scene), else the site camera that watches ``media``, else a camera made of the sidecar's zones."""
    if camera_id is not None:
        for compound, camera in site.cameras():
            if camera.id == camera_id:
                return compound, camera
        raise EvaluationError(f"no camera {camera_id!r} in the site file")
    target = media.resolve()
    for compound, camera in site.cameras():
        src = resolve_path(site_path, _expand_env(camera.source))
        if src.exists() and src.resolve() == target:
            return compound, camera
    zones = tuple(Zone(id=z["id"], name=z.get("name", ""), kind=z["kind"], polygon=tuple(map(tuple, z["polygon"])),
                       rules=tuple(z.get("rules", RULES_BY_KIND.get(z["kind"], ()))))
                  for z in truth["zones"])
    camera = Camera(id=_camera_id(media), source=str(media), sample_fps=5.0, zones=zones)
    compound = site.compounds[0] if site.compounds else Compound(id="evaluation")
    return compound, camera


def _camera_id(media: Path) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in media.stem.lower()).strip("-_") or "clip"
    return stem[:64]


def map_zone(label_zone: str, truth: dict, camera: Camera) -> str | None:
    """The camera's zone id for a labelled zone id (same id, else same kind and best polygon IoU ≥ 0.5)."""
    ids = {z.id for z in camera.zones}
    if label_zone in ids:
        return label_zone
    labelled = next((z for z in truth["zones"] if z["id"] == label_zone), None)
    if labelled is None:
        return None
    best, best_iou = None, 0.5
    for z in camera.zones:
        if z.kind == labelled["kind"]:
            iou = _polygon_iou(z.polygon, labelled["polygon"])
            if iou >= best_iou:
                best, best_iou = z.id, iou
    return best


# ------------------------------------------------------------------------------------------ running
class _RecordingPipeline(CameraPipeline):
    """The worker's pipeline, also noting every rule event (the worker only forwards finished evidence)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rule_events: list[RuleEvent] = []

    def _on_rule_event(self, event: RuleEvent, frame: Frame) -> None:
        self.rule_events.append(event)
        super()._on_rule_event(event, frame)


def run_pipeline(site: SiteConfig, site_path: Path, media: Path, detector, truth: dict | None = None,
                 work_dir: Path | None = None, camera_id: str | None = None) -> tuple[Camera, list[Raised], float, int, dict[tuple[str, str], float]]:
    """Drive a :class:`CameraPipeline` over ``media`` frame by frame.

    Returns:
        the camera used, the raised violations (clip seconds), the clip's duration in seconds, the
        number of frames fed, and the effective dwell per (rule, zone).
    """
    truth = truth if truth is not None else load_ground_truth(media)
    compound, camera = camera_for(site, site_path, media, truth, camera_id)
    t0 = start_time_s(truth)
    with tempfile.TemporaryDirectory(prefix="evaluate-rules-", dir=work_dir) as tmp:
        pipeline = _RecordingPipeline(site, compound, camera, detector, Path(tmp), source_kind="rescan")
        dwell = {(r.name, r.zone.id): float(r.params.dwell_s) for r in pipeline.rules}
        frames, last_s = 0, t0
        if media.is_dir():
            fps = float(truth.get("fps", camera.sample_fps))
            source = image_sequence(media, camera.id, fps, t0)
            for frame in source:
                pipeline.process(frame)
                frames, last_s = frames + 1, frame.time_s
            duration = float(truth.get("duration_s", last_s - t0 + 1.0 / fps))
        else:
            fps = max(camera.sample_fps, site.evidence.clip_fps)
            with FileSource(str(media), camera.id, sample_fps=fps, start_time_s=t0,
                            packet_sink=pipeline.recorder.push_packet) as source:
                for frame in source:
                    pipeline.process(frame)
                    frames, last_s = frames + 1, frame.time_s
            duration = float(truth.get("duration_s", last_s - t0 + 1.0 / fps))
        pipeline.flush()
    raised: dict[str, Raised] = {}
    for ev in pipeline.rule_events:
        v = ev.violation
        if ev.kind == "started":
            raised[v.id] = Raised(v.rule, v.zone, round(v.start_time_s - t0, 2), round(ev.trigger_time_s - t0, 2),
                                  None, v.id)
        elif v.id in raised and v.end_time_s is not None:
            raised[v.id].end_s = round(v.end_time_s - t0, 2)
    return camera, sorted(raised.values(), key=lambda r: r.raised_s), duration, frames, dwell


def match(expected: list[Expected], raised: list[Raised], duration_s: float) -> tuple[list[dict], list[Raised], list[Expected]]:
    """One-to-one matching by rule, zone and time overlap (earliest raised first)."""
    free = list(expected)
    matches, false_pos = [], []
    for r in raised:
        r_end = r.end_s if r.end_s is not None else duration_s
        hit = next((e for e in sorted(free, key=lambda e: e.from_s)
                    if e.rule == r.rule and e.zone == r.zone and r.start_s <= e.to_s and e.from_s <= r_end), None)
        if hit is None:
            false_pos.append(r)
            continue
        free.remove(hit)
        matches.append({"rule": r.rule, "zone": r.zone, "expected_from_s": hit.from_s, "expected_to_s": hit.to_s,
                        "dwell_s": hit.dwell_s, "raised_s": r.raised_s, "start_s": r.start_s,
                        "time_to_alert_s": round(r.raised_s - (hit.from_s + (hit.dwell_s or 0.0)), 2),
                        "violation_id": r.violation_id})
    return matches, false_pos, free


def evaluate_media(site: SiteConfig, site_path: Path, media: Path, detector, work_dir: Path | None = None,
                   camera_id: str | None = None) -> ClipResult:
    """Run the rules over one clip or image folder and compare with its ground truth (see the module
    docstring; ``camera_id`` picks the site camera whose zones and parameters to use)."""
    truth = load_ground_truth(media)
    camera, raised, duration, frames, dwell = run_pipeline(site, site_path, media, detector, truth, work_dir,
                                                           camera_id)
    expected, too_short = [], []
    for e in expected_from_truth(truth):
        zone = map_zone(e["zone"], truth, camera)
        if zone is None:
            log.warning("%s: labelled zone %r is not a zone of camera %s; expected %s violation ignored",
                        media, e["zone"], camera.id, e["rule"])
            continue
        item = Expected(e["rule"], zone, float(e["from_s"]), float(e["to_s"]), dwell.get((e["rule"], zone)))
        if item.dwell_s is None:
            log.warning("%s: rule %s is not armed in zone %s of camera %s", media, e["rule"], zone, camera.id)
            too_short.append(item)
        elif item.to_s - item.from_s < item.dwell_s:
            too_short.append(item)
        else:
            expected.append(item)
    result = ClipResult(str(media), camera.id, duration, frames, expected, too_short, raised)
    result.matches, result.false_positives, result.misses = match(expected, raised, duration)
    return result


# ------------------------------------------------------------------------------------------ report
def summarise(results: list[ClipResult]) -> dict:
    """Per rule: expected, raised, true positives, precision, recall, time to alert (mean/max/each)."""
    rules = sorted({e.rule for r in results for e in r.expected} | {x.rule for r in results for x in r.raised}
                   | {e.rule for r in results for e in r.too_short})
    per_rule = {}
    for rule in rules:
        tp = sum(1 for r in results for m in r.matches if m["rule"] == rule)
        fp = sum(1 for r in results for x in r.false_positives if x.rule == rule)
        fn = sum(1 for r in results for e in r.misses if e.rule == rule)
        tta = [m["time_to_alert_s"] for r in results for m in r.matches if m["rule"] == rule]
        per_rule[rule] = {
            "expected": tp + fn, "raised": tp + fp, "true_positives": tp, "false_positives": fp, "misses": fn,
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "time_to_alert_s": {"mean": round(sum(tta) / len(tta), 2) if tta else None,
                                "max": max(tta) if tta else None, "each": tta},
        }
    return {
        "rules": per_rule,
        "clips": [{"clip": r.clip, "camera": r.camera, "duration_s": r.duration_s, "frames": r.frames,
                   "expected": [asdict(e) for e in r.expected], "too_short": [asdict(e) for e in r.too_short],
                   "raised": [asdict(x) for x in r.raised], "matches": r.matches,
                   "false_positives": [asdict(x) for x in r.false_positives],
                   "misses": [asdict(e) for e in r.misses]} for r in results],
    }


def format_table(summary: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.0f}%"

    def sec(v):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.1f} s"

    lines = [f"{'rule':<18}{'expected':>9}{'raised':>8}{'TP':>5}{'FP':>5}{'FN':>5}{'precision':>11}{'recall':>8}"
             f"{'alert mean':>12}{'alert max':>11}"]
    for rule, s in summary["rules"].items():
        lines.append(f"{rule:<18}{s['expected']:>9}{s['raised']:>8}{s['true_positives']:>5}{s['false_positives']:>5}"
                     f"{s['misses']:>5}{pct(s['precision']):>11}{pct(s['recall']):>8}"
                     f"{sec(s['time_to_alert_s']['mean']):>12}{sec(s['time_to_alert_s']['max']):>11}")
    lines.append("")
    for c in summary["clips"]:
        got = ", ".join(f"{x['rule']}@{x['zone']} raised {x['raised_s']:.1f} s" for x in c["raised"]) or "none"
        lines.append(f"{Path(c['clip']).name} (camera {c['camera']}, {c['frames']} frames): "
                     f"expected {len(c['expected'])}, raised: {got}; FP {len(c['false_positives'])}, "
                     f"missed {len(c['misses'])}")
    return "\n".join(lines)


def find_inputs(paths: list[Path]) -> list[Path]:
    """Clips and image folders with ground truth: a folder of clips expands to its ``*.mp4`` that have a
    sidecar; a folder holding ``sequence.json`` is an image sequence."""
    out = []
    for p in paths:
        if p.is_dir() and not (p / SEQUENCE_SIDECAR).exists():
            out += [c for c in sorted(p.glob("*.mp4")) if c.with_suffix(".json").exists()]
        else:
            out.append(p)
    return out


def np_default(o):  # json.dumps helper for numpy scalars
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o))
