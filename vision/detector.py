"""ONNX object detector runtime (onnxruntime) for ultralytics YOLO and YOLOX exports.

A model is an ``.onnx`` file plus a model card (``<model>.card.yaml`` next to it) that says what the
model is: its name (the model version stamped on every violation), its output format, its input
size and its class names. Preprocessing and decoding follow the format:

- ``ultralytics`` (YOLOv8/YOLO11 export): RGB, /255, letterbox centred with 114, output
  ``(1, 4+nc, N)`` of cx, cy, w, h in input pixels plus sigmoid class scores (no objectness).
- ``yolox``: BGR 0..255, letterbox top-left with 114, output ``(1, N, 5+nc)`` raw grid offsets
  decoded with strides 8/16/32; score = objectness × class score.

Decoding functions are pure (arrays in, arrays out) so they are tested on hand-made outputs.
onnxruntime errors are translated into :class:`~vision.errors.ModelError` naming the file.
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import cv2
import numpy as np
import onnxruntime as ort
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vision.errors import ModelError
from vision.types import Detections

log = logging.getLogger(__name__)

PAD_VALUE = 114
#: the largest stride of a YOLO11 head: a dynamic-shape input's height and width are multiples of it
RECT_STRIDE = 32
YOLOX_STRIDES = (8, 16, 32)
# Candidates kept before NMS and boxes kept after it: bounds the work on a cluttered frame
# (and on a model that fires everywhere) without affecting any realistic scene.
MAX_CANDIDATES = 3000
MAX_DETECTIONS = 300


class ModelCard(BaseModel):
    """What a model is, read from its ``.card.yaml``. Unknown keys (training, metrics,
    attribution, ...) are kept as-is in ``model_extra``."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1)
    format: Literal["ultralytics", "yolox"]
    input_size: tuple[int, int] = Field(description="model input (width, height) in pixels")
    classes: tuple[str, ...] = Field(min_length=1)

    @field_validator("input_size")
    @classmethod
    def _positive(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] < 32 or value[1] < 32:
            raise ValueError(f"input_size must be at least 32x32, got {value}")
        return value

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ModelCard":
        """Read and validate a card file; raises ModelError naming the file."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ModelError(str(path), f"cannot read model card: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ModelError(str(path), f"model card is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ModelError(str(path), "model card must be a mapping of keys")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(top)'}: {e['msg']}" for e in exc.errors())
            raise ModelError(str(path), f"invalid model card: {problems}") from exc


def card_path_for(model_path: str | os.PathLike) -> Path:
    """The card next to a model: ``car-v1.onnx`` → ``car-v1.card.yaml`` (``car-v1.onnx.card.yaml``
    is accepted too). Returns the first that exists, else the first form."""
    model_path = Path(model_path)
    candidates = [model_path.with_suffix(".card.yaml"), model_path.with_name(model_path.name + ".card.yaml")]
    return next((c for c in candidates if c.is_file()), candidates[0])


# -- letterbox ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Letterbox:
    """How an image was placed in the model input: ``input = original * scale + (pad_x, pad_y)``.

    ``orig_size`` is the original (width, height); boxes are clipped to it on the way back.
    """

    scale: float
    pad_x: float
    pad_y: float
    orig_size: tuple[int, int]

    def to_input(self, xyxy: np.ndarray) -> np.ndarray:
        """(N, 4) boxes from original pixels to model-input pixels."""
        xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        return xyxy * self.scale + np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)

    def to_original(self, xyxy: np.ndarray) -> np.ndarray:
        """(N, 4) boxes from model-input pixels back to original pixels, clipped to the image."""
        xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        out = (xyxy - np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float32)) / self.scale
        w, h = self.orig_size
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
        return out


def fit(w: int, h: int, input_size: tuple[int, int], stride: int | None = None
        ) -> tuple[float, tuple[int, int], tuple[int, int]]:
    """``(scale, (new_w, new_h), (canvas_w, canvas_h))`` of a ``w`` x ``h`` image letterboxed into
    ``input_size``; with ``stride`` the canvas shrinks to the resized image rounded up to the stride.

    >>> fit(640, 360, (384, 384), stride=32)
    (0.6, (384, 216), (384, 224))
    """
    in_w, in_h = input_size
    scale = min(in_w / w, in_h / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if stride:
        in_w, in_h = min(in_w, -(-new_w // stride) * stride), min(in_h, -(-new_h // stride) * stride)
    return scale, (new_w, new_h), (in_w, in_h)


def letterbox(image: np.ndarray, input_size: tuple[int, int], centred: bool,
              stride: int | None = None) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` (HxWx3) into ``input_size`` (width, height) keeping its aspect ratio and pad
    with 114. ``centred=True`` splits the padding on both sides (ultralytics); ``False`` puts the image
    at the top-left (YOLOX). Returns the padded image and the :class:`Letterbox` to map boxes back.

    With ``stride`` (a model whose input height and width are dynamic), the canvas is only as large
    as the resized image rounded up to a multiple of ``stride`` on each side (ultralytics'
    ``LetterBox(auto=True)``, which its own validation uses): a 640x360 frame into 384x384 becomes
    384x224 instead of 384x384, and 42 % of the network's work on grey padding is not done."""
    h, w = image.shape[:2]
    scale, (new_w, new_h), (in_w, in_h) = fit(w, h, input_size, stride)
    resized = image if (new_w, new_h) == (w, h) else cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad_x, pad_y = ((in_w - new_w) // 2, (in_h - new_h) // 2) if centred else (0, 0)
    canvas = np.full((in_h, in_w, 3), PAD_VALUE, np.uint8)
    canvas[pad_y:pad_y + new_h, pad_x:pad_x + new_w] = resized
    # Map with the scale actually applied on each axis's placement; the tiny rounding of new_w/new_h
    # (< 1 input pixel) is below what any detector resolves.
    return canvas, Letterbox(scale, float(pad_x), float(pad_y), (w, h))


# -- decoding (pure) ----------------------------------------------------------------------------
#: Classes a model may give one object as (an e-bike boxed as ``bicycle`` and as ``two_wheeler``, a
#: van as ``car`` and as ``truck_or_bus``): the suppression of duplicate boxes treats each group as
#: one class, so one object does not become two tracks and two violations.
CONFUSABLE = (("bicycle", "two_wheeler"), ("car", "truck_or_bus"))


def class_groups(class_names: Sequence[str], confusable: Sequence[Sequence[str]] = CONFUSABLE) -> np.ndarray:
    """For each class index, the index its duplicates are suppressed under: its own, or the first
    class of its confusable group present in ``class_names``.

    >>> class_groups(["person", "bicycle", "two_wheeler", "car", "truck_or_bus"]).tolist()
    [0, 1, 1, 3, 3]
    """
    groups = np.arange(len(class_names), dtype=np.int32)
    index = {name: i for i, name in enumerate(class_names)}
    for group in confusable:
        members = [index[name] for name in group if name in index]
        for member in members[1:]:
            groups[member] = members[0]
    return groups


def nms_per_class(xyxy: np.ndarray, scores: np.ndarray, class_id: np.ndarray, iou: float,
                  max_detections: int = MAX_DETECTIONS, contained: float | None = None) -> np.ndarray:
    """Greedy NMS within each class. Returns the kept indices, best score first.

    With ``contained``, a box is also dropped when that share of the *smaller* of the two boxes lies
    inside a better-scored box of its class (intersection over the smaller area): a model that boxes
    a scooter and, beside it, only its lower half gives two boxes whose IoU (0.46) passes NMS but
    which are one object, and would become two tracks and two violations.

    >>> boxes = np.array([[239, 152, 437, 324], [260, 216, 407, 323]], np.float32)
    >>> nms_per_class(boxes, np.array([0.34, 0.36]), np.array([2, 2]), iou=0.5).tolist()
    [1, 0]
    >>> nms_per_class(boxes, np.array([0.34, 0.36]), np.array([2, 2]), iou=0.5, contained=0.9).tolist()
    [1]
    """
    if len(xyxy) == 0:
        return np.zeros(0, np.int64)
    # Offsetting each class into its own region makes one NMS pass equal to per-class NMS.
    offset = class_id.astype(np.float32)[:, None] * (float(xyxy.max()) + 1.0)
    boxes = xyxy + offset
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size and len(keep) < max_detections:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        iw = (np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest])).clip(0)
        ih = (np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest])).clip(0)
        inter = iw * ih
        overlap = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        same = overlap > iou
        if contained is not None:
            same |= inter / np.maximum(np.minimum(areas[i], areas[rest]), 1e-9) >= contained
        order = rest[~same]
    return np.asarray(keep, np.int64)


