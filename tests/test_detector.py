"""OnnxDetector: pure decoding on hand-made outputs, letterbox geometry, the real YOLOX-Nano model
on a real parking-lot image, the project's car model on the demo footage, and the error cases."""
from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from vision.detector import (Letterbox, ModelCard, OnnxDetector, card_path_for, decode_ultralytics, decode_yolox, fit,
                             letterbox, nms_per_class, yolox_grid)
from vision.errors import ModelError

REPO = Path(__file__).resolve().parents[1]
YOLOX_NANO = Path("/work/shared/weights/yolox_nano.onnx")
PARKING = Path("/work/shared/data/parking_space_cctv")
PARKING_STEM = "parking_lot_1_mp4-114_jpg.rf.55431db44e270fe05f1d13ecb71c3333"
CAR_MODEL = REPO / "models" / "car-v1.onnx"
DEFAULT_MODEL = REPO / "models" / "compound-v1-int8.onnx"   # dynamic height and width
DEMO_FOOTAGE = REPO / "samples" / "footage" / "fire_lane_demo.mp4"

# COCO-80 in the standard order. (The list in shared/weights/WEIGHTS.md lacks "dining table", id 60.)
COCO80 = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant stop_sign "
    "parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe backpack umbrella handbag "
    "tie suitcase frisbee skis snowboard sports_ball kite baseball_bat baseball_glove skateboard surfboard "
    "tennis_racket bottle wine_glass cup fork knife spoon bowl banana apple sandwich orange broccoli carrot "
    "hot_dog pizza donut cake chair couch potted_plant bed dining_table toilet tv laptop mouse remote "
    "keyboard cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear "
    "hair_drier toothbrush"
)
COCO80 = tuple(name.replace("_", " ") for name in COCO80.split())
assert len(COCO80) == 80


