"""The live scheduler: motion gate, bounded queue that drops stale frames, one shared detector with
batching, sharding, and a clean stop of a real ``compoundeye worker`` process on SIGTERM."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import yaml

from rtsp_server import RtspServer, free_port, make_clip
from vision.config import SiteConfig
from vision.detector import OnnxDetector
from vision.scheduler import (InferenceQueue, InferenceRequest, MotionGate, SharedInference, camera_shard,
                              parse_shard, shard_site)
from vision.types import Frame

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "car-v1.onnx"


def scene(seed=3, w=640, h=360) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((h, w, 3), 110, np.uint8)
    for _ in range(50):
        x, y = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 40))
        cv2.rectangle(image, (x, y), (x + int(rng.integers(10, 80)), y + int(rng.integers(10, 60))),
                      tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    return image


def noisy(image, rng) -> np.ndarray:
    noise = rng.integers(-6, 7, image.shape[:2] + (1,), dtype=np.int16)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def test_motion_gate_skips_still_scenes_rechecks_slowly_and_sees_motion():
    rng = np.random.default_rng(0)
    base = scene()
    gate = MotionGate(pixel_threshold=20, changed_fraction=0.002, recheck_s=10)
    assert gate.check(noisy(base, rng), 0.0) == "first"
    gate.inferred(noisy(base, rng), 0.0)
    # sensor noise and a slow lighting drift are not motion
    assert [gate.check(noisy(base, rng), t) for t in (1.0, 2.0, 5.0)] == ["still"] * 3
    assert gate.check(noisy(cv2.convertScaleAbs(base, alpha=1.0, beta=6), rng), 6.0) == "still"
    # a standing object is re-checked every recheck_s even though nothing moves
    assert gate.check(noisy(base, rng), 10.0) == "recheck"
    gate.inferred(noisy(base, rng), 10.0)
    assert gate.check(noisy(base, rng), 11.0) == "still"
    # a person-sized object entering the scene is motion
    moved = base.copy()
    cv2.rectangle(moved, (300, 150), (330, 230), (20, 20, 200), -1)
    assert gate.check(noisy(moved, rng), 12.0) == "motion"


def _frame(camera: str, t: float, image=None) -> Frame:
    return Frame(camera, t, image if image is not None else np.zeros((36, 64, 3), np.uint8), f"{camera}@{t}")


def test_queue_keeps_one_frame_per_camera_and_drops_stale_ones():
    drops = []
    q = InferenceQueue(max_age_s=0.3, on_drop=lambda cam, why: drops.append((cam, why)))
    noop = lambda *_: None
    assert q.put(InferenceRequest("a", _frame("a", 1), noop))
    assert q.put(InferenceRequest("b", _frame("b", 1), noop))
    assert not q.put(InferenceRequest("a", _frame("a", 2), noop))  # replaces a's waiting frame
    for i in range(100):  # bounded: a flood from one camera never grows the queue
        q.put(InferenceRequest("c", _frame("c", i), noop))
    assert len(q) == 3
    assert drops.count(("a", "replaced")) == 1 and drops.count(("c", "replaced")) == 99
    batch = q.take(8, 0.1)
    assert [(r.camera_id, r.frame.time_s) for r in batch] == [("b", 1), ("a", 2), ("c", 99)]  # oldest first
    q.put(InferenceRequest("d", _frame("d", 5), noop))
    time.sleep(0.5)
    assert q.take(8, 0.1) == []  # waited too long: stale, not inferred late
    assert drops[-1] == ("d", "stale")
    assert q.drops == {"replaced": 100, "stale": 1}


def test_shared_detector_serves_every_camera_in_batches():
    detector = OnnxDetector(str(MODEL), threads=1)
    batches = []
    shared = SharedInference(detector, max_batch=4, max_age_s=30, on_batch=lambda n, s: batches.append(n))
    results: dict[str, list] = {}
    lock = threading.Lock()

    def on_result(frame, detections):
        with lock:
            results.setdefault(frame.camera_id, []).append((frame.time_s, len(detections)))

    image = scene()
    for cam in range(10):  # queued before the thread starts: runs must take several at once
        shared.submit(InferenceRequest(f"cam{cam}", _frame(f"cam{cam}", 1.0, image), on_result))
    shared.start()
    try:
        deadline = time.monotonic() + 60
        while sum(len(v) for v in results.values()) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        shared.stop()
    assert sorted(results) == [f"cam{i}" for i in range(10)]
    assert batches[:3] == [4, 4, 2]
    assert shared.frames == 10 and shared.runs == 3


def test_shards_split_cameras_stably_and_completely():
    site = SiteConfig.model_validate({
        "detector": {"model": str(MODEL)},
        "compounds": [{"id": f"c{c}", "cameras": [{"id": f"cam-{c}-{i}", "source": "rtsp://127.0.0.1/x"}
                                                  for i in range(20)]} for c in range(3)]})
    every = sorted(cam.id for _, cam in site.cameras())
    shares = [sorted(cam.id for _, cam in shard_site(site, i, 3).cameras()) for i in range(3)]
    assert sorted(sum(shares, [])) == every  # each camera in exactly one shard
    assert all(10 <= len(s) <= 30 for s in shares)  # roughly even
    assert shares[1] == sorted(cam.id for _, cam in shard_site(site, 1, 3).cameras())  # stable
    assert camera_shard("cam-0-0", 3) == camera_shard("cam-0-0", 3)
    assert parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "x", "1/0", "-1/3"):
        with pytest.raises(ValueError):
            parse_shard(bad)


def test_worker_process_stops_cleanly_on_sigterm(tmp_path):
    clip = make_clip(tmp_path / "cam.mp4", seconds=4)
    metrics_port = free_port()
    with RtspServer({"/a": clip, "/b": clip}) as rtsp:
        site = {
            "detector": {"model": str(MODEL), "threads": 1},
            "outbox_dir": str(tmp_path / "outbox"),
            "api": {"url": "http://127.0.0.1:9"},  # no API: events and health wait in the worker
            "live": {"read_timeout_s": 3},
            "compounds": [{"id": "c1", "cameras": [{"id": "a", "source": rtsp.url("/a"), "sample_fps": 2},
                                                   {"id": "b", "source": rtsp.url("/b"), "sample_fps": 2}]}],
        }
        (tmp_path / "site.yaml").write_text(yaml.safe_dump(site))
        env = {**os.environ, "COMPOUNDEYE_API_KEY": "ce_test_key"}
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "worker", str(tmp_path / "site.yaml"),
                                 "--metrics-port", str(metrics_port)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            inferred = False
            while time.monotonic() < deadline and not inferred:
                assert proc.poll() is None, proc.stdout.read()
                try:
                    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
                    inferred = all(f'compoundeye_inferences_total{{camera="{c}"}}' in text for c in "ab")
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
            assert inferred, "the worker never inferred on both cameras"
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=30)
            took = time.monotonic() - sent
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, output
    assert took < 20, f"took {took:.1f} s to stop"
    assert "Traceback" not in output, output
    with pytest.raises(httpx.HTTPError):  # /metrics went away with the process
        httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2)
