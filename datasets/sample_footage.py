"""Render the sample footage: short synthetic CCTV clips of a residential compound, with ground truth.

    python -m datasets.sample_footage --out samples/footage            # both clips
    python -m datasets.sample_footage --out /tmp/x --clip gate_traffic --duration 5

Each clip ``<name>.mp4`` (H.264 High, yuv420p, 640x360, 10 fps, GOP 1 s, faststart) gets a sidecar
``<name>.json``: frame time and box (xyxy pixels) of every car in every frame, each car's role and
stop interval, and the zone polygons (normalised 0..1, x right, y down) of the fire lane, the parking
area and the gate. Everything is drawn by ``datasets.synth`` and is deterministic from ``--seed``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np

from datasets.synth import clutter
from datasets.synth.camera import PinholeCamera
from datasets.synth.cars import CarSpec, car_solid, random_car_spec
from datasets.synth.scene import GroundRect, Layout, ParkingRow, PostFx, SceneRenderer
from datasets.synth.solids import Lighting

FPS = 10
WIDTH, HEIGHT = 640, 360
START_TIME = dt.datetime(2025, 6, 14, 14, 3, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))


@dataclass
class CarScript:
    """One car's path: ``pose(t)`` returns (x, y, yaw) or None while the car is out of the scene."""

    car_id: int
    spec: CarSpec
    role: str
    pose: Callable[[float], tuple[float, float, float] | None]
    stopped: tuple[float, float] | None = None  # frame times (s) of the stop, if it stops
    stop_zone: str | None = None


def _ease_out(u: float) -> float:  # arrives with zero speed
    return 1 - (1 - u) ** 2


def _ease_in(u: float) -> float:  # leaves from standstill
    return u * u


def drive_through(t0: float, x_from: float, x_to: float, y: float, speed: float) -> Callable:
    """Constant-speed pass along the road from ``x_from`` to ``x_to`` starting at ``t0``."""
    duration = abs(x_to - x_from) / speed
    yaw = 0.0 if x_to > x_from else math.pi

    def pose(t: float):
        if not t0 <= t <= t0 + duration:
            return None
        return x_from + (x_to - x_from) * (t - t0) / duration, y, yaw

    return pose


def arrive_stop_leave(t_in: float, t_stop: float, t_go: float, t_out: float,
                      x_from: float, x_stop: float, x_to: float, y: float) -> Callable:
    """Drive in, brake to a standstill at ``x_stop`` by ``t_stop``, stand until ``t_go``, drive off."""
    yaw = 0.0 if x_to > x_from else math.pi

    def pose(t: float):
        if t < t_in or t > t_out:
            return None
        if t < t_stop:
            return x_from + (x_stop - x_from) * _ease_out((t - t_in) / (t_stop - t_in)), y, yaw
        if t <= t_go:
            return x_stop, y, yaw
        return x_stop + (x_to - x_stop) * _ease_in((t - t_go) / (t_out - t_go)), y, yaw

    return pose


def pass_with_pause(t0: float, x_from: float, x_pause: float, x_to: float, y: float, speed: float,
                    pause_s: float) -> Callable:
    """Drive at ``speed``, slow to a brief halt at ``x_pause`` (a gate barrier), then drive on."""
    d1, d2 = abs(x_pause - x_from), abs(x_to - x_pause)
    t1 = t0 + 2 * d1 / speed  # decelerating from ``speed`` to 0 takes twice as long as cruising
    t2 = t1 + pause_s
    t3 = t2 + 2 * d2 / speed
    return arrive_stop_leave(t0, t1, t2, t3, x_from, x_pause, x_to, y)


@dataclass
class ClipPlan:
    name: str
    duration_s: float
    camera: PinholeCamera
    layout: Layout
    zones: dict[str, tuple[str, GroundRect]]  # zone id -> (kind, ground rectangle)
    cars: list[CarScript]
    static_cars: list[CarScript]
    light: Callable[[float], Lighting]
    description: str


