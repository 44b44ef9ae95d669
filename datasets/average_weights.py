"""Average the weights of several checkpoints of one training lineage (a "model soup" of checkpoints
along one trajectory, e.g. the previous run's weights and this run's best), for export and evaluation.

    .venv-train/bin/python -m datasets.average_weights var/runs/compound-v1/warm.pt \\
        var/runs/compound-v1/r6/weights/best.pt --out var/runs/compound-v1/soup.pt

Each checkpoint's EMA weights are used when it has them (what ultralytics validates and exports), else its
model. Floating-point tensors are averaged (``--weights`` sets the mix, default equal); integer buffers
(BatchNorm's batch counter) are taken from the first. The checkpoints must have the same architecture;
averaging only makes sense for weights that started from one another (run N+1 from run N's export), not
for models trained apart. The result is a checkpoint that ``train_merged --init`` and ultralytics'
export take; it says nothing of its accuracy: evaluate it (``compoundeye evaluate``) before deploying.
"""
from __future__ import annotations

import argparse
import copy
import datetime as dt
from pathlib import Path


def network(checkpoint: dict):
    """The network a checkpoint's user sees: its EMA when it has one, else its model (as float32)."""
    model = checkpoint.get("ema") or checkpoint.get("model")
    if model is None:
        raise SystemExit("checkpoint holds neither 'ema' nor 'model'")
    return model.float()


def average(paths: list[Path], weights: list[float] | None = None) -> dict:
    """A checkpoint whose model is the weighted average of ``paths``' networks."""
    import torch

    weights = weights or [1.0] * len(paths)
    if len(weights) != len(paths) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise SystemExit("--weights needs one non-negative number per checkpoint, not all zero")
    total = sum(weights)
    checkpoints = [torch.load(path, map_location="cpu", weights_only=False) for path in paths]
    states = [network(c).state_dict() for c in checkpoints]
    names = set(states[0])
    for path, state in zip(paths[1:], states[1:]):
        if set(state) != names or any(state[n].shape != states[0][n].shape for n in names):
            raise SystemExit(f"{path} does not have the architecture of {paths[0]}")
    averaged = {}
    for name, first in states[0].items():
        if first.is_floating_point():
            averaged[name] = sum(w * s[name].float() for w, s in zip(weights, states)) / total
        else:
            averaged[name] = first.clone()
    model = copy.deepcopy(network(checkpoints[0]))
    model.load_state_dict(averaged)
    first = checkpoints[0]
    return {"model": model, "ema": None, "updates": 0, "optimizer": None, "epoch": -1, "best_fitness": None,
            "train_args": first.get("train_args", {}), "version": first.get("version"),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(),
            "source": "average of " + ", ".join(f"{p} ({w / total:.2f})" for p, w in zip(paths, weights))}


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path, help="two or more .pt files of one lineage")
    parser.add_argument("--weights", type=float, nargs="+", default=None, help="one per checkpoint (default equal)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if len(args.checkpoints) < 2:
        parser.error("give at least two checkpoints")
    for path in args.checkpoints:
        if not path.is_file():
            parser.error(f"no such checkpoint: {path}")
    soup = average(args.checkpoints, args.weights)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    partial = args.out.with_name(args.out.name + ".partial")
    torch.save(soup, partial)
    partial.replace(args.out)
    print(f"wrote {args.out}: {soup['source']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
