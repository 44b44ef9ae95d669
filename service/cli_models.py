"""`compoundeye train`, `export`, `quantize` and `evaluate`: the detector models (issue 4).

- ``train`` / ``export`` / ``quantize`` need the optional ``train`` extra (torch + ultralytics, in .venv-train made by
  ``bash scripts/setup.sh train``). They import it only when they run; without it they stop with a
  clear message. The recipes themselves live in the repository's ``datasets/`` folder.
- ``evaluate`` needs only onnxruntime: it runs the committed ONNX model through our
  :class:`~vision.detector.OnnxDetector` on the real splits of ``../shared/data`` and, in the same
  run, the YOLOX teacher (by path) on the classes it shares. AP comes from supervision's
  ``MeanAveragePrecision`` (COCO-style 101-point AP), precision and recall from its ``Precision`` /
  ``Recall`` at the runtime's operating confidence.

Each source set is scored only on the classes its own labels cover (see ``datasets/compound-v1.yaml``):
garbage on woosong_trashbags, car / two_wheeler / truck_or_bus on modes_of_transport, car on
parking_space_cctv, box_or_parcel on roboflow_packages. Detections of other classes on those images
are ignored, because those images have no labels for them (a car in a garbage photo is not an error).
"""
from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import typer

ROOT = Path(__file__).resolve().parents[1]
DEFINITION = ROOT / "datasets" / "compound-v1.yaml"
FLOAT_MODEL = ROOT / "models" / "compound-v1.onnx"          # what training exports and resumes from
DEFAULT_MODEL = ROOT / "models" / "compound-v1-int8.onnx"    # what sites run: FLOAT_MODEL at 384 px, static int8
TEACHER = ROOT.parent / "shared" / "weights" / "yolox_nano.onnx"
TEACHER_CARD = ROOT / "models" / "teachers" / "yolox_nano.card.yaml"
#: confidence for AP (all candidates ranked) and the operating confidence for precision / recall
AP_CONFIDENCE = 0.001
AP_NMS_IOU = 0.6
OPERATING_CONFIDENCE = 0.25

models_app = typer.Typer(help="Detector models: train, export, quantize, evaluate.", no_args_is_help=True)

TRAIN_EXTRA_MISSING = ("the `train` extra is not installed in this environment (torch + ultralytics). "
                       "Run `bash scripts/setup.sh train` and use .venv-train/bin/compoundeye, "
                       "or .venv-train/bin/python -m datasets.train_merged.")