def _daylight(t: float, cloud: tuple[float, float] | None) -> Lighting:
    """Afternoon sun; an optional cloud dims the direct light between cloud[0] and cloud[1] seconds."""
    direct = 1.0
    if cloud and cloud[0] < t < cloud[1]:
        u = (t - cloud[0]) / (cloud[1] - cloud[0])
        direct = 1.0 - 0.6 * math.sin(math.pi * u) ** 2
    direct = round(direct, 2)  # quantised so the static background is re-lit at most ~40 times
    return Lighting(sun=(0.42, -0.45, 0.79), ambient=0.5 + 0.08 * (1 - direct), diffuse=0.5 * direct, sky=0.15,
                    shadow_strength=0.45 * direct)


def fire_lane_plan(seed: int, duration_s: float) -> ClipPlan:
    rng = np.random.default_rng(seed)
    camera = PinholeCamera(WIDTH, HEIGHT, 520, (0.0, 0.0, 7.5), yaw_deg=0.0, pitch_deg=30.0, roll_deg=0.6)
    parking = ParkingRow(x0=-11.25, y_kerb=12.9, side=-1, n_bays=9)
    fire_lane = GroundRect(-1.5, 7.5, 13.4, 20.0)
    layout = Layout(road_y=16.7, road_width=7.0, parking=[parking], fire_lane=fire_lane, fire_lane_style="hatch",
                    wall_y=23.5, near_ground="paving", far_ground="paving")
    layout.static = [
        clutter.wheelie_bin(8.6, 22.7, 0.0, (50, 120, 40)), clutter.wheelie_bin(9.4, 22.7, 0.05, (150, 90, 30)),
        clutter.wheelie_bin(10.2, 22.7, -0.05, (90, 90, 95)), clutter.planter(-6.0, 22.7, 0.0, 3.0, rng),
        clutter.planter(-12.0, 22.7, 0.0, 3.0, rng), clutter.bollard(-11.6, 12.6), clutter.bollard(11.6, 12.6),
        clutter.lamp_post(13.0, 21.3, 0.0), clutter.carton_pile(2.0, 22.9, 0.2, rng),
        clutter.two_wheeler(-9.5, 22.2, 0.1, rng),
    ]
    lane_east, lane_west = layout.lane_y(+1), layout.lane_y(-1)
    x_park, y_park, yaw_park = parking.bay_pose(2, facing_road=True)
    stopped = (14.0, 49.0) if duration_s >= 55 else (0.3 * duration_s, 0.75 * duration_s)
    t_in = max(0.0, stopped[0] - 6.0)
    cars = [
        CarScript(1, random_car_spec(rng, "sedan", (225, 225, 222)), "stops_on_fire_lane",
                  arrive_stop_leave(t_in, stopped[0], stopped[1], stopped[1] + 6.0, -16.0, 3.0, 18.0, lane_east),
                  stopped=stopped, stop_zone="fire_lane"),
        CarScript(2, random_car_spec(rng, "suv", (150, 75, 30)), "drives_through_fire_lane",
                  drive_through(0.5, 16.0, -16.0, lane_west, 4.5)),
        CarScript(3, random_car_spec(rng, "hatchback", (35, 35, 160)), "drives_through_fire_lane",
                  drive_through(0.45 * duration_s, 16.0, -16.0, lane_west, 5.0)),
    ]
    static_cars = [CarScript(4, random_car_spec(rng, "sedan", (30, 30, 32)), "parked_in_parking_area",
                             lambda t: (x_park, y_park, yaw_park), stopped=(0.0, duration_s), stop_zone="parking")]
    return ClipPlan("fire_lane_demo", duration_s, camera, layout,
                    {"fire_lane": ("fire_lane", fire_lane), "parking": ("parking", parking.rect())},
                    cars, static_cars, lambda t: _daylight(t, (0.33 * duration_s, 0.5 * duration_s)),
                    "Car 1 drives in, stops on the hatched fire lane for 35 s and leaves; cars 2 and 3 drive "
                    "through the fire lane without stopping; car 4 stays parked in a bay the whole time.")