def write_card(path: Path, **fields) -> Path:
    card = {"name": "yolox-nano-coco", "format": "yolox", "input_size": [416, 416], "classes": list(COCO80),
            "attribution": "YOLOX-Nano, Megvii, Apache-2.0"}
    card.update(fields)
    path.write_text(yaml.safe_dump(card), encoding="utf-8")
    return path


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    area = lambda z: (z[:, 2] - z[:, 0]) * (z[:, 3] - z[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


@pytest.fixture(scope="module")
def yolox(tmp_path_factory) -> OnnxDetector:
    card = write_card(tmp_path_factory.mktemp("card") / "yolox_nano.card.yaml")
    return OnnxDetector(YOLOX_NANO, card_path=card, confidence=0.3)


# -- letterbox ----------------------------------------------------------------------------------
@pytest.mark.parametrize("centred", [True, False])
def test_letterbox_places_the_image_where_the_mapping_says(centred):
    image = np.full((360, 640, 3), 40, np.uint8)
    box = np.array([[100, 50, 300, 200]], np.float32)
    image[50:200, 100:300] = 255
    canvas, lb = letterbox(image, (320, 320), centred=centred)
    assert canvas.shape == (320, 320, 3)
    assert lb.scale == pytest.approx(0.5)
    assert (lb.pad_x, lb.pad_y) == ((0, 70) if centred else (0, 0))
    ys, xs = np.nonzero(canvas[:, :, 0] > 200)
    found = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    np.testing.assert_allclose(found, lb.to_input(box)[0], atol=1)
    # padding is 114: both bands for centred, only the bottom band for top-left
    assert canvas[0, 0, 0] == (114 if centred else 40)
    assert canvas[-1, -1, 0] == 114


@pytest.mark.parametrize("centred", [True, False])
@pytest.mark.parametrize("size", [(640, 360), (360, 640), (853, 480), (100, 100)])
def test_letterbox_round_trip_is_exact(centred, size):
    w, h = size
    _, lb = letterbox(np.zeros((h, w, 3), np.uint8), (416, 320), centred=centred)
    boxes = np.array([[0, 0, w, h], [w * 0.1, h * 0.2, w * 0.5, h * 0.9], [3.5, 7.25, 11.0, 12.0]], np.float32)
    np.testing.assert_allclose(lb.to_original(lb.to_input(boxes)), boxes, atol=1e-3)


@pytest.mark.parametrize("size, canvas", [((640, 360), (384, 224)), ((1920, 1080), (384, 224)), ((704, 576), (384, 320)),
                                          ((360, 640), (224, 384)), ((640, 640), (384, 384)), ((100, 30), (384, 128))])
def test_rect_letterbox_pads_only_to_the_stride(size, canvas):
    w, h = size
    image = np.full((h, w, 3), 200, np.uint8)
    out, lb = letterbox(image, (384, 384), centred=True, stride=32)
    assert (out.shape[1], out.shape[0]) == canvas == fit(w, h, (384, 384), 32)[2]
    assert canvas[0] % 32 == 0 and canvas[1] % 32 == 0
    boxes = np.array([[0, 0, w, h], [w * 0.1, h * 0.2, w * 0.5, h * 0.9]], np.float32)
    np.testing.assert_allclose(lb.to_original(lb.to_input(boxes)), boxes, atol=1e-3)
    inside = lb.to_input(boxes[:1])[0]   # the whole image lies inside the canvas, padding split evenly
    assert inside[0] >= 0 and inside[1] >= 0 and inside[2] <= canvas[0] + 0.5 and inside[3] <= canvas[1] + 0.5
    assert abs(inside[1] - (canvas[1] - inside[3])) <= 1


def test_to_original_clips_to_the_image():
    lb = Letterbox(scale=0.5, pad_x=0, pad_y=70, orig_size=(640, 360))
    out = lb.to_original(np.array([[-10, 60, 400, 300]], np.float32))
    np.testing.assert_allclose(out, [[0, 0, 640, 360]])


# -- pure decoding ------------------------------------------------------------------------------
def _ultralytics_output(lb: Letterbox, boxes_xyxy, scores) -> np.ndarray:
    """Build a (1, 4+nc, N) output from boxes in original pixels and an (N, nc) score table."""
    inp = lb.to_input(np.asarray(boxes_xyxy, np.float32))
    cxcywh = np.c_[(inp[:, :2] + inp[:, 2:]) / 2, inp[:, 2:] - inp[:, :2]]
    return np.concatenate([cxcywh, np.asarray(scores, np.float32)], axis=1).T[None]


def test_decode_ultralytics_filters_nms_and_maps_back():
    _, lb = letterbox(np.zeros((360, 640, 3), np.uint8), (320, 320), centred=True)
    boxes = [[100, 100, 200, 200],   # car, best
             [104, 102, 204, 198],   # car, same object, lower: suppressed
             [102, 100, 202, 200],   # bicycle on the same spot: another class, kept
             [400, 50, 500, 150],    # car, below confidence: dropped
             [600, 300, 700, 400]]   # car, sticking out of the image: clipped
    scores = [[0.9, 0.1], [0.8, 0.0], [0.1, 0.7], [0.2, 0.1], [0.6, 0.0]]
    output = _ultralytics_output(lb, boxes, scores)
    assert output.shape == (1, 6, 5)
    xyxy, conf, cls = decode_ultralytics(output, lb, num_classes=2, confidence=0.25, iou=0.5)
    np.testing.assert_allclose(conf, [0.9, 0.7, 0.6], atol=1e-6)
    np.testing.assert_array_equal(cls, [0, 1, 0])
    np.testing.assert_allclose(xyxy, [[100, 100, 200, 200], [102, 100, 202, 200], [600, 300, 640, 360]], atol=1e-3)
    # the transposed layout (1, N, 4+nc) decodes the same
    xyxy_t, conf_t, cls_t = decode_ultralytics(output.transpose(0, 2, 1), lb, num_classes=2)
    np.testing.assert_allclose(xyxy_t, xyxy)
    np.testing.assert_array_equal(cls_t, cls)


def test_decode_ultralytics_rejects_a_class_count_mismatch():
    lb = Letterbox(1.0, 0, 0, (320, 320))
    with pytest.raises(ValueError, match="4\\+3"):
        decode_ultralytics(np.zeros((1, 6, 2100), np.float32), lb, num_classes=3)


def test_yolox_grid_is_row_major_per_level():
    grid, stride = yolox_grid((64, 32))
    assert len(grid) == 8 * 4 + 4 * 2 + 2 * 1
    np.testing.assert_array_equal(grid[:9], [[x, 0] for x in range(8)] + [[0, 1]])
    np.testing.assert_array_equal(grid[32], [0, 0])  # first cell of stride 16
    assert stride[0, 0] == 8 and stride[32, 0] == 16 and stride[-1, 0] == 32


def test_decode_yolox_applies_grid_stride_exp_and_objectness():
    size = (64, 64)  # 8x8 + 4x4 + 2x2 = 84 anchor points
    out = np.zeros((1, 84, 5 + 2), np.float32)
    # anchor (x=3, y=2) of stride 8 (row-major index 2*8+3): centre (3.5+3, 0.5+2)*8, size e^1*8
    out[0, 19] = [0.5, 0.5, np.log(2.0), np.log(1.5), 0.9, 0.1, 0.8]
    # stride-16 anchor (1, 1) (index 64 + 5): objectness too low for the score to pass
    out[0, 69] = [0.0, 0.0, 0.0, 0.0, 0.2, 0.9, 0.0]
    lb = Letterbox(scale=0.5, pad_x=0, pad_y=0, orig_size=(128, 128))
    xyxy, conf, cls = decode_yolox(out, lb, num_classes=2, input_size=size, confidence=0.25)
    cx, cy, w, h = 3.5 * 8, 2.5 * 8, 16.0, 12.0
    np.testing.assert_allclose(xyxy, [[(cx - w / 2) * 2, (cy - h / 2) * 2, (cx + w / 2) * 2, (cy + h / 2) * 2]],
                               atol=1e-4)
    np.testing.assert_allclose(conf, [0.72], atol=1e-6)
    np.testing.assert_array_equal(cls, [1])


def test_nms_is_per_class():
    xyxy = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10]], np.float32)
    keep = nms_per_class(xyxy, np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 0, 1]), iou=0.5)
    assert keep.tolist() == [0, 2]


