"""datasets/onnx_graph.py: the export-time rewrite keeps a model's outputs and is in the committed model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from datasets.onnx_graph import rewrite_file, softmax_on_last_axis

REPO = Path(__file__).resolve().parents[1]


def _softmax_model(axis: int, shape=(1, 16, 4, 7)) -> onnx.ModelProto:
    dims = ["batch", shape[1], shape[2], "anchors"]
    x, y, z = (helper.make_tensor_value_info(name, TensorProto.FLOAT, dims) for name in "xyz")
    graph = helper.make_graph([helper.make_node("Softmax", ["x"], ["y"], name="dfl", axis=axis),
                               helper.make_node("Softmax", ["x"], ["z"], name="last", axis=-1)],
                              "g", [x], [y, z])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_softmax_on_a_middle_axis_moves_to_the_last_with_the_same_outputs():
    x = np.random.default_rng(0).normal(size=(2, 16, 4, 7)).astype(np.float32) * 3
    for axis in (1, 2, -3):
        model = _softmax_model(axis)
        before = _run(model, x)
        assert softmax_on_last_axis(model) == 1          # the last-axis one is left alone
        ops = [(n.op_type, [helper.get_attribute_value(a) for a in n.attribute]) for n in model.graph.node]
        assert ("Softmax", [-1]) in ops and all(a == [-1] for op, a in ops if op == "Softmax")
        after = _run(model, x)
        for b, a in zip(before, after):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
        assert softmax_on_last_axis(model) == 0          # idempotent


def test_rewrite_file_replaces_the_file_only_when_something_changed(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_softmax_model(1), str(path))
    assert rewrite_file(path) == 1 and rewrite_file(path) == 0
    assert not list(tmp_path.glob(".*partial"))


@pytest.mark.parametrize("name", ["compound-v1-int8.onnx", "car-v1-int8.onnx"])   # the deployed models
def test_committed_deployed_models_have_no_softmax_on_a_middle_axis(name):
    model = onnx.load(str(REPO / "models" / name))
    assert softmax_on_last_axis(model) == 0
