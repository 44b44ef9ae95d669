"""``compoundeye bench rescan``: × real time of the re-scan modes on generated 1080p H.264 footage,
and of the baseline a user would write with ultralytics, measured in one run.

Footage: the committed sample clips (moving cars, a car parked on the fire lane for 35 s, sensor
noise, exposure flicker) decoded, scaled to 1920x1080 and re-encoded with libx264 with a keyframe
every 2 s, cut into several files named ``<camera>/<YYYYMMDD>/<HHMMSS>.mp4``. It is generated once
under ``out_dir`` and reused while its parameters are unchanged.

Baseline: ``YOLO(model, task="detect").predict(source=file, stream=True, vid_stride=fps)`` with the
same ONNX model, run in ``.venv-train`` (where ultralytics is installed) as a subprocess, offline.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

import av
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "footage"
BENCH_START = dt.datetime(2025, 6, 14, 8, 0, 0)
# Each bench file is mostly traffic (the gate clip: six cars pass, two pause at the barrier) with
# one stretch of the fire-lane clip (a car parks on the fire lane from 14 s to 49 s) at a place
# that differs from file to file: one violation per file.
TRAFFIC = ("gate_traffic.mp4", 0.0, 30.0)
VIOLATION = ("fire_lane_demo.mp4", 0.0, 60.0)
# The bench footage's frame rate: 25 fps, what Chinese (PAL-region) NVRs record by default. The
# sample clips are 10 fps; the frames between are blended (see resample). At 10 fps a file costs a
# full decoder (the baseline) 2.5x less, and keyframe decoding the same.
FOOTAGE_FPS = 25


def bench_segments(seconds: float, index: int) -> list[tuple[Path, float, float]]:
    """The source segments of bench file ``index`` lasting ``seconds``."""
    slots = max(1, int((seconds - VIOLATION[2]) // TRAFFIC[2]) + 1)
    place = index % slots
    segments, total, k = [], 0.0, 0
    while total < seconds - 1e-6:
        name, a, b = VIOLATION if k == place else TRAFFIC
        take = min(b - a, seconds - total)
        segments.append((SAMPLES / name, a, a + take))
        total += take
        k += 1
    return segments


def _source_frames(path: Path, from_s: float, to_s: float) -> Iterable[tuple[float, np.ndarray]]:
    """``(time in the clip, RGB image)`` of the frames of ``path`` in ``[from_s, to_s)``."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base)
            if t + 1e-6 < from_s:
                continue
            if t >= to_s - 1e-6:
                break
            yield t, frame.to_ndarray(format="rgb24")


def resample(frames: Iterable[tuple[float, np.ndarray]], from_s: float, to_s: float, fps: float
             ) -> Iterable[np.ndarray]:
    """The images at ``from_s + i / fps`` for every such time in ``[from_s, to_s)``, each blended
    linearly from the two source frames around it (a source frame itself where a time falls on it),
    so that footage at a higher rate than its source still changes on every frame, as a camera's
    does, instead of repeating frames that an encoder would code as nearly empty."""
    frames = iter(frames)
    try:
        t0, a = next(frames)
    except StopIteration:
        return
    t1, b = next(frames, (None, None))
    i = 0
    while True:
        t = from_s + i / fps
        if t >= to_s - 1e-6:
            return
        while t1 is not None and t >= t1 - 1e-6:
            t0, a = t1, b
            t1, b = next(frames, (None, None))
        if t1 is None or t <= t0 + 1e-6:
            yield a
        else:
            w = (t - t0) / (t1 - t0)
            yield cv2.addWeighted(a, 1.0 - w, b, w, 0.0)
        i += 1


