"""``compoundeye bench live``: how many live cameras this machine holds.

For each camera count N it serves N local RTSP streams (640×360, 15 fps, H.264, GOP 1 s) from a
GStreamer RTSP server on loopback (``tests/rtsp_server.py``, run by the system python), runs a real
worker on them at ``sample_fps`` inferences per second per camera for ``seconds``, and measures:

- drops: frames dropped by the inference queue (``replaced`` + ``stale``) after the warm-up — a
  count "held" needs zero;
- latency: frame time (when the camera sent the frame) → detections ready, p50/p95/max;
- CPU (cores, ``psutil``) and RSS of the worker process, per camera; the RSS slope over the run
  (MB per hour, least squares) for soak runs.

In the same run it measures the pipeline a user would write first — one OpenCV ``VideoCapture``
thread per camera, the detector on every frame — and how many cameras *it* holds (its lag behind
real time stays under 2 s), and prints the ratio.

The machine may be shared: the figures are what this run saw, on this load.
"""
from __future__ import annotations

import gc
import importlib.util
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

from vision.bench import cpu_model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "car-v1-int8.onnx"   # what the demo site runs (car-v1, static int8)
MAX_LAG_S = 2.0

log = logging.getLogger(__name__)


def _rtsp_server_module():
    """``tests/rtsp_server.py`` (the bench needs the same real RTSP server the tests use)."""
    path = ROOT / "tests" / "rtsp_server.py"
    spec = importlib.util.spec_from_file_location("ce_rtsp_server", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _percentile(values, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def _slope_mb_per_hour(samples: list[tuple[float, float]]) -> float | None:
    if len(samples) < 3:
        return None
    t = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples])
    return float(np.polyfit(t - t[0], rss, 1)[0] * 3600)


def _by_minute(samples: list[tuple[float, float]]) -> list[float]:
    """RSS (MB) at the first sample of every minute of the measurement, for a reader to look at."""
    if not samples:
        return []
    t0, out = samples[0][0], []
    for t, rss in samples:
        if t - t0 >= 60 * len(out):
            out.append(round(rss, 1))
    return out


class _Sampler:
    """CPU seconds and RSS of this process, sampled every ``interval_s`` on a thread."""

    def __init__(self, interval_s: float = 5.0):
        self.process = psutil.Process()
        self.interval_s = interval_s
        self.rss: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _cpu(self) -> float:
        t = self.process.cpu_times()
        return t.user + t.system

    def start(self) -> "_Sampler":
        self.t0, self.cpu0 = time.monotonic(), self._cpu()
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.rss.append((time.monotonic(), self.process.memory_info().rss / 2**20))
            self._stop.wait(self.interval_s)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        wall = time.monotonic() - self.t0
        self.rss.append((time.monotonic(), self.process.memory_info().rss / 2**20))
        half = len(self.rss) // 2
        return {"cpu_cores": (self._cpu() - self.cpu0) / wall, "rss_mb": self.rss[-1][1],
                "rss_slope_mb_per_h": _slope_mb_per_hour(self.rss),
                # the two halves apart: growth that levels off (allocator arenas, a cache reaching its
                # bound) has a smaller slope in the second half; a leak keeps its slope
                "rss_slope_mb_per_h_halves": [_slope_mb_per_hour(self.rss[:half]), _slope_mb_per_hour(self.rss[half:])],
                "rss_mb_by_minute": _by_minute(self.rss), "wall_s": wall}