def _recipes(module: str):
    """Import ``datasets.<module>`` from the repository (the recipes are not part of the installed
    package), failing clearly if torch/ultralytics are missing."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    # before ultralytics is imported: offline, settings and fonts in the project's .yolo (not ~/.config)
    importlib.import_module("datasets.train_car_detector").offline_environment()
    for name in ("torch", "ultralytics"):
        try:
            importlib.import_module(name)
        except ImportError:
            typer.echo(f"error: {TRAIN_EXTRA_MISSING}", err=True)
            raise typer.Exit(2)
    return importlib.import_module(f"datasets.{module}")


# -- evaluation ----------------------------------------------------------------------------------
def load_eval_sets(definition: Path = DEFINITION, split: str = "val", data_root: Path | None = None,
                   limit: int | None = None) -> list[dict]:
    """The real evaluation sets named by the dataset definition: per source, the images of ``split``
    with their own labels mapped to the project classes (never pseudo-labels).

    Returns ``[{"name", "classes" (labelled project classes), "images": [{"path", "boxes": [(class,
    cx, cy, w, h)]}]}]``; a source whose folder is missing is left out. ``data_root`` replaces the
    folder the definition's roots point into (for tests).
    """
    import yaml

    spec = yaml.safe_load(Path(definition).read_text())
    sets = []
    for source in spec["sources"]:
        root = (ROOT / source["root"]).resolve()
        if data_root is not None:
            root = Path(data_root) / root.name
        folder = root / "images" / split
        if not folder.is_dir():
            continue
        names = [n.strip() for n in (root / "classes.txt").read_text().splitlines() if n.strip()]
        images = []
        for img in sorted(folder.glob("*.jpg"))[:limit]:
            label = root / "labels" / split / f"{img.stem}.txt"
            boxes = []
            for line in (label.read_text().splitlines() if label.exists() else []):
                parts = line.split()
                if len(parts) == 5 and names[int(parts[0])] in source["class_map"]:
                    boxes.append((source["class_map"][names[int(parts[0])]], *map(float, parts[1:])))
            images.append({"path": str(img), "boxes": boxes})
        sets.append({"name": source["name"], "classes": sorted(set(source["class_map"].values())),
                     "images": images})
    return sets


def _metrics_for(preds: list, targets: list, class_ids: list[int]) -> dict[int, dict]:
    """supervision metrics per class id over paired lists of sv.Detections."""
    from supervision.metrics import MeanAveragePrecision, Precision, Recall

    result = MeanAveragePrecision().update(preds, targets).compute()
    ap = {int(c): row for c, row in zip(result.matched_classes, result.ap_per_class)}
    operating = [p[p.confidence >= OPERATING_CONFIDENCE] for p in preds]
    prec = Precision().update(operating, targets).compute()
    rec = Recall().update(operating, targets).compute()
    p_cls = {int(c): row for c, row in zip(prec.matched_classes, prec.precision_per_class)}
    r_cls = {int(c): row for c, row in zip(rec.matched_classes, rec.recall_per_class)}
    out = {}
    for c in class_ids:
        row = ap.get(c)
        valid = row[row >= 0] if row is not None else []
        out[c] = {
            "ap50": round(float(row[0]), 4) if row is not None and row[0] >= 0 else 0.0,
            "ap50_95": round(float(valid.mean()), 4) if len(valid) else 0.0,
            "precision": round(float(p_cls[c][0]), 4) if c in p_cls else 0.0,
            "recall": round(float(r_cls[c][0]), 4) if c in r_cls else 0.0,
        }
    return out


def evaluate_models(detectors: Sequence, eval_sets: list[dict], project_classes: Sequence[str] | None = None,
                    combine: bool = False) -> dict:
    """Score several detectors on the same images. Each detector's classes are mapped onto the
    project classes by its card (:meth:`MultiDetector.class_mapping`); a detector is scored only on
    the classes of a set that it can produce. With ``combine`` (and two or more detectors) the
    :class:`MultiDetector` of all of them — what a site with ``extra_models`` runs — is scored too,
    from the same per-model detections merged by its own ``merge``.

    Returns ``{"models": [...], "sets": {set: {"images", "classes": {class: {"gt_boxes", model: {ap50,
    ap50_95, precision, recall}}}}}}``.
    """
    import cv2
    import numpy as np
    import supervision as sv

    from vision.detector import PROJECT_CLASSES, MultiDetector

    classes = list(project_classes or PROJECT_CLASSES)
    report: dict = {"models": [], "sets": {}, "ap_confidence": AP_CONFIDENCE, "nms_iou": detectors[0].iou,
                    "operating_confidence": OPERATING_CONFIDENCE, "match_iou": 0.5,
                    "metrics": "supervision.metrics MeanAveragePrecision (AP50, AP50-95), Precision/Recall at IoU 0.5"}
    mappings = []
    for det in detectors:
        mapping = MultiDetector.class_mapping(det.card, classes)
        mappings.append(np.array([classes.index(mapping[n]) if n in mapping else -1 for n in det.class_names]))
        report["models"].append({"name": det.model_version, "path": det.model_path, "format": det.card.format,
                                 "input_size": list(det.input_size), "classes": sorted(set(mapping.values()))})
    multi = MultiDetector(detectors, project_classes=classes) if combine and len(detectors) > 1 else None
    if multi is not None:
        mappings.append(np.array([classes.index(n) if n in classes else -1 for n in multi.class_names]))
        report["models"].append({"name": multi.model_version, "path": "+".join(d.model_path for d in detectors),
                                 "format": "merged", "input_size": None,
                                 "classes": sorted({c for m in report["models"] for c in m["classes"]})})
    n_models = len(report["models"])
    for s in eval_sets:
        wanted = [classes.index(c) for c in s["classes"]]
        targets, preds = [], [[] for _ in range(n_models)]
        seconds = [0.0 for _ in range(n_models)]
        for item in s["images"]:
            image = cv2.imread(item["path"], cv2.IMREAD_COLOR)
            if image is None:
                raise ValueError(f"{item['path']}: not a readable image")
            h, w = image.shape[:2]
            gt = np.array([[cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2] for _, cx, cy, bw, bh in item["boxes"]],
                          np.float32).reshape(-1, 4) * [w, h, w, h]
            targets.append(sv.Detections(xyxy=gt.astype(np.float32),
                                         class_id=np.array([classes.index(b[0]) for b in item["boxes"]], int)))
            raw = []
            for k, det in enumerate(detectors):
                t0 = time.perf_counter()
                raw.append(det.detect(image))
                seconds[k] += time.perf_counter() - t0
            if multi is not None:
                raw.append(multi.merge(raw))
            for k, d in enumerate(raw):
                cls = mappings[k][d.class_id] if len(d) else np.zeros(0, int)
                keep = np.isin(cls, wanted)
                preds[k].append(sv.Detections(xyxy=d.xyxy[keep], confidence=d.confidence[keep],
                                              class_id=cls[keep].astype(int)))
        entry: dict = {"images": len(s["images"]), "classes": {}, "ms_per_image": {}}
        for c in s["classes"]:
            entry["classes"][c] = {"gt_boxes": int(sum(1 for it in s["images"] for b in it["boxes"] if b[0] == c))}
        for k, model in enumerate(report["models"]):
            known = [classes.index(c) for c in model["classes"] if classes.index(c) in wanted]
            if k < len(detectors):
                entry["ms_per_image"][model["name"]] = round(1000 * seconds[k] / max(1, len(s["images"])), 1)
            if not known:
                continue
            per_class = _metrics_for(preds[k], targets, known)
            for c, values in per_class.items():
                entry["classes"][classes[c]][model["name"]] = values
        report["sets"][s["name"]] = entry
    return report


def load_detectors(model: Path, teacher: Optional[Path], teacher_card: Optional[Path],
                   confidence: float = AP_CONFIDENCE, iou: float = AP_NMS_IOU) -> tuple[list, list[str]]:
    """Our model and, when its file exists, the teacher; the notes say what was skipped."""
    from vision.detector import OnnxDetector

    detectors = [OnnxDetector(str(model), confidence=confidence, iou=iou)]
    notes = []
    if teacher is not None:
        if Path(teacher).is_file():
            detectors.append(OnnxDetector(str(teacher), card_path=str(teacher_card) if teacher_card else None,
                                          confidence=confidence, iou=iou))
        else:
            notes.append(f"teacher not evaluated: {teacher} not found")
    return detectors, notes


def format_report(report: dict) -> str:
    names = [m["name"] for m in report["models"]]
    lines = [f"split {report.get('split', '?')}; AP at conf >= {report['ap_confidence']} after NMS IoU "
             f"{report['nms_iou']}, precision/recall at "
             f"conf >= {report['operating_confidence']}, IoU 0.5"]
    lines.append(f"{'set':<20} {'class':<14} {'gt':>5}  " + "  ".join(f"{n[:22]:>30}" for n in names))
    lines.append(f"{'':<20} {'':<14} {'':>5}  " + "  ".join(f"{'AP50 AP50-95   P     R':>30}" for _ in names))
    for set_name, entry in report["sets"].items():
        for cls, row in entry["classes"].items():
            cells = []
            for n in names:
                m = row.get(n)
                cells.append(f"{m['ap50']:.3f} {m['ap50_95']:.3f}  {m['precision']:.2f}  {m['recall']:.2f}".rjust(30)
                             if m else f"{'n/a':>30}")
            lines.append(f"{set_name:<20} {cls:<14} {row['gt_boxes']:>5}  " + "  ".join(cells))
    lines.extend(report.get("notes", []))
    return "\n".join(lines)


@models_app.command("evaluate")
def evaluate_cmd(model: Path = typer.Option(DEFAULT_MODEL, help="ONNX model (its .card.yaml next to it)"),
                 teacher: Optional[Path] = typer.Option(TEACHER, help="teacher ONNX model evaluated in the same run"),
                 teacher_card: Path = typer.Option(TEACHER_CARD, help="the teacher's model card"),
                 no_teacher: bool = typer.Option(False, "--no-teacher", help="evaluate our model only"),
                 split: str = typer.Option("val", help="val or test"),
                 definition: Path = typer.Option(DEFINITION, help="dataset definition naming the sources"),
                 data_root: Optional[Path] = typer.Option(None, help="folder holding the source sets "
                                                          "(default: the definition's roots, ../shared/data)"),
                 limit: Optional[int] = typer.Option(None, min=1, help="at most this many images per set"),
                 combined: bool = typer.Option(True, help="also score ours + teacher merged (a site with "
                                                          "the teacher in detector.extra_models)"),
                 nms_iou: float = typer.Option(AP_NMS_IOU, min=0.05, max=1.0,
                                               help="NMS IoU of every model (the cards' figures use 0.6; sites "
                                                    "run detector.iou, 0.5 by default)"),
                 as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Per-class AP50, AP50-95, precision and recall on the real splits, teacher beside ours."""
    from vision.errors import ModelError

    sets = load_eval_sets(definition, split, data_root, limit)
    if not sets or not any(s["images"] for s in sets):
        typer.echo(f"error: no {split} images found for the sources of {definition}", err=True)
        raise typer.Exit(2)
    try:
        detectors, notes = load_detectors(model, None if no_teacher else teacher, teacher_card, iou=nms_iou)
    except ModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    report = evaluate_models(detectors, sets, combine=combined)
    report["split"] = split
    report["notes"] = notes
    typer.echo(json.dumps(report, ensure_ascii=False) if as_json else format_report(report))


