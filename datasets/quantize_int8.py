"""Static int8 quantization of a trained detector (issue 4: "optionally static int8 where it keeps
accuracy"), with onnxruntime's own quantizer (``onnxruntime.quantization``: the maintained tool for
the runtime we ship; it needs the ``onnx`` package of the ``train`` extra, the result needs only
onnxruntime).

- QDQ format, int8 weights per output channel, uint8 activations calibrated on real training images
  of ``../shared/data`` (the train split of every source in ``datasets/compound-v1.yaml``, never a
  validation or test image), preprocessed exactly as the runtime does (:class:`OnnxDetector`).
- Weights use 7 of their 8 bits (``reduce_range``). On an x86 CPU without VNNI (AVX2 only, e.g. AMD Zen 3)
  onnxruntime multiplies uint8 activations by int8 weights with ``VPMADDUBSW``, whose 16-bit sums
  saturate with full-range weights: the full-range r4 model measured garbage test AP50 0.634 there
  against 0.693 on an AVX-512 VNNI CPU. With 7-bit weights no sum can saturate, so the model gives the
  same answers on both kinds of CPU.
- The detection head's decoding (YOLO11: the DFL softmax, the box arithmetic with the grid and the
  strides, the class sigmoid and the concatenations, every node after the last convolutions of
  ``/model.23``) stays float: those values are pixel coordinates and scores, where 8 bits lose
  whole pixels and flatten the ranking that AP depends on. Only convolutions, and what runs between
  them, are int8.

- ``--imgsz`` re-exports the same weights at another input size first (the network is fully
  convolutional): the float ONNX is turned back into a checkpoint (:mod:`datasets.onnx_warm_start`)
  and exported again by ultralytics, so no ``.pt`` of the training run is needed.
- ``--rect`` re-exports with dynamic height and width: :class:`OnnxDetector` then letterboxes each
  frame to the smallest multiple of 32 that holds it inside ``--imgsz`` (ultralytics' own ``rect``
  validation does the same), so a 16:9 camera frame runs at 384x224, not 384x384. Square images (most
  of the evaluation sets) run exactly as before.
- Then it measures what it wrote, in one run: ``evaluate`` on the val and test splits with the
  teacher beside it, and ``bench detector`` with the float model and the teacher timed beside it;
  the card (``<out>.card.yaml``) is the float model's card with the new name, input size, ONNX
  file, a ``quantization`` section and those measured figures in place of the float model's.

    .venv-train/bin/python -m datasets.quantize_int8 models/compound-v1.onnx models/compound-v1-int8.onnx --imgsz 384 --rect
    .venv-train/bin/compoundeye quantize models/compound-v1.onnx models/compound-v1-int8.onnx --imgsz 384 --rect   # the same
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
from pathlib import Path

import cv2
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from datasets.make_card import onnx_input_size as input_size_of  # noqa: E402
from datasets.onnx_graph import rewrite_file  # noqa: E402
from vision.detector import OnnxDetector, card_path_for, fit  # noqa: E402

#: calibration images per run (spread over the sources in proportion to their train splits)
CALIBRATION_IMAGES = 300
#: the Detect module of a YOLO11 export: its box (cv2) and class (cv3) branches are convolutions and
#: are quantized; everything else in it (DFL, grid and stride arithmetic, sigmoid, concatenations)
#: is the decoding that stays float
HEAD_PREFIX = "/model.23/"
HEAD_BRANCHES = ("/model.23/cv2", "/model.23/cv3")


def calibration_images(limit: int = CALIBRATION_IMAGES, seed: int = 0) -> list[Path]:
    """A fixed random sample of the real train images of every source (never val or test)."""
    from service.cli_models import load_eval_sets

    paths = [Path(image["path"]) for source in load_eval_sets(split="train") for image in source["images"]]
    if not paths:
        raise SystemExit("no train images found under ../shared/data (see datasets/compound-v1.yaml)")
    random.Random(seed).shuffle(paths)
    return sorted(paths[:limit])


class _Reader:
    """onnxruntime's CalibrationDataReader: one preprocessed image per call."""

    def __init__(self, detector: OnnxDetector, images: list[Path]):
        self.detector, self.images, self.index = detector, images, 0
        self.input_name = detector._session.get_inputs()[0].name

    def get_next(self):
        while self.index < len(self.images):
            image = cv2.imread(str(self.images[self.index]))
            self.index += 1
            if image is not None:
                tensor, _ = self.detector.preprocess(image)
                return {self.input_name: tensor}
        return None

    def rewind(self):
        self.index = 0