def _site(n: int, urls: list[str], work: Path, sample_fps: float, keyframes_only: bool, motion_gate: bool,
          model: Path, threads: int) -> Path:
    raw = {"detector": {"model": str(model), "threads": threads},
           "outbox_dir": str(work / "outbox"), "api": {"url": "http://127.0.0.1:9"},
           "live": {"read_timeout_s": 5, "max_batch": 8, "max_frame_age_s": 2.0,
                    "motion": {"enabled": motion_gate},
                    "health": {"offline_after_s": 10}},
           "compounds": [{"id": "bench", "cameras": [
               {"id": f"cam{i:03d}", "source": url, "sample_fps": sample_fps, "keyframes_only": keyframes_only}
               for i, url in enumerate(urls[:n])]}]}
    path = work / f"site-{n}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run_ours(n: int, urls: list[str], work: Path, seconds: float, warmup_s: float, sample_fps: float = 1.0,
             keyframes_only: bool = True, motion_gate: bool = False, model: Path = DEFAULT_MODEL,
             threads: int = 2) -> dict:
    """Run a real worker on ``n`` streams; returns drops, latency, CPU and memory figures."""
    from vision.config import load_site_config
    from vision.worker import Worker

    path = _site(n, urls, work, sample_fps, keyframes_only, motion_gate, model, threads)
    rss_before_mb = psutil.Process().memory_info().rss / 2**20
    worker = Worker(load_site_config(path), path, api_key="bench", api_url="http://127.0.0.1:9")
    worker.start()
    live = worker.live
    try:
        deadline = time.monotonic() + max(60.0, warmup_s)
        while time.monotonic() < deadline and not all(c.source.online for c in live.cameras.values()):
            time.sleep(0.5)
        online = sum(c.source.online for c in live.cameras.values())
        time.sleep(warmup_s)
        drops0 = dict(live.inference.queue.drops)
        frames0 = live.inference.frames
        live.latency_samples.clear()
        sampler = _Sampler().start()
        time.sleep(seconds)
        usage = sampler.stop()
        drops = {k: live.inference.queue.drops[k] - drops0[k] for k in drops0}
        inferred = live.inference.frames - frames0
        latencies = list(live.latency_samples)
        offline = sum(not c.source.online for c in live.cameras.values())
        busy = live.inference.busy_s
    finally:
        worker.stop()
        gc.collect()
    return {
        "cameras": n, "online_at_start": online, "offline_at_end": offline,
        "inferences_per_s": inferred / usage["wall_s"], "inferences_per_s_per_camera": inferred / usage["wall_s"] / n,
        "drops_replaced": drops["replaced"], "drops_stale": drops["stale"],
        "latency_p50_s": _percentile(latencies, 50), "latency_p95_s": _percentile(latencies, 95),
        "latency_max_s": max(latencies) if latencies else None,
        "cpu_cores": usage["cpu_cores"], "cpu_cores_per_camera": usage["cpu_cores"] / n,
        "rss_mb": usage["rss_mb"], "rss_mb_per_camera": usage["rss_mb"] / n,
        # what the cameras add to the process (its libraries and the model are there before the first)
        "rss_mb_per_camera_added": (usage["rss_mb"] - rss_before_mb) / n,
        "rss_slope_mb_per_h": usage["rss_slope_mb_per_h"], "rss_slope_mb_per_h_halves": usage["rss_slope_mb_per_h_halves"],
        "rss_mb_by_minute": usage["rss_mb_by_minute"], "detector_busy_s_total": busy,
        "held": drops["replaced"] + drops["stale"] == 0 and offline == 0 and online == n
                and (_percentile(latencies, 95) or 99) < MAX_LAG_S,
    }


def run_naive(n: int, urls: list[str], seconds: float, warmup_s: float, model: Path = DEFAULT_MODEL,
              threads: int = 2) -> dict:
    """One OpenCV capture thread per camera, the detector on every frame (one shared session, as a
    user would load the model once). Lag = how far the processed frame is behind real time."""
    import cv2

    from vision.detector import OnnxDetector

    os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    detector = OnnxDetector(str(model), threads=threads)
    stop = threading.Event()
    measuring = threading.Event()
    lags: list[list[float]] = [[] for _ in range(n)]
    inferred = [0] * n

    def camera(i: int) -> None:
        cap = cv2.VideoCapture(urls[i], cv2.CAP_FFMPEG)
        start_wall = None
        while not stop.is_set():
            ok, image = cap.read()
            if not ok:
                time.sleep(0.1)
                continue
            pos_s = cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            # the earliest (arrival - position) seen: the stream's real-time origin (as vision.rtsp does)
            if start_wall is None or time.time() - pos_s < start_wall:
                start_wall = time.time() - pos_s
            detector.detect(image)
            if measuring.is_set():
                inferred[i] += 1
                lags[i].append(time.time() - (start_wall + pos_s))
        cap.release()

    sampler = None
    workers = [threading.Thread(target=camera, args=(i,), daemon=True) for i in range(n)]
    for t in workers:
        t.start()
    try:
        time.sleep(warmup_s)
        measuring.set()
        sampler = _Sampler().start()
        time.sleep(seconds)
        usage = sampler.stop()
    finally:
        stop.set()
        for t in workers:
            t.join(15)
    all_lags = [x for per in lags for x in per]
    # falling behind: the lag at the end of the window is larger than at its start
    growth = [per[-1] - per[0] for per in lags if len(per) > 1]
    p95 = _percentile(all_lags, 95)
    return {"cameras": n, "inferences_per_s": sum(inferred) / usage["wall_s"],
            "latency_p95_s": p95, "lag_growth_s_max": max(growth) if growth else None,
            "cpu_cores": usage["cpu_cores"], "cpu_cores_per_camera": usage["cpu_cores"] / n,
            "rss_mb": usage["rss_mb"], "held": bool(all_lags) and p95 is not None and p95 < MAX_LAG_S
            and all(len(per) > 0 for per in lags)}


