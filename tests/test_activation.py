"""datasets/activation.py: an exported graph's activation is read back, so a ReLU model can be rebuilt
as a checkpoint (datasets.onnx_warm_start) and trained on as a ReLU model."""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from datasets.activation import ACTIVATIONS, activation_of_onnx

REPO = Path(__file__).resolve().parents[1]


def _conv_graph(activation: str) -> onnx.GraphProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 1, 1], [0.1] * 12)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"])]
    if activation == "relu":
        nodes.append(helper.make_node("Relu", ["c"], ["y"]))
    else:   # SiLU as the exporter writes it: x * sigmoid(x)
        nodes += [helper.make_node("Sigmoid", ["c"], ["s"]), helper.make_node("Mul", ["c", "s"], ["y"])]
    return helper.make_graph(nodes, "g", [x], [y], [w])


@pytest.mark.parametrize("activation", ["relu", "silu"])
def test_the_activation_of_an_exported_graph_is_read_back(activation):
    assert activation_of_onnx(_conv_graph(activation)) == activation


def test_the_committed_model_has_the_activation_its_card_states():
    import yaml

    card = yaml.safe_load((REPO / "models" / "compound-v1.card.yaml").read_text())
    stated = card["training"].get("activation", "silu")     # cards before datasets.activation: SiLU, the default
    graph = onnx.load(str(REPO / "models" / "compound-v1.onnx")).graph
    assert stated in ACTIVATIONS and activation_of_onnx(graph) == stated


def test_train_merged_refuses_an_activation_without_weights_to_convert(capsys):
    from datasets.train_merged import main

    with pytest.raises(SystemExit) as info:
        main(["--name", "never-made", "--activation", "relu"])
    assert info.value.code == 2 and "give --init" in capsys.readouterr().err
    assert not (REPO / "var" / "runs" / "compound-v1" / "never-made").exists()