def gate_plan(seed: int, duration_s: float) -> ClipPlan:
    rng = np.random.default_rng(seed)
    camera = PinholeCamera(WIDTH, HEIGHT, 480, (0.0, 0.0, 5.5), yaw_deg=18.0, pitch_deg=26.0, roll_deg=-0.8)
    gate = GroundRect(5.0, 7.0, 10.3, 16.7)
    fire_lane = GroundRect(-7.0, -1.0, 10.3, 16.7)
    parking = ParkingRow(x0=12.0, y_kerb=17.0, side=+1, n_bays=4, bay_width=2.4, bay_depth=5.8, parallel=True,
                         line_colour=(230, 230, 230))
    layout = Layout(road_y=13.5, road_width=6.8, parking=[parking], fire_lane=fire_lane, fire_lane_style="grid",
                    gate=gate, wall_y=26.0, near_ground="grass", far_ground="paving", centre_line="solid_yellow")
    layout.static = [
        clutter.guard_booth(6.0, 19.0, -math.pi / 2), clutter.bollard(4.2, 17.3, striped=False),
        clutter.tree(-4.0, 21.0, rng), clutter.tree(20.0, 23.0, rng), clutter.bollard(2.0, 17.2),
        clutter.bollard(9.5, 17.2), clutter.planter(-12.0, 24.5, 0.0, 4.0, rng), clutter.lamp_post(0.0, 9.3, 0.0, 4.5),
    ]
    east, west = layout.lane_y(+1), layout.lane_y(-1)
    scale = duration_s / 30.0
    cars = [
        CarScript(1, random_car_spec(rng, "suv"), "drives_through_gate",
                  pass_with_pause(0.5 * scale, -14.0, 5.8, 26.0, east, 5.0, 1.5)),
        CarScript(2, random_car_spec(rng, "sedan"), "drives_through_gate", drive_through(4.0 * scale, 26.0, -16.0, west, 5.5)),
        CarScript(3, random_car_spec(rng, "mpv"), "drives_through_gate",
                  pass_with_pause(10.0 * scale, -14.0, 5.8, 26.0, east, 4.5, 2.0)),
        CarScript(4, random_car_spec(rng, "hatchback"), "drives_through_gate",
                  drive_through(15.0 * scale, 26.0, -16.0, west, 6.0)),
        CarScript(5, random_car_spec(rng, "sedan"), "drives_through_gate",
                  drive_through(20.0 * scale, -14.0, 26.0, east, 6.5)),
        CarScript(6, random_car_spec(rng, "micro"), "drives_through_gate",
                  drive_through(23.0 * scale, 26.0, -16.0, west, 5.0)),
    ]
    return ClipPlan("gate_traffic", duration_s, camera, layout,
                    {"fire_lane": ("fire_lane", fire_lane), "parking": ("parking", parking.rect()),
                     "gate": ("gate", gate)},
                    cars, [], lambda t: _daylight(t, None),
                    "Six cars pass the compound gate (two pause briefly at the barrier line) and drive through "
                    "the fire-lane grid without stopping; the parallel bays stay empty. No violation.")


PLANS = {"fire_lane_demo": (fire_lane_plan, 60.0), "gate_traffic": (gate_plan, 30.0)}


def _flicker(t: float, phase: float) -> float:
    """Auto-exposure hunting and mains flicker: a few percent, smooth."""
    return 1.0 + 0.025 * math.sin(2 * math.pi * t / 6.3 + phase) + 0.01 * math.sin(2 * math.pi * t / 1.3)


