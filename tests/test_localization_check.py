"""datasets/localization_check.py: AP of one class at several match IoUs (how much of a gap is loose boxes)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets.localization_check import average_precision, check, main
from service.cli_models import evaluate_models, load_eval_sets
from vision.detector import OnnxDetector

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
MODEL = REPO / "models" / "compound-v1-int8.onnx"


def test_average_precision_by_hand():
    truths = [np.array([[0, 0, 10, 10]], float), np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)]
    exact = [(0.9, 0, np.array([0, 0, 10, 10.])), (0.8, 1, np.array([0, 0, 10, 10.])),
             (0.7, 1, np.array([20, 20, 30, 30.]))]
    assert average_precision(exact, truths, 0.5) == (1.0, 1.0)
    # the same boxes shifted by 4 px: IoU 6*10/(2*100-60) = 0.43, a hit at 0.3 and a miss at 0.5
    shifted = [(s, i, b + np.array([4, 0, 4, 0])) for s, i, b in exact]
    assert average_precision(shifted, truths, 0.3) == (1.0, 1.0)
    assert average_precision(shifted, truths, 0.5) == (0.0, 0.0)
    # a false detection ranked first: precision 0, 1/2, 2/3, 3/4 at recall 0, 1/3, 2/3, 1; the envelope
    # (the best precision at that recall or beyond) is 3/4 everywhere
    with_false = [(0.95, 0, np.array([50, 50, 60, 60.]))] + exact
    assert average_precision(with_false, truths, 0.5) == (pytest.approx(0.75), 1.0)
    # ranked last instead, after full recall, it costs nothing
    assert average_precision(exact + [(0.1, 0, np.array([50, 50, 60, 60.]))], truths, 0.5) == (1.0, 1.0)
    # one truth matched once: a duplicate of the same box is a false detection
    duplicate = exact + [(0.6, 0, np.array([0, 0, 10, 10.]))]
    assert average_precision(duplicate, truths, 0.5) == (1.0, 1.0)   # ranked last: after full recall
    # ranked first, exact[0] becomes the duplicate: precision 1, 1/2, 2/3, 3/4 at recall 1/3, 1/3, 2/3, 1, so
    # 1 at the 34 recall points 0..0.33 and 3/4 at the other 67
    ranked_first = [(0.99, 0, np.array([0, 0, 10, 10.]))] + exact
    assert average_precision(ranked_first, truths, 0.5)[0] == pytest.approx((34 + 67 * 0.75) / 101)
    assert average_precision([], truths, 0.5) == (0.0, 0.0)
    assert average_precision(exact, [np.zeros((0, 4))], 0.5) == (0.0, 0.0)


@pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent")
def test_at_iou_half_it_agrees_with_evaluate_and_looser_matches_score_higher(capsys):
    result = check(str(MODEL), "modes_of_transport", "two_wheeler")
    assert result["images"] == 80 and result["gt_boxes"] == 119
    aps = [row["ap"] for row in result["by_match_iou"].values()]
    assert aps == sorted(aps, reverse=True) and aps[0] > aps[-1]   # 0.1, 0.3, 0.5, 0.7: never higher when stricter
    sets = [s for s in load_eval_sets(split="val") if s["name"] == "modes_of_transport"]
    report = evaluate_models([OnnxDetector(MODEL, confidence=0.001, iou=0.6)], sets)
    ap50 = report["sets"]["modes_of_transport"]["classes"]["two_wheeler"]["compound-v1-int8"]["ap50"]
    assert result["by_match_iou"]["0.5"]["ap"] == pytest.approx(ap50, abs=0.01)

    with pytest.raises(SystemExit, match="no class 'ship'"):
        check(str(MODEL), "modes_of_transport", "ship")
    with pytest.raises(SystemExit, match="no evaluation set"):
        check(str(MODEL), "elevator_ebikes", "two_wheeler")
    assert main(["--model", str(MODEL), "--set", "roboflow_packages", "--cls", "box_or_parcel"]) == 0
    assert "match IoU >= 0.5" in capsys.readouterr().out
