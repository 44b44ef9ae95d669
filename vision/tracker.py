"""Multi-object tracking: stable ids across frames, with bounded per-track state.

Wraps roboflow ``trackers.ByteTrackTracker`` (Kalman + two-stage IoU matching) behind our own
:class:`~vision.types.Detections`, fed with *frame time*, so a re-scan of stored footage and the
live stream give the same ids. On top of ByteTrack it keeps, per track id, what the rules need:
first / last seen frame time, recent boxes and a majority-vote class name, all bounded in memory.

>>> tracker = Tracker(frame_rate=5.0)                                      # doctest: +SKIP
>>> for frame in source:                                                   # doctest: +SKIP
...     tracked = tracker.update(detector.detect(frame.image), frame.time_s)
...     for tid in tracked.tracker_id:
...         state = tracker.states[int(tid)]
...         print(tid, state.class_name, state.last_seen_s - state.first_seen_s)
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker

from vision.types import Detections

# trackers expresses its lost-track buffer in frames of a 30 fps video (buffer / 30 = seconds).
_TRACKERS_REFERENCE_FPS = 30.0
# Frame times may step back a little (RTSP loop boundaries, B-frame PTS jitter). Up to this much is
# treated as "same time"; a bigger jump back means a different piece of footage: start over.
BACKWARD_TOLERANCE_S = 1.0
# ByteTrack skips Kalman prediction on equal timestamps and warns; a tiny step forward avoids both.
_MIN_STEP_S = 1e-6


@dataclass(slots=True)
class TrackState:
    """What is known about one track id. Memory is bounded by the deques' ``maxlen``.

    Attributes:
        track_id: the id returned in ``Detections.tracker_id``.
        first_seen_s / last_seen_s: frame times of the first and latest matched detection.
        hits: how many frames matched this track.
        last_xyxy: the latest box (original pixels).
        last_confidence: the latest detection's confidence.
        recent: the latest ``(time_s, xyxy)`` pairs, newest last (for stationarity checks).
        class_votes: the latest class names seen for this track, newest last.
    """

    track_id: int
    first_seen_s: float
    last_seen_s: float
    last_xyxy: tuple[float, float, float, float]
    last_confidence: float
    hits: int = 0
    recent: deque = field(default_factory=deque)
    class_votes: deque = field(default_factory=deque)

    @property
    def class_name(self) -> str:
        """Majority class over the vote window; a tie goes to the most recently seen of the tied."""
        counts = Counter(self.class_votes)
        best = max(counts.values())
        return next(name for name in reversed(self.class_votes) if counts[name] == best)

    @property
    def age_s(self) -> float:
        """How long the track has been seen, first to last detection."""
        return self.last_seen_s - self.first_seen_s


class Tracker:
    """Assigns track ids to one camera's detections, frame after frame.

    Args:
        frame_rate: the rate ``update`` is called at (the source's sample fps). ByteTrack scales its
            motion model by it; frame times drive everything else.
        lost_track_s: how long a track that lost its object can still pick it up again (a car
            hidden by a passing van keeps its id). Longer gaps give a new id.
        forget_after_s: drop the state of a track not seen for this long (at least
            ``lost_track_s``: ByteTrack can revive a track until then).
        track_activation_threshold: minimum confidence of a detection to start a new track.
        high_conf_det_threshold: detections below this are only used to continue existing tracks
            (ByteTrack's second association stage).
        minimum_consecutive_frames: frames a new track must be matched before it gets an id; until
            then its detections are not returned.
        minimum_iou_threshold: minimum IoU between a track's predicted box and a detection.
        vote_window: how many recent class names each track keeps for its majority vote.
        history: how many recent boxes each track keeps.
        max_tracks: upper bound on tracks with state; the longest-unseen ones are dropped first.

    Not thread-safe: use one Tracker per camera, from one thread.
    """

    def __init__(self, frame_rate: float = 5.0, lost_track_s: float = 5.0, forget_after_s: float = 10.0,
                 track_activation_threshold: float = 0.45, high_conf_det_threshold: float = 0.45,
                 minimum_consecutive_frames: int = 2, minimum_iou_threshold: float = 0.1,
                 vote_window: int = 30, history: int = 32, max_tracks: int = 1000):
        if not frame_rate > 0:
            raise ValueError(f"frame_rate must be positive, got {frame_rate}")
        if lost_track_s < 0 or forget_after_s < lost_track_s:
            raise ValueError(f"need 0 <= lost_track_s ({lost_track_s}) <= forget_after_s ({forget_after_s})")
        if vote_window < 1 or history < 1 or max_tracks < 1:
            raise ValueError("vote_window, history and max_tracks must be at least 1")
        self.frame_rate = float(frame_rate)
        self.lost_track_s = float(lost_track_s)
        self.forget_after_s = float(forget_after_s)
        self.vote_window, self.history, self.max_tracks = vote_window, history, max_tracks
        self._bytetrack_args = dict(
            lost_track_buffer=round(lost_track_s * _TRACKERS_REFERENCE_FPS),
            frame_rate=self.frame_rate,
            track_activation_threshold=track_activation_threshold,
            minimum_consecutive_frames=minimum_consecutive_frames,
            minimum_iou_threshold=minimum_iou_threshold,
            high_conf_det_threshold=high_conf_det_threshold,
        )
        self._bytetrack = ByteTrackTracker(**self._bytetrack_args)
        self._states: dict[int, TrackState] = {}
        self._last_time_s: float | None = None
        # Added to ByteTrack's ids so they never repeat after a restart (ByteTrack counts from 0 again).
        self._id_base = 0
        self._next_id_base = 0

    @property
    def states(self) -> Mapping[int, TrackState]:
        """Read-only view of the state of every remembered track, by track id."""
        return MappingProxyType(self._states)

    def reset(self) -> None:
        """Forget every track (a new piece of footage). Ids keep increasing across resets."""
        self._bytetrack = ByteTrackTracker(**self._bytetrack_args)
        self._states.clear()
        self._last_time_s = None
        self._id_base = self._next_id_base

    def update(self, detections: Detections, time_s: float) -> Detections:
        """Match one frame's detections to the tracks.

        Args:
            detections: this frame's detections (any classes; ByteTrack matches boxes regardless of
                class, and each track's class is a majority vote).
            time_s: the frame time, non-decreasing from call to call.
        Returns:
            the detections that belong to a confirmed track, with ``tracker_id`` set (>= 0), in
            ByteTrack's order. Detections of not-yet-confirmed tracks are left out.
        """
        if not np.isfinite(time_s):
            raise ValueError(f"frame time must be finite, got {time_s}")
        if self._last_time_s is not None and time_s < self._last_time_s - BACKWARD_TOLERANCE_S:
            self.reset()
        timestamp = time_s if self._last_time_s is None else max(time_s, self._last_time_s + _MIN_STEP_S)
        self._last_time_s = timestamp

        result = self._bytetrack.update(self._to_supervision(detections), timestamp=timestamp)
        tracked = self._from_supervision(result, detections.class_names)
        self._remember(tracked, time_s)
        self._forget(time_s)
        return tracked

    # -- conversions ----------------------------------------------------------------------------
    @staticmethod
    def _to_supervision(detections: Detections) -> sv.Detections:
        return sv.Detections(xyxy=detections.xyxy.astype(np.float32), confidence=detections.confidence,
                             class_id=detections.class_id)

    def _from_supervision(self, result: sv.Detections, class_names: tuple[str, ...]) -> Detections:
        tracker_id = np.asarray(result.tracker_id if result.tracker_id is not None else [], np.int64)
        confirmed = tracker_id >= 0
        if len(result) == 0 or not confirmed.any():
            return Detections.empty(class_names)
        return Detections(result.xyxy[confirmed], result.confidence[confirmed], result.class_id[confirmed],
                          class_names, tracker_id[confirmed] + self._id_base)

    # -- per-track state ------------------------------------------------------------------------
    def _remember(self, tracked: Detections, time_s: float) -> None:
        for xyxy, conf, name, tid in zip(tracked.xyxy, tracked.confidence, tracked.names(), tracked.tracker_id):
            tid = int(tid)
            box = tuple(float(v) for v in xyxy)
            state = self._states.get(tid)
            if state is None:
                state = TrackState(tid, time_s, time_s, box, float(conf),
                                   recent=deque(maxlen=self.history), class_votes=deque(maxlen=self.vote_window))
                self._states[tid] = state
                self._next_id_base = max(self._next_id_base, tid + 1)
            state.last_seen_s, state.last_xyxy, state.last_confidence = time_s, box, float(conf)
            state.hits += 1
            state.recent.append((time_s, box))
            state.class_votes.append(name)

    def _forget(self, time_s: float) -> None:
        stale = [tid for tid, s in self._states.items() if time_s - s.last_seen_s > self.forget_after_s]
        for tid in stale:
            del self._states[tid]
        if len(self._states) > self.max_tracks:
            # A scene with more objects than this is a detector gone wrong; keep the freshest.
            by_age = sorted(self._states, key=lambda tid: self._states[tid].last_seen_s)
            for tid in by_age[: len(self._states) - self.max_tracks]:
                del self._states[tid]
