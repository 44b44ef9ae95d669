"""Random compound scenes for synthetic training frames: camera pose, layout, clutter, cars and
lighting are all drawn from broad ranges so the detector does not learn one view."""
from __future__ import annotations

import math

import cv2
import numpy as np

from datasets.synth import clutter
from datasets.synth.camera import PinholeCamera
from datasets.synth.cars import car_solid, random_car_spec
from datasets.synth.scene import GroundRect, Layout, ParkingRow, PostFx
from datasets.synth.solids import Lighting, Solid


def random_camera(rng: np.random.Generator) -> PinholeCamera:
    width, height = (640, 360) if rng.random() < 0.75 else (640, 480)
    hfov = math.radians(rng.uniform(48, 95))
    focal = (width / 2) / math.tan(hfov / 2)
    return PinholeCamera(width, height, focal, (float(rng.uniform(-5, 5)), 0.0, float(rng.uniform(3.0, 12.0))),
                         yaw_deg=float(rng.uniform(-75, 75)), pitch_deg=float(rng.uniform(16, 60)),
                         roll_deg=float(rng.normal(0, 1.5)))


def random_layout(camera: PinholeCamera, rng: np.random.Generator) -> Layout:
    pitch = math.radians(camera.pitch_deg)
    look = camera.position[2] / math.tan(pitch)  # ground distance to where the optical axis lands
    look_y = look * math.cos(math.radians(camera.yaw_deg))
    road_width = float(rng.uniform(5.0, 8.0))
    road_y = max(road_width / 2 + 0.5, look_y + rng.uniform(-0.4, 0.4) * look)
    cx = camera.position[0]
    layout = Layout(road_y=road_y, road_width=road_width,
                    extent=GroundRect(cx - 40, cx + 40, -6, road_y + 30),
                    near_ground=str(rng.choice(["paving", "grass"], p=[0.6, 0.4])),
                    far_ground=str(rng.choice(["paving", "grass"], p=[0.75, 0.25])),
                    centre_line=str(rng.choice(["dashed", "none", "solid_yellow"], p=[0.5, 0.3, 0.2])))
    road = layout.road
    far_edge = road.y1 + 0.3
    near_edge = road.y0 - 0.3
    lines = (225, 225, 225) if rng.random() < 0.8 else (40, 190, 230)
    if rng.random() < 0.75:
        parallel = rng.random() < 0.3
        layout.parking.append(ParkingRow(cx - 30 + rng.uniform(-3, 3), near_edge, -1, 24, bay_width=rng.uniform(2.3, 2.7),
                                         bay_depth=rng.uniform(4.8, 5.5) if not parallel else rng.uniform(5.5, 6.5),
                                         parallel=parallel, line_colour=lines))
    if rng.random() < 0.55:
        parallel = rng.random() < 0.35
        row = ParkingRow(cx - 30 + rng.uniform(-3, 3), far_edge, +1, 24, bay_width=rng.uniform(2.3, 2.7),
                         bay_depth=rng.uniform(4.8, 5.5) if not parallel else rng.uniform(5.5, 6.5),
                         parallel=parallel, line_colour=lines)
        layout.parking.append(row)
        far_edge = row.rect().y1
    if rng.random() < 0.5:
        x0 = cx + rng.uniform(-15, 10)
        layout.fire_lane = GroundRect(x0, x0 + rng.uniform(6, 20), road.y0 + 0.2, road.y1 - 0.2)
        layout.fire_lane_style = str(rng.choice(["hatch", "grid", "text"]))
    if rng.random() < 0.85:
        layout.wall_y = far_edge + rng.uniform(1.5, 6.0)
        layout.wall_height = float(rng.uniform(6, 30))
    layout.static = random_clutter(layout, rng, cx)
    return layout


