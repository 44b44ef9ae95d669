"""What the page tests share: a real uvicorn server on loopback, Debian's Chromium driven by Playwright,
users, real events posted over HTTP with a playable clip and a sidecar of boxes, and screenshots.

Chromium is ``/usr/bin/chromium`` (``scripts/setup.sh`` installs it); Playwright never downloads a
browser here. Without it the tests fail with a message saying so: they do not skip.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
import tempfile
import threading
import time
from pathlib import Path

import av
import cv2
import httpx
import numpy as np
import pytest
import uvicorn
import yaml

from ports import free_port  # noqa: F401 (re-exported for the tests that import it from here)
from service.app import create_app
from service.keys import create_key
from service.settings import Settings
from service.users import create_user
from vision.types import violation_id

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"]
SCREENSHOTS = ROOT / "var" / "screenshots"
PASSWORD = "correct-horse-battery"
FRAME_W, FRAME_H, CLIP_FPS, CLIP_FRAMES = 320, 180, 10, 30


def launch_chromium(playwright):
    """Debian's Chromium, headless, with no background traffic. Fails (never skips) when it is missing."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests need Debian's chromium package "
                    "(`apt-get install chromium`, done by scripts/setup.sh when run as root)")
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


class LiveServer:
    """``create_app(settings)`` served by uvicorn in a thread on 127.0.0.1 (a free port unless ``port``).
    ``wrap`` puts an ASGI middleware of the test around the app (``self.served``); ``lifespan`` is
    uvicorn's setting."""

    def __init__(self, settings: Settings, port: int | None = None, wrap=None, lifespan: str = "auto"):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        self.served = wrap(self.app) if wrap is not None else self.app
        self.server = uvicorn.Server(uvicorn.Config(self.served, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan=lifespan,
                                                    timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, daemon=True, name="uvicorn-test")

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def key(self, role: str, compounds=("*",), name: str | None = None) -> str:
        with self.app.state.sessions() as session:
            return create_key(session, name or f"test {role}", role, list(compounds))

    def user(self, username: str, grants: dict[str, str]) -> str:
        with self.app.state.sessions() as session:
            create_user(session, username, PASSWORD, grants)
            session.commit()
        return username


def absolute_detector_paths(raw: dict, base: Path) -> None:
    """Make a site dict's detector model paths (default and extra models, their cards) absolute,
    relative to ``base`` (the folder of the site file it was read from)."""
    raw["detector"]["model"] = str((base / raw["detector"]["model"]).resolve())
    for extra in raw["detector"].get("extra_models", []):
        for key in ("model", "card"):
            if extra.get(key):
                extra[key] = str((base / extra[key]).resolve())


def site_file(tmp_path: Path, cameras: tuple[str, ...] = ("demo-gate",), loop: bool = True) -> Path:
    """configs/demo.yaml with absolute paths, only ``cameras``, its outbox in ``tmp_path``."""
    demo = ROOT / "configs" / "demo.yaml"
    raw = yaml.safe_load(demo.read_text())
    absolute_detector_paths(raw, demo.parent)
    raw["detector"]["threads"] = 1
    raw["outbox_dir"] = str(tmp_path / "outbox")
    for compound in raw["compounds"]:
        compound["cameras"] = [c for c in compound["cameras"] if c["id"] in cameras]
        for cam in compound["cameras"]:
            cam["source"] = str((demo.parent / cam["source"]).resolve())
            cam["loop"] = loop
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


# --- events with real evidence -------------------------------------------------------------------

def _box_at(i: int) -> list[float]:
    x = 20 + i * 6
    return [float(x), 60.0, float(x + 80), 130.0]


def make_evidence(seed: int = 0) -> dict[str, bytes]:
    """A JPEG snapshot, a 3 s H.264 clip of a grey car-like block moving right, and a sidecar with its box
    in every frame (``clip_offset_s`` = the frame's time in the clip)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(40, 90, (FRAME_H, FRAME_W, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as folder:  # faststart rewrites the file: it needs a real one
        clip = _encode_clip(Path(folder) / "clip.mp4", background)
    snapshot = background.copy()
    cv2.rectangle(snapshot, (20, 60), (100, 130), (200, 200, 210), -1)
    ok, jpeg = cv2.imencode(".jpg", snapshot, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    frames = [{"time_s": round(1000 + i / CLIP_FPS, 3), "clip_offset_s": round(i / CLIP_FPS, 3),
               "boxes": [{"xyxy": _box_at(i), "class_name": "car", "confidence": 0.9, "track_id": 7}]}
              for i in range(CLIP_FRAMES)]
    sidecar = {"schema": "compoundeye.sidecar/1", "frame_width": FRAME_W, "frame_height": FRAME_H,
               "clip_start_s": 1000.0, "frames": frames}
    return {"snapshot": jpeg.tobytes(), "clip": clip, "sidecar": json.dumps(sidecar).encode()}


def _encode_clip(path: Path, background: np.ndarray) -> bytes:
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=CLIP_FPS, options={"preset": "veryfast", "g": str(CLIP_FPS)})
        stream.width, stream.height, stream.pix_fmt = FRAME_W, FRAME_H, "yuv420p"
        for i in range(CLIP_FRAMES):
            image = background.copy()
            x1, y1, x2, y2 = (int(v) for v in _box_at(i))
            cv2.rectangle(image, (x1, y1), (x2, y2), (200, 200, 210), -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path.read_bytes()


def post_event(url: str, worker_key: str, evidence: dict[str, bytes], *, compound_id: str, camera_id: str,
               zone_id: str = "fire-lane", rule: str = "fire_lane", start: dt.datetime | None = None,
               expect: int = 201) -> dict:
    """POST one violation with ``evidence`` to the real event API; returns the stored violation
    (``expect``: the status it must answer, 201 new or 200 already stored)."""
    start = start or dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    event = {
        "id": violation_id(camera_id, rule, zone_id, start.timestamp()), "rule": rule,
        "compound_id": compound_id, "camera_id": camera_id, "zone_id": zone_id,
        "start_time": start.isoformat(), "last_seen_time": (start + dt.timedelta(seconds=20)).isoformat(),
        "end_time": None, "confidence": 0.9, "model_version": "car-v1", "source": "live",
        "boxes": [{"time": start.isoformat(), "xyxy": _box_at(0), "class_name": "car", "confidence": 0.9, "track_id": 7}],
        "evidence": {f"{k}_sha256": hashlib.sha256(v).hexdigest() for k, v in evidence.items()},
    }
    files = {"snapshot": ("snapshot.jpg", evidence["snapshot"], "image/jpeg"),
             "clip": ("clip.mp4", evidence["clip"], "video/mp4"),
             "sidecar": ("sidecar.json", evidence["sidecar"], "application/json")}
    response = httpx.post(f"{url}/api/v1/events", data={"event": json.dumps(event)}, files=files,
                          headers={"X-API-Key": worker_key}, timeout=60)
    assert response.status_code == expect, response.text
    return response.json()


# --- pages -----------------------------------------------------------------------------------------

def log_in(page, url: str, username: str, next_path: str = "/") -> None:
    """Open ``next_path``, get sent to the login page, log in with the keyboard, land back."""
    page.goto(url + next_path)
    page.wait_for_url("**/login**", timeout=15_000)
    page.locator("#username").fill(username)
    page.locator("#password").fill(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(lambda u: "/login" not in u, timeout=15_000)


def screenshot(page, tmp_path: Path, name: str, keep: bool = True) -> Path:
    """Save a screenshot in the test's tmp dir, and a copy under var/screenshots to look at."""
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path))
    if keep:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, SCREENSHOTS / path.name)
    return path


def wait_until(predicate, timeout_s: float = 30, what: str = "condition", interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)
