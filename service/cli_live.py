"""``compoundeye bench live``: the live-camera capacity benchmark (vision/bench_live.py)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

ROOT = Path(__file__).resolve().parents[1]


def bench_live(cameras: int = typer.Option(64, "--cameras", help="the most cameras to try"),
               seconds: float = typer.Option(300.0, help="measured seconds per camera count (after the warm-up)"),
               warmup_s: float = typer.Option(15.0, help="seconds before measuring, per count"),
               steps: Optional[str] = typer.Option(None, help="camera counts to try, e.g. 8,16,32,50,64 "
                                                             "(default: 4, 8, 16, … up to --cameras)"),
               naive: bool = typer.Option(True, help="also measure the naive OpenCV thread-per-camera pipeline"),
               naive_seconds: float = typer.Option(30.0, help="measured seconds per naive camera count"),
               naive_max: int = typer.Option(16, help="the most cameras to try with the naive pipeline"),
               sample_fps: float = typer.Option(1.0, help="inferences per second per camera"),
               keyframes_only: bool = typer.Option(True, help="decode only keyframes of the 15 fps streams "
                                                              "(GOP 1 s = the sampling rate)"),
               motion_gate: bool = typer.Option(False, help="let the motion gate skip still scenes "
                                                            "(off: every camera is inferred at sample_fps)"),
               model: Path = typer.Option(ROOT / "models" / "car-v1-int8.onnx", help="ONNX model"),
               threads: int = typer.Option(2, help="onnxruntime threads of the shared detector"),
               as_json: bool = typer.Option(False, "--json", help="print JSON only")) -> None:
    """How many live RTSP cameras (640×360, 15 fps, H.264) this machine holds at 1 inference per second
    each, with p95 latency, CPU and memory per camera — and the same for a naive pipeline, with the ratio."""
    from vision.bench_live import bench_live as run
    if not model.is_file():
        typer.echo(f"error: {model}: no such model file", err=True)
        raise typer.Exit(2)
    model = model.resolve()   # the bench's site files live in a temporary folder
    counts = [int(x) for x in steps.split(",")] if steps else None
    report = run(cameras=cameras, seconds=seconds, warmup_s=warmup_s, steps=counts, naive=naive,
                 naive_seconds=naive_seconds, naive_max=naive_max, sample_fps=sample_fps,
                 keyframes_only=keyframes_only, motion_gate=motion_gate, model=model, threads=threads,
                 progress=None if as_json else (lambda msg: typer.echo(msg, err=True)))
    typer.echo(json.dumps(report, indent=None if as_json else 2, ensure_ascii=False))