def _select(xyxy_in: np.ndarray, class_scores: np.ndarray, box: Letterbox, confidence: float, iou: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best class per candidate, confidence filter, per-class NMS, back to original pixels."""
    class_id = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(class_id)), class_id]
    mask = scores >= confidence
    xyxy_in, scores, class_id = xyxy_in[mask], scores[mask], class_id[mask]
    if len(scores) > MAX_CANDIDATES:
        top = np.argpartition(-scores, MAX_CANDIDATES)[:MAX_CANDIDATES]
        xyxy_in, scores, class_id = xyxy_in[top], scores[top], class_id[top]
    xyxy = box.to_original(xyxy_in)
    # Boxes squeezed to nothing by clipping (entirely in the padding) are not objects.
    valid = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    xyxy, scores, class_id = xyxy[valid], scores[valid], class_id[valid]
    keep = nms_per_class(xyxy, scores, class_id, iou)
    return xyxy[keep], scores[keep].astype(np.float32), class_id[keep].astype(np.int32)


def _cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    half = b[:, 2:4] / 2
    return np.concatenate([b[:, 0:2] - half, b[:, 0:2] + half], axis=1)


def decode_ultralytics(output: np.ndarray, box: Letterbox, num_classes: int, confidence: float = 0.25,
                       iou: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one image's ultralytics YOLOv8/YOLO11 output.

    Args:
        output: ``(1, 4+nc, N)`` (the export's layout) or ``(1, N, 4+nc)``, or either without the
            batch axis. Rows are cx, cy, w, h in input pixels, then nc sigmoid class scores.
        box: how the image was letterboxed.
    Returns:
        ``(xyxy (K,4) float32 in original pixels, confidence (K,), class_id (K,))``.
    Raises:
        ValueError: if neither axis has 4 + num_classes values.
    """
    out = np.asarray(output, np.float32)
    if out.ndim == 3:
        out = out[0]
    width = 4 + num_classes
    if out.ndim != 2 or width not in out.shape:
        raise ValueError(f"expected output (4+{num_classes}, N) or (N, 4+{num_classes}), got {np.shape(output)}")
    rows = out.T if out.shape[0] == width else out  # -> (N, 4+nc)
    return _select(_cxcywh_to_xyxy(rows[:, :4]), rows[:, 4:], box, confidence, iou)


@functools.lru_cache(maxsize=8)
def yolox_grid(input_size: tuple[int, int], strides: tuple[int, ...] = YOLOX_STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """Anchor-point grid of a YOLOX head: ``(N, 2)`` cell x, y and ``(N, 1)`` stride, row-major per
    level, levels in stride order. Cached (it is the same for every frame), so read-only."""
    w, h = input_size
    grids, expanded = [], []
    for stride in strides:
        ys, xs = np.meshgrid(np.arange(h // stride), np.arange(w // stride), indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        grids.append(cells)
        expanded.append(np.full((len(cells), 1), stride))
    grid, stride = np.concatenate(grids).astype(np.float32), np.concatenate(expanded).astype(np.float32)
    grid.flags.writeable = stride.flags.writeable = False
    return grid, stride


def decode_yolox(output: np.ndarray, box: Letterbox, num_classes: int, input_size: tuple[int, int],
                 confidence: float = 0.25, iou: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode one image's raw YOLOX output ``(1, N, 5+nc)``: x, y, w, h as grid offsets and log sizes,
    objectness, class scores (both already sigmoid). Returns arrays as :func:`decode_ultralytics`.

    Raises:
        ValueError: if the shape does not match ``5 + num_classes`` or the grid of ``input_size``.
    """
    out = np.asarray(output, np.float32)
    if out.ndim == 3:
        out = out[0]
    grid, stride = yolox_grid(tuple(input_size))
    if out.ndim != 2 or out.shape[1] != 5 + num_classes or out.shape[0] != len(grid):
        raise ValueError(f"expected output ({len(grid)}, 5+{num_classes}) for input {input_size}, "
                         f"got {np.shape(output)}")
    xy = (out[:, 0:2] + grid) * stride
    # exp of a garbage logit overflows to inf; such a box cannot survive clipping anyway
    wh = np.exp(np.minimum(out[:, 2:4], 20.0)) * stride
    scores = out[:, 4:5] * out[:, 5:]
    return _select(_cxcywh_to_xyxy(np.concatenate([xy, wh], axis=1)), scores, box, confidence, iou)


# -- runtime ------------------------------------------------------------------------------------
def session_options(threads: int) -> ort.SessionOptions:
    """The onnxruntime options every detector runs with: ``threads`` intra-op threads that sleep when
    idle, one inter-op thread, every graph optimisation."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    # Idle intra-op threads sleep instead of spinning: on a shared two-core machine a spinning
    # thread burns the core the decoder (or another camera, another re-scan process) needs, and
    # waits for a descheduled peer; measured under load: 29 ms of CPU per 320 px inference with
    # spinning, 13 ms without.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def _is_dynamic(dim) -> bool:
    return not isinstance(dim, int) or dim <= 0


class OnnxDetector:
    """Runs one ONNX detection model on BGR images.

    Args:
        model_path: the ``.onnx`` file.
        card_path: its model card; defaults to :func:`card_path_for`.
        confidence: minimum score kept.
        iou: NMS IoU threshold (per class).
        threads: onnxruntime intra-op threads.
        providers: onnxruntime execution providers (default CPU).

    Attributes:
        card, model_version (the card's name), class_names, input_size (width, height),
        providers (those onnxruntime actually uses), batch_dynamic.

    Raises:
        ModelError: naming the file, if the model or card is missing or unreadable, or the card
            disagrees with the model (input size, class count, output layout).

    Thread-safe: ``detect`` may be called from several camera threads at once (the session's
    ``run`` is thread-safe and everything else is local).
    """

    def __init__(self, model_path: str | os.PathLike, card_path: str | os.PathLike | None = None,
                 confidence: float = 0.25, iou: float = 0.5, threads: int = 2,
                 providers: Sequence[str] | None = None, contained: float | None = None,
                 confusable: Sequence[Sequence[str]] = CONFUSABLE, options: ort.SessionOptions | None = None):
        self.model_path = str(model_path)
        if not Path(self.model_path).is_file():
            raise ModelError(self.model_path, "model file not found")
        self.card_path = str(card_path) if card_path is not None else str(card_path_for(self.model_path))
        if not Path(self.card_path).is_file():
            raise ModelError(self.card_path, f"model card not found (expected next to {Path(self.model_path).name})")
        self.card = ModelCard.load(self.card_path)
        self.confidence, self.iou, self.threads = float(confidence), float(iou), int(threads)
        #: drop boxes this much inside a better one of their class (:func:`nms_per_class`); None: off,
        #: as for ``evaluate`` (AP is scored on the model's own output)
        self.contained = None if contained is None else float(contained)
        #: the ``contained`` pass treats each group of confusable classes as one class
        self._groups = class_groups(self.card.classes, confusable)

        try:
            # ``options``: the bench's profiler passes its own (session_options with profiling on)
            self._session = ort.InferenceSession(self.model_path, sess_options=options or session_options(self.threads),
                                                 providers=list(providers or ["CPUExecutionProvider"]))
        except Exception as exc:  # onnxruntime raises several unrelated pybind exception types
            raise ModelError(self.model_path, f"onnxruntime cannot load the model: {exc}") from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelError(self.model_path, f"expected one NCHW image input, got {[(i.name, i.shape) for i in inputs]}")
        self._input_name = inputs[0].name
        batch, _, in_h, in_w = inputs[0].shape
        if not _is_dynamic(in_w) and not _is_dynamic(in_h) and (in_w, in_h) != tuple(self.card.input_size):
            raise ModelError(self.model_path, f"model input is {in_w}x{in_h} but the card "
                                              f"{self.card_path} says {self.card.input_size[0]}x{self.card.input_size[1]}")
        self.batch_dynamic = _is_dynamic(batch)
        #: a model whose height and width are dynamic gets each image letterboxed to the smallest
        #: multiple of 32 that holds it (not padded to the square input_size): ultralytics only
        self.stride = RECT_STRIDE if _is_dynamic(in_w) and _is_dynamic(in_h) and self.card.format == "ultralytics" \
            else None
        self.providers = tuple(self._session.get_providers())
        self._check_output()

    @property
    def model_version(self) -> str:
        return self.card.name

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.card.classes)

    @property
    def input_size(self) -> tuple[int, int]:
        return tuple(self.card.input_size)

    def _check_output(self) -> None:
        """Run one blank image so a card that disagrees with the model fails at load, not at the
        first real frame (this is also the warm-up run)."""
        blank = np.full((self.input_size[1], self.input_size[0], 3), PAD_VALUE, np.uint8)
        tensor, box = self.preprocess(blank)
        output = self.infer(tensor)
        try:
            self._decode(output[0:1], box)
        except ValueError as exc:
            raise ModelError(self.model_path, f"output does not match the card {self.card_path} "
                                              f"({len(self.class_names)} classes, format {self.card.format}): {exc}") from exc

    # -- the three stages, public so bench can time them ----------------------------------------
    def input_shape(self, image_bgr: np.ndarray) -> tuple[int, int]:
        """(width, height) of the tensor ``preprocess`` makes of this image: ``input_size``, or for a
        model with dynamic height and width, the image resized into it and rounded up to the stride."""
        if self.stride is None:
            return self.input_size
        return fit(image_bgr.shape[1], image_bgr.shape[0], self.input_size, self.stride)[2]

    def preprocess(self, image_bgr: np.ndarray, size: tuple[int, int] | None = None) -> tuple[np.ndarray, Letterbox]:
        """One HxWx3 uint8 BGR image → ``(1, 3, H_in, W_in)`` float32 tensor and its letterbox.

        ``size`` (width, height) sets the tensor's size for a model with dynamic height and width (a
        batch of frames of several shapes shares one); default :meth:`input_shape`."""
        if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 \
                or image_bgr.shape[2] != 3 or image_bgr.shape[0] == 0 or image_bgr.shape[1] == 0:
            raise ValueError(f"expected an HxWx3 uint8 BGR image, got {getattr(image_bgr, 'shape', None)} "
                             f"{getattr(image_bgr, 'dtype', None)}")
        if self.card.format == "ultralytics":
            if size is not None and self.stride is not None:
                canvas, box = letterbox(image_bgr, size, centred=True)
            else:
                canvas, box = letterbox(image_bgr, self.input_size, centred=True, stride=self.stride)
            tensor = cv2.dnn.blobFromImage(canvas, scalefactor=1 / 255.0, swapRB=True)
        else:  # yolox: BGR, 0..255, no normalisation
            canvas, box = letterbox(image_bgr, self.input_size, centred=False)
            tensor = cv2.dnn.blobFromImage(canvas, scalefactor=1.0, swapRB=False)
        return tensor, box

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        """Run the model on an ``(B, 3, H_in, W_in)`` tensor; returns its first output."""
        try:
            return self._session.run(None, {self._input_name: tensor})[0]
        except Exception as exc:  # onnxruntime's pybind errors share no useful base class
            raise ModelError(self.model_path, f"inference failed: {exc}") from exc

    def end_profiling(self) -> str:
        """Stop onnxruntime's profiler (on when the ``options`` enabled it); returns the trace file."""
        return self._session.end_profiling()

    def postprocess(self, output: np.ndarray, box: Letterbox) -> Detections:
        """One image's model output (batch axis of 1) → :class:`Detections` in original pixels."""
        try:
            xyxy, conf, cls = self._decode(output, box)
        except ValueError as exc:
            raise ModelError(self.model_path, str(exc)) from exc
        if self.contained is not None and len(xyxy) > 1:
            keep = nms_per_class(xyxy, conf, self._groups[cls], iou=1.0, contained=self.contained)
            xyxy, conf, cls = xyxy[keep], conf[keep], cls[keep]
        return Detections(xyxy, conf, cls, self.class_names)

    def _decode(self, output: np.ndarray, box: Letterbox):
        if self.card.format == "ultralytics":
            return decode_ultralytics(output, box, len(self.class_names), self.confidence, self.iou)
        return decode_yolox(output, box, len(self.class_names), self.input_size, self.confidence, self.iou)

    # -- what callers use -----------------------------------------------------------------------
    def detect(self, image_bgr: np.ndarray) -> Detections:
        """Detect objects in one HxWx3 uint8 BGR image; boxes are in its pixels, clipped to it."""
        tensor, box = self.preprocess(image_bgr)
        return self.postprocess(self.infer(tensor), box)

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect in several images: one batched run if the model's batch axis is dynamic, else one
        run per image. Returns one :class:`Detections` per image, in order."""
        if not self.batch_dynamic or len(images) <= 1:
            return [self.detect(image) for image in images]
        size = None
        if self.stride is not None:  # one tensor shape for the batch: the largest of the frames'
            shapes = [self.input_shape(image) for image in images]
            size = (max(w for w, _ in shapes), max(h for _, h in shapes))
        prepared = [self.preprocess(image, size) for image in images]
        output = self.infer(np.concatenate([tensor for tensor, _ in prepared]))
        return [self.postprocess(output[i:i + 1], box) for i, (_, box) in enumerate(prepared)]

    def __repr__(self) -> str:
        return (f"OnnxDetector({self.model_path!r}, model={self.model_version!r}, format={self.card.format}, "
                f"input={self.input_size[0]}x{self.input_size[1]}, classes={len(self.class_names)})")


# -- several models per site ---------------------------------------------------------------------
#: The class set the rules use (see vision.config.DEFAULT_RULE_CLASSES); trained models use it as is.
PROJECT_CLASSES: tuple[str, ...] = ("person", "bicycle", "two_wheeler", "car", "truck_or_bus", "garbage",
                                    "box_or_parcel")
#: How common model class names map onto PROJECT_CLASSES when a card has no ``class_map``
#: (COCO names, and the source names of the shared datasets).
DEFAULT_CLASS_ALIASES: dict[str, str] = {
    "motorcycle": "two_wheeler", "motorbike": "two_wheeler", "scooter": "two_wheeler", "bike": "two_wheeler",
    "bus": "truck_or_bus", "truck": "truck_or_bus",
    "general_trashbag": "garbage", "other_trashbag": "garbage", "trash_bag": "garbage", "garbage_bag": "garbage",
    "package": "box_or_parcel", "parcel": "box_or_parcel", "box": "box_or_parcel",
}


class MultiDetector:
    """Several :class:`OnnxDetector` on the same frame, their detections mapped onto one class set
    and merged with class-aware NMS (the highest confidence wins where two models see the same object).

    Class mapping per model: the card's ``class_map`` (model class → project class; unlisted classes
    are dropped) if it has one, else the model's class names that are project classes as they are,
    plus :data:`DEFAULT_CLASS_ALIASES`. The *first* (default) model also keeps any class of its own
    that maps to nothing (appended after the project classes), so a site's custom model loses nothing.

    Same interface as OnnxDetector for the pipeline: ``detect``, ``detect_batch``, ``model_version``
    (``"a+b"``), ``class_names``, ``detectors``.
    """

    def __init__(self, detectors: Sequence[OnnxDetector], iou: float = 0.5,
                 project_classes: Sequence[str] = PROJECT_CLASSES,
                 keep: Sequence[Sequence[str] | None] | None = None, contained: float | None = None,
                 confusable: Sequence[Sequence[str]] = CONFUSABLE):
        """``keep[k]``, when given, lists the project classes taken from detector ``k`` (the others it
        reports are dropped), e.g. only ``garbage`` from a model whose cars are worse than the default's."""
        if not detectors:
            raise ValueError("MultiDetector needs at least one detector")
        self.detectors = tuple(detectors)
        self.iou = float(iou)
        self.contained = None if contained is None else float(contained)
        self._groups = class_groups(list(project_classes), confusable)   # merged NMS: one class per group
        keep = list(keep) if keep is not None else [None] * len(self.detectors)
        if len(keep) != len(self.detectors):
            raise ValueError("keep must have one entry per detector")
        names = list(project_classes)
        self._maps: list[np.ndarray] = []
        for k, det in enumerate(self.detectors):
            mapping = self.class_mapping(det.card, names)
            if keep[k] is not None:
                mapping = {src: dst for src, dst in mapping.items() if dst in set(keep[k])}
            if k == 0:
                for own in det.class_names:
                    if own not in mapping and own not in names:
                        names.append(own)
                        mapping[own] = own
            # model class id -> merged class id, -1 where dropped
            self._maps.append(np.array([names.index(mapping[n]) if n in mapping else -1 for n in det.class_names],
                                       np.int32))
        self.class_names: tuple[str, ...] = tuple(names)

    @staticmethod
    def class_mapping(card: ModelCard, project_classes: Sequence[str] = PROJECT_CLASSES) -> dict[str, str]:
        """``{model class: project class}`` for one card (see the class docstring).

        Raises:
            ModelError: if the card's ``class_map`` names a class the model does not have or a target
                outside ``project_classes``.
        """
        extra = card.model_extra or {}
        explicit = extra.get("class_map")
        if explicit is not None:
            if not isinstance(explicit, dict):
                raise ModelError(card.name, "class_map must be a mapping of model class -> project class")
            unknown = set(explicit) - set(card.classes)
            bad = {v for v in explicit.values() if v not in project_classes}
            if unknown or bad:
                raise ModelError(card.name, f"class_map: unknown model classes {sorted(unknown)}, "
                                            f"targets not in {list(project_classes)}: {sorted(bad)}")
            return dict(explicit)
        mapping = {}
        for name in card.classes:
            if name in project_classes:
                mapping[name] = name
            elif DEFAULT_CLASS_ALIASES.get(name) in project_classes:
                mapping[name] = DEFAULT_CLASS_ALIASES[name]
        return mapping

    @property
    def model_version(self) -> str:
        return "+".join(d.model_version for d in self.detectors)

    def for_classes(self, needed) -> "MultiDetector":
        """The models that contribute at least one of ``needed`` (project class names), with the same
        class mapping and ``class_names`` — so a fire-lane camera does not pay for the garbage model.
        ``self`` when every model is needed or none contributes (then nothing is left out)."""
        wanted = set(needed)
        chosen = [k for k, m in enumerate(self._maps) if any(self.class_names[i] in wanted for i in m if i >= 0)]
        if not chosen or len(chosen) == len(self.detectors):
            return self
        sub = object.__new__(MultiDetector)
        sub.detectors = tuple(self.detectors[k] for k in chosen)
        sub._maps = [self._maps[k] for k in chosen]
        sub.iou, sub.class_names, sub.contained, sub._groups = self.iou, self.class_names, self.contained, self._groups
        return sub

    def merge(self, per_model: Sequence[Detections]) -> Detections:
        """Map each model's detections onto ``class_names`` and merge them (class-aware NMS)."""
        xyxy, conf, cls = [], [], []
        for mapping, dets in zip(self._maps, per_model):
            target = mapping[dets.class_id] if len(dets) else np.zeros(0, np.int32)
            keep = target >= 0
            xyxy.append(dets.xyxy[keep])
            conf.append(dets.confidence[keep])
            cls.append(target[keep])
        xyxy_all = np.concatenate(xyxy).astype(np.float32)
        conf_all = np.concatenate(conf).astype(np.float32)
        cls_all = np.concatenate(cls).astype(np.int32)
        keep = nms_per_class(xyxy_all, conf_all, self._groups[cls_all], self.iou, contained=self.contained)
        return Detections(xyxy_all[keep], conf_all[keep], cls_all[keep], self.class_names)

    def detect(self, image_bgr: np.ndarray) -> Detections:
        return self.merge([d.detect(image_bgr) for d in self.detectors])

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[Detections]:
        per_model = [d.detect_batch(images) for d in self.detectors]
        return [self.merge([results[i] for results in per_model]) for i in range(len(images))]

    def __repr__(self) -> str:
        return f"MultiDetector({', '.join(map(repr, self.detectors))})"


def build_detector(site, site_path: str | os.PathLike) -> "OnnxDetector | MultiDetector":
    """The detector a site configuration asks for: its ``detector.model`` alone, or, when
    ``detector.extra_models`` lists more models (by path, each with its card next to it or at
    ``card``), a :class:`MultiDetector` of all of them. Paths are relative to the site file.

    Raises:
        ModelError: naming the file, if any model or card cannot be loaded.
    """
    from vision.config import resolve_path

    site_path = Path(site_path)
    cfg = site.detector
    contained = getattr(cfg, "contained", None)
    main = OnnxDetector(str(resolve_path(site_path, cfg.model)), confidence=cfg.confidence, iou=cfg.iou,
                        threads=cfg.threads, contained=contained)
    extras = getattr(cfg, "extra_models", ()) or ()
    if not extras:
        return main
    detectors, keep = [main], [None]
    for extra in extras:
        if getattr(extra, "optional", False) and not resolve_path(site_path, extra.model).is_file():
            log.warning("optional extra model %s is missing: running without it", resolve_path(site_path, extra.model))
            continue
        card = resolve_path(site_path, extra.card) if extra.card else None
        detectors.append(OnnxDetector(str(resolve_path(site_path, extra.model)), card_path=card,
                                      confidence=extra.confidence if extra.confidence is not None else cfg.confidence,
                                      iou=cfg.iou, threads=cfg.threads, contained=contained))
        keep.append(getattr(extra, "classes", None))
    return MultiDetector(detectors, iou=cfg.iou, keep=keep, contained=contained) if len(detectors) > 1 else main
