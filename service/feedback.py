"""Reviewer feedback for retraining: confirmed and rejected frames with their boxes as a YOLO dataset
(zip), and false-alarm rates per camera and rule with a suggested confidence threshold.

The images are *clean* frames: the snapshot has the zone and boxes drawn on it (a model trained on
it would learn the drawn rectangles), so each image is decoded from the unannotated clip at the
sidecar frame nearest the violation's last evidence box, and the labels are that frame's boxes
(every tracked box the sidecar lists then, scaled from the detection frame to the clip's size).
A violation without a usable clip or sidecar is listed in the manifest as ``no_clean_frame``.

Which decisions teach the model: a confirmation (its boxes are positives) and a rejection as
``false_alarm`` or ``not_a_violation`` (the image becomes a background image with an empty label file,
a hard negative). ``duplicate`` and ``already_handled`` say nothing about the detector and are left out.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import zipfile

import av
import cv2
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.errors import StorageError
from service.models import Review, Violation
from service.storage import ObjectStore

TEACHING_REJECTIONS = ("false_alarm", "not_a_violation")
TARGET_RECALL = 0.95  # the suggested threshold keeps at least this share of confirmed violations


def _feedback_rows(session: Session, compounds: frozenset[str] | None, since: dt.datetime | None,
                   until: dt.datetime | None):
    query = (select(Violation, Review).join(Review, Review.violation_id == Violation.id)
             .where((Review.verdict == "confirm") | Review.reason.in_(TEACHING_REJECTIONS)))
    if compounds is not None:
        query = query.where(Violation.compound_id.in_(sorted(compounds)))
    if since is not None:
        query = query.where(Violation.start_time >= since)
    if until is not None:
        query = query.where(Violation.start_time < until)
    return session.execute(query.order_by(Violation.start_time, Violation.id)).all()


def yolo_labels(boxes: list[dict], width: int, height: int, class_index: dict[str, int]) -> str:
    """YOLO label lines ``class cx cy w h`` (normalised 0..1, clipped to the image) for ``boxes`` with
    pixel ``xyxy``; boxes outside the image are dropped."""
    lines = []
    for box in boxes:
        x1, y1, x2, y2 = box["xyxy"]
        x1, x2 = max(0.0, min(x1, width)), max(0.0, min(x2, width))
        y1, y2 = max(0.0, min(y1, height)), max(0.0, min(y2, height))
        if x2 <= x1 or y2 <= y1:
            continue
        cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        lines.append(f"{class_index[box['class_name']]} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} "
                     f"{(y2 - y1) / height:.6f}")
    return "\n".join(lines) + ("\n" if lines else "")


def _read_all(store: ObjectStore, evidence) -> bytes | None:
    if evidence is None:
        return None
    try:
        return b"".join(store.open_range(evidence.key))
    except StorageError:
        return None


def clean_frame(clip: bytes, sidecar: bytes, target_time_s: float | None) -> tuple[bytes, list[dict], int, int] | None:
    """The unannotated clip frame at the sidecar frame nearest ``target_time_s`` (the last one when
    None), as ``(jpeg, boxes scaled to the clip, width, height)``; None when there is none."""
    try:
        doc = json.loads(sidecar)
        frames = [f for f in doc.get("frames", []) if "clip_offset_s" in f and f.get("boxes") is not None]
        det_w, det_h = float(doc["frame_width"]), float(doc["frame_height"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not frames:
        return None
    entry = frames[-1] if target_time_s is None else min(frames, key=lambda f: abs(f["time_s"] - target_time_s))
    offset = max(0.0, float(entry["clip_offset_s"]))
    image = None
    try:
        with av.open(io.BytesIO(clip)) as container:
            stream = container.streams.video[0]
            base = stream.start_time or 0
            for frame in container.decode(stream):
                t = float((frame.pts - base) * stream.time_base) if frame.pts is not None else 0.0
                image = frame.to_ndarray(format="bgr24")
                if t >= offset - 1e-3:
                    break
    except (av.error.FFmpegError, IndexError, ValueError):
        return None
    if image is None:
        return None
    height, width = image.shape[:2]
    sx, sy = width / det_w, height / det_h
    boxes = [{**b, "xyxy": [b["xyxy"][0] * sx, b["xyxy"][1] * sy, b["xyxy"][2] * sx, b["xyxy"][3] * sy]}
             for b in entry["boxes"]]
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return (jpeg.tobytes(), boxes, width, height) if ok else None


def dataset_zip(session: Session, store: ObjectStore, compounds: frozenset[str] | None,
                since: dt.datetime | None = None, until: dt.datetime | None = None) -> bytes:
    """A zip with ``images/train/<violation id>.jpg``, ``labels/train/<violation id>.txt``, ``data.yaml``
    (class names) and ``manifest.csv`` (verdict, reason, camera, rule, confidence; a missing snapshot is
    listed with ``missing`` and left out of the images)."""
    rows = _feedback_rows(session, compounds, since, until)
    names = sorted({b["class_name"] for v, r in rows if r.verdict == "confirm" for b in v.boxes})
    class_index = {name: i for i, name in enumerate(names)}
    buffer = io.BytesIO()
    manifest = io.StringIO()
    writer = csv.writer(manifest, lineterminator="\n")
    writer.writerow(["violation_id", "compound_id", "camera_id", "rule", "confidence", "verdict", "reason",
                     "boxes", "status"])
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for violation, review in rows:
            clip, sidecar = (_read_all(store, violation.evidence_of(k)) for k in ("clip", "sidecar"))
            times = [dt.datetime.fromisoformat(b["time"]).timestamp() for b in violation.boxes if b.get("time")]
            found = clean_frame(clip, sidecar, max(times) if times else None) if clip and sidecar else None
            n_boxes = 0
            if found is None:
                status = "no_clean_frame"
            else:
                status, (data, boxes, width, height) = "ok", found
                boxes = [b for b in boxes if b.get("class_name") in class_index]
                labels = yolo_labels(boxes, width, height, class_index) if review.verdict == "confirm" else ""
                n_boxes = len(labels.splitlines())
                archive.writestr(f"images/train/{violation.id}.jpg", data)
                archive.writestr(f"labels/train/{violation.id}.txt", labels)
            writer.writerow([violation.id, violation.compound_id, violation.camera_id, violation.rule,
                             f"{violation.confidence:.4f}", review.verdict, review.reason or "", n_boxes, status])
        archive.writestr("data.yaml", yaml.safe_dump({"path": ".", "train": "images/train", "val": "images/train",
                                                      "names": dict(enumerate(names))}, allow_unicode=True))
        archive.writestr("manifest.csv", manifest.getvalue())
    return buffer.getvalue()


def suggest_threshold(confirmed: list[float], false_alarms: list[float],
                      target_recall: float = TARGET_RECALL) -> float | None:
    """The highest confidence threshold that still keeps ``target_recall`` of the confirmed violations,
    or None when there are no confirmed violations or no false alarm it would remove."""
    if not confirmed or not false_alarms:
        return None
    ordered = sorted(confirmed)
    may_drop = math.floor(len(ordered) * (1 - target_recall) + 1e-9)
    threshold = ordered[may_drop]
    return threshold if any(c < threshold for c in false_alarms) else None


def false_alarm_rates(session: Session, compounds: frozenset[str] | None) -> list[dict]:
    """Per camera and rule: confirmed, false alarms, the false-alarm rate, the suggested threshold and how
    many false alarms and confirmations it would have dropped."""
    groups: dict[tuple[str, str, str], tuple[list[float], list[float]]] = {}
    for violation, review in _feedback_rows(session, compounds, None, None):
        confirmed, false_alarms = groups.setdefault((violation.compound_id, violation.camera_id, violation.rule),
                                                    ([], []))
        (confirmed if review.verdict == "confirm" else false_alarms).append(violation.confidence)
    out = []
    for (compound_id, camera_id, rule), (confirmed, false_alarms) in sorted(groups.items()):
        threshold = suggest_threshold(confirmed, false_alarms)
        total = len(confirmed) + len(false_alarms)
        out.append({
            "compound_id": compound_id, "camera_id": camera_id, "rule": rule, "confirmed": len(confirmed),
            "false_alarms": len(false_alarms), "false_alarm_rate": len(false_alarms) / total,
            "suggested_threshold": threshold,
            "false_alarms_removed": sum(c < threshold for c in false_alarms) if threshold is not None else 0,
            "confirmed_lost": sum(c < threshold for c in confirmed) if threshold is not None else 0})
    return out