def test_nms_drops_a_box_inside_a_better_one_of_its_class_only_when_asked():
    # a scooter and its lower half (boxes seen from the int8 model in the lift clip): IoU 0.46
    xyxy = np.array([[239, 152, 437, 324], [260, 216, 407, 323], [262, 220, 400, 320], [0, 0, 50, 50]], np.float32)
    scores = np.array([0.34, 0.36, 0.9, 0.5], np.float32)
    classes = np.array([2, 2, 3, 2])
    assert nms_per_class(xyxy, scores, classes, iou=0.5).tolist() == [2, 3, 1, 0]
    # the other class's box inside it and the separate box stay; of the two scooter boxes, the better one
    assert nms_per_class(xyxy, scores, classes, iou=0.5, contained=0.9).tolist() == [2, 3, 1]
    # half inside is not "contained"
    half = np.array([[0, 0, 100, 100], [50, 0, 150, 100]], np.float32)
    assert nms_per_class(half, np.array([0.9, 0.8]), np.array([0, 0]), iou=0.5, contained=0.9).tolist() == [0, 1]


# -- the real YOLOX-Nano model ------------------------------------------------------------------
def test_yolox_nano_finds_the_parked_cars(yolox):
    # read in place from the shared data set; nothing is copied into the repository
    image = cv2.imread(str(PARKING / "images" / "test" / f"{PARKING_STEM}.jpg"))
    assert image is not None
    h, w = image.shape[:2]
    dets = yolox.detect(image)
    assert yolox.model_version == "yolox-nano-coco" and len(yolox.class_names) == 80
    cars = dets.of_classes(["car"])
    assert len(cars) >= 8
    assert np.all(cars.xyxy[:, [0, 1]] >= 0) and np.all(cars.xyxy[:, 2] <= w) and np.all(cars.xyxy[:, 3] <= h)
    assert np.all(cars.xyxy[:, 2] > cars.xyxy[:, 0]) and np.all(cars.xyxy[:, 3] > cars.xyxy[:, 1])
    assert np.all(cars.confidence >= 0.3)
    # most car boxes sit on a parking space that the data set labels "occupied" (class 1)
    labels = np.loadtxt(PARKING / "labels" / "test" / f"{PARKING_STEM}.txt", ndmin=2)
    occupied = labels[labels[:, 0] == 1][:, 1:] * [w, h, w, h]
    truth = np.c_[occupied[:, :2] - occupied[:, 2:] / 2, occupied[:, :2] + occupied[:, 2:] / 2]
    matched = box_iou(cars.xyxy, truth).max(axis=1) >= 0.4
    assert matched.mean() >= 0.8


