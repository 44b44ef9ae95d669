"""Labelled footage for the bin, corridor and e-bike rules, built from real image pixels.

Real crops of labelled objects in ``../shared/data`` (garbage bags from ``woosong_trashbags``,
parcels from ``roboflow_packages``, motor scooters/motorbikes from ``modes_of_transport``) are pasted,
with soft edges and a contact shadow, over a fixed background rendered here (numpy + OpenCV, with the
textures of ``datasets/synth``). People are drawn figures (no licensed person crops are available).
The datasets' files are only read; the clips are the project's own footage.

    .venv/bin/python -m datasets.rule_footage --out samples/footage       # deterministic (seed 11)

Writes, per clip, ``<name>.mp4`` (H.264 High, 640x360, 10 fps, GOP 10, faststart) and ``<name>.json``:
zones, ``expected_violations: [{rule, zone, from_s, to_s}]`` (what happened, in clip seconds; whether
it is a violation under a site's ``dwell_s`` is the evaluator's business), per-frame ground-truth
boxes, the crops used and their attribution.

| clip | length | what happens |
| --- | --- | --- |
| ``bin_station_demo`` | 90 s | bags pile up on and around two bins (12 s – 33 s), stay, are cleared at 70 s |
| ``corridor_demo`` | 90 s | a person walks through (4–12 s); parcels are put down at 20 s and left |
| ``elevator_demo`` | 80 s | a person rides (3–10 s); a motorbike is wheeled in at 18 s, stands, is wheeled out at 55 s |
| ``*_clean`` | 40 s | the same scenes with people passing (and, at the bins, a bag dropped *into* a bin): no violation |
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import cv2
import numpy as np

from datasets.synth.textures import fractal_noise, paving, tint

FPS, WIDTH, HEIGHT = 10, 640, 360
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TZ = dt.timezone(dt.timedelta(hours=8))

ATTRIBUTION = {
    "woosong_trashbags": '"Trashbags - segmentation V1 + v2" by the WoosongVision Roboflow workspace '
                         "(itsCaveMan/WoosongVision), CC BY 4.0, "
                         "https://universe.roboflow.com/woosongvision/trashbags-segmentation-v1-v2 ; "
                         "crops of labelled bags, scaled, soft-edged and pasted into rendered scenes.",
    "roboflow_packages": "Packages dataset, Roboflow Community (public domain), "
                         "https://universe.roboflow.com/joseph-nelson/packages-g0ton ; crops of labelled parcels.",
    "modes_of_transport": '"Modes of Transport" (v2) by Roboflow user workspace ts-2qpml, CC BY 4.0, '
                          "https://universe.roboflow.com/ts-2qpml/modes-of-transport ; crops of labelled "
                          "two-wheelers, scaled, soft-edged and pasted into rendered scenes.",
}

# Crops chosen by eye from contact sheets of the labelled boxes (whole object, little clutter):
# (dataset, split, image stem, line of the box in the label file).
BAGS = [("woosong_trashbags", "train", s, i) for s, i in (
    ("-2023-11-30-170345_png.rf.064c72adf3ce8dea5a5a9062f2dbdf96", 4),
    ("-2023-11-30-170435_png.rf.4a034b18d76c7008d8f565bfe4822fd4", 4),
    ("-2023-11-30-171914_png.rf.489664cc35204f0054b605e28e015121", 4),
    ("-2023-11-30-173948_png.rf.72183ffe5e9f57a35208970ba1e45435", 2),
    ("-2023-12-08-200927_png.rf.1092a6936194cae35e6ce1789bf8f8de", 3),
    ("-2023-12-08-201332_png.rf.3eddb58311e78bd457a8eb4e425e44af", 0),
    ("Screenshot-2023-11-30-174257_png.rf.083b7952f71d4f0afe4459f13abe6bf4", 7),
    ("Screenshot-2023-12-03-053014_png.rf.6cf7127cad22c88d39f0f8d78e14074d", 0),
    ("Screenshot-2023-12-03-at-2-23-44-AM_png.rf.44cd8d207aef452bb6c3484784f7afd5", 4),
    ("Screenshot-2023-12-03-at-2-36-32-AM_png.rf.22fe218f5f7c2d4c5a886846d0946f24", 2),
    ("Screenshot-2023-12-03-at-2-52-28-AM_png.rf.474b24d406a74ecc57cfed60eb43d716", 8),
    ("Screenshot-2023-12-07-224812_png.rf.ac7ae95a674fad8e829051f5abd80b1d", 0),
)]
PARCELS = [("roboflow_packages", "train", s, i) for s, i in (
    ("IMG_6821_jpg.rf.cc6d8df5c5a6a9be7053771aeb767a9f", 1),
    ("PXL_20201105_173148569_jpg.rf.4d541b1870439829ccbfa2787fe4a4f3", 0),
    ("PXL_20201107_191147238_jpg.rf.dbe79dbf10f915d9fc745dd0defb608d", 0),
    ("PXL_20201107_214721193_jpg.rf.dba683bd862a03657dc6e1e00e945ff7", 0),
    ("package_2_jpg.rf.00c884b498a2d19ef187c7a0905e786d", 1),
)]
TWO_WHEELERS = [("modes_of_transport", "train", s, i) for s, i in (
    ("IMG-20240615-WA0020_jpg.rf.33759f57bbc580bf6bfd6921df153d22", 0),                           # motorbike
    ("WhatsApp-Image-2024-06-15-at-18-11-21_a3b4828c_jpg.rf.2e01ed95fea8d93fb10cf13ae9664d40", 0),  # scooter
    ("IMG-20240615-WA0003_jpg.rf.12b2cd7de6f4ccb45979fce7f0e8caa7", 2),                           # motorbike
)]


# ---------------------------------------------------------------------------------------- sprites
@dataclass
class Sprite:
    """A real object crop with a soft alpha edge. ``image`` BGR uint8, ``alpha`` float32 0..1."""

    image: np.ndarray
    alpha: np.ndarray
    source: tuple[str, str, str, int]

    def scaled(self, height_px: float) -> "Sprite":
        h, w = self.image.shape[:2]
        size = (max(2, int(round(w * height_px / h))), max(2, int(round(height_px))))
        return Sprite(cv2.resize(self.image, size, interpolation=cv2.INTER_AREA),
                      cv2.resize(self.alpha, size, interpolation=cv2.INTER_AREA), self.source)


def load_sprite(entry: tuple[str, str, str, int], data_dir: Path = DATA, feather: float = 0.12) -> Sprite:
    """Crop the labelled box ``entry`` out of its image and give it a soft (feathered) rounded edge."""
    dataset, split, stem, line = entry
    image_path = data_dir / dataset / "images" / split / f"{stem}.jpg"
    image = cv2.imread(str(image_path))
    if image is None:
        raise FileNotFoundError(f"cannot read {image_path}")
    rows = (data_dir / dataset / "labels" / split / f"{stem}.txt").read_text().split("\n")
    _, cx, cy, bw, bh = map(float, rows[line].split())
    H, W = image.shape[:2]
    x0, y0 = max(0, int((cx - bw / 2) * W)), max(0, int((cy - bh / 2) * H))
    x1, y1 = min(W, int(math.ceil((cx + bw / 2) * W))), min(H, int(math.ceil((cy + bh / 2) * H)))
    crop = image[y0:y1, x0:x1].copy()
    h, w = crop.shape[:2]
    # rounded-rectangle mask, blurred: the crop's own background fades out at its corners and edges
    mask = np.zeros((h, w), np.float32)
    r = int(min(h, w) * 0.22)
    inset = int(min(h, w) * feather * 0.5)
    cv2.rectangle(mask, (inset + r, inset), (w - 1 - inset - r, h - 1 - inset), 1.0, -1)
    cv2.rectangle(mask, (inset, inset + r), (w - 1 - inset, h - 1 - inset - r), 1.0, -1)
    for px, py in ((inset + r, inset + r), (w - 1 - inset - r, inset + r), (inset + r, h - 1 - inset - r),
                   (w - 1 - inset - r, h - 1 - inset - r)):
        cv2.circle(mask, (px, py), r, 1.0, -1)
    sigma = max(1.0, min(h, w) * feather * 0.35)
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    return Sprite(crop, np.clip(mask * 1.1, 0, 1), entry)


def paste(canvas: np.ndarray, sprite: Sprite, bottom_centre: tuple[float, float], shadow: float = 0.45,
          gain: float = 1.0) -> tuple[float, float, float, float] | None:
    """Paste ``sprite`` standing on ``bottom_centre`` (pixels) with a soft elliptic contact shadow.
    Returns the visible box (x0, y0, x1, y1) clipped to the canvas, or None when fully outside."""
    H, W = canvas.shape[:2]
    h, w = sprite.image.shape[:2]
    bx, by = bottom_centre
    x0, y0 = int(round(bx - w / 2)), int(round(by - h))
    if shadow > 0:
        sh = np.zeros((H, W), np.float32)
        cv2.ellipse(sh, (int(bx + w * 0.06), int(by - h * 0.02)), (int(w * 0.55), max(2, int(h * 0.09))), 0, 0, 360,
                    1.0, -1)
        sh = cv2.GaussianBlur(sh, (0, 0), max(2.0, w * 0.06))
        canvas[:] = (canvas.astype(np.float32) * (1.0 - shadow * sh[..., None])).astype(np.uint8)
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    src = sprite.image[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0].astype(np.float32) * gain
    a = sprite.alpha[cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0, None]
    region = canvas[cy0:cy1, cx0:cx1].astype(np.float32)
    canvas[cy0:cy1, cx0:cx1] = np.clip(region * (1 - a) + src * a, 0, 255).astype(np.uint8)
    return float(cx0), float(cy0), float(cx1), float(cy1)


def draw_person(canvas: np.ndarray, foot: tuple[float, float], height_px: float, phase: float,
                shirt: tuple[int, int, int], trousers: tuple[int, int, int]) -> tuple[float, float, float, float]:
    """A walking figure (drawn, not a photo) standing on ``foot``; returns its box."""
    fx, fy = foot
    hgt = height_px
    sh = np.zeros(canvas.shape[:2], np.float32)
    cv2.ellipse(sh, (int(fx), int(fy)), (int(hgt * 0.16), max(2, int(hgt * 0.03))), 0, 0, 360, 1.0, -1)
    sh = cv2.GaussianBlur(sh, (0, 0), 3)
    canvas[:] = (canvas.astype(np.float32) * (1 - 0.4 * sh[..., None])).astype(np.uint8)
    swing = math.sin(phase) * hgt * 0.12
    hip = (fx, fy - hgt * 0.47)
    leg_w = max(2, int(hgt * 0.07))
    for s in (1, -1):
        cv2.line(canvas, (int(hip[0]), int(hip[1])), (int(fx + s * swing), int(fy)), trousers, leg_w, cv2.LINE_AA)
    torso = np.array([[fx - hgt * 0.11, fy - hgt * 0.80], [fx + hgt * 0.11, fy - hgt * 0.80],
                      [fx + hgt * 0.10, fy - hgt * 0.45], [fx - hgt * 0.10, fy - hgt * 0.45]], np.int32)
    cv2.fillConvexPoly(canvas, torso, shirt, cv2.LINE_AA)
    arm_w = max(2, int(hgt * 0.05))
    for s in (1, -1):
        cv2.line(canvas, (int(fx + s * hgt * 0.1), int(fy - hgt * 0.78)),
                 (int(fx + s * hgt * 0.12 - s * swing * 0.6), int(fy - hgt * 0.48)), shirt, arm_w, cv2.LINE_AA)
    cv2.circle(canvas, (int(fx), int(fy - hgt * 0.89)), max(2, int(hgt * 0.075)), (120, 150, 190), -1, cv2.LINE_AA)
    cv2.circle(canvas, (int(fx), int(fy - hgt * 0.92)), max(2, int(hgt * 0.07)), (30, 30, 35), -1, cv2.LINE_AA)
    x0, x1 = fx - hgt * 0.16, fx + hgt * 0.16
    return (max(0.0, x0), max(0.0, fy - hgt * 0.97), min(float(WIDTH), x1), min(float(HEIGHT), fy))


# ------------------------------------------------------------------------------------ backgrounds
def _warp_into(canvas: np.ndarray, texture: np.ndarray, quad: np.ndarray) -> None:
    """Draw ``texture`` onto the quadrilateral ``quad`` (4x2: tl, tr, br, bl) of ``canvas``."""
    th, tw = texture.shape[:2]
    src = np.float32([[0, 0], [tw, 0], [tw, th], [0, th]])
    m = cv2.getPerspectiveTransform(src, np.float32(quad))
    H, W = canvas.shape[:2]
    warped = cv2.warpPerspective(texture, m, (W, H), flags=cv2.INTER_LINEAR)
    mask = np.zeros((H, W), np.uint8)
    cv2.fillConvexPoly(mask, np.int32(np.round(quad)), 255, cv2.LINE_AA)
    canvas[mask > 0] = warped[mask > 0]


def _plain(h: int, w: int, colour, rng: np.random.Generator, amount: float = 0.05) -> np.ndarray:
    return tint(1.0 + amount * fractal_noise(h, w, rng, octaves=4, base_cell=48), colour)


def _brushed_steel(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    streak = cv2.resize(rng.normal(0, 1, (1, w)).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    gray = 1.0 + 0.05 * streak + 0.04 * fractal_noise(h, w, rng, octaves=3, base_cell=64)
    return tint(gray, (168, 164, 160))


def corridor_background(rng: np.random.Generator) -> np.ndarray:
    """A residential corridor in one-point perspective: tiled floor, painted walls with flat doors,
    ceiling lamps, a window at the end."""
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    back = np.float32([[250, 112], [390, 112], [390, 198], [250, 198]])
    tl, tr, br, bl = (-90, -40), (730, -40), (730, 360), (-90, 360)
    floor_q = np.float32([bl, br, back[2], back[3]])[[3, 2, 1, 0]]     # tl, tr, br, bl order
    floor_tex = paving(300, 240, rng, 30, (150, 160, 168))
    _warp_into(img, floor_tex, np.float32([back[3], back[2], br, bl]))
    left = _plain(200, 400, (196, 214, 222), rng)
    right = _plain(200, 400, (190, 208, 218), rng)
    for tex in (left, right):  # doors and skirting, in wall texture space
        for x in (60, 250):
            cv2.rectangle(tex, (x, 30), (x + 70, 200), (60, 85, 120), -1)
            cv2.rectangle(tex, (x + 6, 36), (x + 64, 200), (75, 105, 145), -1)
            cv2.circle(tex, (x + 58, 120), 4, (170, 190, 200), -1)
        cv2.rectangle(tex, (0, 188), (400, 200), (110, 120, 128), -1)
    _warp_into(img, left, np.float32([tl, back[0], back[3], bl]))
    _warp_into(img, right, np.float32([back[1], tr, br, back[2]]))
    ceiling = _plain(120, 300, (225, 228, 230), rng, 0.03)
    for x in (40, 150, 260):
        cv2.rectangle(ceiling, (x - 2, 50), (x + 22, 70), (250, 252, 252), -1)
    _warp_into(img, ceiling, np.float32([tl, tr, back[1], back[0]]))
    end = _plain(86, 140, (200, 205, 210), rng)
    cv2.rectangle(end, (40, 10), (100, 60), (230, 215, 180), -1)      # a bright window
    cv2.line(end, (70, 10), (70, 60), (120, 120, 120), 2)
    _warp_into(img, end, back)
    del floor_q
    return img


def elevator_background(rng: np.random.Generator) -> np.ndarray:
    """The inside of a lift seen from a camera in the ceiling above the door: steel walls, a handrail,
    a dark tiled floor; the door is behind the camera (things come in from the bottom edge)."""
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    back = np.float32([[180, 40], [460, 40], [460, 210], [180, 210]])
    tl, tr, br, bl = (-40, -60), (680, -60), (680, 380), (-40, 380)
    floor = paving(240, 240, rng, 40, (62, 64, 70))
    _warp_into(img, floor, np.float32([back[3], back[2], br, bl]))
    for quad in (np.float32([tl, back[0], back[3], bl]), np.float32([back[1], tr, br, back[2]])):
        tex = _brushed_steel(200, 300, rng)
        cv2.rectangle(tex, (0, 112), (300, 118), (205, 205, 200), -1)   # handrail
        _warp_into(img, tex, quad)
    ceiling = _plain(80, 300, (215, 218, 220), rng, 0.02)
    _warp_into(img, ceiling, np.float32([tl, tr, back[1], back[0]]))
    wall = _brushed_steel(170, 280, rng)
    cv2.rectangle(wall, (0, 95), (280, 101), (205, 205, 200), -1)
    cv2.rectangle(wall, (236, 40), (262, 100), (90, 90, 95), -1)        # button panel
    for k in range(6):
        cv2.circle(wall, (249, 48 + k * 9), 3, (200, 220, 230), -1)
    _warp_into(img, wall, back)
    return img


def _wheelie_bin(img: np.ndarray, x0: int, y_ground: int, width: int, colour) -> tuple[int, int, int, int]:
    """A 240 l wheelie bin seen from the front, standing on ``y_ground``; returns its box."""
    h = int(width * 1.45)
    body = np.int32([[x0 + 4, y_ground - h + 14], [x0 + width - 4, y_ground - h + 14],
                     [x0 + width - 10, y_ground - 8], [x0 + 10, y_ground - 8]])
    cv2.fillConvexPoly(img, body, colour, cv2.LINE_AA)
    dark = tuple(int(c * 0.7) for c in colour)
    for k in range(3):
        cv2.line(img, (x0 + 16 + k * (width - 32) // 2, y_ground - h + 30),
                 (x0 + 18 + k * (width - 36) // 2, y_ground - 20), dark, 2, cv2.LINE_AA)
    cv2.rectangle(img, (x0, y_ground - h), (x0 + width, y_ground - h + 16), tuple(int(c * 0.85) for c in colour), -1)
    cv2.rectangle(img, (x0 + width // 2 - 12, y_ground - h + 4), (x0 + width // 2 + 12, y_ground - h + 9),
                  (40, 40, 40), -1)
    for wx in (x0 + 14, x0 + width - 14):
        cv2.circle(img, (wx, y_ground - 6), 7, (25, 25, 25), -1, cv2.LINE_AA)
    return x0, y_ground - h, x0 + width, y_ground


def bin_station_background(rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A bin station against a building wall: paving, a low wall with a sign, two wheelie bins."""
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    wall = _plain(150, 640, (170, 185, 200), rng, 0.06)
    for y in range(0, 150, 22):   # brick courses
        cv2.line(wall, (0, y), (640, y), (140, 152, 165), 1)
    img[:150] = wall
    cv2.rectangle(img, (0, 150), (640, 158), (120, 126, 130), -1)
    ground = paving(202, 640, rng, 36, (140, 146, 150))
    img[158:] = ground
    cv2.rectangle(img, (210, 24), (430, 70), (70, 120, 40), -1)          # the station's sign board
    cv2.rectangle(img, (216, 30), (424, 64), (90, 150, 60), -1)
    cv2.rectangle(img, (188, 120), (452, 158), (150, 156, 160), -1)       # a concrete plinth
    bins = [_wheelie_bin(img, 225, 250, 82, (60, 120, 40)), _wheelie_bin(img, 335, 250, 82, (90, 90, 90))]
    return img, bins