def _steps(max_n: int, steps: list[int] | None) -> list[int]:
    if steps:
        return sorted(s for s in steps if s <= max_n) or [max_n]
    out, n = [], 4
    while n < max_n:
        out.append(n)
        n *= 2
    return out + [max_n]


def bench_live(cameras: int = 64, seconds: float = 300.0, warmup_s: float = 15.0, steps: list[int] | None = None,
               naive: bool = True, naive_seconds: float = 30.0, naive_max: int = 16, sample_fps: float = 1.0,
               keyframes_only: bool = True, motion_gate: bool = False, model: Path = DEFAULT_MODEL,
               threads: int = 2, progress=None) -> dict:
    """Find the largest camera count held (ours and naive) and report the figures (see the module)."""
    rtsp = _rtsp_server_module()
    logging.getLogger("vision").setLevel(logging.ERROR)
    say = progress or (lambda _msg: None)
    with tempfile.TemporaryDirectory(prefix="ce-bench-live-") as tmp:
        work = Path(tmp)
        clip = rtsp.make_clip(work / "cam.mp4", seconds=20, fps=15, size=(640, 360), gop=15)
        mounts = {f"/cam{i:03d}": clip for i in range(cameras)}
        with rtsp.RtspServer(mounts, start_timeout_s=60, strict=False) as server:   # exits are reported
            urls = [server.url(m) for m in mounts]
            ours = []
            for n in _steps(cameras, steps):
                say(f"ours: {n} cameras for {seconds:.0f} s …")
                result = run_ours(n, urls, work, seconds, warmup_s, sample_fps, keyframes_only, motion_gate,
                                  model, threads)
                say(f"  held={result['held']} p95={result['latency_p95_s']} drops="
                    f"{result['drops_replaced'] + result['drops_stale']} cpu/cam={result['cpu_cores_per_camera']:.3f}")
                ours.append(result)
                if not result["held"]:
                    break
            naive_runs = []
            if naive:
                n = 1
                while n <= min(naive_max, cameras):
                    say(f"naive: {n} cameras for {naive_seconds:.0f} s …")
                    result = run_naive(n, urls, naive_seconds, min(warmup_s, 10.0), model, threads)
                    say(f"  held={result['held']} p95 lag={result['latency_p95_s']}")
                    naive_runs.append(result)
                    if not result["held"]:
                        break
                    n *= 2
    held = [r for r in ours if r["held"]]
    naive_held = [r for r in naive_runs if r["held"]]
    best = held[-1] if held else None
    report = {
        "machine": {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "load_avg_1m": os.getloadavg()[0],
                    "note": "shared machine: other jobs were running"},
        "settings": {"resolution": "640x360", "fps": 15, "codec": "h264", "gop_s": 1.0, "sample_fps": sample_fps,
                     "keyframes_only": keyframes_only, "motion_gate": motion_gate, "seconds_per_step": seconds,
                     "warmup_s": warmup_s, "detector": str(model.name), "detector_threads": threads},
        "rtsp_server_exits": server.crashes,   # the test server restarted on its port after each
        "largest_held": best["cameras"] if best else 0,
        "held_p95_latency_s": best["latency_p95_s"] if best else None,
        "held_cpu_cores_per_camera": best["cpu_cores_per_camera"] if best else None,
        "held_rss_mb_per_camera": best["rss_mb_per_camera"] if best else None,
        "held_rss_mb_per_camera_added": best["rss_mb_per_camera_added"] if best else None,
        "steps": ours,
        "naive": {"largest_held": naive_held[-1]["cameras"] if naive_held else 0, "steps": naive_runs}
        if naive else None,
    }
    if naive and naive_held and best:
        report["ratio_cameras_held"] = best["cameras"] / naive_held[-1]["cameras"]
    elif naive and best:
        # the naive pipeline did not hold even one camera: the ratio is at least this
        report["ratio_cameras_held_at_least"] = float(best["cameras"])
    if naive_runs and best:
        report["ratio_cpu_per_camera_naive_vs_ours"] = (naive_runs[0]["cpu_cores_per_camera"]
                                                        / max(best["cpu_cores_per_camera"], 1e-9))
    return report