def random_clutter(layout: Layout, rng: np.random.Generator, cx: float) -> list[Solid]:
    road = layout.road
    far_y = (layout.wall_y - 0.6) if layout.wall_y is not None else road.y1 + rng.uniform(2, 8)
    items: list[Solid] = []
    for _ in range(int(rng.integers(0, 10))):
        x = cx + rng.uniform(-25, 25)
        near = rng.random() < 0.4
        y = road.y0 - rng.uniform(6.0, 9.0) if near else far_y - rng.uniform(0, 0.8)
        kind = rng.choice(["bin", "planter", "bollard", "lamp", "carton", "tree", "two_wheeler", "booth"],
                          p=[0.25, 0.15, 0.12, 0.1, 0.1, 0.12, 0.13, 0.03])
        yaw = float(rng.normal(0, 0.2))
        if kind == "bin":
            colour = [(50, 120, 40), (150, 90, 30), (90, 90, 95), (40, 40, 170)][int(rng.integers(4))]
            for k in range(int(rng.integers(1, 4))):
                items.append(clutter.wheelie_bin(x + 0.8 * k, y, yaw, colour))
        elif kind == "planter":
            items.append(clutter.planter(x, y, yaw, float(rng.uniform(1.5, 4)), rng))
        elif kind == "bollard":
            for k in range(int(rng.integers(1, 5))):
                items.append(clutter.bollard(x + 1.5 * k, road.y0 - 0.5 if near else road.y1 + 0.5, rng.random() < 0.6))
        elif kind == "lamp":
            items.append(clutter.lamp_post(x, road.y1 + 0.6 if not near else road.y0 - 0.6, float(rng.uniform(0, 3.14))))
        elif kind == "carton":
            items.append(clutter.carton_pile(x, y, yaw, rng))
        elif kind == "tree":
            items.append(clutter.tree(x, y if not near else road.y0 - rng.uniform(6.5, 10), rng))
        elif kind == "two_wheeler":
            for k in range(int(rng.integers(1, 5))):
                items.append(clutter.two_wheeler(x + 0.8 * k, y, float(rng.choice([1, -1]) * np.pi / 2 + rng.normal(0, 0.2)), rng))
        else:
            items.append(clutter.guard_booth(x, y - 1.0, float(rng.uniform(-3.14, 3.14))))
    return items