# ----------------------------------------------------------------------------------------- scripts
@dataclass
class Placed:
    """An object of a clip: present from ``t_in`` to ``t_out``; ``where(t)`` gives its foot point."""

    object_id: int
    cls: str
    sprite: Sprite | None
    t_in: float
    t_out: float
    where: Callable[[float], tuple[float, float]]
    height_px: float
    layer: int = 0
    colours: tuple = ()


@dataclass
class ClipPlan:
    name: str
    description: str
    duration_s: float
    start_time: dt.datetime
    background: np.ndarray
    zones: list[dict]
    objects: list[Placed]
    expected: list[dict]
    gain: Callable[[float], float] = lambda t: 1.0
    extra: dict = field(default_factory=dict)


def _still(x: float, y: float) -> Callable[[float], tuple[float, float]]:
    return lambda t: (x, y)


def _walk(t0: float, t1: float, a: tuple[float, float], b: tuple[float, float]) -> Callable:
    def pos(t: float) -> tuple[float, float]:
        u = min(1.0, max(0.0, (t - t0) / (t1 - t0)))
        return a[0] + (b[0] - a[0]) * u, a[1] + (b[1] - a[1]) * u
    return pos


def _wheel_in(t0: float, t_stop: float, t_go: float, t_out: float, outside: tuple[float, float],
              spot: tuple[float, float]) -> Callable:
    def pos(t: float) -> tuple[float, float]:
        if t < t_stop:
            u = (t - t0) / (t_stop - t0)
        elif t < t_go:
            u = 1.0
        else:
            u = 1.0 - (t - t_go) / (t_out - t_go)
        u = min(1.0, max(0.0, u))
        u = u * u * (3 - 2 * u)
        return outside[0] + (spot[0] - outside[0]) * u, outside[1] + (spot[1] - outside[1]) * u
    return pos


