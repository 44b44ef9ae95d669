"""Build the merged multi-class YOLO dataset (default: datasets/compound-v1.yaml → var/datasets/compound-v1).

    .venv/bin/python -m datasets.build_merged                     # full build (teacher pass ~2-4 min)
    .venv/bin/python -m datasets.build_merged --out /tmp/x --limit 5   # a few images per split (tests)

What it does, per source dataset of the definition (read the definition for the class mapping):

- ``train``: each image is symlinked into ``images/train/<prefix>_<stem>.jpg``; its label file holds
  the dataset's own boxes mapped to the project classes (unmapped classes dropped) **plus** teacher
  pseudo-labels (YOLOX-Nano, COCO) for the classes the dataset does not label, minus duplicates of
  boxes the dataset already has (see ``teacher`` in the definition).
- ``val`` → ``images/val/``, ``test`` → ``images/test/``: symlinked, with the dataset's own mapped
  boxes only (never pseudo-labelled), so they measure the real classes against human labels.

Written next to the images: ``data.yaml`` (train + val, for training), ``val_<prefix>.txt`` /
``test_<prefix>.txt`` (one split of one source), ``manifest.json`` (counts per source, split and
class, the pseudo-label counts, and which classes each source labels — used by ``evaluate``).
Nothing from ../shared/data is copied; only symlinks and generated text files are written.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
DEFINITION = REPO / "datasets" / "compound-v1.yaml"
SPLITS = ("train", "val", "test")


def load_definition(path: str | os.PathLike = DEFINITION) -> dict:
    """The dataset definition with paths resolved against the repository."""
    definition = yaml.safe_load(Path(path).read_text())
    classes = definition["classes"]
    for source in definition["sources"]:
        source["root"] = str((REPO / source["root"]).resolve())
        names = (Path(source["root"]) / "classes.txt").read_text().split("\n")
        names = [n.strip() for n in names if n.strip()]
        source["source_classes"] = names
        for src, dst in source["class_map"].items():
            if src not in names:
                raise ValueError(f"{source['name']}: class_map source class {src!r} not in {names}")
            if dst not in classes:
                raise ValueError(f"{source['name']}: class_map target {dst!r} not in {classes}")
        for cls in source.get("pseudo", []):
            if cls not in classes:
                raise ValueError(f"{source['name']}: pseudo class {cls!r} not in {classes}")
    return definition


def labelled_classes(source: dict) -> list[str]:
    """The project classes a source's human labels cover (the classes it can be evaluated on)."""
    return sorted(set(source["class_map"].values()))


def read_labels(label_path: Path, source: dict, classes: list[str]) -> tuple[list[tuple[int, list[float]]], Counter]:
    """The source's boxes mapped to project class ids, and a count of dropped source classes."""
    rows, dropped = [], Counter()
    if not label_path.exists():
        return rows, dropped
    names = source["source_classes"]
    for line in label_path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue
        name = names[int(parts[0])]
        target = source["class_map"].get(name)
        if target is None:
            dropped[name] += 1
            continue
        rows.append((classes.index(target), [float(v) for v in parts[1:]]))
    return rows, dropped


def _cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], axis=1)


def _iou_and_cover(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(len(a), len(b)) IoU and the fraction of each ``a`` box's area inside each ``b`` box."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b))), np.zeros((len(a), len(b)))
    iw = (np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])).clip(0)
    ih = (np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])).clip(0)
    inter = iw * ih
    area_a = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]
    area_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None, :]
    return inter / np.maximum(area_a + area_b - inter, 1e-12), inter / np.maximum(area_a, 1e-12)


