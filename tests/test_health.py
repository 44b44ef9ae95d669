"""Camera health on real generated frames: each condition is reported once when it starts and once
when it ends, and normal footage (noise, a moving object, a lighting change) reports nothing."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vision.health import CameraHealth, HealthThresholds

FAST = HealthThresholds(offline_after_s=5, frozen_after_s=3, covered_after_s=3, focus_after_s=3, moved_after_s=3,
                        clear_after_s=2)


def scene(seed: int = 1, w: int = 640, h: int = 360) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((h, w, 3), 100, np.uint8)
    for _ in range(60):
        x, y = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 40))
        cv2.rectangle(image, (x, y), (x + int(rng.integers(10, 90)), y + int(rng.integers(10, 70))),
                      tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    return image


_NOISE = np.random.default_rng(5)


def noisy(image: np.ndarray) -> np.ndarray:
    noise = _NOISE.integers(-5, 6, image.shape[:2] + (1,), dtype=np.int16)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


class Camera:
    """A simulated camera: a scene plus sensor noise and a moving object, one frame per second."""

    def __init__(self, seed: int = 1):
        self.base = scene(seed)
        self.rng = np.random.default_rng(seed + 100)
        self.t = 1_700_000_000.0
        self.i = 0

    def live(self, image: np.ndarray | None = None) -> np.ndarray:
        image = (self.base if image is None else image).copy()
        x = 20 + (self.i * 37) % 500
        cv2.rectangle(image, (x, 200), (x + 50, 240), (20, 220, 250), -1)
        noise = self.rng.integers(-5, 6, image.shape[:2] + (1,), dtype=np.int16)
        return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)

    def feed(self, health: CameraHealth, image: np.ndarray, seconds: int = 1) -> list:
        events = []
        for _ in range(seconds):
            self.i += 1
            self.t += 1.0
            events += health.observe(image if image is not None else self.live(), self.t)
        return events

    def feed_live(self, health: CameraHealth, seconds: int, transform=None) -> list:
        events = []
        for _ in range(seconds):
            self.i += 1
            self.t += 1.0
            frame = self.live()
            events += health.observe(transform(frame) if transform else frame, self.t)
        return events


def kinds(events) -> list[tuple[str, str]]:
    return [(e.kind, e.state) for e in events]


def test_normal_footage_and_lighting_change_report_nothing():
    cam, health = Camera(), CameraHealth("c1", "cam1", FAST)
    assert cam.feed_live(health, 20) == []
    darker = lambda im: (im * 0.6).astype(np.uint8)  # dusk: same view, less light
    assert cam.feed_live(health, 20, darker) == []
    assert health.active == {}


@pytest.mark.parametrize("kind, transform", [
    ("covered", lambda im: np.full_like(im, 3)),  # lens covered / black
    ("covered", lambda im: np.full_like(im, 160)),  # sprayed or pointed at a wall: uniform grey
    ("out_of_focus", lambda im: cv2.GaussianBlur(im, (0, 0), 6)),
    ("view_moved", lambda im: np.ascontiguousarray(np.roll(np.roll(im, 180, axis=1), 90, axis=0))),
    ("view_moved", lambda im: noisy(scene(7))),  # pointed at a different scene altogether
])
def test_condition_reported_once_and_cleared(kind, transform):
    cam, health = Camera(), CameraHealth("c1", "cam1", FAST)
    assert cam.feed_live(health, 8) == []  # learns the reference
    bad = cam.feed_live(health, 12, transform)
    assert kinds(bad) == [(kind, "started")], [(e.kind, e.state, e.detail) for e in bad]
    assert bad[0].time_s - bad[0].onset_s == pytest.approx(FAST.frozen_after_s, abs=1.01)
    assert kind in health.active
    good = cam.feed_live(health, 6)
    assert kinds(good) == [(kind, "ended")]
    assert good[0].id == bad[0].id  # one occurrence, one id
    assert health.active == {}


def test_frozen_image_reported_once_and_cleared():
    cam, health = Camera(), CameraHealth("c1", "cam1", FAST)
    cam.feed_live(health, 5)
    still = cam.live()
    events = cam.feed(health, still, seconds=10)
    assert kinds(events) == [("frozen", "started")]
    assert kinds(cam.feed_live(health, 5)) == [("frozen", "ended")]


def test_short_glitch_is_not_reported():
    cam, health = Camera(), CameraHealth("c1", "cam1", FAST)
    cam.feed_live(health, 6)
    assert cam.feed_live(health, 2, lambda im: np.zeros_like(im)) == []  # 2 s < covered_after_s
    assert cam.feed_live(health, 10) == []


def test_offline_from_disconnect_and_from_silence():
    cam, health = Camera(), CameraHealth("c1", "cam1", FAST)
    cam.feed_live(health, 3)
    started = health.connection(False, cam.t + 0.5, "stream ended")
    assert kinds(started) == [("offline", "started")]
    assert health.connection(False, cam.t + 2, "cannot open stream") == []  # once per onset
    assert kinds(cam.feed_live(health, 1)) == [("offline", "ended")]
    # connected but silent: offline after offline_after_s of no frames
    assert health.tick(cam.t + 3) == []
    silent = health.tick(cam.t + 6)
    assert kinds(silent) == [("offline", "started")]
    assert health.tick(cam.t + 7) == []
    assert kinds(cam.feed_live(health, 1)) == [("offline", "ended")]