def _person(object_id: int, t0: float, t1: float, a, b, height_px: float, rng: np.random.Generator,
            layer: int = 5) -> Placed:
    shirt = tuple(int(v) for v in rng.integers(40, 200, 3))
    trousers = tuple(int(v) for v in rng.integers(20, 80, 3))
    return Placed(object_id, "person", None, t0, t1, _walk(t0, t1, a, b), height_px, layer, (shirt, trousers))


def _depth_height(y: float, y_far: float, h_far: float, y_near: float, h_near: float) -> float:
    return h_far + (h_near - h_far) * (y - y_far) / (y_near - y_far)


def corridor_plan(seed: int, clean: bool) -> ClipPlan:
    rng = np.random.default_rng(seed)
    bg = corridor_background(rng)
    zone = {"id": "corridor", "kind": "corridor", "polygon": [[0.08, 0.98], [0.92, 0.98], [0.62, 0.57], [0.38, 0.57]]}
    objs: list[Placed] = []
    person_h = lambda y: _depth_height(y, 200, 85, 360, 300)  # noqa: E731
    objs.append(_person(1, 4.0, 12.0, (300, 205), (360, 372), person_h(290), rng))
    expected = []
    if clean:
        duration = 40.0
        objs.append(_person(2, 20.0, 29.0, (380, 370), (325, 205), person_h(290), rng))
        desc = ("Corridor, no clutter: one person walks towards the camera (4-12 s), another away from it "
                "(20-29 s); the ceiling light dims by 12 % at 32 s. No violation.")
        gain = lambda t: 1.0 if t < 32 else 0.88  # noqa: E731
    else:
        duration = 90.0
        parcels = [load_sprite(e) for e in PARCELS[:3]]
        objs.append(_person(2, 14.0, 20.0, (330, 372), (356, 262), person_h(300), rng))
        objs.append(_person(3, 20.5, 27.0, (356, 262), (330, 372), person_h(300), rng))
        for k, (sprite, x, y, h) in enumerate(((parcels[0], 398, 266, 84), (parcels[1], 348, 272, 60),
                                                (parcels[2], 440, 272, 52))):
            objs.append(Placed(10 + k, "box_or_parcel", sprite.scaled(h), 20.0, duration + 1, _still(x, y), h, 1))
        objs.append(_person(4, 50.0, 58.0, (290, 205), (250, 372), person_h(290), rng))   # passes the parcels
        desc = ("Corridor: a person walks through (4-12 s, no violation); a person carries three parcels in and "
                "puts them down at 20 s, leaves at 27 s; they stay to the end; another person passes at 50-58 s.")
        expected = [{"rule": "corridor_clutter", "zone": "corridor", "from_s": 20.0, "to_s": duration}]
        gain = lambda t: 1.0  # noqa: E731
    return ClipPlan("corridor_clean" if clean else "corridor_demo", desc, duration,
                    dt.datetime(2025, 6, 14, 19, 40, tzinfo=TZ), bg, [zone], objs, expected, gain)


