"""Train the car-v1 detector (ultralytics YOLO11n, from scratch, CPU), evaluate it, export it to ONNX.

Run with the training venv (torch + ultralytics), from the repository root:

    .venv-train/bin/python -m datasets.train_car_detector --name quick --time 0.3
    nohup .venv-train/bin/python -m datasets.train_car_detector --name long --epochs 60 \
        --init var/runs/car-v1/quick/weights/best.pt > var/runs/car-v1/long.nohup 2>&1 &
    .venv-train/bin/python -m datasets.train_car_detector --name long --export-only   # re-evaluate + export

Everything is offline: YOLO_OFFLINE=1, YOLO_CONFIG_DIR=<repo>/.yolo with the fonts ultralytics wants
(copied from DejaVuSans), the model is built from ``yolo11n.yaml`` (or ``--init`` weights), no download.
A run lives in var/runs/car-v1/<name>/ (weights/last.pt, weights/best.pt, train.log). Running the same
command again resumes from last.pt if the run did not finish.

After training, best.pt is evaluated on the real val split, on each real set, and on the synthetic val
split, and run over samples/footage/fire_lane_demo.mp4. It is exported (imgsz 320, opset 17, simplified,
static batch 1) to models/car-v1.onnx with its card models/car-v1.card.yaml — but only if it beats the
model already there (see ``is_better``), unless --force. Files are written under a temporary name and
renamed, so models/ never holds half a file.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import logging
import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = REPO / "var" / "runs" / "car-v1"
DATASET = REPO / "var" / "datasets" / "car-v1"
MODEL_OUT = REPO / "models" / "car-v1.onnx"
CARD_OUT = REPO / "models" / "car-v1.card.yaml"
FOOTAGE = REPO / "samples" / "footage" / "fire_lane_demo.mp4"
IMGSZ = 320
OPSET = 17
ATTRIBUTION = [
    '"Parking space" (v22) by Roboflow user workspace my-project-ppguz, CC BY 4.0, '
    "https://universe.roboflow.com/my-project-ppguz/parking-space-uffuo ; augmented duplicates removed.",
    '"Modes of Transport" (v2) by Roboflow user workspace ts-2qpml, CC BY 4.0, '
    "https://universe.roboflow.com/ts-2qpml/modes-of-transport ; augmented duplicates removed.",
]

log = logging.getLogger("car-v1")


def offline_environment() -> None:
    """Keep ultralytics off the network: offline flag, and the fonts where check_font looks for them
    ($YOLO_CONFIG_DIR/Ultralytics/), otherwise it tries to fetch them from github.com."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(REPO / ".yolo")
    fonts = REPO / ".yolo" / "Ultralytics"
    fonts.mkdir(parents=True, exist_ok=True)
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        if not (fonts / name).exists():
            shutil.copy("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", fonts / name)


