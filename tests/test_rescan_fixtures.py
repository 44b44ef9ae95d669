"""Shared footage and runs for the re-scan tests (imported by the test_rescan* modules).

The footage is generated from the committed sample clips with :func:`vision.rescan.bench.render_footage`
(640x360, 10 fps, a keyframe every 2 s): ``cam-a`` has a car parking on the fire lane after 30 s of
passing traffic (one violation), ``cam-b`` has traffic only. Next to them are the bad inputs a job must
survive: a zero-length file, a truncated one, one that is not video at all, one named against the
pattern and one of a camera the site does not have; and a file named anyhow whose sidecar says its
camera and start time.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vision.config import load_site_config
from vision.rescan import JobSpec, RescanJob
from vision.rescan.bench import SAMPLES, bench_site_yaml, render_footage
from vision.rescan.executors import LocalExecutor
from vision.rescan.job import file_sha256

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "car-v1.onnx"
# 2025-06-14 08:00:00 in Asia/Shanghai (the site's time zone), as the file name says
CAM_A_START = 1749859200.0
VIOLATION_CLIP = "cam-a/20250614/080000.mp4"
TRAFFIC_CLIP = "cam-b/20250614/090000.mp4"
SIDECAR_CLIP = "export/recording-17.mp4"
BAD = {
    "cam-a/20250614/100000.mp4": "zero-length",
    "cam-a/20250614/110000.mp4": "truncated",
    "cam-b/20250614/120000.mp4": "cannot open video",
    "cam-b/misc/clip.mp4": "does not match the naming pattern",
    "cam-x/20250614/080000.mp4": "not in the site file",
}


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """The two generated clips (made once per session)."""
    folder = tmp_path_factory.mktemp("rescan-clips")
    violation = render_footage(folder / "violation.mp4", [(SAMPLES / "gate_traffic.mp4", 0, 30),
                                                          (SAMPLES / "fire_lane_demo.mp4", 8, 45)], 640, 360)
    traffic = render_footage(folder / "traffic.mp4", [(SAMPLES / "gate_traffic.mp4", 0, 16)], 640, 360)
    return {"violation": violation, "traffic": traffic}


def build_footage(root: Path, clips: dict[str, Path]) -> Path:
    def put(name: str, data: bytes) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    violation, traffic = clips["violation"].read_bytes(), clips["traffic"].read_bytes()
    put(VIOLATION_CLIP, violation)
    put(TRAFFIC_CLIP, traffic)
    put(SIDECAR_CLIP, traffic)
    put("export/recording-17.json", json.dumps({"camera_id": "cam-b",
                                                "start_time": "2025-06-14T13:00:00+08:00"}).encode())
    put("cam-a/20250614/100000.mp4", b"")
    put("cam-a/20250614/110000.mp4", traffic[: len(traffic) * 2 // 5])
    put("cam-b/20250614/120000.mp4", b"\x00\x01not a video at all" * 100)
    put("cam-b/misc/clip.mp4", traffic)
    put("cam-x/20250614/080000.mp4", traffic)
    put("cam-b/README.txt", b"exported from the NVR")
    return root


@pytest.fixture(scope="session")
def footage(tmp_path_factory, clips) -> Path:
    return build_footage(tmp_path_factory.mktemp("rescan-footage"), clips)


@pytest.fixture(scope="session")
def site_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("rescan-site") / "site.yaml"
    path.write_text(bench_site_yaml(MODEL, ["cam-a", "cam-b"], sample_fps=2))
    return path


def make_spec(source: str, site_path: Path, state_dir: Path, mode: str = "sampled", **kw) -> JobSpec:
    return JobSpec(source, load_site_config(site_path), file_sha256(site_path), str(MODEL), mode,
                   state_dir=state_dir, threads=1, **kw)


@pytest.fixture(scope="session")
def local_run(tmp_path_factory, footage, site_path) -> tuple[dict, Path]:
    """One uninterrupted sampled-mode run of the whole footage folder in this process: (report, state dir)."""
    state = tmp_path_factory.mktemp("rescan-state")
    job = RescanJob(make_spec(str(footage), site_path, state), LocalExecutor(1))
    report = job.run()
    assert job.exit_code == 3, report["bad_files"]
    return report, state


def copy_state(state: Path, dest: Path) -> Path:
    shutil.copytree(state, dest)
    return dest