@models_app.command("train")
def train_cmd(name: str = typer.Option("r1", help="run name under var/runs/compound-v1/"),
              hours: Optional[float] = typer.Option(None, "--time", help="time budget in hours"),
              epochs: int = typer.Option(100, min=1),
              init: Optional[str] = typer.Option(None, help="weights to start from (default: from scratch)"),
              imgsz: int = typer.Option(320, min=32),
              batch: int = typer.Option(16, min=1),
              workers: int = typer.Option(1, min=0)) -> None:
    """Train (or resume) the compound-v1 detector on var/datasets/compound-v1 (build it first with
    `python -m datasets.build_merged`). Re-running the same command resumes from last.pt."""
    recipe = _recipes("train_merged")
    data = recipe.DATASET / "data.yaml"
    if not data.exists():
        typer.echo(f"error: {data} not found; build it with `.venv/bin/python -m datasets.build_merged`", err=True)
        raise typer.Exit(2)
    argv = ["--name", name, "--epochs", str(epochs), "--imgsz", str(imgsz), "--batch", str(batch),
            "--workers", str(workers)] + (["--time", str(hours)] if hours else []) + (["--init", init] if init else [])
    best = recipe.train(name, data, epochs, hours, init, imgsz, batch, workers, argv=argv)
    typer.echo(f"best weights: {best}")


