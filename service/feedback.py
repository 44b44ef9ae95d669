"""Reviewer feedback for retraining: confirmed and rejected snapshots with their boxes as a YOLO
dataset (zip), and false-alarm rates per camera and rule with a suggested confidence threshold.

Which decisions teach the model: a confirmation (its boxes are positives) and a rejection as
``false_alarm`` or ``not_a_violation`` (the image becomes a background image with an empty label file,
a hard negative). ``duplicate`` and ``already_handled`` say nothing about the detector and are left out.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import math
import zipfile

import cv2
import numpy as np
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
            snapshot = violation.evidence_of("snapshot")
            status = "ok"
            try:
                data = b"".join(store.open_range(snapshot.key)) if snapshot else None
            except StorageError:
                data = None
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
            if image is None:
                status = "missing"
            else:
                height, width = image.shape[:2]
                labels = yolo_labels(violation.boxes, width, height, class_index) if review.verdict == "confirm" else ""
                archive.writestr(f"images/train/{violation.id}.jpg", data)
                archive.writestr(f"labels/train/{violation.id}.txt", labels)
            writer.writerow([violation.id, violation.compound_id, violation.camera_id, violation.rule,
                             f"{violation.confidence:.4f}", review.verdict, review.reason or "",
                             len(violation.boxes) if review.verdict == "confirm" else 0, status])
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