def head_float_nodes(model_path: Path) -> list[str]:
    """Names of the head's decoding nodes that must stay float."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    return [n.name for n in graph.node if n.name.startswith(HEAD_PREFIX) and not n.name.startswith(HEAD_BRANCHES)]


def resized_float(model: Path, imgsz: int, workdir: Path, dynamic: bool = False) -> Path:
    """The float ``model`` re-exported at ``imgsz`` (square; with ``dynamic``, any height and width up to
    it, see :func:`datasets.train_merged.export_onnx`), with its card, in ``workdir``."""
    from datasets import onnx_warm_start
    from datasets.train_merged import export_onnx

    checkpoint = workdir / "warm.pt"
    if onnx_warm_start.main([str(model), str(checkpoint)]) != 0:
        raise SystemExit(f"could not rebuild a checkpoint from {model}")
    resized = export_onnx(checkpoint, workdir / f"{model.stem}-{imgsz}.onnx", imgsz, dynamic=dynamic)
    _copy_card(model, resized, input_size=[imgsz, imgsz])
    return resized


def _copy_card(source: Path, target: Path, **changes) -> None:
    """``source``'s card, with ``changes``, written as ``target``'s (what loads it before its own card exists)."""
    card = yaml.safe_load(card_path_for(source).read_text()) | changes
    card_path_for(target).write_text(yaml.safe_dump(card, sort_keys=False, allow_unicode=True, width=120))


def quantize(model: Path, out: Path, images: list[Path], method: str = "minmax") -> dict:
    """Write the int8 model to ``out`` (a temporary name, then renamed) with a provisional card (the
    float model's, renamed), and return what was done, for the card's ``quantization`` section."""
    import onnxruntime
    from onnxruntime.quantization import (CalibrationMethod, QuantFormat, QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    detector = OnnxDetector(model, threads=2)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)
        excluded = head_float_nodes(prepared)
        partial = out.with_name(f".{out.name}.partial")
        quantize_static(
            str(prepared), str(partial), _Reader(detector, images),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=True, reduce_range=True, nodes_to_exclude=excluded,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[method],
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        rewritten = rewrite_file(partial)
        os.replace(partial, out)
    _copy_card(model, out, name=out.stem)
    OnnxDetector(out, threads=2)   # loads, and its input/output agree with the card
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB; {len(images)} calibration images, "
          f"{len(excluded)} head nodes kept float, {method})", flush=True)
    return {"tool": f"onnxruntime.quantization.quantize_static (onnxruntime {onnxruntime.__version__})",
            "format": "QDQ; weights int8 symmetric per output channel, 7-bit range (reduce_range); activations uint8 "
                      "asymmetric per tensor",
            "calibration": f"{method}, {len(images)} images drawn (seed 0) from the train splits of "
                           "datasets/compound-v1.yaml, preprocessed as at run time",
            "kept_float": f"{len(excluded)} nodes of the detection head's decoding ({HEAD_PREFIX}: DFL, grid and "
                          "stride arithmetic, sigmoid, concatenations)",
            "graph": "the DFL's softmax on the last axis, between two transposes: the same outputs in less time "
                     f"(datasets/onnx_graph.py; {'here' if rewritten else 'at export'})"}


def measure(out: Path, reference: Path) -> tuple[dict, dict, dict]:
    """``evaluate`` (val, test; teacher beside, and ours + teacher merged) and ``bench detector`` (the
    float ``reference`` and the teacher timed beside), all in this run."""
    from service.cli_models import TEACHER, TEACHER_CARD, evaluate_models, load_detectors, load_eval_sets
    from vision.bench import bench_detector, teacher_beside

    reports = {}
    for split in ("val", "test"):
        detectors, notes = load_detectors(out, TEACHER, TEACHER_CARD)
        report = evaluate_models(detectors, load_eval_sets(split=split), combine=True)
        report.update(split=split, notes=notes)
        reports[split] = report
        print(f"evaluated {split}", flush=True)
    bench = bench_detector(str(out), runs=200, compare=[(reference, None)] + teacher_beside(out))
    return reports["val"], reports["test"], bench


def write_card(out: Path, reference: Path, quantization: dict, eval_val: dict, eval_test: dict, bench: dict,
               command: str) -> Path:
    """The float model's card, renamed, with the int8 file, the quantization and the measured figures."""
    from datasets.make_card import metrics_table, sha256, speed_table, targets_for

    card = yaml.safe_load(card_path_for(reference).read_text())
    detector = OnnxDetector(out, threads=1)   # its provisional card gives the size a dynamic model has no fixed value for
    width, height = detector.input_size
    rect = detector.stride is not None
    card["name"], card["input_size"] = out.stem, [width, height]
    card["quantization"] = {"from": f"{reference.name} (sha256 {sha256(reference)[:16]}…), the same weights"
                                    + (f" re-exported at {width} px" if input_size_of(reference) != (width, height) else "")
                                    + (" with dynamic height and width" if rect else ""),
                            **quantization,
                            "command": command,
                            "quantized": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    card["training"]["onnx"] = {"file": out.name, "sha256": sha256(out), "opset": card["training"]["onnx"].get("opset"),
                                "input": (f"images [batch, 3, height, width] float32 (quantized inside); height and width "
                                          f"dynamic: each frame is letterboxed into {width}x{height} and its canvas rounded up "
                                          f"to a multiple of {detector.stride} (a 16:9 frame runs at {width}x"
                                          f"{fit(640, 360, (width, height), detector.stride)[2][1]})" if rect else
                                          f"images [1, 3, {height}, {width}] float32 (quantized inside)"),
                                "output": card["training"]["onnx"].get("output")}
    # the float card's figures (another model, possibly measured another way) are not carried over
    card["metrics"] = metrics = {
        "how": (f"`compoundeye evaluate --json` on the val and test splits of datasets/compound-v1.yaml, the teacher "
                f"beside it (AP at conf >= {eval_val['ap_confidence']}, NMS IoU {eval_val['nms_iou']}; precision/recall "
                f"at conf >= {eval_val['operating_confidence']}, IoU 0.5), and `compoundeye bench detector` with "
                f"{reference.name} and the teacher timed in the same run; the float model's own figures are in "
                f"{card_path_for(reference).name}"),
        "val": metrics_table(eval_val), "test": metrics_table(eval_test), "speed_ms_per_frame": speed_table(bench)}
    card["targets"] = targets_for(eval_val, metrics["speed_ms_per_frame"], out.stem)
    order = ["name", "format", "input_size", "classes", "quantization", "training", "metrics", "targets"]
    ordered = {k: card[k] for k in order if k in card} | {k: v for k, v in card.items() if k not in order}
    text = ("# Written by `python -m datasets.quantize_int8` from figures it measured; see models/README.md.\n"
            + yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None))
    path = card_path_for(out)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    os.replace(partial, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="float ONNX model with its .card.yaml")
    parser.add_argument("out", type=Path, help="int8 ONNX to write, with its card")
    parser.add_argument("--imgsz", type=int, default=None, help="re-export at this input size first (default: keep)")
    parser.add_argument("--rect", action="store_true",
                        help="re-export with dynamic height and width first: frames are letterboxed to the smallest "
                             "multiple of 32 that holds them instead of the full square (a 16:9 frame: 42%% less work)")
    parser.add_argument("--images", type=int, default=CALIBRATION_IMAGES, help="calibration images")
    parser.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax")
    parser.add_argument("--no-measure", action="store_true", help="skip evaluate and bench (card keeps the float figures)")
    args = parser.parse_args(argv)
    if not card_path_for(args.model).is_file():
        raise SystemExit(f"{args.model}: no model card beside it ({card_path_for(args.model).name})")
    with tempfile.TemporaryDirectory(prefix="ce-int8-") as tmp:
        source = args.model
        if args.rect or (args.imgsz and (args.imgsz, args.imgsz) != input_size_of(args.model)):
            source = resized_float(args.model, args.imgsz or input_size_of(args.model)[0], Path(tmp), dynamic=args.rect)
        quantization = quantize(source, args.out, calibration_images(args.images), args.method)
    if args.no_measure:
        return 0
    eval_val, eval_test, bench = measure(args.out, args.model)
    command = " ".join([".venv-train/bin/python -m datasets.quantize_int8",
                        *(argv if argv is not None else sys.argv[1:])])
    card = write_card(args.out, args.model, quantization, eval_val, eval_test, bench, command)
    print(f"wrote {card}: {speed_line(bench)}")
    return 0


def speed_line(bench: dict) -> str:
    return "; ".join(f"{e['model']} {e['ms']['total']['mean']:.2f} ms" for e in [bench] + bench.get("compare", []))


if __name__ == "__main__":
    raise SystemExit(main())
