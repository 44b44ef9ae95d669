"""Draw a model's predictions (and the human labels) on real val images, to look at them by eye.

    .venv/bin/python -m datasets.render_predictions --set modes_of_transport --n 4 --out var/look
    .venv/bin/python -m datasets.render_predictions --model ../shared/weights/yolox_nano.onnx \
        --card models/teachers/yolox_nano.card.yaml --set woosong_trashbags --out var/look-teacher

Green thin boxes: human labels (the set's own classes only). Coloured thick boxes: predictions at
``--confidence`` mapped to the project classes, with class and score. One PNG per image.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
COLOURS = {"person": (255, 128, 0), "bicycle": (255, 0, 255), "two_wheeler": (0, 128, 255), "car": (0, 0, 255),
           "truck_or_bus": (128, 0, 128), "garbage": (0, 200, 255), "box_or_parcel": (255, 255, 0)}


def render(model: Path, card: Path | None, set_name: str, n: int, out: Path, confidence: float, split: str,
           offset: int = 0) -> list[Path]:
    from service.cli_models import load_eval_sets
    from vision.detector import PROJECT_CLASSES, MultiDetector, OnnxDetector

    det = OnnxDetector(str(model), card_path=str(card) if card else None, confidence=confidence)
    mapping = MultiDetector.class_mapping(det.card, PROJECT_CLASSES)
    target = next(s for s in load_eval_sets(split=split) if s["name"] == set_name)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for item in target["images"][offset:offset + n]:
        image = cv2.imread(item["path"])
        h, w = image.shape[:2]
        for cls, cx, cy, bw, bh in item["boxes"]:
            cv2.rectangle(image, (int((cx - bw / 2) * w), int((cy - bh / 2) * h)),
                          (int((cx + bw / 2) * w), int((cy + bh / 2) * h)), (0, 255, 0), 1)
        dets = det.detect(image)
        for name, conf, xyxy in zip(dets.names(), dets.confidence, dets.xyxy):
            cls = mapping.get(name)
            if cls is None:
                continue
            x1, y1, x2, y2 = np.asarray(xyxy).astype(int)
            colour = COLOURS.get(cls, (255, 255, 255))
            cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
            cv2.putText(image, f"{cls} {conf:.2f}", (x1, max(12, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1,
                        cv2.LINE_AA)
        path = out / f"{set_name}_{det.model_version}_{Path(item['path']).stem[:40]}.png"
        cv2.imwrite(str(path), image)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "compound-v1.onnx")
    parser.add_argument("--card", type=Path, default=None)
    parser.add_argument("--set", default="modes_of_transport")
    parser.add_argument("--split", default="val")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--confidence", type=float, default=0.25)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "look")
    args = parser.parse_args(argv)
    for path in render(args.model, args.card, args.set, args.n, args.out, args.confidence, args.split, args.offset):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
