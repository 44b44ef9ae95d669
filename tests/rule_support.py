"""Hand-made detections and synthetic images for the rule tests (one frame per step)."""
from __future__ import annotations

from zoneinfo import ZoneInfo

import cv2
import numpy as np

from vision.types import Detections

NAMES = ("person", "bicycle", "two_wheeler", "car", "truck_or_bus", "garbage", "box_or_parcel")
T0 = 1_714_550_400.0          # 2024-05-01 08:00:00 UTC = 16:00 in Asia/Shanghai
SHANGHAI = ZoneInfo("Asia/Shanghai")


def rect(cls: str, x1, y1, x2, y2, track_id: int = 1, conf: float = 0.9):
    """One box given by its corners."""
    return (x1, y1, x2, y2), conf, NAMES.index(cls), track_id


def standing(cls: str, x, y, track_id: int = 1, w=60, h=80, conf: float = 0.9):
    """One box whose bottom centre (where it touches the ground) is at (x, y)."""
    return rect(cls, x - w / 2, y - h, x + w / 2, y, track_id, conf)


def dets(*boxes) -> Detections:
    if not boxes:
        return Detections.empty(NAMES)
    xyxy, conf, cls, tid = zip(*boxes)
    return Detections(np.array(xyxy, np.float32), np.array(conf, np.float32), np.array(cls, np.int32), NAMES,
                      np.array(tid, np.int64))


def run(rule, script, *, steps=None, t0=T0, wh=(400, 400), image=None, dt=1.0):
    """Feed ``script`` ({step: [boxes]}, missing steps are empty frames) for ``steps`` steps (default up
    to the last scripted one) at ``dt`` seconds per step; ``image(step)`` gives the frame's pixels.
    Returns [(step, event)]."""
    last = steps if steps is not None else max(script) + 1
    out = []
    for s in range(last):
        img = image(s) if image is not None else None
        for ev in rule.update(t0 + s * dt, dets(*script.get(s, [])), wh, img):
            out.append((s, ev))
    return out


def kinds(events):
    return [(s, e.kind) for s, e in events]


def floor(wh=(400, 400), seed=0) -> np.ndarray:
    """A textured gray floor (tiles and speckle), HxWx3 uint8, the same for the same seed."""
    w, h = wh
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 3)
    noise = noise / (np.abs(noise).max() + 1e-6) * 40
    yy, xx = np.mgrid[0:h, 0:w]
    tiles = ((xx // 40 + yy // 40) % 2) * 20.0
    gray = np.clip(100 + tiles + noise, 0, 255).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


_NOISE: dict[tuple, list[np.ndarray]] = {}


def with_noise(image: np.ndarray, step: int, amplitude: int = 6) -> np.ndarray:
    """Sensor noise (0..amplitude gray levels), different per step but reproducible; cheap (a bank of
    eight noise fields per image shape, cycled)."""
    bank = _NOISE.get(image.shape)
    if bank is None:
        rng = np.random.default_rng(1000)
        bank = _NOISE[image.shape] = [rng.integers(0, amplitude + 1, image.shape, dtype=np.uint8) for _ in range(8)]
    return cv2.add(image, bank[step % len(bank)])


def paint(image: np.ndarray, x1, y1, x2, y2, value: int) -> np.ndarray:
    """A copy with a flat rectangle (an item) painted in."""
    out = image.copy()
    out[int(y1):int(y2), int(x1):int(x2)] = value
    return out


def brighten(image: np.ndarray, gain: float) -> np.ndarray:
    return np.clip(image.astype(np.float32) * gain, 0, 255).astype(np.uint8)