def elevator_plan(seed: int, clean: bool) -> ClipPlan:
    rng = np.random.default_rng(seed)
    bg = elevator_background(rng)
    zone = {"id": "elevator", "kind": "elevator", "polygon": [[0.02, 0.99], [0.98, 0.99], [0.74, 0.58], [0.26, 0.58]]}
    person_h = lambda y: _depth_height(y, 210, 150, 360, 300)  # noqa: E731
    objs = [_person(1, 3.0, 10.0, (300, 420), (330, 280), person_h(300), rng)]
    expected = []
    if clean:
        duration = 40.0
        objs[0] = Placed(1, "person", None, 3.0, 30.0, _wheel_in(3.0, 6.0, 25.0, 30.0, (300, 430), (330, 285)),
                         person_h(285), 5, objs[0].colours)
        desc = "Lift: one person rides (3-30 s). No violation."
    else:
        duration = 80.0
        scooter = load_sprite(TWO_WHEELERS[0])
        h = 190.0
        objs.append(Placed(10, "two_wheeler", scooter.scaled(h), 18.0, 58.0,
                           _wheel_in(18.0, 22.0, 55.0, 58.0, (330, 470), (320, 318)), h, 1))
        objs.append(Placed(11, "person", None, 18.0, 58.0, _wheel_in(18.0, 22.0, 55.0, 58.0, (430, 480), (420, 322)),
                           person_h(322), 2, ((60, 60, 160), (50, 40, 30))))
        desc = ("Lift: a person rides (3-10 s, no violation); at 18 s a motorbike is wheeled in and stands in the "
                "cabin with its rider until 55 s, then is wheeled out (gone at 58 s).")
        expected = [{"rule": "ebike_indoor", "zone": "elevator", "from_s": 19.0, "to_s": 57.0}]
    return ClipPlan("elevator_clean" if clean else "elevator_demo", desc, duration,
                    dt.datetime(2025, 6, 14, 21, 5, tzinfo=TZ), bg, [zone], objs, expected)


