"""The activation of a YOLO11 model's convolutions: SiLU (ultralytics' default) or ReLU.

Why ReLU: in the static int8 graph onnxruntime folds a ReLU into the convolution's output range
(QLinearConv), while a SiLU stays two element-wise quantized operators (QLinearSigmoid and
QLinearMul) that took 24 % of the deployed model's time on an AVX2 host (docs/models.md). A model
keeps its activation through the trainer's rebuild only if its ``yaml`` says so (ultralytics'
``activation`` key, read by ``parse_model``), so :func:`set_activation` changes both the modules and
the ``yaml``.

    .venv-train/bin/python -m datasets.activation relu var/runs/compound-v1/warm.pt var/runs/compound-v1/warm-relu.pt
"""
from __future__ import annotations

import argparse
from pathlib import Path

ACTIVATIONS = {"silu": "nn.SiLU()", "relu": "nn.ReLU()"}


def activation_of_onnx(graph) -> str:
    """``"relu"`` when an exported graph's convolutions are followed by Relu nodes, else ``"silu"``."""
    return "relu" if any(node.op_type == "Relu" for node in graph.node) else "silu"


def set_activation(model, name: str) -> int:
    """Swap the activation of every ``Conv`` of an ultralytics ``model`` (in place) for ``name`` and
    record it in ``model.yaml``. Convolutions without an activation (``act=False``) are left alone.
    Returns the number of modules swapped."""
    import torch.nn as nn
    from ultralytics.nn.modules import Conv

    if name not in ACTIVATIONS:
        raise ValueError(f"activation {name!r}: choose one of {', '.join(ACTIVATIONS)}")
    kind = {"silu": nn.SiLU, "relu": nn.ReLU}[name]
    swapped = 0
    for module in model.modules():
        if isinstance(module, Conv) and isinstance(module.act, (nn.SiLU, nn.ReLU)):
            if not isinstance(module.act, kind):
                module.act = kind()
                swapped += 1
    model.yaml = dict(model.yaml, activation=ACTIVATIONS[name])
    return swapped


def convert_checkpoint(src: Path, out: Path, name: str) -> int:
    """Write ``out``: the checkpoint ``src`` with its model's activation set to ``name`` (the EMA and
    optimizer state are dropped, as for any new run's starting weights). Returns the modules swapped."""
    import torch

    from datasets.average_weights import network

    ckpt = torch.load(str(src), map_location="cpu", weights_only=False)
    model = network(ckpt)
    swapped = set_activation(model, name)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    torch.save(dict(ckpt, model=model, ema=None, optimizer=None, updates=0, epoch=-1, best_fitness=None,
                    source=f"{ckpt.get('source', src.name)}; activation set to {name}"), tmp)
    tmp.replace(out)
    return swapped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("activation", choices=sorted(ACTIVATIONS))
    parser.add_argument("src", type=Path, help="an ultralytics checkpoint (.pt)")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    from datasets.train_merged import offline_environment
    offline_environment()
    swapped = convert_checkpoint(args.src, args.out, args.activation)
    print(f"wrote {args.out}: {swapped} activations set to {args.activation}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
