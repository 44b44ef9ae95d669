"""Workers split live cameras through leases held by the API; a dead worker's cameras are taken over.

The API half runs on SQLite and PostgreSQL; the takeover test kills a real ``compoundeye worker``
process with SIGKILL (no goodbye) and watches a second worker pick its RTSP cameras up."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from rtsp_server import RtspServer, make_clip
from test_end_to_end import ApiServer, make_keys
from vision.config import load_site_config
from vision.worker import Worker

ROOT = Path(__file__).resolve().parents[1]
CAMS = [{"compound_id": "c1", "camera_id": f"cam{i}"} for i in range(4)]


def claim(client, headers, worker_id, ttl_s=3.0, cameras=CAMS):
    resp = client.post("/api/v1/leases", json={"worker_id": worker_id, "cameras": cameras, "ttl_s": ttl_s},
                       headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_leases_share_cameras_evenly_and_expire(client, worker, make_key):
    first = claim(client, worker, "a")
    assert first["cameras"] == ["cam0", "cam1", "cam2", "cam3"] and first["workers"] == 1
    second = claim(client, worker, "b")  # a still holds everything: b waits for a's share to drop
    assert second["cameras"] == [] and second["share"] == 2 and second["workers"] == 2
    assert claim(client, worker, "a")["cameras"] == ["cam0", "cam1"]  # a gives the extra ones up
    assert claim(client, worker, "b")["cameras"] == ["cam2", "cam3"]
    assert claim(client, worker, "a")["cameras"] == ["cam0", "cam1"]  # stable while both renew
    time.sleep(3.5)  # a and b stop renewing: leases and heartbeats expire
    taken = claim(client, worker, "b")
    assert taken["workers"] == 1 and taken["cameras"] == ["cam0", "cam1", "cam2", "cam3"]
    assert client.delete("/api/v1/leases/b", headers=worker).status_code == 204
    assert claim(client, worker, "a")["cameras"] == ["cam0", "cam1", "cam2", "cam3"]
    # a key of another compound may not claim c1's cameras
    assert client.post("/api/v1/leases", json={"worker_id": "x", "cameras": CAMS},
                       headers=make_key("worker", ("c2",))).status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_dead_worker_cameras_taken_over_within_60s(database_url, tmp_path):
    from service.settings import Settings
    settings = Settings(database_url=database_url, storage_url=f"file://{tmp_path / 'evidence'}")
    worker_key, _ = make_keys(settings)
    clip = make_clip(tmp_path / "cam.mp4", seconds=4)
    with RtspServer({f"/cam{i}": clip for i in range(4)}) as rtsp, ApiServer(settings) as api:
        def site(name: str) -> Path:
            raw = {"detector": {"model": str(ROOT / "models" / "car-v1.onnx"), "threads": 1},
                   "outbox_dir": str(tmp_path / name / "outbox"), "api": {"url": api.url},
                   "live": {"read_timeout_s": 3, "leases": True, "lease_ttl_s": 9},
                   "compounds": [{"id": "c1", "cameras": [
                       {"id": f"cam{i}", "source": rtsp.url(f"/cam{i}"), "sample_fps": 1} for i in range(4)]}]}
            (tmp_path / name).mkdir()
            path = tmp_path / name / "site.yaml"
            path.write_text(yaml.safe_dump(raw))
            return path

        doomed = subprocess.Popen([sys.executable, "-m", "service.cli", "worker", str(site("a"))], cwd=ROOT,
                                  env={**os.environ, "COMPOUNDEYE_API_KEY": worker_key},
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        survivor = None
        try:
            def held_by_others() -> int:
                with api.app.state.sessions() as session:
                    from service.health_events import WorkerLease
                    rows = session.query(WorkerLease).all()
                    mine = survivor.live.leases.worker_id if survivor else None
                    return sum(r.worker_id != mine for r in rows)

            deadline = time.monotonic() + 60
            while held_by_others() < 4:
                assert time.monotonic() < deadline and doomed.poll() is None, "worker a never took the cameras"
                time.sleep(0.5)
            path = site("b")
            survivor = Worker(load_site_config(path), path, api_key=worker_key, api_url=api.url)
            survivor.start()
            deadline = time.monotonic() + 60
            while len(survivor.live.cameras) < 2:  # the two workers split the four cameras
                assert time.monotonic() < deadline, "the second worker never got its share"
                time.sleep(0.5)
            assert held_by_others() == 2
            doomed.send_signal(signal.SIGKILL)  # dies without giving anything up
            doomed.wait(10)
            killed = time.monotonic()
            while not (len(survivor.live.cameras) == 4
                       and all(c.pipeline.frames_seen > 0 for c in survivor.live.cameras.values())):
                frames = {cam: c.pipeline.frames_seen for cam, c in sorted(survivor.live.cameras.items())}
                assert time.monotonic() - killed < 60, \
                    f"cameras not taken over and read: frames {frames}; test server exits: {rtsp.crashes}"
                time.sleep(0.5)
            took = time.monotonic() - killed
            assert took < 60
            print(f"takeover after {took:.1f} s; test server exits: {len(rtsp.crashes)}")
        finally:
            if doomed.poll() is None:
                doomed.kill()
                doomed.wait()
            if survivor is not None:
                survivor.stop()
        with api.app.state.sessions() as session:  # a clean stop gives the leases up
            from service.health_events import WorkerLease
            assert session.query(WorkerLease).count() == 0