def bin_station_plan(seed: int, clean: bool) -> ClipPlan:
    rng = np.random.default_rng(seed)
    bg, bins = bin_station_background(rng)
    zone = {"id": "bin-station", "kind": "bin_station",
            "polygon": [[0.31, 0.30], [0.69, 0.30], [0.74, 0.78], [0.26, 0.78]]}
    person_h = lambda y: _depth_height(y, 250, 200, 360, 280)  # noqa: E731
    bags = [load_sprite(e) for e in BAGS]
    objs: list[Placed] = []
    expected = []
    if clean:
        duration = 40.0
        objs.append(_person(1, 3.0, 12.0, (-40, 300), (680, 300), person_h(300), rng))
        # a resident drops a bag into the left bin: seen in the hand above the lid for 2 s, then gone
        objs.append(_person(2, 18.0, 26.0, (120, 268), (200, 268), person_h(268), rng))
        objs.append(Placed(3, "person", None, 26.0, 30.0, _still(200, 268), person_h(268), 5, objs[-1].colours))
        objs.append(Placed(10, "garbage", bags[0].scaled(40), 26.0, 28.0, _still(245, 178), 40, 6))
        objs.append(_person(4, 30.0, 38.0, (200, 268), (-40, 268), person_h(268), rng))
        desc = ("Tidy bin station: a passer-by (3-12 s); a resident walks up, drops a bag into the left bin "
                "(26-28 s) and leaves. No violation.")
    else:
        duration = 90.0
        # bags arrive one by one, first on the lids then around the bins (foot point, height px)
        spots = [(258, 170, 56), (372, 172, 54), (312, 186, 62), (200, 266, 72), (440, 268, 74), (282, 278, 70),
                 (360, 282, 76), (236, 298, 64), (414, 300, 68), (322, 306, 62)]
        t = 12.0
        for k, (x, y, h) in enumerate(spots):
            objs.append(Placed(10 + k, "garbage", bags[k % len(bags)].scaled(h), t, 70.0, _still(x, y), h, 1 + (y > 200)))
            t += 2.3
        objs.append(_person(1, 40.0, 48.0, (-40, 330), (680, 330), person_h(330), rng))   # passer-by in front
        objs.append(_person(2, 66.0, 70.0, (680, 300), (440, 300), person_h(300), rng))    # cleaner comes
        objs.append(Placed(3, "person", None, 70.0, 74.0, _still(440, 300), person_h(300), 5, objs[-1].colours))
        objs.append(_person(4, 74.0, 80.0, (440, 300), (680, 300), person_h(300), rng))
        desc = ("Bin station: from 12 s bags are put on the two bins' lids and around them, one every 2.3 s (ten "
                "bags by 33 s); a passer-by at 40-48 s; a cleaner arrives at 66 s and the bags are gone at 70 s; "
                "clean to the end.")
        # the heap is an overflow once bags lie around the bins (the fourth bag, at 18.9 s)
        expected = [{"rule": "bin_overflow", "zone": "bin-station", "from_s": 18.9, "to_s": 70.0}]
    plan = ClipPlan("bin_station_clean" if clean else "bin_station_demo", desc, duration,
                    dt.datetime(2025, 6, 14, 7, 30, tzinfo=TZ), bg, [zone], objs, expected)
    plan.extra["bins_xyxy"] = [list(b) for b in bins]
    return plan


