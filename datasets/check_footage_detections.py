"""Check an exported car detector against a sample clip's ground truth.

    .venv/bin/python -m datasets.check_footage_detections                       # models/car-v1.onnx on fire_lane_demo
    .venv/bin/python -m datasets.check_footage_detections --clip samples/footage/gate_traffic.mp4 --conf 0.4

Decodes every frame with PyAV, runs the ONNX model with onnxruntime (a minimal letterbox + decode + NMS
of its own, matching the model card: RGB, /255, centred letterbox padded with 114; output (1, 4+nc, N)
cx, cy, w, h in input pixels then class scores), and matches detections (confidence >= --conf) to the
sidecar's boxes one-to-one by IoU >= --iou. Cars mostly outside the frame (in_frame < 0.5) are
"don't care": missing them is no error and detecting them is no false positive. Prints per-frame
recall/precision totals, per-car recall, and how well the car stopped on the fire lane is found.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import av
import cv2
import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent


def letterbox(image_bgr: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """HxWx3 BGR -> (1,3,size,size) float32 RGB /255, scale, (left, top) padding."""
    h, w = image_bgr.shape[:2]
    r = min(size / h, size / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    left, top = int(round((size - nw) / 2 - 0.1)), int(round((size - nh) / 2 - 0.1))
    canvas = np.full((size, size, 3), 114, np.uint8)
    canvas[top:top + nh, left:left + nw] = cv2.resize(image_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    blob = canvas[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    return np.ascontiguousarray(blob), r, (left, top)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    order = np.argsort(-scores)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        if order.size == 1:
            break
        rest = order[1:]
        ious = box_iou(boxes[i:i + 1], boxes[rest])[0]
        order = rest[ious < iou]
    return np.array(keep, dtype=np.int64)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,4) x (M,4) xyxy -> (N,M) IoU."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


class OnnxCarDetector:
    def __init__(self, path: Path, threads: int = 2):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0]
        self.size = int(self.input.shape[2])

    def __call__(self, image_bgr: np.ndarray, conf: float = 0.25, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
        """-> (xyxy (N,4) in image pixels, confidence (N,)) for class 0 (car)."""
        blob, r, (left, top) = letterbox(image_bgr, self.size)
        out = self.session.run(None, {self.input.name: blob})[0][0]  # (4+nc, N)
        scores = out[4:].max(axis=0)
        keep = scores >= conf
        cx, cy, w, h = out[:4, keep]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        scores = scores[keep]
        if len(scores):
            idx = nms(boxes, scores, iou)
            boxes, scores = boxes[idx], scores[idx]
        boxes = (boxes - np.array([left, top, left, top], np.float32)) / r
        hh, ww = image_bgr.shape[:2]
        boxes = np.clip(boxes, 0, [ww, hh, ww, hh])
        return boxes.astype(np.float32), scores.astype(np.float32)


def evaluate_clip(model_path: Path, clip: Path, sidecar: Path, conf: float = 0.4, iou_match: float = 0.5,
                  min_in_frame: float = 0.5) -> dict:
    """Run the model over every frame of ``clip`` and score it against ``sidecar``."""
    truth = json.loads(sidecar.read_text())
    detector = OnnxCarDetector(model_path)
    stop = {c["id"]: c["stopped"] for c in truth["cars"] if c["role"] == "stops_on_fire_lane" and c["stopped"]}
    tp = fp = fn = 0
    per_car: dict[int, dict] = {}
    stopped_conf: list[float] = []
    stopped_frames = stopped_hits = 0
    frames_all_found = 0
    latency = []
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        for index, frame in enumerate(container.decode(stream)):
            image = frame.to_ndarray(format="bgr24")
            t0 = time.perf_counter()
            boxes, scores = detector(image, conf=min(conf, 0.25))
            latency.append(time.perf_counter() - t0)
            gt = truth["frames"][index]
            care = [o for o in gt["objects"] if o["in_frame"] >= min_in_frame]
            dont_care = [o for o in gt["objects"] if o["in_frame"] < min_in_frame]
            gt_boxes = np.array([o["xyxy"] for o in care], np.float32).reshape(-1, 4)
            # Greedy one-to-one matching by confidence, against all candidates >= 0.25 so that the
            # stopped car's confidence is known even when it falls below --conf.
            ious = box_iou(boxes, gt_boxes) if len(boxes) and len(gt_boxes) else np.zeros((len(boxes), len(gt_boxes)))
            matched_gt: dict[int, float] = {}
            used = set()
            taken = np.zeros(len(care), bool)
            for d in np.argsort(-scores) if len(care) else []:
                row = np.where(taken, -1.0, ious[d])
                g = int(np.argmax(row))
                if row[g] >= iou_match:
                    taken[g] = True
                    matched_gt[g] = float(scores[d])
                    used.add(int(d))
            confident = {g: s for g, s in matched_gt.items() if s >= conf}
            extra = [d for d in range(len(boxes)) if scores[d] >= conf and d not in used]
            if dont_care and extra:
                dc = np.array([o["xyxy"] for o in dont_care], np.float32)
                extra = [d for d in extra if box_iou(boxes[d:d + 1], dc).max() < iou_match]
            tp += len(confident)
            fn += len(care) - len(confident)
            fp += len(extra)
            frames_all_found += int(len(confident) == len(care) and not extra)
            for g, obj in enumerate(care):
                rec = per_car.setdefault(obj["id"], {"frames": 0, "found": 0})
                rec["frames"] += 1
                rec["found"] += int(g in confident)
                if obj["id"] in stop and stop[obj["id"]]["from_s"] <= gt["time_s"] <= stop[obj["id"]]["to_s"]:
                    stopped_frames += 1
                    stopped_hits += int(g in confident)
                    stopped_conf.append(matched_gt.get(g, 0.0))
    for rec in per_car.values():
        rec["recall"] = round(rec["found"] / max(1, rec["frames"]), 4)
    stopped_conf_arr = np.array(stopped_conf) if stopped_conf else np.zeros(1)
    summary = {
        "clip": clip.name, "model": model_path.name, "conf": conf, "iou": iou_match,
        "frames": len(truth["frames"]), "gt_boxes": tp + fn, "tp": tp, "fp": fp, "fn": fn,
        "recall": round(tp / max(1, tp + fn), 4), "precision": round(tp / max(1, tp + fp), 4),
        "frames_all_correct": frames_all_found,
        "stopped_car_frames": stopped_frames,
        "stopped_car_recall": round(stopped_hits / max(1, stopped_frames), 4),
        "stopped_car_conf_mean": round(float(stopped_conf_arr.mean()), 3),
        "stopped_car_conf_p10": round(float(np.percentile(stopped_conf_arr, 10)), 3),
        "stopped_car_conf_min": round(float(stopped_conf_arr.min()), 3),
        "ms_per_frame": round(1000 * float(np.median(latency)), 1) if latency else None,
    }
    return {"summary": summary, "per_car": per_car}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "car-v1.onnx")
    parser.add_argument("--clip", type=Path, default=REPO / "samples" / "footage" / "fire_lane_demo.mp4")
    parser.add_argument("--conf", type=float, default=0.4)
    parser.add_argument("--iou", type=float, default=0.5)
    args = parser.parse_args(argv)
    report = evaluate_clip(args.model, args.clip, args.clip.with_suffix(".json"), args.conf, args.iou)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
