"""Performance figures and one-off detection runs for the ``bench`` and ``detect`` commands.

Timings come from here, measured in one run on the machine at hand, never from timed tests.
"""
from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import cv2
import numpy as np
import onnxruntime as ort

from vision.detector import OnnxDetector, session_options
from vision.errors import CompoundEyeError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
BENCH_FRAME_SIZE = (640, 360)  # width, height: a typical sub-stream, the one detection runs on


def synthetic_frame(size: tuple[int, int] = BENCH_FRAME_SIZE, seed: int = 0) -> np.ndarray:
    """A deterministic BGR test frame: a shaded background with a few solid boxes and mild noise,
    so the model produces a realistic handful of candidates (pure noise or a flat frame do not)."""
    w, h = size
    rng = np.random.default_rng(seed)
    ramp = np.linspace(60, 180, w, dtype=np.float32)[None, :, None]
    image = np.broadcast_to(ramp, (h, w, 3)).copy()
    for _ in range(6):
        x, y = int(rng.integers(0, w - 80)), int(rng.integers(0, h - 60))
        bw, bh = int(rng.integers(40, 160)), int(rng.integers(30, 100))
        image[y:y + bh, x:x + bw] = rng.integers(0, 255, 3)
    image += rng.normal(0, 6, image.shape)
    return image.clip(0, 255).astype(np.uint8)


def _stats(samples_s: list[float]) -> dict:
    ms = np.asarray(samples_s) * 1000.0
    return {"mean": round(float(ms.mean()), 3), "p50": round(float(np.percentile(ms, 50)), 3),
            "p90": round(float(np.percentile(ms, 90)), 3), "min": round(float(ms.min()), 3)}


#: The model measured beside ours by ``bench detector``: the YOLOX-Nano teacher, by path (its weights
#: stay in ../shared/weights; the card is committed). Skipped when the file is absent.
REPO = Path(__file__).resolve().parents[1]
TEACHER = (REPO.parent / "shared" / "weights" / "yolox_nano.onnx", REPO / "models" / "teachers" / "yolox_nano.card.yaml")


def teacher_beside(model_path: str | os.PathLike) -> list[tuple[Path, Path]]:
    """``[TEACHER]`` when its file exists and ``model_path`` is not the teacher itself, else ``[]``:
    what ``bench detector`` times beside a model unless told otherwise."""
    return [TEACHER] if TEACHER[0].is_file() and Path(model_path).resolve() != TEACHER[0].resolve() else []


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; else what :mod:`platform` says): figures from
    different days are only comparable on the same kind of CPU."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bench_detector(model_path: str | os.PathLike, runs: int = 50, warmup: int = 5, threads: int = 2,
                   card_path: str | os.PathLike | None = None, image: np.ndarray | None = None,
                   providers: list[str] | None = None,
                   compare: Sequence[tuple[str | os.PathLike, str | os.PathLike | None]] | None = None,
                   ops: bool = False) -> dict:
    """Time the detector's three stages on one frame, ``runs`` times after ``warmup`` untimed runs.

    Args:
        model_path: the ONNX model (its card next to it, or ``card_path``).
        image: the BGR frame to use; default a synthetic 640x360 frame.
        compare: other ``(model, card)`` pairs timed the same way in the same run, reported under
            ``"compare"``; default (None): the YOLOX teacher (:data:`TEACHER`) when its file exists.
            Pass ``()`` for none.
        ops: also profile each model by operator type (:func:`op_profile`), under ``"ops"``.
    Returns:
        ``{"model", "model_path", "format", "input_size", "tensor_size" (what the frame ran at: smaller
        than input_size for a model with dynamic height and width), "frame_size", "provider", "threads",
        "onnxruntime", "cpu_count", "machine", "cpu_model", "runs", "warmup", "ms": {"preprocess", "inference",
        "postprocess", "total": {"mean", "p50", "p90", "min"}}, "fps_mean", "detections",
        "compare": [the same keys per compared model]}``.
    Raises:
        ModelError: if the model or its card cannot be loaded.
    """
    if compare is None:
        compare = teacher_beside(model_path)
    result = _bench_one(model_path, runs, warmup, threads, card_path, image, providers)
    result["compare"] = [_bench_one(m, runs, warmup, threads, c, image, providers) for m, c in compare]
    if ops:
        for one, (path, card) in zip([result, *result["compare"]], [(model_path, card_path), *compare]):
            one["ops"] = op_profile(path, card, image, threads, runs=min(runs, 30))
    return result


