"""Train the compound-v1 detector (ultralytics YOLO11n, CPU) on the merged set and export it to ONNX.

Needs the training venv (``bash scripts/setup.sh train`` → .venv-train with torch + ultralytics).
From the repository root:

    .venv/bin/python -m datasets.build_merged                                  # var/datasets/compound-v1
    nohup nice -n 5 .venv-train/bin/python -m datasets.train_merged --name r1 --time 1.5 \
        > var/runs/compound-v1/r1.nohup 2>&1 &
    .venv-train/bin/python -m datasets.train_merged --name r1 --export-only     # best.pt → models/

The same as ``compoundeye train`` / ``compoundeye export``. Everything is offline (YOLO_OFFLINE=1,
YOLO_CONFIG_DIR=<repo>/.yolo with the fonts; model from ``yolo11n.yaml`` or ``--init`` weights).
A run lives in var/runs/compound-v1/<name>/ (weights/last.pt saved every epoch, weights/best.pt,
results.csv, train.log, command.txt). Running the same command again resumes an interrupted run from
last.pt. A run that finished (its epochs or its --time budget) cannot be resumed; extend it with a
new run that starts from its weights: ``--name r2 --init var/runs/compound-v1/r1/weights/last.pt``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from datasets.train_car_detector import offline_environment, setup_logging

REPO = Path(__file__).resolve().parent.parent
MODEL_NAME = "compound-v1"
RUNS = REPO / "var" / "runs" / MODEL_NAME
DATASET = REPO / "var" / "datasets" / MODEL_NAME
IMGSZ = 320
OPSET = 17

log = logging.getLogger(MODEL_NAME)


def train(name: str, data: Path = DATASET / "data.yaml", epochs: int = 100, hours: float | None = None,
          init: str | None = None, imgsz: int = IMGSZ, batch: int = 16, workers: int = 1,
          close_mosaic: int = 5, patience: int = 100, argv: list[str] | None = None,
          warmup_epochs: float = 3.0, repeat: dict[str, int] | None = None,
          lr0: float | None = None, optimizer: str | None = None, activation: str | None = None) -> Path:
    """Train (or resume) ``var/runs/compound-v1/<name>``; returns its best.pt.

    Resumes from last.pt when the run exists and did not finish; otherwise starts from ``init``
    (default ``yolo11n.yaml``: from scratch). ``hours`` is ultralytics' ``time`` budget (it then
    fits the epoch count and learning-rate schedule into the budget). ``warmup_epochs`` is
    ultralytics' warm-up (3 by default; a run that continues trained weights wants 0, or the
    warm-up's high bias learning rate undoes the first epochs). ``repeat`` lists each train image
    of a source that many times per epoch, by its file-name prefix (``{"mot": 3}``). ``lr0`` and
    ``optimizer`` are ultralytics' own; unset, ultralytics picks (its "auto": MuSGD at 0.01 when the run
    has over 10,000 iterations, as a 100-epoch budgeted run here does, so a continued run restarts at
    the from-scratch rate; a lower ``lr0`` fine-tunes instead). ``activation`` (``"relu"``) swaps the
    starting weights' activations before training (``datasets.activation``: the int8 graph folds a
    ReLU into its convolution); the new run keeps it, and a resumed run has it already.
    """
    if activation and not init:
        raise ValueError("activation converts the init weights: give init")
    offline_environment()
    import torch
    from ultralytics import YOLO

    torch.set_num_threads(2)
    run_dir = RUNS / name
    setup_logging(run_dir, MODEL_NAME)
    last = run_dir / "weights" / "last.pt"
    t0 = time.monotonic()
    if last.exists():
        log.info("resuming %s", last)
        try:
            YOLO(str(last)).train(resume=True)
        except AssertionError as exc:  # ultralytics: "... training to N epochs is finished, nothing to resume"
            log.info("not resumed: %s", exc)
    else:
        (run_dir / "command.txt").write_text(
            " ".join(["python -m datasets.train_merged"] + list(argv if argv is not None else sys.argv[1:])) + "\n")
        start = init or "yolo11n.yaml"
        if activation:
            from datasets.activation import convert_checkpoint

            converted = run_dir / f"init-{activation}.pt"
            log.info("%d activations of %s set to %s in %s", convert_checkpoint(Path(init), converted, activation),
                     init, activation, converted)
            start = str(converted)
        if repeat:
            data = weighted_data(data, repeat, run_dir)
        log.info("training %s from %s on %s", name, start, data)
        kwargs = dict(data=str(data), imgsz=imgsz, batch=batch, workers=workers, device="cpu", amp=False,
                      plots=False, project=str(RUNS), name=name, exist_ok=True, seed=0, patience=patience,
                      close_mosaic=close_mosaic, cache="ram", verbose=True, epochs=epochs, save_period=-1,
                      warmup_epochs=warmup_epochs)
        if hours:
            kwargs["time"] = hours
        if optimizer:
            kwargs["optimizer"] = optimizer
        if lr0 is not None:
            kwargs["lr0"] = lr0
            kwargs.setdefault("optimizer", "MuSGD")   # what "auto" picks here; "auto" ignores lr0
        YOLO(start).train(**kwargs)
    elapsed = time.monotonic() - t0
    history = run_dir / "wall_seconds.json"
    spent = json.loads(history.read_text()) if history.exists() else []
    history.write_text(json.dumps(spent + [round(elapsed, 1)]) + "\n")
    best = run_dir / "weights" / "best.pt"
    if not best.exists():
        raise SystemExit(f"no best.pt in {run_dir}")
    return best


def weighted_data(data: Path, repeat: dict[str, int], run_dir: Path) -> Path:
    """Write ``run_dir/data.yaml``: ``data`` with its train folder replaced by a list that names each
    image whose file name starts with ``<prefix>_`` ``repeat[prefix]`` times (others once)."""
    import yaml

    spec = yaml.safe_load(data.read_text())
    root = Path(spec["path"])
    if not root.is_absolute():
        root = (data.parent / root).resolve()
    images = sorted(p for p in (root / spec["train"]).iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    prefix = {p: p.name.split("_", 1)[0] for p in images}
    unknown = sorted(set(repeat) - set(prefix.values()))
    if unknown:
        raise SystemExit(f"--repeat: no train images with prefix {', '.join(unknown)} "
                         f"(have {', '.join(sorted(set(prefix.values())))})")
    listing = [str(p) for p in images for _ in range(max(1, repeat.get(prefix[p], 1)))]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "train_weighted.txt").write_text("".join(line + "\n" for line in listing))
    spec = {**spec, "path": str(root), "train": str(run_dir / "train_weighted.txt")}
    out = run_dir / "data.yaml"
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    log.info("train list: %d entries for %d images (%s)", len(listing), len(images),
             ", ".join(f"{k} x{v}" for k, v in sorted(repeat.items())))
    return out


def parse_repeat(items: list[str]) -> dict[str, int]:
    """``["mot=3", "pcctv=2"]`` → ``{"mot": 3, "pcctv": 2}``."""
    out: dict[str, int] = {}
    for item in items:
        prefix, _, count = item.partition("=")
        if not prefix or not count.isdigit() or int(count) < 1:
            raise argparse.ArgumentTypeError(f"--repeat wants PREFIX=N with N >= 1, not {item!r}")
        out[prefix] = int(count)
    return out


def epochs_done(run_dir: Path) -> int:
    csv = run_dir / "results.csv"
    return max(0, len(csv.read_text().strip().splitlines()) - 1) if csv.exists() else 0


def export_onnx(weights: Path, out: Path, imgsz: int = IMGSZ, dynamic: bool = False) -> Path:
    """Export ``weights`` to ONNX (static batch 1, opset 17, simplified) and move it to ``out``
    atomically (written under a temporary name, then renamed). Returns ``out``. ``dynamic`` leaves
    batch, height and width free (``imgsz`` is then only the size the exporter traces at), so the
    runtime can feed a 16:9 frame as 384x224 instead of padding it to 384x384."""
    offline_environment()
    from ultralytics import YOLO

    exported = Path(YOLO(str(weights)).export(format="onnx", imgsz=imgsz, simplify=True, opset=OPSET,
                                              dynamic=dynamic, batch=1, device="cpu"))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    tmp.write_bytes(exported.read_bytes())
    from datasets.onnx_graph import rewrite_file

    rewrite_file(tmp)   # the same outputs, faster on onnxruntime's CPU (the DFL's softmax)
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="r1", help="run name under var/runs/compound-v1/")
    parser.add_argument("--data", type=Path, default=DATASET / "data.yaml")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--time", type=float, default=None, help="time budget in hours")
    parser.add_argument("--init", default=None, help="weights to start from (default yolo11n.yaml, from scratch)")
    parser.add_argument("--imgsz", type=int, default=IMGSZ)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--close-mosaic", type=int, default=5)
    parser.add_argument("--patience", type=int, default=100)
    parser.add_argument("--warmup-epochs", type=float, default=3.0,
                        help="ultralytics warm-up; use 0 when continuing trained weights (--init)")
    parser.add_argument("--repeat", action="append", default=[], metavar="PREFIX=N",
                        help="list each train image of a source N times per epoch, e.g. mot=3")
    parser.add_argument("--lr0", type=float, default=None,
                        help="initial learning rate (default: ultralytics' auto choice); "
                             "implies MuSGD (auto's choice here) unless --optimizer")
    parser.add_argument("--optimizer", default=None, choices=["SGD", "AdamW", "Adam", "MuSGD"],
                        help="ultralytics optimizer (default: auto)")
    parser.add_argument("--activation", choices=["relu", "silu"], default=None,
                        help="set the --init weights' activation before training (default: keep it)")
    parser.add_argument("--export-only", action="store_true", help="skip training; export best.pt")
    parser.add_argument("--out", type=Path, default=REPO / "models" / f"{MODEL_NAME}.onnx")
    args = parser.parse_args(argv)
    try:
        repeat = parse_repeat(args.repeat)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    if args.activation and not args.init:
        parser.error("--activation converts the --init weights: give --init")
    run_dir = RUNS / args.name
    if args.export_only:
        best = run_dir / "weights" / "best.pt"
    else:
        best = train(args.name, args.data.resolve(), args.epochs, args.time, args.init, args.imgsz, args.batch,
                     args.workers, args.close_mosaic, args.patience, argv, args.warmup_epochs, repeat,
                     args.lr0, args.optimizer, args.activation)
    out = export_onnx(best, args.out, args.imgsz)
    log.info("exported %s from %s (%d epochs)", out, best, epochs_done(run_dir))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
