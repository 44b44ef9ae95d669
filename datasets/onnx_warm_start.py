"""Rebuild a trainable YOLO11n checkpoint from an exported compound-v1 ONNX file, to continue
training when the run's own ``.pt`` files are gone (a session's ``var/runs`` does not survive it).

    .venv-train/bin/python -m datasets.onnx_warm_start models/compound-v1.onnx var/runs/compound-v1/warm.pt
    .venv-train/bin/python -m datasets.train_merged --name r2 --time 2 --init var/runs/compound-v1/warm.pt

The export fused every BatchNorm into its convolution (``W' = γW/σ``, ``b' = β − γμ/σ``), so the
original γ, β, μ, σ cannot be recovered. Instead each Conv+BN pair is re-parameterised so that it
computes exactly the fused convolution, with statistics that match real inputs:

- the convolution keeps ``W'`` (no bias); the running mean ``μ`` and variance ``σ²`` of ``W'x`` are
  measured per channel on training images (forward hooks, evaluation mode, in which the network is
  still exactly the fused one because each BN starts as the identity);
- BN gets ``μ``, ``σ²``, ``γ = √(σ² + ε)`` and ``β = b' + μ``, so that ``γ(W'x − μ)/√(σ²+ε) + β = W'x + b'``.

In training mode BN normalises with batch statistics, which are close to the measured ones, so
training starts from the exported model's behaviour rather than from random weights. The check at
the end compares the checkpoint's output with onnxruntime's on the same images.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATASET = REPO / "var" / "datasets" / "compound-v1"
NAMES = {0: "person", 1: "bicycle", 2: "two_wheeler", 3: "car", 4: "truck_or_bus", 5: "garbage", 6: "box_or_parcel"}


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """RGB float32 CHW in [0, 1], centred letterbox padded with 114 (the runtime's preprocessing)."""
    h, w = image.shape[:2]
    scale = min(size / w, size / h)
    nw, nh = round(w * scale), round(h * scale)
    canvas = np.full((size, size, 3), 114, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[top:top + nh, left:left + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0


def sample_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    lists = sorted(DATASET.glob("train_*.txt"))
    if not lists:
        raise SystemExit(f"no training lists in {DATASET}: run `python -m datasets.build_merged` first")
    paths = [p for lst in lists for p in lst.read_text().split()]
    rng = np.random.default_rng(seed)
    batch = []
    for path in rng.choice(paths, size=min(n, len(paths)), replace=False):
        image = cv2.imread(str(path))
        if image is not None:
            batch.append(letterbox(image, size))
    return np.stack(batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("onnx", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--images", type=int, default=256, help="training images used to measure BN statistics")
    parser.add_argument("--imgsz", type=int, default=None, help="default: the ONNX model's input size")
    args = parser.parse_args(argv)

    from datasets.activation import activation_of_onnx, set_activation
    from datasets.train_merged import offline_environment
    offline_environment()
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import numpy_helper
    from ultralytics import __version__ as ultralytics_version
    from ultralytics.nn.modules import Conv
    from ultralytics.nn.tasks import DetectionModel

    torch.set_num_threads(2)
    graph = onnx.load(str(args.onnx)).graph
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    if args.imgsz is None:     # (1, 3, H, W): the checkpoint is checked at the size the model was exported at
        args.imgsz = graph.input[0].type.tensor_type.shape.dim[2].dim_value or 320
    model = DetectionModel("yolo11n.yaml", nc=len(NAMES), verbose=False)
    activation = activation_of_onnx(graph)
    if activation != "silu":    # a ReLU model (datasets.activation): the same modules, the trainer keeps it
        set_activation(model, activation)
    model.names = dict(NAMES)
    model.args = {"imgsz": args.imgsz}
    pairs = {name: m for name, m in model.named_modules() if isinstance(m, Conv) and hasattr(m, "bn")}
    # 1. fused weights in, BN as the identity (eval mode): the network now equals the exported one
    used = set()
    with torch.no_grad():
        for name, m in pairs.items():
            w, b = weights[f"{name}.conv.weight"], weights[f"{name}.conv.bias"]
            m.conv.weight.copy_(w)
            m.bn.running_mean.zero_()
            m.bn.running_var.fill_(1.0 - m.bn.eps)
            m.bn.weight.fill_(1.0)
            m.bn.bias.copy_(b)
            used.update({f"{name}.conv.weight", f"{name}.conv.bias"})
        state = model.state_dict()
        for key, value in weights.items():      # the head's plain convolutions (with bias, no BN)
            if key in used or key not in state:
                continue
            if state[key].shape != value.shape:
                raise SystemExit(f"{key}: shape {tuple(value.shape)} in the ONNX file, {tuple(state[key].shape)} in yolo11n")
            state[key].copy_(value)
            used.add(key)
    missing = [k for k in weights if k not in used and "." in k and not k.startswith("onnx::")]
    if missing:
        print(f"warning: ONNX initializers not placed: {missing[:8]}", file=sys.stderr)
    # 2. per-channel statistics of every convolution's output on training images
    images = torch.from_numpy(sample_images(args.images, args.imgsz))
    sums = {name: [0.0, 0.0, 0] for name in pairs}

    def hook(name):
        def record(_module, _inputs, output):
            x = output.detach().double()
            s = sums[name]
            s[0] = s[0] + x.sum(dim=(0, 2, 3))
            s[1] = s[1] + (x * x).sum(dim=(0, 2, 3))
            s[2] += x.numel() // x.shape[1]
        return record

    handles = [m.conv.register_forward_hook(hook(name)) for name, m in pairs.items()]
    model.eval()
    with torch.no_grad():
        for start in range(0, len(images), 16):
            model(images[start:start + 16])
    for h in handles:
        h.remove()
    # 3. re-parameterise: same output in eval mode, real statistics for training
    with torch.no_grad():
        for name, m in pairs.items():
            total, squares, count = sums[name]
            mean = total / count
            var = (squares / count - mean * mean).clamp(min=1e-6)
            m.bn.running_mean.copy_(mean.float())
            m.bn.running_var.copy_(var.float())
            m.bn.weight.copy_(torch.sqrt(var + m.bn.eps).float())
            m.bn.bias.add_(mean.float())
    # 4. check against onnxruntime
    session = ort.InferenceSession(str(args.onnx), providers=["CPUExecutionProvider"])
    probe = images[:4].numpy()
    want = np.concatenate([session.run(None, {session.get_inputs()[0].name: probe[i:i + 1]})[0] for i in range(len(probe))])
    with torch.no_grad():
        got = model(images[:4])[0].numpy()
    err = float(np.abs(got - want).max())
    print(f"max |checkpoint - onnx| on 4 images: {err:.2e} (outputs up to {float(np.abs(want).max()):.1f})")
    if err > 1e-2 * max(1.0, float(np.abs(want).max())):
        raise SystemExit("the rebuilt checkpoint does not reproduce the ONNX model")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    model.float()
    torch.save({"model": model, "ema": None, "updates": 0, "optimizer": None, "epoch": -1, "best_fitness": None,
                "train_args": {"imgsz": args.imgsz, "task": "detect"}, "version": ultralytics_version,
                "date": dt.datetime.now(dt.timezone.utc).isoformat(),
                "source": f"rebuilt from {args.onnx.name} by datasets.onnx_warm_start"}, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
