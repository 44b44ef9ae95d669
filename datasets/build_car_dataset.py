"""Build the car-v1 YOLO dataset outside the repository (default var/datasets/car-v1).

    python -m datasets.build_car_dataset                 # uses datasets/car-v1.yaml
    python -m datasets.build_car_dataset --synthetic-train 600 --synthetic-val 60 --out /tmp/car-small

Layout written (ultralytics reads labels from the sibling ``labels/`` folder of each image):

    images/train/        synth_*.jpg (rendered) + pcctv_*.jpg, mot_*.jpg (symlinks into ../shared/data)
    images/val_synth/    held-out synthetic frames (different scenes and seeds from train)
    images/val_real/     the given val splits of the real sets (symlinks)
    labels/<same>/       one line per car: ``0 cx cy w h`` (normalised)
    data.yaml            train + both val folders (used while training)
    val_real.yaml, val_synth.yaml, val_pcctv.yaml, val_mot.yaml   one val set each (for metrics)
    manifest.json        counts per source and split
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from multiprocessing import Pool
from pathlib import Path

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
DEFINITION = REPO / "datasets" / "car-v1.yaml"


def _render_scene(job: tuple[int, int, str, int, float, int, str]) -> list[tuple[str, int]]:
    """Render one random scene's frames into ``out/images/<split>``; returns (file name, boxes) per frame."""
    from datasets.synth.random_scene import random_camera, random_cars, random_layout, random_lighting
    from datasets.synth.scene import SceneRenderer

    seed, scene_index, split, n_frames, min_visible, min_box_px, out = job
    rng = np.random.default_rng([seed, 0 if split == "train" else 1, scene_index])
    camera = random_camera(rng)
    layout = random_layout(camera, rng)
    renderer = SceneRenderer(camera, layout, rng, px_per_m=20)
    written = []
    for k in range(n_frames):
        light, post, _ = random_lighting(rng)
        cars = random_cars(layout, camera, rng, headlights=light.headlights)
        image, labels = renderer.render(cars, light, post, rng)
        h, w = image.shape[:2]
        lines = []
        for lab in labels.values():
            x0, y0, x1, y1 = lab["xyxy"]
            if lab["visible"] < min_visible or x1 - x0 < min_box_px or y1 - y0 < min_box_px:
                continue
            lines.append(f"0 {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}")
        name = f"synth_{scene_index:05d}_{k}"
        quality = int(rng.integers(60, 96))
        cv2.imwrite(str(Path(out) / "images" / split / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        (Path(out) / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        written.append((name, len(lines)))
    return written


def build_synthetic(out: Path, split: str, n_frames: int, cfg: dict, workers: int) -> dict:
    per_scene = int(cfg["frames_per_scene"])
    n_scenes = (n_frames + per_scene - 1) // per_scene
    jobs = [(int(cfg["seed"]), i, split, min(per_scene, n_frames - i * per_scene), float(cfg["min_visible"]),
             int(cfg["min_box_px"]), str(out)) for i in range(n_scenes)]
    images = boxes = 0
    with Pool(workers) as pool:
        for done, frames in enumerate(pool.imap_unordered(_render_scene, jobs, chunksize=2), 1):
            images += len(frames)
            boxes += sum(n for _, n in frames)
            if done % 50 == 0 or done == n_scenes:
                print(f"  synthetic {split}: {done}/{n_scenes} scenes, {images} frames, {boxes} cars", flush=True)
    return {"images": images, "boxes": boxes}


def link_real(out: Path, source: dict, split_src: str, split_dst: str) -> tuple[dict, list[Path]]:
    """Symlink one split of a real set and write its one-class labels. Returns counts and image paths."""
    root = (REPO / source["root"]).resolve()
    names = (root / "classes.txt").read_text().split()
    keep = {names.index(src) for src in source["class_map"]}
    images = boxes = 0
    dropped: dict[str, int] = {}
    paths = []
    for img in sorted((root / "images" / split_src).glob("*.jpg")):
        label = root / "labels" / split_src / f"{img.stem}.txt"
        lines = []
        for row in label.read_text().splitlines() if label.exists() else []:
            parts = row.split()
            if len(parts) != 5:
                continue
            cls = int(parts[0])
            if cls in keep:
                lines.append("0 " + " ".join(parts[1:]))
            else:
                dropped[names[cls]] = dropped.get(names[cls], 0) + 1
        stem = f"{source['prefix']}_{img.stem}"
        dst = out / "images" / split_dst / f"{stem}.jpg"
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        dst.symlink_to(img)
        (out / "labels" / split_dst / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
        images += 1
        boxes += len(lines)
        paths.append(dst)
    return {"images": images, "boxes": boxes, "dropped_boxes": dropped}, paths


def write_yaml(path: Path, data: dict) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--definition", default=str(DEFINITION))
    parser.add_argument("--out", default=None, help="output folder (default: `output` of the definition)")
    parser.add_argument("--synthetic-train", type=int, default=None)
    parser.add_argument("--synthetic-val", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    definition = yaml.safe_load(Path(args.definition).read_text())
    out = Path(args.out or REPO / definition["output"]).resolve()
    if out.exists():
        shutil.rmtree(out)
    for split in ("train", "val_synth", "val_real"):
        (out / "images" / split).mkdir(parents=True)
        (out / "labels" / split).mkdir(parents=True)
    syn = definition["synthetic"]
    n_train = args.synthetic_train if args.synthetic_train is not None else int(syn["train_frames"])
    n_val = args.synthetic_val if args.synthetic_val is not None else int(syn["val_frames"])
    manifest: dict = {"definition": str(Path(args.definition).resolve()), "classes": definition["classes"],
                      "sources": {}}
    print(f"building {out}")
    manifest["sources"]["synthetic"] = {"train": build_synthetic(out, "train", n_train, syn, args.workers),
                                        "val_synth": build_synthetic(out, "val_synth", n_val, syn, args.workers)}
    per_source_val: dict[str, list[Path]] = {}
    for source in definition["real"]:
        counts = {}
        for split_src, split_dst in (("train", "train"), ("val", "val_real")):
            counts[split_dst], paths = link_real(out, source, source["splits"][split_src], split_dst)
            if split_dst == "val_real":
                per_source_val[source["prefix"]] = paths
        manifest["sources"][source["name"]] = counts
        print(f"  {source['name']}: {counts}")
    names = {i: n for i, n in enumerate(definition["classes"])}
    write_yaml(out / "data.yaml", {"path": str(out), "train": "images/train", "val": ["images/val_real", "images/val_synth"],
                                   "names": names})
    write_yaml(out / "val_real.yaml", {"path": str(out), "train": "images/train", "val": "images/val_real", "names": names})
    write_yaml(out / "val_synth.yaml", {"path": str(out), "train": "images/train", "val": "images/val_synth", "names": names})
    for prefix, paths in per_source_val.items():
        listing = out / f"val_{prefix}.txt"
        listing.write_text("".join(f"{p}\n" for p in paths))
        write_yaml(out / f"val_{prefix}.yaml", {"path": str(out), "train": "images/train", "val": str(listing),
                                                 "names": names})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
