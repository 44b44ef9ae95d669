"""Camera health: is each camera online and still showing what it should?

Five conditions, each reported **once** when it starts (after it has lasted ``*_after_s``) and once
when it ends (after ``clear_after_s`` of normal frames), never per frame:

- ``offline``: the stream is disconnected or no frame arrived for ``offline_after_s`` (wall clock);
- ``frozen``: consecutive frames are identical (a live sensor always has noise; a frozen encoder
  or a camera showing a still image has none);
- ``covered``: the image is black or uniform (lens covered, sprayed, pointed at a wall, IR failed);
- ``out_of_focus``: sharpness (variance of the Laplacian) fell below ``focus_ratio`` × the camera's
  own reference sharpness;
- ``view_moved``: the scene's structure (edges) no longer matches the reference view — someone
  turned the camera, so its zones are drawn on the wrong things.

The reference (sharpness, edge map) is learned from the first ``reference_frames`` good frames.
All image measures run on a small grey copy (about 0.3 ms per frame at 640×360).

:class:`CameraHealth` is pure (no threads, no clock of its own): the worker feeds it frames, stream
status changes and periodic ``tick(now)`` calls, and forwards the :class:`HealthEvent` s it returns.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import cv2
import numpy as np

HEALTH_KINDS = ("offline", "frozen", "covered", "out_of_focus", "view_moved")
ANALYSIS_SIZE = (192, 108)  # (w, h) of the grey copy the image measures use


@dataclass(frozen=True)
class HealthThresholds:
    """How long and how bad before a condition is reported. Times in seconds."""

    offline_after_s: float = 10.0
    frozen_after_s: float = 30.0
    covered_after_s: float = 10.0
    focus_after_s: float = 30.0
    moved_after_s: float = 30.0
    clear_after_s: float = 5.0
    frozen_max_diff: float = 0.15  # mean absolute grey difference between frames that counts as identical
    covered_max_std: float = 6.0  # a uniform image: grey standard deviation below this
    black_max_mean: float = 18.0  # a black image: mean grey below this and std below 2 × covered_max_std
    focus_ratio: float = 0.35  # sharpness below this fraction of the reference
    view_min_match: float = 0.45  # edge-map correlation with the reference below this
    reference_frames: int = 5


@dataclass(frozen=True)
class HealthEvent:
    """One onset (``state="started"``) or end (``"ended"``) of a health condition.

    ``onset_s`` is when the condition began (frame or wall time, UTC epoch seconds); ``time_s`` is
    when this event was decided. ``id`` is the same for the start and end of one occurrence, so the
    API stores one row per occurrence and a retried post is not a duplicate."""

    compound_id: str
    camera_id: str
    kind: str
    state: str
    onset_s: float
    time_s: float
    detail: str = ""

    @property
    def id(self) -> str:
        key = f"{self.camera_id}|{self.kind}|{round(self.onset_s * 1000)}"
        return hashlib.sha256(key.encode()).hexdigest()[:32]

    def to_json(self) -> dict:
        return {"id": self.id, "compound_id": self.compound_id, "camera_id": self.camera_id, "kind": self.kind,
                "state": self.state, "onset_s": self.onset_s, "time_s": self.time_s, "detail": self.detail}


@dataclass
class _Condition:
    """Hysteresis for one condition: bad for ``after_s`` → started; good for ``clear_s`` → ended."""

    kind: str
    after_s: float
    clear_s: float
    bad_since: float | None = None
    good_since: float | None = None
    active_onset: float | None = None
    detail: str = ""

    def update(self, bad: bool, time_s: float, detail: str, owner: "CameraHealth") -> HealthEvent | None:
        if bad:
            self.good_since = None
            if self.bad_since is None:
                self.bad_since = time_s
            self.detail = detail or self.detail
            if self.active_onset is None and time_s - self.bad_since >= self.after_s:
                self.active_onset = self.bad_since
                return owner._event(self.kind, "started", self.active_onset, time_s, self.detail)
            return None
        self.bad_since = None
        if self.active_onset is None:
            return None
        if self.good_since is None:
            self.good_since = time_s
        if time_s - self.good_since >= self.clear_s:
            onset, self.active_onset, self.good_since = self.active_onset, None, None
            return owner._event(self.kind, "ended", onset, time_s, "")
        return None


def sharpness(grey: np.ndarray) -> float:
    """Variance of the Laplacian: high for crisp edges, near 0 for a blurred or uniform image."""
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def _edge_map(grey: np.ndarray) -> np.ndarray:
    """Gradient magnitude, blurred so that small shakes and noise do not matter but a turned camera does."""
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.GaussianBlur(cv2.magnitude(gx, gy), (0, 0), 2.0)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 1e-6 else 0.0


@dataclass
class CameraHealth:
    """The health state machine of one camera. Feed it with :meth:`observe` (frames),
    :meth:`connection` (stream status) and :meth:`tick` (periodically); each returns the
    :class:`HealthEvent` s that just started or ended."""

    compound_id: str
    camera_id: str
    thresholds: HealthThresholds = field(default_factory=HealthThresholds)

    def __post_init__(self) -> None:
        t = self.thresholds
        self._conditions = {
            "offline": _Condition("offline", 0.0, 0.0),
            "frozen": _Condition("frozen", t.frozen_after_s, t.clear_after_s),
            "covered": _Condition("covered", t.covered_after_s, t.clear_after_s),
            "out_of_focus": _Condition("out_of_focus", t.focus_after_s, t.clear_after_s),
            "view_moved": _Condition("view_moved", t.moved_after_s, t.clear_after_s),
        }
        self._previous: np.ndarray | None = None
        self._reference_sharpness: list[float] = []
        self._reference_edges: np.ndarray | None = None
        self._reference_count = 0
        self.last_frame_wall_s: float | None = None
        self.measures: dict[str, float] = {}

    def _event(self, kind: str, state: str, onset_s: float, time_s: float, detail: str) -> HealthEvent:
        return HealthEvent(self.compound_id, self.camera_id, kind, state, onset_s, time_s, detail)

    @property
    def active(self) -> dict[str, float]:
        """Conditions in progress: kind → onset time."""
        return {c.kind: c.active_onset for c in self._conditions.values() if c.active_onset is not None}

    # -- connection -----------------------------------------------------------------------------
    def connection(self, online: bool, time_s: float, reason: str = "") -> list[HealthEvent]:
        """The stream connected (``online``) or dropped. Offline is reported at once; it ends at the
        first frame after reconnecting (see :meth:`observe`)."""
        if online:
            return []
        event = self._conditions["offline"].update(True, time_s, reason or "stream disconnected", self)
        return [event] if event else []

    def tick(self, now_s: float) -> list[HealthEvent]:
        """Call about once a second with the wall clock: a stream that stays connected but sends
        nothing for ``offline_after_s`` is offline too."""
        last = self.last_frame_wall_s
        if last is not None and now_s - last >= self.thresholds.offline_after_s:
            event = self._conditions["offline"].update(True, now_s, f"no frame for {now_s - last:.0f} s", self)
            return [event] if event else []
        return []

    # -- frames ----------------------------------------------------------------------------------
    def observe(self, image_bgr: np.ndarray, time_s: float, wall_s: float | None = None) -> list[HealthEvent]:
        """Judge one frame (BGR uint8) at frame time ``time_s``; ``wall_s`` (default ``time_s``) is
        when it arrived, for the offline check."""
        self.last_frame_wall_s = wall_s if wall_s is not None else time_s
        events: list[HealthEvent] = []
        offline = self._conditions["offline"]
        if offline.active_onset is not None or offline.bad_since is not None:
            event = offline.update(False, time_s, "", self)
            offline.bad_since = None
            if event:
                events.append(event)
        t = self.thresholds
        grey = cv2.cvtColor(cv2.resize(image_bgr, ANALYSIS_SIZE, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        mean, std = (float(v[0][0]) for v in cv2.meanStdDev(grey))
        covered = std < t.covered_max_std or (mean < t.black_max_mean and std < 2 * t.covered_max_std)
        diff = float(cv2.absdiff(grey, self._previous).mean()) if self._previous is not None else None
        # a uniform image has nothing that could move: it is covered, not (also) frozen
        frozen = diff is not None and diff < t.frozen_max_diff and not covered
        self._previous = grey
        sharp = sharpness(grey)
        edges = _edge_map(grey)
        self.measures = {"mean": mean, "std": std, "sharpness": sharp}
        if diff is not None:
            self.measures["frame_diff"] = diff

        # a covered image has no focus or view to judge; a frozen one still has (it may be both)
        unfocused = moved = False
        if not covered:
            if self._reference_edges is None or self._reference_count < t.reference_frames:
                self._learn_reference(sharp, edges)
            else:
                reference_sharp = float(np.median(self._reference_sharpness))
                unfocused = sharp < t.focus_ratio * reference_sharp
                match = _correlation(edges, self._reference_edges)
                self.measures["view_match"] = match
                # a defocused view loses its edges too: judge it by focus, not as moved
                moved = match < t.view_min_match and not unfocused
        for kind, bad, detail in (
                ("frozen", frozen, f"frame difference {diff if diff is not None else 0:.2f}"),
                ("covered", covered, f"mean {mean:.0f}, std {std:.1f}"),
                ("out_of_focus", unfocused, f"sharpness {sharp:.0f} vs reference "
                                            f"{np.median(self._reference_sharpness) if self._reference_sharpness else 0:.0f}"),
                ("view_moved", moved, f"view match {self.measures.get('view_match', 1.0):.2f}")):
            event = self._conditions[kind].update(bad, time_s, detail, self)
            if event:
                events.append(event)
        return events

    def _learn_reference(self, sharp: float, edges: np.ndarray) -> None:
        self._reference_sharpness.append(sharp)
        if self._reference_edges is None:
            self._reference_edges = edges
        else:  # average the first frames so a passing car is not part of the reference
            n = self._reference_count
            self._reference_edges = (self._reference_edges * n + edges) / (n + 1)
        self._reference_count += 1

    def reset_reference(self) -> None:
        """Forget the reference view (after the camera was re-aimed on purpose)."""
        self._reference_sharpness.clear()
        self._reference_edges = None
        self._reference_count = 0
