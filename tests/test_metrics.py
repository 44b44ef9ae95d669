"""Prometheus /metrics of a worker running real RTSP cameras: frames decoded, inferences, frames the
motion gate skipped on a still scene (with its slow re-check), queue drops, latency and health."""
from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import yaml

from rtsp_server import RtspServer, free_port, make_clip
from vision.config import load_site_config
from vision.worker import Worker

ROOT = Path(__file__).resolve().parents[1]


def value(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if m and (m.group(1) or "") == want:
            return float(m.group(2))
    raise AssertionError(f"no {name}{{{want}}} in /metrics")


def test_metrics_count_frames_inferences_and_motion_skips(tmp_path):
    still = make_clip(tmp_path / "still.mp4", seconds=6, moving=False)
    moving = make_clip(tmp_path / "moving.mp4", seconds=6, seed=2)
    port = free_port()
    with RtspServer({"/still": still, "/moving": moving}) as rtsp:
        site = {"detector": {"model": str(ROOT / "models" / "car-v1.onnx"), "threads": 1},
                "outbox_dir": str(tmp_path / "outbox"), "api": {"url": "http://127.0.0.1:9"},
                "live": {"read_timeout_s": 3, "metrics_port": port, "motion": {"recheck_s": 3}},
                "compounds": [{"id": "c1", "cameras": [
                    {"id": "still", "source": rtsp.url("/still"), "sample_fps": 2},
                    {"id": "moving", "source": rtsp.url("/moving"), "sample_fps": 2}]}]}
        path = tmp_path / "site.yaml"
        path.write_text(yaml.safe_dump(site))
        worker = Worker(load_site_config(path), path, api_key="unused", api_url="http://127.0.0.1:9")
        worker.start()
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
                try:
                    if (value(text, "compoundeye_motion_skipped_total", camera="still") >= 6
                            and value(text, "compoundeye_inferences_total", camera="moving") >= 6):
                        break
                except AssertionError:
                    pass
                time.sleep(0.5)
        finally:
            worker.stop()
    for cam in ("still", "moving"):
        decoded = value(text, "compoundeye_frames_decoded_total", camera=cam)
        sampled = value(text, "compoundeye_frames_sampled_total", camera=cam)
        assert decoded > sampled > 0  # 15 fps decoded, 2 fps sampled
        assert value(text, "compoundeye_camera_online", camera=cam) == 1
        assert value(text, "compoundeye_camera_health", camera=cam, kind="offline") == 0
    still_inferred = value(text, "compoundeye_inferences_total", camera="still")
    still_skipped = value(text, "compoundeye_motion_skipped_total", camera="still")
    assert still_skipped >= 6
    assert 1 <= still_inferred < still_skipped  # the first frame, then only the slow re-checks
    assert value(text, "compoundeye_motion_skipped_total", camera="moving") < value(
        text, "compoundeye_inferences_total", camera="moving")
    assert value(text, "compoundeye_inference_latency_seconds_count") >= still_inferred + 6
    assert "compoundeye_queue_drops_total" in text or "compoundeye_queue_drops" in text
    assert value(text, "compoundeye_inference_batch_size_count") >= 1
