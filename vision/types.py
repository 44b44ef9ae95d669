"""The types that flow through the pipeline: Frame, Detections, Violation.

Shapes are checked once, at construction; everything downstream trusts them.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded image of one camera.

    Attributes:
        camera_id: the camera's id from the site configuration.
        time_s: frame time in seconds since the epoch (UTC) — the time *in the footage*, never the
            wall clock. For a file source it is the file's start time plus the frame's PTS.
        image: HxWx3 uint8 BGR image.
        position: where the frame came from (``"file.mp4@12.480"``, ``"rtsp://…@pts"``), for messages.
    """

    camera_id: str
    time_s: float
    image: np.ndarray
    position: str = ""

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(
                f"Frame.image must be HxWx3 uint8, got {getattr(img, 'shape', None)} {getattr(img, 'dtype', None)}"
            )

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True, slots=True)
class Detections:
    """Parallel arrays for N boxes found in one frame (the supervision layout).

    Attributes:
        xyxy: (N, 4) float32 pixel boxes, x1 < x2, y1 < y2.
        confidence: (N,) float32 in 0..1.
        class_id: (N,) int32 indices into ``class_names``.
        class_names: the class names of the model that made them.
        tracker_id: (N,) int64 track ids, or -1 where not tracked.

    Filtering is indexing: ``dets[dets.confidence > 0.4]``.

    >>> d = Detections(np.array([[0, 0, 10, 10]], np.float32), np.array([0.9], np.float32),
    ...                np.array([0], np.int32), ("car",))
    >>> len(d[d.confidence > 0.5])
    1
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    class_names: tuple[str, ...]
    tracker_id: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4) if np.size(self.xyxy) else np.zeros((0, 4), np.float32)
        n = xyxy.shape[0]
        conf = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        cls = np.asarray(self.class_id, dtype=np.int32).reshape(-1)
        tid = (np.full(n, -1, np.int64) if self.tracker_id is None
               else np.asarray(self.tracker_id, dtype=np.int64).reshape(-1))
        if conf.shape != (n,) or cls.shape != (n,) or tid.shape != (n,):
            raise ValueError(f"Detections arrays disagree: xyxy {xyxy.shape}, confidence {conf.shape}, "
                             f"class_id {cls.shape}, tracker_id {tid.shape}")
        if n and (cls.min() < 0 or cls.max() >= len(self.class_names)):
            raise ValueError(f"class_id out of range for {len(self.class_names)} class names")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "class_id", cls)
        object.__setattr__(self, "tracker_id", tid)
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @classmethod
    def empty(cls, class_names: Sequence[str]) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), tuple(class_names))

    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index) -> "Detections":
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index],
                          self.class_names, self.tracker_id[index])

    def with_tracker_id(self, tracker_id: np.ndarray) -> "Detections":
        return Detections(self.xyxy, self.confidence, self.class_id, self.class_names, tracker_id)

    def names(self) -> list[str]:
        """The class name of each box."""
        return [self.class_names[i] for i in self.class_id]

    def of_classes(self, names: Sequence[str]) -> "Detections":
        """Only the boxes whose class is one of ``names`` (unknown names select nothing)."""
        wanted = [i for i, n in enumerate(self.class_names) if n in set(names)]
        return self[np.isin(self.class_id, wanted)]

    def bottom_center(self) -> np.ndarray:
        """(N, 2) anchor points where an object touches the ground."""
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, self.xyxy[:, 3]], axis=1)


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def violation_id(camera_id: str, rule: str, zone: str, start_time_s: float) -> str:
    """Deterministic id of a violation: the same camera, rule, zone and start frame time (to the
    millisecond) give the same id, so a retried post or a re-scan is the same violation.

    The time is taken to the microsecond first, as the event's ISO ``start_time`` carries it: the API
    recomputes the id from that text, and a float just under a half millisecond (…263.49999 ms) must
    not round down here and up (…263.500 ms) there."""
    micros = (_dt.datetime.fromtimestamp(start_time_s, _dt.timezone.utc) - _EPOCH) // _dt.timedelta(microseconds=1)
    key = f"{camera_id}|{rule}|{zone}|{(micros + 500) // 1000}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class EvidenceBox:
    """One box that proves a violation, at one frame time."""

    time_s: float
    xyxy: tuple[float, float, float, float]
    class_name: str
    confidence: float
    track_id: int


@dataclass(frozen=True, slots=True)
class Violation:
    """What a rule found. ``end_time_s`` is None while the violation is still going on."""

    id: str
    rule: str
    compound_id: str
    camera_id: str
    zone: str
    start_time_s: float
    last_seen_time_s: float
    end_time_s: float | None
    confidence: float
    model_version: str
    boxes: tuple[EvidenceBox, ...]
    track_id: int = -1
    details: dict = field(default_factory=dict)