def setup_logging(run_dir: Path, name: str = "car-v1") -> None:
    """The run's ``train.log`` for the logger ``name`` and ultralytics', and ``name``'s lines on stdout."""
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    for logger_name in (name, "ultralytics"):
        logger = logging.getLogger(logger_name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    console = logging.StreamHandler(sys.stdout)
    console.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    own = logging.getLogger(name)
    own.addHandler(console)
    own.propagate = False


def train(args) -> Path:
    """Train (or resume) the run; returns best.pt."""
    from ultralytics import YOLO

    run_dir = RUNS / args.name
    last = run_dir / "weights" / "last.pt"
    if last.exists():
        log.info("resuming %s", last)
        try:
            YOLO(str(last)).train(resume=True)
        except AssertionError as exc:  # ultralytics: "... is finished, nothing to resume"
            log.info("not resumed: %s", exc)
    else:
        init = args.init or "yolo11n.yaml"
        (run_dir / "command.txt").write_text(" ".join(["python -m datasets.train_car_detector"] + sys.argv[1:]) + "\n")
        log.info("training %s from %s on %s", args.name, init, args.data)
        model = YOLO(init)
        kwargs = dict(data=str(args.data), imgsz=IMGSZ, batch=args.batch, workers=args.workers, device="cpu",
                      amp=False, plots=False, project=str(RUNS), name=args.name, exist_ok=True, seed=0,
                      patience=args.patience, close_mosaic=args.close_mosaic, cache=False, verbose=True)
        if args.time:
            kwargs["time"] = args.time
        kwargs["epochs"] = args.epochs
        model.train(**kwargs)
    best = run_dir / "weights" / "best.pt"
    if not best.exists():
        raise SystemExit(f"no best.pt in {run_dir}")
    return best


def evaluate(best: Path, dataset: Path) -> dict:
    """mAP50, mAP50-95, precision, recall of ``best`` on each val set (imgsz 320)."""
    from ultralytics import YOLO

    sets = {"real_val": "val_real.yaml", "real_val_parking_space_cctv": "val_pcctv.yaml",
            "real_val_modes_of_transport": "val_mot.yaml", "synthetic_val": "val_synth.yaml"}
    metrics = {}
    for key, yaml_name in sets.items():
        model = YOLO(str(best))
        res = model.val(data=str(dataset / yaml_name), imgsz=IMGSZ, batch=16, workers=0, device="cpu", plots=False,
                        verbose=False, project=str(RUNS / "val"), name=key, exist_ok=True)
        box = res.box
        metrics[key] = {"mAP50": round(float(box.map50), 4), "mAP50-95": round(float(box.map), 4),
                        "precision": round(float(box.mp), 4), "recall": round(float(box.mr), 4),
                        "images": count_images(dataset / yaml_name)}
        log.info("%s: %s", key, metrics[key])
    return metrics


def count_images(data_yaml: Path) -> int:
    """How many images a val yaml points at (a folder, a list of folders, or a .txt list)."""
    import yaml

    cfg = yaml.safe_load(data_yaml.read_text())
    entries = cfg["val"] if isinstance(cfg["val"], list) else [cfg["val"]]
    total = 0
    for entry in entries:
        path = Path(entry) if Path(entry).is_absolute() else Path(cfg["path"]) / entry
        total += len(path.read_text().split()) if path.suffix == ".txt" else len(list(path.glob("*.jpg")))
    return total


def epochs_done(run_dir: Path) -> int:
    """Epochs actually trained (results.csv rows): with --time, ultralytics picks the count itself."""
    csv = run_dir / "results.csv"
    return max(0, len(csv.read_text().strip().splitlines()) - 1) if csv.exists() else 0


def training_command(name: str) -> str:
    recorded = RUNS / name / "command.txt"
    if recorded.exists():
        return recorded.read_text().strip()
    return " ".join(["python -m datasets.train_car_detector"] + sys.argv[1:])


def export(best: Path) -> Path:
    from ultralytics import YOLO

    path = YOLO(str(best)).export(format="onnx", imgsz=IMGSZ, simplify=True, opset=OPSET, dynamic=False, batch=1,
                                  device="cpu")
    return Path(path)


def footage_metrics(onnx_path: Path) -> dict:
    from datasets.check_footage_detections import evaluate_clip

    report = evaluate_clip(onnx_path, FOOTAGE, FOOTAGE.with_suffix(".json"))
    return report["summary"]


def selection_score(metrics: dict) -> float:
    """What "better" means when deciding whether to replace the committed model: the mean of the real
    and synthetic val mAP50-95 (real val is partly a near-duplicate of train, so it does not decide alone)."""
    return 0.5 * (metrics["real_val"]["mAP50-95"] + metrics["synthetic_val"]["mAP50-95"])


def is_better(metrics: dict, card_path: Path) -> bool:
    import yaml

    if not card_path.exists() or not MODEL_OUT.exists():
        return True
    old = yaml.safe_load(card_path.read_text()).get("metrics", {})
    try:
        old_score = selection_score(old)
    except (KeyError, TypeError):
        return True
    new_score = selection_score(metrics)
    footage_ok = metrics.get("footage", {}).get("stopped_car_recall", 1.0) >= \
        min(0.9, old.get("footage", {}).get("stopped_car_recall", 0.0))
    log.info("selection score: new %.4f vs committed %.4f; footage ok: %s", new_score, old_score, footage_ok)
    return new_score > old_score and footage_ok


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def card_yaml(metrics: dict, args, best: Path, onnx_sha: str) -> str:
    import json

    import torch
    import ultralytics
    import yaml

    manifest = json.loads((args.data.parent / "manifest.json").read_text())
    src = manifest["sources"]
    ckpt = torch.load(best, map_location="cpu", weights_only=False)
    train_args = ckpt.get("train_args", {})
    images = {
        "train": {"synthetic": src["synthetic"]["train"]["images"],
                  "parking_space_cctv": src["parking_space_cctv"]["train"]["images"],
                  "modes_of_transport": src["modes_of_transport"]["train"]["images"]},
        "val": {"synthetic": src["synthetic"]["val_synth"]["images"],
                "parking_space_cctv": src["parking_space_cctv"]["val_real"]["images"],
                "modes_of_transport": src["modes_of_transport"]["val_real"]["images"]},
        "boxes_train": {"synthetic": src["synthetic"]["train"]["boxes"],
                        "parking_space_cctv": src["parking_space_cctv"]["train"]["boxes"],
                        "modes_of_transport": src["modes_of_transport"]["train"]["boxes"]},
    }
    training = {
        "data": "datasets/car-v1.yaml (built by python -m datasets.build_car_dataset into var/datasets/car-v1)",
        "command": training_command(args.name),
        "epochs": epochs_done(RUNS / args.name),
        "images": images,
        "base": f"yolo11n.yaml from scratch (no pretrained weights){'; warm start from ' + str(args.init) if args.init else ''}",
        "run": str((RUNS / args.name).relative_to(REPO)),
        "imgsz": IMGSZ, "batch": train_args.get("batch"), "device": "cpu (2 cores)",
        "ultralytics": str(ultralytics.__version__), "torch": str(torch.__version__),
        "exported": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "onnx": {"file": MODEL_OUT.name, "sha256": onnx_sha, "opset": OPSET, "input": "images [1, 3, 320, 320] float32",
                 "output": "output0 [1, 5, 2100] float32"},
    }
    body = yaml.safe_dump({"training": training, "metrics": metrics, "attribution": ATTRIBUTION},
                          sort_keys=False, allow_unicode=True, width=200)
    head = (
        "name: car-v1\n"
        "format: ultralytics        # output (1, 4+nc, N): cx, cy, w, h in input pixels, then class scores; "
        "RGB, /255, centred letterbox padded with 114\n"
        "input_size: [320, 320]     # width, height\n"
        "classes: [car]\n"
    )
    note = ("# metrics: measured after training by datasets/train_car_detector.py (ultralytics val, imgsz 320,\n"
            "# conf 0.001, IoU 0.7 NMS) and by datasets/check_footage_detections.py (footage: conf >= 0.4, IoU >= 0.5).\n"
            "# real_val_parking_space_cctv is NOT independent of train (frames of the same video).\n")
    return head + note + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="quick", help="run name under var/runs/car-v1/")
    parser.add_argument("--data", type=Path, default=DATASET / "data.yaml")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--time", type=float, default=None, help="time budget in hours (overrides --epochs)")
    parser.add_argument("--init", default=None, help="weights to start from (default: yolo11n.yaml, from scratch)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--patience", type=int, default=25)
    parser.add_argument("--close-mosaic", type=int, default=5)
    parser.add_argument("--export-only", action="store_true", help="skip training; evaluate and export best.pt")
    parser.add_argument("--force", action="store_true", help="export even if not better than the committed model")
    args = parser.parse_args(argv)
    args.data = args.data.resolve()

    offline_environment()
    run_dir = RUNS / args.name
    setup_logging(run_dir)
    import torch

    torch.set_num_threads(2)
    best = run_dir / "weights" / "best.pt" if args.export_only else train(args)
    metrics = evaluate(best, args.data.parent)
    onnx_path = export(best)
    metrics["footage"] = footage_metrics(onnx_path)
    metrics["footage"]["model"] = MODEL_OUT.name
    log.info("footage: %s", metrics["footage"])
    if not (args.force or is_better(metrics, CARD_OUT)):
        log.info("not exported: the committed model is as good or better (%s)", CARD_OUT)
        return 0
    data = onnx_path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    write_atomic(MODEL_OUT, data)
    write_atomic(CARD_OUT, card_yaml(metrics, args, best, sha).encode())
    log.info("exported %s (%.1f MB, sha256 %s) and %s", MODEL_OUT, len(data) / 1e6, sha, CARD_OUT)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
