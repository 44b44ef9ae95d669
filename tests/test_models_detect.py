"""`compoundeye detect` on every kind of file OpenCV reads, and on files it cannot: each bad file
gets its own clear error line and the others still get their detections (exit code 1 if any failed)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from service.cli import app

REPO = Path(__file__).resolve().parents[1]
CAR_MODEL = REPO / "models" / "car-v1.onnx"
PARKING_IMAGE = (REPO.parent / "shared" / "data" / "parking_space_cctv" / "images" / "test"
                 / "parking_lot_1_mp4-114_jpg.rf.55431db44e270fe05f1d13ecb71c3333.jpg")


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    if PARKING_IMAGE.is_file():
        return cv2.imread(str(PARKING_IMAGE))
    # a generated scene when ../shared/data is absent: shapes on a gradient
    img = np.tile(np.linspace(40, 200, 854, dtype=np.uint8)[None, :, None], (480, 1, 3))
    cv2.rectangle(img, (100, 200), (260, 300), (30, 30, 160), -1)
    return img


def run(*args: str) -> tuple[int, list[dict]]:
    result = CliRunner().invoke(app, ["detect", "--json", "--model", str(CAR_MODEL), "--confidence", "0.1", *args])
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, lines


def test_every_format_and_size_opencv_reads(tmp_path, frame):
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    files = {
        "frame.png": frame,
        "frame.bmp": frame,
        "frame.tiff": frame,
        "frame.webp": frame,
        "grey.png": grey,
        "deep16.png": (frame.astype(np.uint16) * 257),
        "alpha.png": cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA),
        "tiny.png": frame[:1, :1],
        "strip.jpg": cv2.resize(frame, (2000, 40)),
        "big.jpg": cv2.resize(frame, (4000, 2250)),
    }
    for name, img in files.items():
        assert cv2.imwrite(str(tmp_path / name), img), name
    (tmp_path / "UPPER.JPG").write_bytes((tmp_path / "strip.jpg").read_bytes())
    code, lines = run(str(tmp_path))
    assert code == 0, lines
    by_name = {Path(r["image"]).name: r for r in lines}
    assert set(by_name) == set(files) | {"UPPER.JPG"}
    assert all("detections" in r and r["model"] == "car-v1" for r in lines)
    # lossless copies of the same pixels give the same detections
    reference = by_name["frame.png"]["detections"]
    for name in ("frame.bmp", "frame.tiff", "alpha.png", "deep16.png"):
        assert by_name[name]["detections"] == reference, name
    big = by_name["big.jpg"]["detections"]
    for det in big:
        x1, y1, x2, y2 = det["xyxy"]
        assert 0 <= x1 < x2 <= 4000 and 0 <= y1 < y2 <= 2250


def test_bad_files_get_an_error_line_and_the_others_their_detections(tmp_path, frame):
    good_a, good_b = tmp_path / "a_good.jpg", tmp_path / "z_good.png"
    cv2.imwrite(str(good_a), frame)
    cv2.imwrite(str(good_b), frame)
    (tmp_path / "b_empty.jpg").write_bytes(b"")
    (tmp_path / "c_text.jpg").write_text("this is not an image\n")
    jpeg = good_a.read_bytes()
    (tmp_path / "d_header_only.jpg").write_bytes(jpeg[:200])
    code, lines = run(str(good_a), str(tmp_path / "b_empty.jpg"), str(tmp_path / "c_text.jpg"),
                      str(tmp_path / "d_header_only.jpg"), str(tmp_path / "missing.jpg"), str(good_b))
    assert code == 1
    names = [Path(r["image"]).name for r in lines]
    assert names == ["a_good.jpg", "b_empty.jpg", "c_text.jpg", "d_header_only.jpg", "missing.jpg", "z_good.png"]
    errors = {Path(r["image"]).name: r.get("error") for r in lines}
    assert errors["b_empty.jpg"] == "empty file (0 bytes)"
    assert errors["c_text.jpg"] == "not a readable image"
    assert errors["d_header_only.jpg"] == "not a readable image"
    assert errors["missing.jpg"] == "file not found"
    assert errors["a_good.jpg"] is None and errors["z_good.png"] is None
    assert lines[0]["detections"] and lines[-1]["detections"]


def test_plain_output_names_the_bad_file(tmp_path, frame):
    cv2.imwrite(str(tmp_path / "ok.jpg"), frame)
    (tmp_path / "bad.jpg").write_bytes(b"")
    result = CliRunner().invoke(app, ["detect", "--model", str(CAR_MODEL), str(tmp_path)])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert any(line.startswith(f"{tmp_path / 'bad.jpg'}: ERROR empty file") for line in lines), lines
    assert any(line.startswith(f"{tmp_path / 'ok.jpg'}: ") and "ERROR" not in line for line in lines), lines


def test_bench_detector_without_a_card_or_a_file_is_one_error_line(tmp_path):
    lone = tmp_path / "lone.onnx"
    lone.write_bytes(CAR_MODEL.read_bytes())   # the model without its card beside it
    for model, says in ((lone, "model card not found"), (tmp_path / "missing.onnx", "model file not found")):
        result = CliRunner().invoke(app, ["bench", "detector", "--json", "--runs", "1", "--model", str(model)])
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert says in result.stderr and "Traceback" not in result.output


def test_bench_detector_ops_profiles_the_model_and_what_is_compared():
    result = CliRunner().invoke(app, ["bench", "detector", "--json", "--runs", "2", "--ops", "--model", str(CAR_MODEL)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for model in [report, *report["compare"]]:   # the teacher too, when ../shared/weights has it
        assert model["ops"] and {"op", "share", "ms_per_run", "nodes"} == set(model["ops"][0])
