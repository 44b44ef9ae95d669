"""The monitoring wall's cost, measured in one run on this machine: frames served per second per viewer,
server CPU per viewer, and (with ``--browser``) the page's own CPU in headless Chromium with 16 tiles.

    python -m service.wall_bench --cameras 16 --fps 4 --viewers 1,4 --seconds 10 --browser --json

What it does: the API (SQLite in a temporary folder) runs in this process under uvicorn on 127.0.0.1,
with a publisher thread feeding ``cameras`` synthetic 1280x720 cameras into the live hub at ``fps`` (the
hub resizes and encodes each frame once, whatever the number of viewers). The CPU time of this process is
measured with no viewer (publisher and idle server), then with N viewers reading the wall stream from a
child process; the difference divided by N is the server's CPU per viewer (in cores, 1.0 = one core
busy). Viewers count the frames they receive. With ``--browser`` the wall page is opened in Debian's
Chromium and Chrome's own ``Performance.getMetrics`` gives the page's task time per second (its main
thread's CPU share) and the frames it drew per second.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import uvicorn

from service.app import create_app
from service.keys import create_key
from service.settings import Settings
from vision.bench import synthetic_frame
from vision.config import Camera, Zone
from vision.types import Detections, Frame

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

# Run in a child process: N threads each read the wall stream for a while and report their frame counts.
VIEWER_SCRIPT = r"""
import http.client, json, sys, threading, time
from service.live import read_wall_parts
port, key, n, seconds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
counts, sizes = [0] * n, [0] * n
def view(i):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/api/v1/live/wall", headers={"X-API-Key": key})
    response, rest, end = conn.getresponse(), b"", time.monotonic() + seconds
    while time.monotonic() < end:
        chunk = response.read1(65536)
        if not chunk:
            break
        parts, rest = read_wall_parts(rest + chunk)
        for header, body in parts:
            if header["type"] == "frame":
                counts[i] += 1
                sizes[i] += len(body)
    conn.close()
threads = [threading.Thread(target=view, args=(i,)) for i in range(n)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"frames": counts, "bytes": sizes}))
"""


def _camera(index: int) -> Camera:
    zone = Zone(id="lane", kind="fire_lane", polygon=((0.3, 0.3), (0.8, 0.3), (0.8, 0.7), (0.3, 0.7)),
                rules=("fire_lane",))
    return Camera(id=f"cam{index:02d}", name=f"Camera {index:02d}", source="synthetic", zones=(zone,))


class _Publisher(threading.Thread):
    """``cameras`` synthetic cameras at ``fps`` with two tracked boxes each, into the hub."""

    def __init__(self, hub, cameras: int, fps: float):
        super().__init__(daemon=True, name="bench-publisher")
        self.hub, self.ids, self.fps = hub, [f"cam{i:02d}" for i in range(cameras)], fps
        self.images = [synthetic_frame((1280, 720), seed=i) for i in range(cameras)]
        self.stop = threading.Event()

    def run(self) -> None:
        t = time.time()
        while not self.stop.is_set():
            for cam, image in zip(self.ids, self.images):
                shift = int(t * 20) % 400
                tracks = Detections(xyxy=np.array([[100 + shift, 200, 300 + shift, 400], [700, 300, 900, 500]], np.float32),
                                    confidence=np.array([0.9, 0.8], np.float32), class_id=np.array([0, 0]),
                                    class_names=("car",), tracker_id=np.array([1, 2]))
                self.hub.publish(cam, Frame(camera_id=cam, time_s=t, image=image), tracks)
            t += 1.0 / self.fps
            self.stop.wait(max(0.0, t - time.time()))


def _thread_cpu(native_id: int) -> float:
    for thread in psutil.Process().threads():
        if thread.id == native_id:
            return thread.user_time + thread.system_time
    return 0.0


def _cpu_over(seconds: float, server_thread: threading.Thread, during=None) -> tuple[float, float, object]:
    """Cores used over ``seconds`` (wall) while ``during()`` runs (or sleeping): by the whole process, and by
    the server's event-loop thread alone (what serving the streams costs, without the publisher)."""
    process = psutil.Process()
    before, loop_before, start = process.cpu_times(), _thread_cpu(server_thread.native_id), time.monotonic()
    result = during() if during is not None else time.sleep(seconds)
    after, loop_after, elapsed = process.cpu_times(), _thread_cpu(server_thread.native_id), time.monotonic() - start
    total = ((after.user - before.user) + (after.system - before.system)) / elapsed
    return total, (loop_after - loop_before) / elapsed, result


def _browser_figures(url: str, key: str, seconds: float, cameras: int) -> dict:
    from playwright.sync_api import sync_playwright  # the dev extra; only --browser needs it
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1080})
            page.goto(f"{url}/#key={key}")
            page.wait_for_function(f"document.querySelectorAll('.tile').length >= {cameras} && "
                                   "[...document.querySelectorAll('.tile')].every(t => +t.dataset.frames > 2)",
                                   timeout=60_000)
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")

            def metrics() -> dict:
                return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            m0, f0, t0 = metrics(), page.evaluate("window.CE_WALL.frames"), time.monotonic()
            time.sleep(seconds)
            m1, f1, t1 = metrics(), page.evaluate("window.CE_WALL.frames"), time.monotonic()
            elapsed = t1 - t0
            return {"page_task_cpu": round((m1["TaskDuration"] - m0["TaskDuration"]) / elapsed, 4),
                    "page_script_cpu": round((m1["ScriptDuration"] - m0["ScriptDuration"]) / elapsed, 4),
                    "page_frames_drawn_per_s": round((f1 - f0) / elapsed, 2),
                    "page_js_heap_mb": round(m1["JSHeapUsedSize"] / 2**20, 1)}
        finally:
            browser.close()