PLANS: dict[str, Callable[[int], ClipPlan]] = {
    "bin_station_demo": lambda seed: bin_station_plan(seed, False),
    "bin_station_clean": lambda seed: bin_station_plan(seed + 1, True),
    "corridor_demo": lambda seed: corridor_plan(seed, False),
    "corridor_clean": lambda seed: corridor_plan(seed + 1, True),
    "elevator_demo": lambda seed: elevator_plan(seed, False),
    "elevator_clean": lambda seed: elevator_plan(seed + 1, True),
}


# ------------------------------------------------------------------------------------------ render
def render_frame(plan: ClipPlan, t: float, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    img = plan.background.copy()
    boxes = []
    present = [o for o in plan.objects if o.t_in <= t < o.t_out]
    for o in sorted(present, key=lambda o: (o.layer, o.where(t)[1])):
        foot = o.where(t)
        if o.sprite is None:
            shirt, trousers = o.colours
            box = draw_person(img, foot, o.height_px, phase=t * 5.0 + o.object_id, shirt=shirt, trousers=trousers)
        else:
            box = paste(img, o.sprite, foot)
        if box is not None and box[2] - box[0] > 1 and box[3] - box[1] > 1:
            boxes.append({"id": o.object_id, "class": o.cls, "xyxy": [round(v, 1) for v in box]})
    img = np.clip(img.astype(np.float32) * plan.gain(t) + rng.normal(0, 2.0, img.shape), 0, 255).astype(np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 0.5)
    stamp = (plan.start_time + dt.timedelta(seconds=int(t))).strftime("%Y-%m-%d %H:%M:%S")
    cv2.putText(img, stamp, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, stamp, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return img, boxes


def render_clip(plan: ClipPlan, out_dir: Path, seed: int, crf: int = 28) -> tuple[Path, Path]:
    """Render, encode and write ``<name>.mp4`` and ``<name>.json`` (each via a temporary name)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed + 1000)
    n_frames = int(round(plan.duration_s * FPS))
    video_path, json_path = out_dir / f"{plan.name}.mp4", out_dir / f"{plan.name}.json"
    tmp_video = video_path.with_suffix(".mp4.partial")
    frames_gt = []
    with av.open(str(tmp_video), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=FPS, options={
            "preset": "medium", "crf": str(crf), "g": str(FPS), "keyint_min": str(FPS), "sc_threshold": "0",
            "bf": "0", "threads": "1"})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.profile = "High"
        stream.codec_context.time_base = stream.time_base = Fraction(1, FPS)
        for index in range(n_frames):
            t = index / FPS
            image, boxes = render_frame(plan, t, rng)
            frames_gt.append({"index": index, "time_s": round(t, 3), "objects": boxes})
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image[..., ::-1]), format="rgb24")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    used = sorted({o.sprite.source for o in plan.objects if o.sprite is not None})
    sidecar = {
        "clip": video_path.name,
        "description": plan.description,
        "generator": "python -m datasets.rule_footage",
        "seed": seed,
        "fps": FPS, "width": WIDTH, "height": HEIGHT, "frame_count": n_frames, "duration_s": plan.duration_s,
        "start_time": plan.start_time.isoformat(),
        "time_note": "time_s is the frame's presentation time in the clip (frame index / fps); the burnt-in "
                     "on-screen clock reads start_time + time_s.",
        "box_note": "xyxy in pixels of the pasted crop (or drawn figure), clipped to the frame; classes are "
                    "the project classes (person, garbage, box_or_parcel, two_wheeler). People are drawn "
                    "figures, not photos.",
        "zones": plan.zones,
        "expected_violations": plan.expected,
        "expected_note": "what happened, in clip seconds: from_s = the object is in place (for the bins: the heap "
                         "has spilled around the bins), to_s = it is gone. A site's dwell_s decides whether it is "
                         "long enough to be a violation; evaluate-rules drops those shorter than the dwell.",
        "sources": [{"dataset": d, "split": s, "image": f"{stem}.jpg", "box_line": line} for d, s, stem, line in used],
        "attribution": [ATTRIBUTION[d] for d in sorted({u[0] for u in used})],
        **plan.extra,
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
    parser.add_argument("--seed", type=int, default=11, help="scene and noise seed (default 11)")
    parser.add_argument("--crf", type=int, default=28, help="x264 CRF (default 28; higher = smaller file)")
    args = parser.parse_args(argv)
    for name in args.clip or sorted(PLANS):
        plan = PLANS[name](args.seed)
        video, sidecar = render_clip(plan, Path(args.out), args.seed, args.crf)
        print(f"{video} ({video.stat().st_size / 1e6:.2f} MB), {sidecar}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