def _footprint(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    pts = np.array([[length / 2, width / 2], [-length / 2, width / 2], [-length / 2, -width / 2], [length / 2, -width / 2]])
    return (pts @ np.array([[c, s], [-s, c]]) + [x, y]).astype(np.float32)


def random_cars(layout: Layout, camera: PinholeCamera, rng: np.random.Generator, first_id: int = 1,
                headlights: bool = False) -> list[Solid]:
    """Cars parked in bays, driving in lanes, and a few standing anywhere (on the fire lane, askew)."""
    poses: list[tuple[float, float, float]] = []
    cx = camera.position[0]
    for row in layout.parking:
        occupancy = rng.uniform(0.0, 0.9)
        for i in range(row.n_bays):
            if rng.random() < occupancy:
                x, y, yaw = row.bay_pose(i, facing_road=bool(rng.random() < 0.6))
                poses.append((x + rng.normal(0, 0.15), y + rng.normal(0, 0.15), yaw + rng.normal(0, 0.05)))
    for _ in range(int(rng.poisson(1.5))):
        direction = 1 if rng.random() < 0.5 else -1
        poses.append((cx + rng.uniform(-30, 30), layout.lane_y(direction) + rng.normal(0, 0.3),
                      (0.0 if direction > 0 else math.pi) + rng.normal(0, 0.08)))
    for _ in range(int(rng.poisson(0.7))):  # stopped on the fire lane or at odd angles
        if layout.fire_lane is not None and rng.random() < 0.6:
            f = layout.fire_lane
            x, y = rng.uniform(f.x0 + 2, f.x1 - 2), rng.uniform(f.y0 + 1, f.y1 - 1)
        else:
            x, y = cx + rng.uniform(-20, 20), layout.road_y + rng.uniform(-8, 8)
        poses.append((x, y, float(rng.uniform(-math.pi, math.pi))))
    solids: list[Solid] = []
    taken: list[np.ndarray] = []
    for x, y, yaw in rng.permutation(np.array(poses, dtype=float)) if poses else []:
        spec = random_car_spec(rng)
        fp = _footprint(x, y, yaw, spec.length + 0.3, spec.width + 0.3)
        if any(cv2.intersectConvexConvex(fp, other)[0] > 0 for other in taken):
            continue
        depth = camera.to_camera(np.array([[x, y, 0.8]]))[0, 2]
        if depth < 1.5:
            continue
        taken.append(fp)
        solids.append(car_solid(spec, float(x), float(y), float(yaw), object_id=first_id + len(solids),
                                headlights_on=headlights))
    return solids


def random_lighting(rng: np.random.Generator) -> tuple[Lighting, PostFx, str]:
    """Day, overcast, dusk, or night (IR grey or dim colour), with camera artefacts to match."""
    mode = str(rng.choice(["sun", "overcast", "dusk", "night_ir", "night_colour"], p=[0.45, 0.25, 0.1, 0.13, 0.07]))
    elevation = math.radians(rng.uniform(20, 75))
    azimuth = rng.uniform(0, 2 * math.pi)
    sun = (math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth), math.sin(elevation))
    blur = float(rng.uniform(0.3, 1.2))
    noise = float(rng.uniform(1.0, 5.0))
    vignette = float(rng.uniform(0, 0.3))
    tint = tuple(float(v) for v in rng.normal(1.0, 0.04, 3))
    if mode == "sun":
        light = Lighting(sun, ambient=rng.uniform(0.4, 0.6), diffuse=rng.uniform(0.4, 0.6), sky=0.15,
                         shadow_strength=rng.uniform(0.35, 0.6))
        post = PostFx(gain=rng.uniform(0.85, 1.15), tint=tint, noise_sigma=noise, blur_sigma=blur, vignette=vignette)
    elif mode == "overcast":
        light = Lighting(sun, ambient=rng.uniform(0.7, 0.9), diffuse=0.1, sky=0.15, shadow_strength=0.05)
        post = PostFx(gain=rng.uniform(0.8, 1.1), tint=tint, noise_sigma=noise, blur_sigma=blur, vignette=vignette)
    elif mode == "dusk":
        light = Lighting((sun[0], sun[1], 0.25), ambient=0.45, diffuse=0.35, sky=0.1, shadow_strength=0.3,
                         headlights=rng.random() < 0.5)
        post = PostFx(gain=rng.uniform(0.5, 0.8), tint=(0.8, 0.95, 1.15), noise_sigma=noise + 2, blur_sigma=blur,
                      vignette=vignette)
    elif mode == "night_ir":
        light = Lighting((0.0, -0.3, 0.95), ambient=0.7, diffuse=0.3, sky=0.0, shadow_strength=0.1, headlights=True)
        post = PostFx(gain=rng.uniform(0.55, 0.9), noise_sigma=noise + 3, blur_sigma=blur + 0.3, vignette=0.35,
                      grayscale=True)
    else:
        light = Lighting((0.2, -0.2, 0.95), ambient=0.45, diffuse=0.2, sky=0.0, shadow_strength=0.15, headlights=True)
        post = PostFx(gain=rng.uniform(0.35, 0.55), tint=(0.9, 1.0, 1.15), noise_sigma=noise + 3,
                      blur_sigma=blur + 0.3, vignette=0.4)
    if rng.random() < 0.7:
        post.osd = f"20{rng.integers(19, 26)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d} " \
                   f"{rng.integers(0, 24):02d}:{rng.integers(0, 60):02d}:{rng.integers(0, 60):02d}"
    return light, post, mode