def op_profile(model_path: str | os.PathLike, card_path: str | os.PathLike | None = None,
               image: np.ndarray | None = None, threads: int = 2, runs: int = 30, warmup: int = 5) -> list[dict]:
    """Where the model's inference time goes: onnxruntime's own profiler over ``runs`` inferences of the
    frame (after ``warmup``), the kernel time summed by operator type of the *optimised* graph (so an
    int8 model shows QLinearConv, not QuantizeLinear/Conv/DequantizeLinear).

    Returns ``[{"op", "share" (of all kernel time), "ms_per_run", "nodes"}]``, largest first. The
    profiler adds a little time per node; the shares, not the sum, are the figure."""
    with tempfile.TemporaryDirectory(prefix="ce-ops-") as folder:
        options = session_options(threads)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "ops")
        detector = OnnxDetector(model_path, card_path=card_path, threads=threads, options=options)
        tensor, _ = detector.preprocess(synthetic_frame() if image is None else image)
        for _ in range(warmup + runs):
            detector.infer(tensor)
        with open(detector.end_profiling(), encoding="utf-8") as trace:
            events = json.load(trace)
    warmup += 1     # the detector's own check of its output at load is one more run before the timed ones
    # each run is one "model_run" event; the node events of the warm-up's runs are left out
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    timed_from = starts[warmup] if len(starts) > warmup else 0
    time_us, nodes = Counter(), {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time") and event["ts"] >= timed_from:
            op = event.get("args", {}).get("op_name", "?")
            time_us[op] += event["dur"]
            nodes.setdefault(op, set()).add(event["name"])
    total = sum(time_us.values()) or 1
    return [{"op": op, "share": round(us / total, 4), "ms_per_run": round(us / runs / 1000, 3),
             "nodes": len(nodes[op])} for op, us in time_us.most_common()]


def _bench_one(model_path, runs, warmup, threads, card_path, image, providers) -> dict:
    if runs < 1 or warmup < 0:
        raise ValueError(f"need runs >= 1 and warmup >= 0, got runs={runs}, warmup={warmup}")
    detector = OnnxDetector(model_path, card_path=card_path, threads=threads, providers=providers)
    frame = synthetic_frame() if image is None else image
    for _ in range(warmup):
        detector.detect(frame)
    stages: dict[str, list[float]] = {"preprocess": [], "inference": [], "postprocess": [], "total": []}
    detections = None
    for _ in range(runs):
        t0 = time.perf_counter()
        tensor, box = detector.preprocess(frame)
        t1 = time.perf_counter()
        output = detector.infer(tensor)
        t2 = time.perf_counter()
        detections = detector.postprocess(output, box)
        t3 = time.perf_counter()
        for name, value in (("preprocess", t1 - t0), ("inference", t2 - t1), ("postprocess", t3 - t2),
                            ("total", t3 - t0)):
            stages[name].append(value)
    ms = {name: _stats(values) for name, values in stages.items()}
    return {
        "model": detector.model_version,
        "model_path": str(model_path),
        "format": detector.card.format,
        "input_size": list(detector.input_size),
        "tensor_size": list(detector.input_shape(frame)),
        "frame_size": [int(frame.shape[1]), int(frame.shape[0])],
        "provider": detector.providers[0],
        "threads": threads,
        "onnxruntime": ort.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "runs": runs,
        "warmup": warmup,
        "ms": ms,
        "fps_mean": round(1000.0 / ms["total"]["mean"], 1),
        "detections": len(detections) if detections is not None else 0,
    }


def expand_images(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Files as given; folders expanded to the image files under them (recursively, sorted)."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


def detect_images(paths: Iterable[str | os.PathLike], detector: OnnxDetector) -> Iterator[dict]:
    """Run ``detector`` on image files (folders are expanded), one result per image:

    ``{"image": path, "model": name, "detections": [{"class", "confidence" (4 decimals),
    "xyxy" (4 floats, 1 decimal)}]}``, or ``{"image": path, "error": reason}`` for an image that is
    missing or cannot be decoded — one bad file does not stop the run.
    """
    for path in expand_images(paths):
        if not path.is_file():
            yield {"image": str(path), "error": "file not found"}
            continue
        # imdecode rather than imread: imread prints its own warnings and cannot tell why it failed
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as exc:
            yield {"image": str(path), "error": f"cannot read: {exc.strerror or exc}"}
            continue
        if data.size == 0:
            yield {"image": str(path), "error": "empty file (0 bytes)"}
            continue
        # IMREAD_COLOR: grey, 16-bit and alpha images all come back as 8-bit BGR
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if image is None:
            yield {"image": str(path), "error": "not a readable image"}
            continue
        if image.shape[0] == 0 or image.shape[1] == 0:
            yield {"image": str(path), "error": "empty image (0 pixels)"}
            continue
        try:
            dets = detector.detect(image)
        except (ValueError, CompoundEyeError) as exc:
            yield {"image": str(path), "error": f"detection failed: {exc}"}
            continue
        yield {
            "image": str(path),
            "model": detector.model_version,
            "detections": [
                {"class": name, "confidence": round(float(conf), 4), "xyxy": [round(float(v), 1) for v in xyxy]}
                for name, conf, xyxy in zip(dets.names(), dets.confidence, dets.xyxy)
            ],
        }