def render_clip(plan: ClipPlan, out_dir: Path, seed: int, crf: int = 26) -> tuple[Path, Path]:
    """Render, encode and write ``<name>.mp4`` and ``<name>.json`` into ``out_dir``. Both files are
    written under a temporary name and renamed, so a reader never sees half a file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    renderer = SceneRenderer(plan.camera, plan.layout, rng)
    n_frames = int(round(plan.duration_s * FPS))
    everyone = plan.cars + plan.static_cars
    frames_gt = []
    video_path, json_path = out_dir / f"{plan.name}.mp4", out_dir / f"{plan.name}.json"
    tmp_video = video_path.with_suffix(".mp4.partial")
    phase = float(rng.uniform(0, 2 * math.pi))
    with av.open(str(tmp_video), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=FPS, options={
            "preset": "medium", "crf": str(crf), "g": str(FPS), "keyint_min": str(FPS), "sc_threshold": "0",
            "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.profile = "High"
        stream.codec_context.time_base = stream.time_base = Fraction(1, FPS)
        for index in range(n_frames):
            t = index / FPS
            solids = []
            for script in everyone:
                pose = script.pose(t)
                if pose is not None:
                    solids.append(car_solid(script.spec, *pose, object_id=script.car_id))
            stamp = (START_TIME + dt.timedelta(seconds=int(t))).strftime("%Y-%m-%d %H:%M:%S")
            post = PostFx(gain=_flicker(t, phase), noise_sigma=2.2, blur_sigma=0.55, vignette=0.18,
                          tint=(0.98, 1.0, 1.03), osd=stamp)
            image, labels = renderer.render(solids, plan.light(t), post, rng)
            frames_gt.append({"index": index, "time_s": round(t, 3), "objects": [
                {"id": car_id, "class": "car", "xyxy": [round(v, 1) for v in lab["xyxy"]],
                 "visible": round(lab["visible"], 2), "in_frame": round(lab["in_frame"], 2)}
                for car_id, lab in sorted(labels.items())]})
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[..., ::-1]), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    sidecar = {
        "clip": video_path.name,
        "description": plan.description,
        "generator": "python -m datasets.sample_footage",
        "seed": seed,
        "fps": FPS, "width": WIDTH, "height": HEIGHT, "frame_count": n_frames, "duration_s": plan.duration_s,
        "start_time": START_TIME.isoformat(),
        "time_note": "time_s is the frame's presentation time in the clip (frame index / fps); the burnt-in "
                     "on-screen clock reads start_time + time_s.",
        "box_note": "xyxy in pixels of the visible car body (wheels to roof, shadow excluded), clipped to the "
                    "frame; visible = fraction of the car's outline not hidden by nearer objects; in_frame = "
                    "fraction of the unclipped box inside the frame.",
        "camera": {"focal_px": plan.camera.focal_px, "position_m": list(plan.camera.position),
                   "yaw_deg": plan.camera.yaw_deg, "pitch_deg": plan.camera.pitch_deg,
                   "roll_deg": plan.camera.roll_deg},
        "zones": [{"id": zone_id, "kind": kind,
                   "polygon": [[round(float(x), 4), round(float(y), 4)] for x, y in renderer.zone_polygon(rect)]}
                  for zone_id, (kind, rect) in plan.zones.items()],
        "cars": [{"id": s.car_id, "class": "car", "role": s.role, "body_type": s.spec.body_type,
                  "stopped": None if s.stopped is None else {"from_s": s.stopped[0], "to_s": s.stopped[1],
                                                             "zone": s.stop_zone}}
                 for s in everyone],
        "frames": frames_gt,
    }
    tmp_json = json_path.with_suffix(".json.partial")
    tmp_json.write_text(json.dumps(sidecar, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    os.replace(tmp_video, video_path)
    os.replace(tmp_json, json_path)
    return video_path, json_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="samples/footage", help="output folder (default samples/footage)")
    parser.add_argument("--clip", choices=sorted(PLANS), action="append", help="render only this clip (repeatable)")
    parser.add_argument("--seed", type=int, default=7, help="scene and noise seed (default 7)")
    parser.add_argument("--duration", type=float, default=None, help="override the clip length in seconds (tests)")
    parser.add_argument("--crf", type=int, default=26, help="x264 CRF (default 26; higher = smaller file)")
    args = parser.parse_args(argv)
    for name in args.clip or sorted(PLANS):
        build, default_duration = PLANS[name]
        plan = build(args.seed, args.duration or default_duration)
        video, sidecar = render_clip(plan, Path(args.out), args.seed, args.crf)
        print(f"{video} ({video.stat().st_size / 1e6:.2f} MB), {sidecar}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
