"""How much of a class's missing AP is loose boxes rather than missed or invented objects: AP of one class
of one evaluation set at several IoU thresholds for a match (issue 4's garbage gap, docs/models.md).

AP50 counts a detection as right only when its box overlaps a labelled box by IoU >= 0.5. Where the labels
themselves are ambiguous (which bags of a pile get a box, and how tight), the same detections score far
better at a looser match. If AP at IoU 0.3 is well above AP50, the gap is mostly in where the boxes sit;
if AP stays low even at IoU 0.1, the model misses objects or reports objects the labels do not have.

    .venv/bin/python -m datasets.localization_check --model models/compound-v1-int8.onnx --set woosong_trashbags --cls garbage

AP here is COCO's 101-point interpolated AP over all detections of the class at confidence >= 0.001
after the runtime's NMS (IoU 0.6), with at most 100 detections per image, matched greedily by score,
as ``compoundeye evaluate`` does; at IoU 0.5 it agrees with that command's AP50 to within about 0.01
(supervision's matching differs in its tie-breaking).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

THRESHOLDS = (0.1, 0.3, 0.5, 0.7)
MAX_PER_IMAGE = 100


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of ``boxes`` (N, 4)."""
    if len(boxes) == 0:
        return np.zeros(0)
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def average_precision(detections: list[tuple[float, int, np.ndarray]], truths: list[np.ndarray],
                      iou: float) -> tuple[float, float]:
    """COCO 101-point AP and the highest recall reached, for ``detections`` ``(score, image, xyxy)`` against
    ``truths`` (per image, (N, 4) xyxy), each truth matched at most once, best score first."""
    total = sum(len(t) for t in truths)
    if total == 0:
        return 0.0, 0.0
    used = [np.zeros(len(t), bool) for t in truths]
    hits = []
    for _, image, box in sorted(detections, key=lambda d: -d[0]):
        overlaps = np.where(used[image], -1.0, box_iou(box, truths[image]))
        best = int(np.argmax(overlaps)) if len(overlaps) else -1
        hit = best >= 0 and overlaps[best] >= iou
        if hit:
            used[image][best] = True
        hits.append(hit)
    if not hits:
        return 0.0, 0.0
    true_pos = np.cumsum(hits)
    precision = true_pos / np.arange(1, len(hits) + 1)
    recall = true_pos / total
    envelope = np.maximum.accumulate(precision[::-1])[::-1]   # best precision at this recall or beyond
    points = np.linspace(0, 1, 101)
    at = np.searchsorted(recall, points, side="left")
    sampled = np.where(at < len(envelope), envelope[np.minimum(at, len(envelope) - 1)], 0.0)
    return float(sampled.mean()), float(recall[-1])


def check(model: str, set_name: str, cls: str, split: str = "val", thresholds=THRESHOLDS) -> dict:
    from service.cli_models import AP_CONFIDENCE, AP_NMS_IOU, load_eval_sets
    from vision.detector import OnnxDetector

    sets = {s["name"]: s for s in load_eval_sets(split=split)}
    if set_name not in sets:
        raise SystemExit(f"no evaluation set {set_name!r} for split {split}: {sorted(sets)}")
    detector = OnnxDetector(model, confidence=AP_CONFIDENCE, iou=AP_NMS_IOU)
    if cls not in detector.class_names:
        raise SystemExit(f"{model} has no class {cls!r}: {list(detector.class_names)}")
    wanted = detector.class_names.index(cls)
    detections, truths = [], []
    for index, item in enumerate(sets[set_name]["images"]):
        image = cv2.imread(item["path"])
        height, width = image.shape[:2]
        truths.append(np.array([[(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
                                for c, cx, cy, w, h in item["boxes"] if c == cls]).reshape(-1, 4))
        found = detector.detect(image)
        mine = np.flatnonzero(found.class_id == wanted)
        mine = mine[np.argsort(-found.confidence[mine])][:MAX_PER_IMAGE]
        detections += [(float(found.confidence[i]), index, found.xyxy[i]) for i in mine]
    rows = {}
    for iou in thresholds:
        ap, reach = average_precision(detections, truths, iou)
        rows[f"{iou:g}"] = {"ap": round(ap, 4), "max_recall": round(reach, 4)}
    return {"model": str(model), "set": set_name, "class": cls, "split": split, "images": len(truths),
            "gt_boxes": int(sum(len(t) for t in truths)), "by_match_iou": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "models" / "compound-v1-int8.onnx"))
    parser.add_argument("--set", dest="set_name", default="woosong_trashbags")
    parser.add_argument("--cls", default="garbage")
    parser.add_argument("--split", default="val")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = check(args.model, args.set_name, args.cls, args.split)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['set']} {result['class']} ({result['split']}, {result['images']} images, "
              f"{result['gt_boxes']} boxes), {Path(result['model']).name}")
        for iou, row in result["by_match_iou"].items():
            print(f"  match IoU >= {iou}: AP {row['ap']:.3f}, recall reached {row['max_recall']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
