"""RTSP cameras against a real GStreamer RTSP server on loopback (tests/rtsp_server.py).

The main test stops the server mid-stream: the API must show an ``offline`` health event within 10 s,
and after the server returns the stream resumes (frames flow again, the event is closed) with the
worker still running. Credentials in the camera URL never reach the logs or the API.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from rtsp_server import RtspServer, make_clip
from test_end_to_end import ApiServer, make_keys
from vision.config import load_site_config
from vision.rtsp import Backoff, RtspSource, mask_text, mask_url, split_userinfo
from vision.worker import Worker

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "Tr0ub4dor-s3cret"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("rtsp") / "cam.mp4", seconds=6)


def wait_until(condition, timeout_s: float, what: str, poll_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


def test_mask_url_hides_passwords_and_secret_query_parameters():
    assert mask_url("rtsp://admin:pw@10.0.0.7:554/ch1") == "rtsp://admin:***@10.0.0.7:554/ch1"
    assert mask_url("rtsps://cam.example:322/s?user=admin&password=pw&channel=1") == \
        "rtsps://cam.example:322/s?user=***&password=***&channel=1"
    assert mask_url("rtsp://10.0.0.7/ch1") == "rtsp://10.0.0.7/ch1"
    assert mask_url("rtsp://viewer@10.0.0.7/ch1") == "rtsp://viewer@10.0.0.7/ch1"
    assert mask_url("rtsp://admin:p@ss:w@10.0.0.7/ch1") == "rtsp://admin:***@10.0.0.7/ch1"  # '@' in the password
    assert mask_url("rtsp://admin:@10.0.0.7/ch1") == "rtsp://admin:***@10.0.0.7/ch1"
    assert split_userinfo("admin:p@ss:w@10.0.0.7:554") == ("admin", "p@ss:w", "10.0.0.7:554")
    assert split_userinfo("viewer@h") == ("viewer", None, "h") and split_userinfo("h:554") == (None, None, "h:554")
    assert mask_text("failed: 'rtsp://a:b@h/x' and rtsp://c:d@h/y") == "failed: 'rtsp://a:***@h/x' and rtsp://c:***@h/y"


def test_backoff_grows_with_jitter_and_resets():
    import random
    b = Backoff(0.5, 8.0, jitter=0.25, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(8)]
    for i, d in enumerate(delays):
        base = min(8.0, 0.5 * 2 ** i)
        assert 0.75 * base <= d <= 1.25 * base
    assert len({round(d, 6) for d in delays[5:]}) == 3  # capped, but jittered
    b.reset()
    assert b.next_delay() <= 0.625


def test_rtsp_source_with_credentials_reconnects_and_masks(clip, caplog):
    caplog.set_level(logging.DEBUG)
    with RtspServer({"/cam1": clip}, user="admin", password=PASSWORD) as server:
        statuses = []
        wrong = RtspSource(server.url("/cam1").replace(PASSWORD, "wrong-" + PASSWORD), "cam1", sample_fps=2,
                           on_status=statuses.append, backoff=Backoff(0.2, 0.5))
        assert PASSWORD not in repr(wrong)
        threading.Timer(3.0, wrong.close).start()
        assert list(wrong) == []  # 401: no frame, keeps retrying until closed
        assert statuses and not statuses[0].online and "401" in statuses[0].reason

        source = RtspSource(server.url("/cam1"), "cam1", sample_fps=5, on_status=statuses.append,
                            backoff=Backoff(0.2, 1.0), read_timeout_s=3)
        frames, restarted, restart_errors = [], False, []

        def restart():
            try:
                server.start()
            except Exception as exc:   # seen by the assertion below, not lost in the timer thread
                restart_errors.append(exc)
                source.close()

        watchdog = threading.Timer(120.0, source.close)   # a hang fails the test instead of the session
        watchdog.start()
        for frame in source:
            frames.append(frame)
            if len(frames) == 5 and not restarted:
                server.stop()  # mid-stream: the decode loop ends, the source reconnects
                threading.Timer(2.0, restart).start()
                restarted = True
            if len(frames) >= 12:
                source.close()
        watchdog.cancel()
        assert not restart_errors, restart_errors
        assert len(frames) >= 12, (f"only {len(frames)} frames: the stream did not come back within 120 s; "
                                   f"server stderr: {''.join(server.stderr_lines)[-2000:]}")
        assert source.connects == 2
        assert [s.online for s in statuses[1:]] == [True, False, True]
        assert all(b.time_s > a.time_s for a, b in zip(frames, frames[1:]))
        assert frames[0].image.shape == (360, 640, 3)
        assert all(PASSWORD not in f.position for f in frames)
    assert PASSWORD not in caplog.text
    assert "admin:***@" in caplog.text


def _site(tmp_path: Path, url: str, **live) -> Path:
    raw = {
        "detector": {"model": str(ROOT / "models" / "car-v1.onnx"), "threads": 1},
        "outbox_dir": str(tmp_path / "outbox"),
        "live": {"read_timeout_s": 3, "reconnect_max_s": 2, "metrics_port": None,
                 "health": {"offline_after_s": 5, "clear_after_s": 1}, **live},
        "compounds": [{"id": "c1", "cameras": [{"id": "gate-cam", "source": url, "sample_fps": 2}]}],
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_worker_reports_offline_within_10s_and_resumes(database_url, clip, tmp_path, monkeypatch, caplog):
    from service.settings import Settings
    caplog.set_level(logging.INFO)
    settings = Settings(database_url=database_url, storage_url=f"file://{tmp_path / 'evidence'}")
    worker_key, reviewer_key = make_keys(settings)
    monkeypatch.setenv("CAM_PASSWORD", PASSWORD)
    with RtspServer({"/gate": clip}, user="admin", password=PASSWORD) as rtsp, ApiServer(settings) as api:
        site_path = _site(tmp_path, f"rtsp://admin:${{CAM_PASSWORD}}@127.0.0.1:{rtsp.port}/gate")
        worker = Worker(load_site_config(site_path), site_path, api_key=worker_key, api_url=api.url)
        worker.start()
        try:
            cam = worker.live.cameras["gate-cam"]
            wait_until(lambda: cam.pipeline.inferences >= 2, 30, "frames and inferences from the stream")

            def health(**params):
                resp = httpx.get(f"{api.url}/api/v1/camera-health", params=params,
                                 headers={"X-API-Key": reviewer_key})
                assert resp.status_code == 200, resp.text
                return resp.json()

            assert health() == []
            rtsp.stop()
            stopped = time.monotonic()
            offline = wait_until(lambda: [e for e in health(active=True) if e["kind"] == "offline"], 10,
                                 "an offline event in the API")
            assert time.monotonic() - stopped < 10
            assert offline[0]["camera_id"] == "gate-cam" and offline[0]["compound_id"] == "c1"
            assert worker.camera_errors.get("gate-cam")
            time.sleep(3)  # still offline, retried with back-off: reported once
            assert len(health()) == 1

            rtsp.start()
            frames_before = cam.pipeline.frames_seen
            wait_until(lambda: cam.pipeline.frames_seen > frames_before + 4, 30, "frames after the server returned")
            ended = wait_until(lambda: [e for e in health() if e["ended_at"]], 15, "the offline event closed")
            assert ended[0]["id"] == offline[0]["id"] and health(active=True) == []
            assert cam.source.connects == 2
            assert all(t.is_alive() for t in cam.threads)
            assert "gate-cam" not in worker.camera_errors
            metrics = worker.live.metrics.text()
            assert 'compoundeye_camera_online{camera="gate-cam"} 1.0' in metrics
            assert 'compoundeye_camera_health{camera="gate-cam",kind="offline"} 0.0' in metrics
            assert 'compoundeye_reconnects_total{camera="gate-cam"} 1.0' in metrics
            api_text = httpx.get(f"{api.url}/api/v1/camera-health", headers={"X-API-Key": reviewer_key}).text
            assert PASSWORD not in api_text
        finally:
            worker.stop()
    assert PASSWORD not in caplog.text
    assert all(PASSWORD not in v for v in worker.camera_errors.values())
