"""Reviewer feedback as a YOLO dataset and false-alarm rates with a suggested threshold."""
from __future__ import annotations

import datetime as dt
import io
import zipfile

import cv2
import numpy as np
import yaml

from service.feedback import suggest_threshold, yolo_labels
from workflow import make_user, post_event, review


def test_yolo_labels_normalise_and_clip():
    lines = yolo_labels([{"xyxy": [10, 20, 110, 70], "class_name": "car"},
                         {"xyxy": [100, 60, 200, 100], "class_name": "bike"},
                         {"xyxy": [300, 300, 310, 310], "class_name": "car"}], 128, 72, {"bike": 0, "car": 1})
    assert lines.splitlines() == ["1 0.468750 0.625000 0.781250 0.694444", "0 0.890625 0.916667 0.218750 0.166667"]


def test_suggested_threshold_keeps_95_percent_of_confirmed():
    confirmed = [0.5 + i / 100 for i in range(40)]  # 0.50 .. 0.89
    assert suggest_threshold(confirmed, [0.3, 0.45, 0.6]) == 0.52  # drops 2 of 40 confirmed, 2 false alarms
    assert suggest_threshold(confirmed, []) is None and suggest_threshold([], [0.3]) is None
    assert suggest_threshold([0.5], [0.9]) is None  # nothing to gain without losing confirmed ones


def test_dataset_and_rates(app, client, worker, make_event, evidence_bytes):
    supervisor = make_user(app, client, "sup", {"c1": "supervisor"})
    ids = [post_event(client, make_event, worker, start=dt.datetime(2026, 3, 1, 2, i, tzinfo=dt.timezone.utc),
                      confidence=0.5 + i / 10) for i in range(4)]
    assert review(client, supervisor, ids[0], "reject", "false_alarm").status_code == 201
    assert review(client, supervisor, ids[1], "reject", "duplicate").status_code == 201
    assert review(client, supervisor, ids[2]).status_code == 201
    assert review(client, supervisor, ids[3]).status_code == 201

    response = client.get("/api/v1/feedback/dataset.zip", params={"compound_id": "c1"}, headers=supervisor)
    assert response.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    names = set(archive.namelist())
    assert f"images/train/{ids[0]}.jpg" in names and f"images/train/{ids[1]}.jpg" not in names
    assert archive.read(f"labels/train/{ids[0]}.txt") == b""  # false alarm: a background image
    assert archive.read(f"labels/train/{ids[2]}.txt").decode().startswith("0 ")
    # the image is the clean clip frame at the sidecar's time (0.5 s: the white bar at x 50..60), not
    # the annotated snapshot; the labels are that frame's boxes scaled to it
    image = cv2.imdecode(np.frombuffer(archive.read(f"images/train/{ids[2]}.jpg"), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (72, 128, 3) and archive.read(f"images/train/{ids[2]}.jpg") != evidence_bytes["snapshot"]
    bright = np.flatnonzero(image.mean(axis=(0, 2)) > 128)
    assert 48 <= bright.min() and bright.max() <= 61
    assert archive.read(f"labels/train/{ids[2]}.txt").decode() == "0 0.468750 0.625000 0.781250 0.694444\n"
    manifest = archive.read("manifest.csv").decode()
    assert manifest.count(",ok") == 3 and "no_clean_frame" not in manifest
    assert yaml.safe_load(archive.read("data.yaml"))["names"] == {0: "car"}

    rates = client.get("/api/v1/feedback/false-alarms", headers=supervisor).json()
    assert len(rates) == 1
    assert (rates[0]["camera_id"], rates[0]["rule"], rates[0]["confirmed"], rates[0]["false_alarms"]) == (
        "cam1", "fire_lane", 2, 1)
    assert abs(rates[0]["false_alarm_rate"] - 1 / 3) < 1e-9
    assert rates[0]["suggested_threshold"] == 0.7 and rates[0]["false_alarms_removed"] == 1
