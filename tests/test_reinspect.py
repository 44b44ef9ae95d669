"""Re-inspection of rectification cases by the worker: the real pipeline on the sample clip (real model,
real rules) judges whether the case's zone is clear, and the real API records it (SQLite and PostgreSQL)."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from vision.config import load_site_config
from vision.detector import OnnxDetector
from vision.reinspect import Reinspector
from vision.sources import FileSource
from vision.worker import CameraPipeline

from browser_support import absolute_detector_paths
from workflow import future, make_user, past, post_event, review

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.yaml"
CLIP = ROOT / "samples" / "footage" / "fire_lane_demo.mp4"   # car 1 stands on the lane from 14 s to 49 s
T0 = 1_750_000_000.0


@pytest.fixture
def pipeline(tmp_path_factory):
    """The demo-gate camera of the demo site, with a short grace so the clip's tail counts as clear."""
    tmp = tmp_path_factory.mktemp("reinspect")
    raw = yaml.safe_load(DEMO.read_text())
    absolute_detector_paths(raw, DEMO.parent)
    raw["rules"]["fire_lane"]["grace_s"] = 4
    for compound in raw["compounds"]:
        for cam in compound["cameras"]:
            cam["source"] = str((DEMO.parent / cam["source"]).resolve())
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    site = load_site_config(path)
    compound, camera = site.cameras()[0]
    detector = OnnxDetector(site.detector.model, confidence=site.detector.confidence, iou=site.detector.iou,
                            threads=site.detector.threads)
    return CameraPipeline(site, compound, camera, detector, tmp)


def play(pipeline: CameraPipeline, source: FileSource, until_s: float) -> None:
    for frame in source:
        pipeline.process(frame)
        if frame.time_s - T0 >= until_s:
            return


def test_worker_reinspects_due_cases_from_the_live_scene(app, client, make_key, make_event, pipeline):
    worker = make_key("worker", compounds=("demo-compound",))
    people = {r: make_user(app, client, r, {"demo-compound": r}) for r in ("supervisor", "reviewer")}
    start = dt.datetime(2026, 3, 4, 2, 0, tzinfo=dt.timezone.utc)
    violation = post_event(client, make_event, worker, compound_id="demo-compound", camera_id="demo-gate",
                           zone_id="fire-lane", start=start)
    assert review(client, people["reviewer"], violation).status_code == 201
    case_id = client.get(f"/api/v1/events/{violation}", headers=people["reviewer"]).json()["case_id"]
    # the deadline has passed: the case is due for a re-inspection
    assign = client.post(f"/api/v1/cases/{case_id}/assign", headers=people["supervisor"],
                         json={"assignee": "保洁组", "deadline": past()})
    assert assign.status_code == 200, assign.text

    key = worker["X-API-Key"]
    inspector = Reinspector({"demo-gate": pipeline}, "http://unused", key, min_gap_s=600, client=client)
    # no frame yet: nothing can be vouched for, nothing is posted
    assert inspector.run_once() == 0

    source = FileSource(str(CLIP), "demo-gate", sample_fps=5, start_time_s=T0)
    with source:
        play(pipeline, source, 30.0)            # the car stands on the fire lane
        assert inspector.run_once() == 1
        case = client.get(f"/api/v1/cases/{case_id}", headers=people["supervisor"]).json()
        assert case["state"] == "overdue" and case["inspections"][-1]["scene_clear"] is False
        assert inspector.run_once() == 0        # once per min_gap_s, not at every poll

        # the property rectifies; the supervisor reopens with a new deadline, the team rectifies again
        assert client.post(f"/api/v1/cases/{case_id}/reopen", headers=people["supervisor"],
                           json={"deadline": future()}).status_code == 200
        assert client.post(f"/api/v1/cases/{case_id}/rectify", headers=people["reviewer"],
                           json={"note": "车已挪走"}).status_code == 200
        play(pipeline, source, 59.0)            # the car left at 49 s
    inspector.min_gap_s = 0
    assert inspector.run_once() == 1
    case = client.get(f"/api/v1/cases/{case_id}", headers=people["supervisor"]).json()
    assert case["state"] == "reinspected" and case["proposal"] == "close"
    last = case["inspections"][-1]
    assert last["scene_clear"] is True and last["before_url"]
    after = client.get(last["after_url"], headers=people["supervisor"])
    assert after.status_code == 200 and after.content[:2] == b"\xff\xd8"
    # closed: no longer due, nothing more to post
    assert client.post(f"/api/v1/cases/{case_id}/close", headers=people["supervisor"]).status_code == 200
    assert inspector.run_once() == 0