def test_detect_is_thread_safe_and_batch_matches_single(yolox):
    image = cv2.imread(str(PARKING / "images" / "test" / f"{PARKING_STEM}.jpg"))
    expected = yolox.detect(image)
    results: list = [None] * 4

    def work(i: int) -> None:
        results[i] = [yolox.detect(image) for _ in range(3)]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for per_thread in results:
        for dets in per_thread:
            np.testing.assert_allclose(dets.xyxy, expected.xyxy, atol=1e-3)
    batch = yolox.detect_batch([image, image[:, ::-1].copy()])
    assert len(batch) == 2
    np.testing.assert_allclose(batch[0].xyxy, expected.xyxy, atol=1e-3)


def test_dynamic_model_runs_a_wide_frame_without_the_square_padding_and_finds_the_same_cars():
    """The default int8 model has dynamic height and width: a 16:9 frame runs at 384x224, and what it
    finds there matches what the full 384x384 square (the same frame padded to a square first) finds."""
    if not PARKING.exists():
        pytest.skip("../shared/data is absent")
    detector = OnnxDetector(DEFAULT_MODEL, confidence=0.3)
    assert detector.stride == 32 and detector.input_size == (384, 384)
    image = cv2.imread(str(PARKING / "images" / "test" / f"{PARKING_STEM}.jpg"))[:480, :854]
    wide = np.ascontiguousarray(image[:, :854][:480])
    assert detector.input_shape(wide) == (384, 224)
    tensor, _ = detector.preprocess(wide)
    assert tensor.shape == (1, 3, 224, 384)
    square = np.full((854, 854, 3), 114, np.uint8)
    square[187:187 + 480] = wide          # the square letterbox's own centring
    assert detector.input_shape(square) == (384, 384)
    rect, full = detector.detect(wide), detector.detect(square)
    full_xyxy = full.xyxy - np.array([0, 187, 0, 187], np.float32)
    assert len(rect) >= 10 and abs(len(rect) - len(full)) <= max(2, len(full) // 10)
    best = box_iou(rect.xyxy, full_xyxy).max(axis=1)
    # int8 scores near the threshold differ between the two canvases; a wrong mapping back (the padding)
    # would put every box ~80 px off, IoU near 0
    assert np.median(best) > 0.85 and np.mean(best > 0.5) >= 0.9, best
    # a batch of a wide and a square frame shares the larger tensor (384x384: the wide frame is then
    # placed as in the padded square); each comes back in its own pixels
    batch = detector.detect_batch([wide, square])
    assert len(batch) == 2
    assert np.median(box_iou(batch[0].xyxy, full_xyxy).max(axis=1)) > 0.85
    np.testing.assert_allclose(batch[1].xyxy, full.xyxy, atol=0.5)
    assert np.all(batch[0].xyxy[:, 3] <= 480) and np.all(batch[0].xyxy[:, 2] <= 854)


def test_detect_rejects_a_non_image(yolox):
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        yolox.detect(np.zeros((10, 10), np.uint8))


# -- the project's car model on the demo footage ------------------------------------------------
def test_car_model_on_demo_footage():
    if not CAR_MODEL.exists() or not card_path_for(CAR_MODEL).exists():
        pytest.skip(f"{CAR_MODEL.relative_to(REPO)} and its card are not committed yet")
    if not DEMO_FOOTAGE.exists():
        pytest.skip(f"{DEMO_FOOTAGE.relative_to(REPO)} has not been built yet")
    from vision.sources import FileSource

    detector = OnnxDetector(CAR_MODEL)
    assert "car" in detector.class_names
    cars = 0
    with FileSource(DEMO_FOOTAGE, "demo", sample_fps=1, start_time_s=0.0) as source:
        for i, frame in enumerate(source):
            dets = detector.detect(frame.image)
            assert dets.class_names == detector.class_names
            assert np.all(dets.xyxy[:, [0, 1]] >= 0)
            assert np.all(dets.xyxy[:, 2] <= frame.width) and np.all(dets.xyxy[:, 3] <= frame.height)
            cars += len(dets.of_classes(["car"]))
            if i == 9:
                break
    assert cars >= 1


# -- error cases --------------------------------------------------------------------------------
def test_missing_model_names_the_file(tmp_path):
    with pytest.raises(ModelError, match="absent.onnx"):
        OnnxDetector(tmp_path / "absent.onnx")


def test_missing_card_names_the_card(tmp_path):
    model = tmp_path / "lonely.onnx"
    model.write_bytes(YOLOX_NANO.read_bytes())
    with pytest.raises(ModelError, match="lonely.card.yaml"):
        OnnxDetector(model)


def test_card_next_to_the_model_is_found(tmp_path):
    model = tmp_path / "nano.onnx"
    model.write_bytes(YOLOX_NANO.read_bytes())
    write_card(tmp_path / "nano.card.yaml", name="nano-local")
    detector = OnnxDetector(model)
    assert detector.model_version == "nano-local"
    assert detector.card.model_extra["attribution"].startswith("YOLOX-Nano")


def test_card_class_count_mismatch_names_the_model(tmp_path):
    card = write_card(tmp_path / "short.card.yaml", classes=list(COCO80[:79]))
    with pytest.raises(ModelError, match="yolox_nano.onnx") as info:
        OnnxDetector(YOLOX_NANO, card_path=card)
    assert "79 classes" in str(info.value)


def test_card_input_size_mismatch(tmp_path):
    card = write_card(tmp_path / "size.card.yaml", input_size=[320, 320])
    with pytest.raises(ModelError, match="416x416"):
        OnnxDetector(YOLOX_NANO, card_path=card)


def test_invalid_card_names_the_card_and_key(tmp_path):
    card = write_card(tmp_path / "bad.card.yaml", format="darknet")
    with pytest.raises(ModelError, match="bad.card.yaml.*format"):
        OnnxDetector(YOLOX_NANO, card_path=card)
    with pytest.raises(ModelError, match="bad.card.yaml"):
        ModelCard.load(card)


def test_corrupt_model_names_the_file(tmp_path):
    model = tmp_path / "garbage.onnx"
    model.write_bytes(b"\x08\x07not an onnx model" * 100)
    write_card(tmp_path / "garbage.card.yaml")
    with pytest.raises(ModelError, match="garbage.onnx") as info:
        OnnxDetector(model)
    assert info.value.__cause__ is not None


# -- bench helpers (vision/bench.py) ------------------------------------------------------------
def test_bench_detector_reports_every_stage(tmp_path):
    from vision.bench import bench_detector

    card = write_card(tmp_path / "nano.card.yaml")
    report = bench_detector(YOLOX_NANO, runs=3, warmup=1, threads=2, card_path=card)
    assert report["model"] == "yolox-nano-coco" and report["input_size"] == [416, 416]
    assert report["frame_size"] == [640, 360] and report["provider"] == "CPUExecutionProvider"
    assert set(report["ms"]) == {"preprocess", "inference", "postprocess", "total"}
    for stage in report["ms"].values():
        assert set(stage) == {"mean", "p50", "p90", "min"} and stage["min"] <= stage["p50"] <= stage["p90"]
    assert report["cpu_count"] >= 1 and report["onnxruntime"]


def test_op_profile_says_where_the_int8_models_time_goes():
    """``bench detector --ops``: onnxruntime's profiler by operator type of the optimised graph; the int8
    model's convolutions run as QLinearConv, and the shares add up to the whole."""
    from vision.bench import bench_detector, op_profile

    int8 = DEFAULT_MODEL
    ops = op_profile(int8, runs=3, warmup=1)
    by_op = {row["op"]: row for row in ops}
    # convolutions run as int8; the head's decoding stays float (the DFL's one Conv, DequantizeLinear before it)
    assert by_op["Conv"]["nodes"] == 1 and "DequantizeLinear" in by_op
    assert by_op["QLinearConv"]["nodes"] >= 60 and by_op["QLinearConv"]["share"] > 0.2
    assert sum(row["share"] for row in ops) == pytest.approx(1.0, abs=0.01)
    assert [row["ms_per_run"] for row in ops] == sorted((row["ms_per_run"] for row in ops), reverse=True)
    report = bench_detector(int8, runs=2, warmup=1, compare=(), ops=True)
    assert report["ops"][0]["op"] and "ops" not in bench_detector(int8, runs=1, warmup=0, compare=())


def test_detect_images_reports_bad_files_and_keeps_going(tmp_path, yolox):
    from vision.bench import detect_images

    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("not an image")
    good = PARKING / "images" / "test" / f"{PARKING_STEM}.jpg"
    results = list(detect_images([folder, good, tmp_path / "missing.png"], yolox))
    assert [Path(r["image"]).name for r in results] == ["broken.jpg", good.name, "missing.png"]
    assert "error" in results[0] and "error" in results[2]
    found = results[1]
    assert found["model"] == "yolox-nano-coco"
    assert sum(d["class"] == "car" for d in found["detections"]) >= 8
    first = found["detections"][0]
    assert len(first["xyxy"]) == 4 and first["confidence"] == round(first["confidence"], 4)
