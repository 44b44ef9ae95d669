"""Regression: the committed models (the float compound-v1 and the deployed int8 compound-v1-int8), on a fixed real subset of ../shared/data (the test splits
of the four sets: 12 garbage, 21 parking-lot, 41 modes-of-transport and 3 parcel images, never used in
training and never pseudo-labelled), must reproduce the AP written in its model card within a small
tolerance. A retrained or re-exported model must come with a new card (python -m datasets.make_card;
python -m datasets.quantize_int8 for the int8 one)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from service.cli_models import AP_CONFIDENCE, AP_NMS_IOU, evaluate_models, load_eval_sets
from vision.detector import OnnxDetector

REPO = Path(__file__).resolve().parents[1]
MODELS = ["compound-v1", "compound-v1-int8"]
DATA = REPO.parent / "shared" / "data"
TOLERANCE = 0.02   # AP points; the same model and images give the same figure up to onnxruntime numerics


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data (the real test images) is absent on this machine")
@pytest.mark.parametrize("name", MODELS)
def test_committed_model_keeps_the_ap_in_its_card(name):
    card = yaml.safe_load((REPO / "models" / f"{name}.card.yaml").read_text())
    assert card["name"] == name
    expected = card["metrics"]["test"]
    detector = OnnxDetector(REPO / "models" / f"{name}.onnx", confidence=AP_CONFIDENCE, iou=AP_NMS_IOU)
    report = evaluate_models([detector], load_eval_sets(split="test"))
    checked = 0
    for set_name, entry in report["sets"].items():
        assert entry["images"] == expected[set_name]["images"], set_name
        for cls, row in entry["classes"].items():
            want = expected[set_name][cls][card["name"]]
            got = row[card["name"]]
            for key in ("ap50", "ap50_95"):
                assert got[key] == pytest.approx(want[key], abs=TOLERANCE), (set_name, cls, key, got, want)
            checked += 1
    assert checked >= 5   # garbage, parking car, modes car/two_wheeler/truck_or_bus, box_or_parcel
