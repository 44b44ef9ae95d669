"""End to end on the project's rule footage (samples/footage, `python -m datasets.rule_footage`): the real
pipeline (detector → tracker → rules → evidence) over each clip finds the labelled violation — right
rule, zone and time — and the clean clip of the same scene finds none. Plus an image sequence rendered
afresh (another seed) from the same real crops.

Detector: the demo's own (configs/demo.yaml): car-v1-int8, plus compound-v1-int8 for garbage, parcels and
people, plus the YOLOX-Nano teacher for the scooter in the lift, read from ../shared/weights (never
copied here). The lift tests are skipped where that file is absent, as the demo then runs without it.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vision.config import load_site_config
from vision.detector import MultiDetector, build_detector
from vision.evaluate_rules import evaluate_media

ROOT = Path(__file__).resolve().parents[1]
FOOTAGE = ROOT / "samples" / "footage"
DEMO = ROOT / "configs" / "demo.yaml"
TEACHER = ROOT.parent / "shared" / "weights" / "yolox_nano.onnx"


@pytest.fixture(scope="module")
def demo_site():
    site = load_site_config(DEMO)
    return site, build_detector(site, DEMO)


def needs_teacher():
    if not TEACHER.is_file():
        pytest.skip(f"{TEACHER} is absent: the demo runs without the teacher and the lift rule sees nothing")


def only(result, rule: str):
    return [r for r in result.raised if r.rule == rule]


def assert_found(result, rule: str, zone: str, max_late_s: float) -> None:
    assert result.expected and not result.misses, (result.raised, result.expected)
    assert not result.false_positives, result.false_positives
    (m,) = result.matches
    assert (m["rule"], m["zone"]) == (rule, zone)
    assert -2.0 <= m["time_to_alert_s"] <= max_late_s, m


def test_corridor_parcels_left_are_found_and_passers_by_are_not(demo_site, tmp_path):
    site, detector = demo_site
    result = evaluate_media(site, DEMO, FOOTAGE / "corridor_demo.mp4", detector, tmp_path)
    assert result.camera == "corridor-5f"
    # dwell counts from when the spot is static (a few short_s after it was put down)
    assert_found(result, "corridor_clutter", "corridor", max_late_s=12.0)
    assert only(result, "corridor_clutter")[0].start_s >= 20.0   # never before the parcels were there


def test_corridor_clean_clip_with_people_and_a_light_change_gives_nothing(demo_site, tmp_path):
    site, detector = demo_site
    result = evaluate_media(site, DEMO, FOOTAGE / "corridor_clean.mp4", detector, tmp_path,
                            camera_id="corridor-5f")
    assert result.camera == "corridor-5f" and result.frames >= 390 and result.raised == []


def test_corridor_image_sequence_rendered_from_the_real_crops(demo_site, tmp_path):
    from datasets.rule_footage import PLANS, render_frame

    plan = PLANS["corridor_demo"](23)                     # another seed than the committed clip
    folder = tmp_path / "corridor_seq"
    folder.mkdir()
    rng = np.random.default_rng(5)
    fps = 5
    for k in range(int(plan.duration_s * fps)):
        image, _ = render_frame(plan, k / fps, rng)
        cv2.imwrite(str(folder / f"{k:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    (folder / "sequence.json").write_text(json.dumps({
        "fps": fps, "duration_s": plan.duration_s, "start_time": plan.start_time.isoformat(), "zones": plan.zones,
        "expected_violations": plan.expected}))
    site, detector = demo_site
    result = evaluate_media(site, DEMO, folder, detector, tmp_path, camera_id="corridor-5f")
    assert result.frames == int(plan.duration_s * fps)
    assert_found(result, "corridor_clutter", "corridor", max_late_s=12.0)


def test_lift_motorbike_wheeled_in_is_found_fast(demo_site):
    needs_teacher()
    site, detector = demo_site
    result = evaluate_media(site, DEMO, FOOTAGE / "elevator_demo.mp4", detector)
    assert result.camera == "lift-2"
    assert_found(result, "ebike_indoor", "elevator", max_late_s=4.0)


def test_lift_clean_clip_with_a_rider_gives_nothing(demo_site):
    site, detector = demo_site
    result = evaluate_media(site, DEMO, FOOTAGE / "elevator_clean.mp4", detector, camera_id="lift-2")
    assert result.raised == []


def test_bin_station_heap_is_found_and_cleared(demo_site):
    site, detector = demo_site
    result = evaluate_media(site, DEMO, FOOTAGE / "bin_station_demo.mp4", detector)
    assert_found(result, "bin_overflow", "bin-station", max_late_s=20.0)
    (raised,) = only(result, "bin_overflow")
    assert raised.end_s is not None and raised.end_s >= 69.0       # ended once the bags were taken away


def test_bin_station_clean_clip_with_a_bag_dropped_into_a_bin_gives_nothing(demo_site):
    site, detector = demo_site
    result = evaluate_media(site, DEMO, FOOTAGE / "bin_station_clean.mp4", detector,
                            camera_id="bin-station")
    assert result.raised == []


def test_footage_sidecars_carry_attribution_and_clips_stay_small():
    for name in ("bin_station_demo", "corridor_demo", "elevator_demo"):
        truth = json.loads((FOOTAGE / f"{name}.json").read_text())
        assert truth["expected_violations"] and truth["sources"] and truth["attribution"]
        assert (FOOTAGE / f"{name}.mp4").stat().st_size <= 2_000_000
        assert 60 <= truth["duration_s"] <= 120


def test_the_demo_runs_three_models_with_the_classes_it_takes_from_each(demo_site):
    _, detector = demo_site
    assert isinstance(detector, MultiDetector)
    names = [d.model_version for d in detector.detectors]
    assert names[:2] == ["car-v1-int8", "compound-v1-int8"]
    kept = {d.model_version: {detector.class_names[i] for i in m if i >= 0}
            for d, m in zip(detector.detectors, detector._maps)}
    assert kept["compound-v1-int8"] == {"person", "bicycle", "two_wheeler", "garbage", "box_or_parcel"}
    assert "car" not in kept["compound-v1-int8"]           # the gate scenes' cars come from car-v1 only