def select_pseudo(teacher_xyxy: np.ndarray, teacher_conf: np.ndarray, teacher_cls: list[str],
                  own: list[tuple[int, list[float]]], image_wh: tuple[int, int], source: dict, teacher: dict,
                  classes: list[str]) -> list[tuple[int, list[float]]]:
    """Teacher boxes (project class names, pixels) → YOLO rows worth adding to ``own``.

    Kept: class in the source's ``pseudo`` list, confidence over the class threshold, both sides at
    least ``min_box_px``, and not a duplicate of an own box of the same or a confusable class.
    """
    w, h = image_wh
    groups = {c: {c} for c in classes}
    for group in teacher.get("confusable", []):
        for c in group:
            groups[c] = groups[c] | set(group)
    own_xyxy = _cxcywh_to_xyxy([b for _, b in own]) * [w, h, w, h] if own else np.zeros((0, 4))
    own_cls = [classes[c] for c, _ in own]
    iou, cover = _iou_and_cover(np.asarray(teacher_xyxy, np.float64).reshape(-1, 4), own_xyxy)
    rows = []
    for i, (name, conf) in enumerate(zip(teacher_cls, teacher_conf)):
        if name not in source.get("pseudo", []) or conf < teacher["confidence"].get(name, 1.1):
            continue
        x1, y1, x2, y2 = (float(v) for v in teacher_xyxy[i])
        if x2 - x1 < teacher["min_box_px"] or y2 - y1 < teacher["min_box_px"]:
            continue
        related = np.array([c in groups[name] for c in own_cls], bool)
        if related.any() and ((iou[i, related] >= teacher["dup_iou"]).any()
                              or (cover[i, related] >= teacher["dup_cover"]).any()):
            continue
        rows.append((classes.index(name), [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]))
    return rows


def build(definition: dict, out: Path, limit: int | None = None, teacher_threads: int = 2) -> dict:
    """Build the dataset into ``out`` (replacing it). Returns the manifest."""
    import cv2

    from vision.detector import MultiDetector, OnnxDetector

    classes = definition["classes"]
    tcfg = definition["teacher"]
    teacher = OnnxDetector(REPO / tcfg["model"], card_path=REPO / tcfg["card"],
                           confidence=min(tcfg["confidence"].values()), iou=0.5, threads=teacher_threads)
    to_project = MultiDetector.class_mapping(teacher.card, classes)
    if out.exists():
        shutil.rmtree(out)
    for split in SPLITS:
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
    manifest: dict = {"definition": str(DEFINITION), "classes": classes, "teacher": {**tcfg}, "sources": {}}
    t0 = time.monotonic()
    for source in definition["sources"]:
        entry = {"labelled_classes": labelled_classes(source), "pseudo_classes": source.get("pseudo", [])}
        for split in SPLITS:
            images = sorted((Path(source["root"]) / "images" / split).glob("*.jpg"))[:limit]
            own_counts, pseudo_counts, dropped = Counter(), Counter(), Counter()
            listing = []
            for img in images:
                own, drop = read_labels(Path(source["root"]) / "labels" / split / f"{img.stem}.txt", source, classes)
                dropped += drop
                pseudo = []
                if split == "train" and source.get("pseudo"):
                    image = cv2.imread(str(img), cv2.IMREAD_COLOR)
                    dets = teacher.detect(image)
                    mapped = [to_project.get(n) for n in dets.names()]
                    keep = [i for i, n in enumerate(mapped) if n is not None]
                    pseudo = select_pseudo(dets.xyxy[keep], dets.confidence[keep], [mapped[i] for i in keep], own,
                                           (image.shape[1], image.shape[0]), source, tcfg, classes)
                stem = f"{source['prefix']}_{img.stem}"
                dst = out / "images" / split / f"{stem}.jpg"
                dst.symlink_to(img)
                lines = [f"{c} " + " ".join(f"{v:.6f}" for v in b) for c, b in own + pseudo]
                (out / "labels" / split / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
                own_counts.update(classes[c] for c, _ in own)
                pseudo_counts.update(classes[c] for c, _ in pseudo)
                listing.append(str(dst))
            (out / f"{split}_{source['prefix']}.txt").write_text("".join(p + "\n" for p in listing))
            entry[split] = {"images": len(images), "boxes": dict(sorted(own_counts.items())),
                            "pseudo_boxes": dict(sorted(pseudo_counts.items())),
                            "dropped_boxes": dict(sorted(dropped.items())),
                            "list": f"{split}_{source['prefix']}.txt"}
            print(f"  {source['name']} {split}: {entry[split]}  ({time.monotonic() - t0:.0f} s)", flush=True)
        manifest["sources"][source["name"]] = {**entry, "prefix": source["prefix"], "root": source["root"]}
    names = dict(enumerate(classes))
    (out / "data.yaml").write_text(yaml.safe_dump(
        {"path": str(out), "train": "images/train", "val": "images/val", "test": "images/test", "names": names},
        sort_keys=False))
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--definition", default=str(DEFINITION))
    parser.add_argument("--out", default=None, help="output folder (default: `output` of the definition)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many images per source and split")
    args = parser.parse_args(argv)
    definition = load_definition(args.definition)
    out = Path(args.out or REPO / definition["output"]).resolve()
    print(f"building {out}", flush=True)
    build(definition, out, args.limit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