def render_footage(path: Path, segments: Iterable[tuple[Path, float, float]], width: int, height: int,
                   fps: int = 10, gop_s: float = 2.0, preset: str = "veryfast", crf: int = 23) -> Path:
    """Write an H.264 MP4 (faststart, keyframe every ``gop_s``) made of ``segments`` — ``(clip,
    from_s, to_s)`` of source clips — at ``fps`` frames per second (see :func:`resample`; the
    sample clips are 10 fps), scaled to ``width`` x ``height``. Written under a temporary name and
    renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    gop = max(1, round(gop_s * fps))
    with av.open(str(tmp), "w", format="mp4", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": preset, "crf": str(crf), "g": str(gop),
                                                              "keyint_min": str(gop), "sc_threshold": "0"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        index = 0
        for clip, from_s, to_s in segments:
            for image in resample(_source_frames(Path(clip), from_s, to_s), from_s, to_s, fps):
                if image.shape[1] != width or image.shape[0] != height:
                    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
                frame = av.VideoFrame.from_ndarray(image, format="rgb24")
                frame.pts = index
                index += 1
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    os.replace(tmp, path)
    return path


def bench_site_yaml(model: Path, cameras: Iterable[str], sample_fps: float = 1.0) -> str:
    """A site file for the bench footage: the demo's fire-lane zones and rule on every camera."""
    cams = "\n".join(f"""      - id: {cam}
        source: {SAMPLES / 'fire_lane_demo.mp4'}
        sample_fps: {sample_fps}
        zones:
          - id: fire-lane
            kind: fire_lane
            polygon: [[0.4407, 0.2608], [0.4205, 0.4822], [0.8967, 0.4733], [0.7878, 0.2544]]
            rules: [fire_lane]
          - id: parking
            kind: parking
            polygon: [[0.0, 0.8564], [1.0, 0.8378], [1.0, 0.4951], [0.0, 0.5137]]""" for cam in cameras)
    return f"""version: 1
timezone: Asia/Shanghai
detector: {{model: {model}, confidence: 0.3, iou: 0.5, threads: 2}}
evidence: {{pre_roll_s: 5, post_roll_s: 10, clip_fps: 10}}
rules:
  fire_lane: {{classes: [car], min_confidence: 0.4, dwell_s: 15, confirm_k: 3, confirm_n: 5,
              stationary_tolerance: 0.25, grace_s: 10, cooldown_s: 300, clear_s: 10}}
compounds:
  - id: bench
    cameras:
{cams}
"""


def make_bench_footage(out_dir: Path, minutes: float, file_minutes: float, width: int = 1920, height: int = 1080,
                       fps: int = FOOTAGE_FPS, log: Callable[[str], None] = print) -> tuple[Path, list[Path]]:
    """Generate (or reuse) the bench footage at ``fps``; returns the footage root and the files."""
    # floats, so that 30 and 30.0 (a script and the command) name the same footage
    params = {"minutes": float(minutes), "file_minutes": float(file_minutes), "w": width, "h": height, "traffic": TRAFFIC, "violation": VIOLATION, "v": 2}
    if fps != 10:   # footage made before the rate was a parameter (10 fps, the sample clips' rate) keeps its name
        params["fps"] = int(fps)
    tag = hashlib.sha256(json.dumps(params).encode()).hexdigest()[:10]
    root = out_dir / f"footage-{tag}"
    n_files = max(1, round(minutes / file_minutes))
    seconds = minutes * 60 / n_files
    files = []
    for i in range(n_files):
        start = BENCH_START + dt.timedelta(hours=i)
        path = root / f"cam-{i % 2 + 1}" / start.strftime("%Y%m%d") / f"{start.strftime('%H%M%S')}.mp4"
        files.append(path)
        if path.exists():
            continue
        segments = bench_segments(seconds, i)
        began = time.perf_counter()
        render_footage(path, segments, width, height, fps=fps)
        log(f"bench footage {i + 1}/{n_files}: {path} ({seconds:.0f} s) in {time.perf_counter() - began:.0f} s")
    return root, files


BASELINE_SCRIPT = r"""
import json, sys, time
from ultralytics import YOLO
model, stride, imgsz, conf, files = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5:]
t0 = time.perf_counter()
yolo = YOLO(model, task="detect")
frames = boxes = 0
for f in files:
    for r in yolo.predict(source=f, stream=True, vid_stride=stride, imgsz=imgsz, conf=conf, device="cpu", verbose=False):
        frames += 1
        boxes += len(r.boxes)
print(json.dumps({"elapsed_s": time.perf_counter() - t0, "frames": frames, "boxes": boxes}))
"""