def bench_wall_figures(cameras: int = 16, fps: float = 4.0, viewers: tuple[int, ...] = (1, 4),
                       seconds: float = 10.0, browser: bool = False) -> dict:
    """Measure the wall (see the module docstring); returns the figures as a dict."""
    with tempfile.TemporaryDirectory(prefix="wall-bench-") as folder:
        settings = Settings(database_url=f"sqlite:///{folder}/bench.db", storage_url=f"file://{folder}/evidence")
        app = create_app(settings)
        with app.state.sessions() as session:
            key = create_key(session, "wall bench", "viewer", ["*"])
        sock_port = _free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=sock_port, log_level="warning",
                                               timeout_graceful_shutdown=2))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        hub = app.state.live_hub
        for i in range(cameras):
            hub.register(_camera(i), compound_id="bench")
        publisher = _Publisher(hub, cameras, fps)
        publisher.start()
        try:
            time.sleep(1.0)
            baseline, loop_baseline, _ = _cpu_over(seconds, thread)
            rows = []
            for n in viewers:
                def run_viewers(n=n):
                    out = subprocess.run([sys.executable, "-c", VIEWER_SCRIPT, str(sock_port), key, str(n), str(seconds)],
                                         capture_output=True, text=True, check=True, cwd=str(Path(__file__).parents[1]))
                    return json.loads(out.stdout)
                cpu, loop_cpu, counts = _cpu_over(seconds, thread, run_viewers)
                frames = sum(counts["frames"])
                rows.append({"viewers": n, "frames_per_s_per_viewer": round(frames / n / seconds, 2),
                             "mbit_per_s_per_viewer": round(sum(counts["bytes"]) * 8 / n / seconds / 1e6, 2),
                             # the event loop's extra CPU per viewer; the process figure includes the
                             # publisher (shared by all viewers) and the noise of a busy machine
                             "server_cpu_per_viewer": round((loop_cpu - loop_baseline) / n, 4),
                             "process_cpu_per_viewer": round((cpu - baseline) / n, 4),
                             "process_cpu_total": round(cpu, 4)})
            result = {"cameras": cameras, "publish_fps": fps, "offered_frames_per_s": cameras * fps,
                      "seconds": seconds, "process_cpu_no_viewer": round(baseline, 4),
                      "server_loop_cpu_no_viewer": round(loop_baseline, 4), "runs": rows, "cpu_count": os.cpu_count()}
            if browser:
                result["browser"] = _browser_figures(f"http://127.0.0.1:{sock_port}", key, seconds, cameras)
            return result
        finally:
            publisher.stop.set()
            publisher.join(timeout=5)
            server.should_exit = True
            thread.join(timeout=10)


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_wall(cameras: int = 16, fps: float = 4.0, viewers: str = "1,4", seconds: float = 10.0,
               browser: bool = False, as_json: bool = False) -> None:
    """Print the wall's figures (``compoundeye bench wall`` when wired into the CLI)."""
    result = bench_wall_figures(cameras, fps, tuple(int(v) for v in viewers.split(",")), seconds, browser)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    print(f"{cameras} cameras at {fps:g} fps ({cameras * fps:g} frames/s offered), {seconds:g} s per run, "
          f"{result['cpu_count']} cores")
    print(f"with no viewer: process (publisher: resize + JPEG once per frame) {result['process_cpu_no_viewer']:.3f} "
          f"cores, server event loop {result['server_loop_cpu_no_viewer']:.3f} cores")
    for row in result["runs"]:
        print(f"{row['viewers']:>3} viewer(s): {row['frames_per_s_per_viewer']:.1f} frames/s and "
              f"{row['mbit_per_s_per_viewer']:.1f} Mbit/s per viewer; server CPU per viewer "
              f"{row['server_cpu_per_viewer']:.4f} cores (event loop), {row['process_cpu_per_viewer']:.4f} (process)")
    if "browser" in result:
        b = result["browser"]
        print(f"page (Chromium, {cameras} tiles): main-thread tasks {b['page_task_cpu']:.3f} cores "
              f"(script {b['page_script_cpu']:.3f}), {b['page_frames_drawn_per_s']:.1f} frames drawn/s, "
              f"JS heap {b['page_js_heap_mb']} MB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=16)
    parser.add_argument("--fps", type=float, default=4.0)
    parser.add_argument("--viewers", default="1,4", help="comma-separated viewer counts, one run each")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--browser", action="store_true", help="also measure the page in headless Chromium")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    bench_wall(args.cameras, args.fps, args.viewers, args.seconds, args.browser, args.json)


if __name__ == "__main__":
    main()