@models_app.command("quantize")
def quantize_cmd(model: Path = typer.Argument(FLOAT_MODEL, help="float ONNX model with its .card.yaml"),
                 out: Path = typer.Argument(ROOT / "models" / "compound-v1-int8.onnx", help="int8 ONNX to write, with its card"),
                 imgsz: Optional[int] = typer.Option(None, min=32, help="re-export the same weights at this input size first"),
                 rect: bool = typer.Option(False, help="dynamic height and width: frames letterboxed to the smallest "
                                                       "multiple of 32 that holds them, not the full square"),
                 images: int = typer.Option(300, min=1, help="calibration images from the train splits"),
                 method: str = typer.Option("minmax", help="calibration: minmax, entropy or percentile"),
                 measure: bool = typer.Option(True, help="evaluate and bench the result and write them into its card")) -> None:
    """Static int8 (onnxruntime QDQ) of a float model, calibrated on real train images; the card gets the
    figures measured in the same run (evaluate val/test with the teacher, bench detector beside the float
    model). Needs the train extra (onnx; torch + ultralytics for --imgsz)."""
    recipe = _recipes("quantize_int8")
    if not model.is_file():
        typer.echo(f"error: {model} not found", err=True)
        raise typer.Exit(2)
    argv = [str(model), str(out), "--images", str(images), "--method", method] + \
        (["--imgsz", str(imgsz)] if imgsz else []) + (["--rect"] if rect else []) + ([] if measure else ["--no-measure"])
    raise typer.Exit(recipe.main(argv))


@models_app.command("export")
def export_cmd(weights: Path = typer.Argument(..., help="ultralytics .pt checkpoint (e.g. var/runs/compound-v1/r1/weights/best.pt)"),
               out: Path = typer.Option(FLOAT_MODEL, help="ONNX file to write (temporary name, then renamed)"),
               imgsz: int = typer.Option(320, min=32)) -> None:
    """Export a checkpoint to ONNX: static batch 1, opset 17, simplified."""
    recipe = _recipes("train_merged")
    if not weights.is_file():
        typer.echo(f"error: {weights} not found", err=True)
        raise typer.Exit(2)
    typer.echo(f"wrote {recipe.export_onnx(weights, out, imgsz)}")
