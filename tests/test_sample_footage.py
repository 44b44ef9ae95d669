"""The sample-footage builder: a regenerated clip is browser-playable H.264 with the promised shape,
and its ground truth tells the fire-lane story (one car stops on the fire lane, one drives through,
one stays in its parking bay)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DURATION_S = 12.0
FPS = 10


def build(out: Path, clip: str, duration_s: float, seed: int = 3) -> tuple[Path, dict]:
    """Run the builder the way a user does, into ``out``; return the clip and its parsed sidecar."""
    subprocess.run([sys.executable, "-m", "datasets.sample_footage", "--out", str(out), "--clip", clip,
                    "--duration", str(duration_s), "--seed", str(seed)], cwd=REPO, check=True, timeout=240,
                   capture_output=True)
    return out / f"{clip}.mp4", json.loads((out / f"{clip}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def fire_lane_clip(tmp_path_factory) -> tuple[Path, dict]:
    return build(tmp_path_factory.mktemp("footage"), "fire_lane_demo", DURATION_S)


def inside(polygon: list[list[float]], point: tuple[float, float]) -> bool:
    contour = np.array(polygon, np.float32).reshape(-1, 1, 2)
    return cv2.pointPolygonTest(contour, (float(point[0]), float(point[1])), False) >= 0


def anchor(obj: dict, truth: dict) -> tuple[float, float]:
    """Bottom centre of a box, normalised: where the car stands on the ground."""
    x0, _, x1, y1 = obj["xyxy"]
    return (x0 + x1) / 2 / truth["width"], y1 / truth["height"]


def track(truth: dict, car_id: int) -> list[tuple[float, dict]]:
    return [(f["time_s"], o) for f in truth["frames"] for o in f["objects"] if o["id"] == car_id]


def test_clip_is_browser_playable_h264(fire_lane_clip):
    path, truth = fire_lane_clip
    head = path.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and head.find(b"moov") < max(head.find(b"mdat"), 4096), "not faststart"
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.width, stream.height) == (640, 360)
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert float(stream.average_rate) == FPS
        keyframes = [i for i, packet in enumerate(container.demux(stream)) if packet.dts is not None and packet.is_keyframe]
    with av.open(str(path)) as container:
        frames = list(container.decode(container.streams.video[0]))
        duration = float(container.duration) / av.time_base
    assert frames[0].key_frame
    assert len(frames) == int(DURATION_S * FPS) == truth["frame_count"] == len(truth["frames"])
    assert duration == pytest.approx(DURATION_S, abs=0.15)
    assert keyframes == list(range(0, len(frames), FPS)), "GOP must be 1 s"
    assert frames[0].to_ndarray(format="rgb24").std() > 20, "frame looks blank"


def test_ground_truth_has_a_car_stopping_on_the_fire_lane(fire_lane_clip):
    _, truth = fire_lane_clip
    zones = {z["kind"]: z["polygon"] for z in truth["zones"]}
    assert {"fire_lane", "parking"} <= set(zones)
    for polygon in zones.values():
        assert len(polygon) >= 3 and all(0 <= x <= 1 and 0 <= y <= 1 for x, y in polygon)
    roles = {c["role"]: c for c in truth["cars"]}
    stopper = roles["stops_on_fire_lane"]
    t_from, t_to = stopper["stopped"]["from_s"], stopper["stopped"]["to_s"]
    assert t_to - t_from >= 0.4 * DURATION_S
    stopped = [o for t, o in track(truth, stopper["id"]) if t_from <= t <= t_to]
    assert len(stopped) >= (t_to - t_from) * FPS
    assert all(inside(zones["fire_lane"], anchor(o, truth)) for o in stopped)
    assert len({tuple(o["xyxy"]) for o in stopped}) == 1, "a stopped car must not move"
    # It arrives and leaves within the clip: seen outside its stop too.
    assert any(t < t_from for t, _ in track(truth, stopper["id"]))
    assert any(t > t_to for t, _ in track(truth, stopper["id"]))


def test_ground_truth_pass_through_and_parked_cars(fire_lane_clip):
    _, truth = fire_lane_clip
    zones = {z["kind"]: z["polygon"] for z in truth["zones"]}
    passing = [c for c in truth["cars"] if c["role"] == "drives_through_fire_lane"]
    assert passing
    for car in passing:
        on_lane = [o for _, o in track(truth, car["id"]) if inside(zones["fire_lane"], anchor(o, truth))]
        assert on_lane, f"car {car['id']} never crosses the fire lane"
        assert len({tuple(o["xyxy"]) for o in on_lane}) == len(on_lane), "a passing car never stands still"
    parked = next(c for c in truth["cars"] if c["role"] == "parked_in_parking_area")
    seen = track(truth, parked["id"])
    assert len(seen) == truth["frame_count"]
    assert all(inside(zones["parking"], anchor(o, truth)) and not inside(zones["fire_lane"], anchor(o, truth))
               for _, o in seen)


def test_builder_is_deterministic(tmp_path):
    _, first = build(tmp_path / "a", "gate_traffic", 3.0, seed=11)
    _, second = build(tmp_path / "b", "gate_traffic", 3.0, seed=11)
    assert first == second
    assert all(c["stopped"] is None for c in first["cars"]), "gate traffic only passes through"
