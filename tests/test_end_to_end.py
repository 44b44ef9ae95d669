"""End to end on the sample footage: worker → outbox → real HTTP API → database + evidence store.

Runs the real committed model on the real sample clip, against a uvicorn server on a free loopback port,
on SQLite and on PostgreSQL (the ``database_url`` fixture).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import av
import httpx
import pytest
import yaml

from service.db import make_engine, session_factory, upgrade
from service.keys import create_key
from service.settings import Settings
from vision.config import load_site_config
from vision.outbox import Outbox
from vision.worker import Worker

from browser_support import LiveServer as ApiServer  # noqa: F401 (also imported by other tests)
from browser_support import absolute_detector_paths, free_port

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.yaml"


@pytest.fixture
def service_settings(database_url, tmp_path) -> Settings:
    return Settings(database_url=database_url, storage_url=f"file://{tmp_path / 'evidence'}")


def make_keys(settings: Settings) -> tuple[str, str]:
    upgrade(settings.database_url)  # the keys are made before the API (which also migrates) starts
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as session:
        worker = create_key(session, name="e2e-worker", role="worker", compounds=["*"])
        reviewer = create_key(session, name="e2e-reviewer", role="reviewer", compounds=["*"])
        session.commit()
    engine.dispose()
    return worker, reviewer


FIRE_LANE_CAMERAS = ("demo-gate", "main-gate")


def site_file(tmp_path: Path, extra_camera: dict | None = None, cameras: tuple[str, ...] = FIRE_LANE_CAMERAS) -> Path:
    """The demo site, non-looping, with paths made absolute and the outbox in tmp_path. Only the
    fire-lane cameras are kept by default: the demo's bin, corridor and lift cameras are tested in
    tests/test_rules_footage.py."""
    raw = yaml.safe_load(DEMO.read_text())
    for compound in raw["compounds"]:
        compound["cameras"] = [cam for cam in compound["cameras"] if cam["id"] in cameras]
    absolute_detector_paths(raw, DEMO.parent)
    raw["outbox_dir"] = str(tmp_path / "outbox")
    for compound in raw["compounds"]:
        for cam in compound["cameras"]:
            cam["source"] = str((DEMO.parent / cam["source"]).resolve())
            cam["loop"] = False
    if extra_camera:
        raw["compounds"][0]["cameras"].append(extra_camera)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    return path


def wait_for_events(url: str, key: str, n: int, timeout_s: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        page = httpx.get(f"{url}/api/v1/events", headers={"X-API-Key": key}).json()
        if page["total"] >= n or time.monotonic() > deadline:
            return page["items"]
        time.sleep(0.3)


def test_sample_footage_gives_one_fire_lane_violation_with_playable_clip(service_settings, tmp_path):
    worker_key, reviewer_key = make_keys(service_settings)
    # A second camera whose footage is corrupt: it is reported, the other camera carries on.
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes((ROOT / "samples" / "footage" / "fire_lane_demo.mp4").read_bytes()[:40_000])
    path = site_file(tmp_path, {"id": "broken-cam", "source": str(corrupt), "loop": False,
                                "zones": [{"id": "lane", "kind": "fire_lane", "rules": ["fire_lane"],
                                           "polygon": [[0.1, 0.5], [0.9, 0.5], [0.9, 0.9], [0.1, 0.9]]}]})
    site = load_site_config(path)
    with ApiServer(service_settings) as api:
        worker = Worker(site, path, api_key=worker_key, api_url=api.url, realtime=False)
        worker.start()
        try:
            deadline = time.monotonic() + 240
            while "demo-gate" in {t.name.removeprefix("camera-") for t in worker._threads if t.is_alive()}:
                assert time.monotonic() < deadline, "worker did not finish the sample clip"
                time.sleep(0.5)
            assert "broken-cam" in worker.camera_errors and "corrupt.mp4" in worker.camera_errors["broken-cam"]
            items = wait_for_events(api.url, reviewer_key, 1)
        finally:
            worker.stop()
        # The pass-through car and the car in the parking bay must not count: exactly one violation.
        time.sleep(1.0)
        items = wait_for_events(api.url, reviewer_key, 1, timeout_s=1)
        assert [(e["rule"], e["camera_id"], e["zone_id"]) for e in items] == [("fire_lane", "demo-gate", "fire-lane")]
        event = items[0]
        truth = json.loads((ROOT / "samples" / "footage" / "fire_lane_demo.json").read_text())
        clip_bytes = httpx.get(f"{api.url}/api/v1/events/{event['id']}/evidence/clip",
                               headers={"X-API-Key": reviewer_key}).content
        snapshot = httpx.get(f"{api.url}/api/v1/events/{event['id']}/evidence/snapshot",
                             headers={"X-API-Key": reviewer_key})
        assert snapshot.status_code == 200 and snapshot.content[:2] == b"\xff\xd8"
    clip_path = tmp_path / "clip.mp4"
    clip_path.write_bytes(clip_bytes)
    with av.open(str(clip_path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        frames = list(container.decode(stream))
        assert frames[0].key_frame
        duration = float(frames[-1].pts * stream.time_base) - float(frames[0].pts * stream.time_base)
    demo = load_site_config(DEMO)
    params = demo.rules.fire_lane
    zone = demo.compounds[0].cameras[0].zones[0]
    dwell = demo.rule_params("fire_lane", zone).dwell_s
    # pre-roll before the car settled, the dwell, and the post-roll after the violation was raised
    assert duration >= demo.evidence.pre_roll_s + dwell + demo.evidence.post_roll_s - 1.5
    assert params is not None


def test_worker_keeps_events_while_api_is_down_and_delivers_later(service_settings, tmp_path):
    worker_key, reviewer_key = make_keys(service_settings)
    port = free_port()
    path = site_file(tmp_path)
    site = load_site_config(path)
    worker = Worker(site, path, api_key=worker_key, api_url=f"http://127.0.0.1:{port}", realtime=False)
    worker.start()
    assert worker.wait(timeout_s=240), "worker did not finish the sample clip"
    time.sleep(1.0)
    assert worker.outbox.counts().get("pending") == 1  # kept on disk, not lost
    with ApiServer(service_settings, port=port) as api:
        worker.stop()  # stop() drains the outbox while the API is up
        items = wait_for_events(api.url, reviewer_key, 1, timeout_s=5)
        assert len(items) == 1
    assert Outbox(tmp_path / "outbox").counts() == {}  # delivered events leave the outbox