def run_baseline(files: list[Path], duration_s: float, model: Path, fps: int, imgsz: int, conf: float) -> dict:
    """The ultralytics baseline in ``.venv-train``; ``{"available": False, "why": …}`` if it cannot run."""
    python = ROOT / ".venv-train" / "bin" / "python"
    if not python.exists():
        return {"available": False, "why": f"{python} does not exist (ultralytics is installed there)"}
    cfg = ROOT / "var" / "yolo_cfg"
    (cfg / "Ultralytics").mkdir(parents=True, exist_ok=True)
    font = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if font.exists() and not (cfg / "Ultralytics" / name).exists():
            (cfg / "Ultralytics" / name).write_bytes(font.read_bytes())
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(cfg), "OMP_NUM_THREADS": "2"}
    cmd = [str(python), "-c", BASELINE_SCRIPT, str(model), str(fps), str(imgsz), str(conf), *map(str, files)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"available": False, "why": f"exit {proc.returncode}: {proc.stderr.strip()[-1500:]}"}
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"available": True, "command": f"YOLO({model.name!r}).predict(source=file, stream=True, vid_stride={fps}, "
                                          f"imgsz={imgsz}, conf={conf})",
            "elapsed_s": round(out["elapsed_s"], 2), "frames": out["frames"], "boxes": out["boxes"],
            "x_realtime": round(duration_s / out["elapsed_s"], 2)}


def bench_rescan(minutes: float = 30.0, file_minutes: float = 5.0, out_dir: Path = ROOT / "var" / "bench-rescan",
                 baseline: bool = True, processes: tuple[int, ...] = (1, 2), sample_fps: float = 1.0,
                 footage_fps: int = FOOTAGE_FPS, log: Callable[[str], None] = print) -> dict:
    """Run every mode with 1 and 2 processes (and the baseline) over the same footage; returns the figures."""
    from vision.bench import cpu_model
    from vision.config import load_site_config
    from vision.rescan.executors import LocalExecutor
    from vision.rescan.job import JobSpec, RescanJob, file_sha256
    from vision.sources import probe

    root, files = make_bench_footage(out_dir, minutes, file_minutes, fps=footage_fps, log=log)
    info = probe(files[0])
    duration = sum(probe(f)["duration_s"] or 0.0 for f in files)
    model = ROOT / "models" / "car-v1-int8.onnx"   # what the demo site runs (car-v1, static int8)
    site_path = out_dir / "bench-site.yaml"
    site_path.write_text(bench_site_yaml(model, sorted({f.parent.parent.name for f in files}), sample_fps))
    site = load_site_config(site_path)
    runs, violations = {}, {}
    load_at_start = os.getloadavg()
    for mode in ("keyframes", "sampled", "adaptive"):
        for n in processes:
            spec = JobSpec(str(root), site, file_sha256(site_path), str(model), mode, sample_fps,
                           threads=max(1, 2 // n), state_dir=out_dir / "state" / f"{mode}-{n}")
            job = RescanJob(spec, LocalExecutor(n), fresh=True)
            report = job.run()
            run = report["run"]
            runs[f"{mode}/{n}"] = {"mode": mode, "processes": n, "elapsed_s": run["elapsed_s"],
                                   "x_realtime": run["x_realtime"], "violations": report["totals"]["violations"],
                                   "decoded_frames": report["totals"]["decoded_frames"],
                                   "inferences": report["totals"]["inferences"],
                                   "dense_s": round(sum(f["dense_s"] or 0 for f in report["files"]), 1)
                                   if mode == "adaptive" else None}
            violations[f"{mode}/{n}"] = sorted(v["id"] for v in report["violations"])
            log(f"{mode} × {n} process(es): {run['elapsed_s']:.1f} s, {run['x_realtime']}× real time, "
                f"{report['totals']['violations']} violations")
    result = {
        "footage": {"files": len(files), "duration_s": round(duration, 1), "width": info["width"],
                    "height": info["height"], "fps": info["fps"], "codec": info["codec"], "keyframe_interval_s": 2.0,
                    "folder": str(root)},
        "sample_fps": sample_fps, "model": model.name, "cpu_count": os.cpu_count(), "cpu_model": cpu_model(),
        "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg(), "runs": runs,
        "same_violations": {k: v == violations["sampled/1"] for k, v in violations.items()},
    }
    if baseline:
        card = json.loads(json.dumps(__import__("yaml").safe_load((model.with_suffix(".card.yaml")).read_text())))
        log("baseline: ultralytics in .venv-train …")
        result["load_average_before_baseline"] = os.getloadavg()
        result["baseline"] = run_baseline(files, duration, model, int(round((info["fps"] or 10) / sample_fps)),
                                          int(card["input_size"][0]), site.detector.confidence)
    else:
        result["baseline"] = {"available": False, "why": "skipped (--no-baseline)"}
    base = result["baseline"].get("x_realtime")
    if base:
        result["ratios_to_baseline"] = {k: round(r["x_realtime"] / base, 2) for k, r in runs.items()
                                        if r["x_realtime"]}
    return result
