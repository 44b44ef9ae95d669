"""The parts every CompoundEye rule is built from.

Every violation we look for is "an object of some classes standing still in a zone for too long":
a car on a fire lane, a pile in a corridor, an e-bike in a lobby, garbage beside a bin. So the
reusable pieces live here — :class:`RuleEvent`, k-of-n confirmation (:class:`KOfN`), bounded
evidence sampling (:class:`EvidenceSampler`), the per-spot state (:class:`Occupancy`) and the state
machine over them (:class:`DwellRule`) — and each rule module is a small subclass.

A rule sees frame times only (the time in the footage). It never reads the clock, the network or a
file, so a live stream and a re-scan of the same footage give the same violations with the same ids.
"""
from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import ClassVar, Literal
from zoneinfo import ZoneInfo

import numpy as np

from vision.config import RuleParams, Zone
from vision.types import Detections, EvidenceBox, Violation, violation_id
from vision.zones import PolygonZone

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RuleEvent:
    """Something a rule decided at one frame.

    Attributes:
        kind: ``"started"`` when a violation is raised, ``"ended"`` when the zone has been clear of
            the object for ``clear_s``.
        violation: the violation as of this event (``end_time_s`` is set only on ``"ended"``).
        trigger_time_s: the frame time of the update that produced this event. For ``"started"`` it
            is when the dwell was reached (clips run to ``trigger_time_s + post_roll_s``); for
            ``"ended"`` it is ``end_time_s + clear_s`` or later. The raise time of a violation is
            also kept in ``violation.details["raised_at_s"]``.
    """

    kind: Literal["started", "ended"]
    violation: Violation
    trigger_time_s: float


class KOfN:
    """Confirmation over several frames: confirmed when at least ``k`` of the last ``n``
    observations were hits. Rejects a detector that flickers on a shadow for a frame or two."""

    def __init__(self, k: int, n: int):
        if not 1 <= k <= n:
            raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
        self.k = k
        self._window: deque[bool] = deque(maxlen=n)

    def push(self, hit: bool) -> bool:
        """Record one observation; return whether the object is confirmed now."""
        self._window.append(bool(hit))
        return self.confirmed

    @property
    def confirmed(self) -> bool:
        return sum(self._window) >= self.k


class EvidenceSampler:
    """Keeps at most ``capacity`` boxes spread over the whole dwell, however long it lasts.

    A box is kept when at least ``stride_s`` has passed since the last kept one. When the list is
    full, every other box is dropped and the stride doubles, so the kept boxes stay roughly evenly
    spaced from the first observation to the latest — bounded memory for a car parked for a week.
    """

    def __init__(self, capacity: int, stride_s: float):
        if capacity < 2:
            raise ValueError("capacity must be at least 2")
        self.capacity = capacity
        self.stride_s = max(float(stride_s), 0.0)
        self._boxes: list[EvidenceBox] = []

    def offer(self, box: EvidenceBox) -> None:
        if self._boxes and box.time_s - self._boxes[-1].time_s < self.stride_s:
            return
        if len(self._boxes) >= self.capacity:
            self._boxes = self._boxes[::2]
            self.stride_s = self.stride_s * 2 if self.stride_s > 0 else box.time_s - self._boxes[0].time_s
            if box.time_s - self._boxes[-1].time_s < self.stride_s:
                return
        self._boxes.append(box)

    def boxes(self, latest: EvidenceBox | None = None) -> tuple[EvidenceBox, ...]:
        """The kept boxes, plus ``latest`` (the newest observation) when it was not kept."""
        if latest is not None and (not self._boxes or self._boxes[-1].time_s < latest.time_s):
            return (*self._boxes, latest)
        return tuple(self._boxes)


@dataclass(eq=False)
class Occupancy:
    """One object standing at one spot of a zone, across tracker id switches and short occlusions.

    Positions are kept normalised by the frame size (like zones), so a change of resolution does
    not move a spot. ``spot_wh`` is the size of the box when it settled; the stationarity tolerance
    is a fraction of that box's diagonal (in pixels of the current frame).
    """

    spot: np.ndarray               # (2,) normalised bottom-centre where it settled
    spot_wh: np.ndarray            # (2,) normalised box width/height when it settled
    settle_time_s: float           # frame time when it settled at ``spot`` (start of the dwell)
    last_seen_s: float             # last frame time it was seen at ``spot``
    track_id: int                  # current tracker id, -1 when detached
    confirm: KOfN
    sampler: EvidenceSampler
    track_ids: deque = field(default_factory=lambda: deque(maxlen=8))   # ids it was seen with
    class_counts: Counter = field(default_factory=Counter)             # bounded by the class list
    confidence_sum: float = 0.0
    observations: int = 0
    latest: EvidenceBox | None = None
    raised_at_s: float | None = None  # frame time the violation was raised; None while dwelling
    violation_id: str = ""            # fixed when raised (see DwellRule._raise)
    sampler_stride0: float = 0.0      # the sampler's first stride, to start afresh on resettle

    @property
    def violating(self) -> bool:
        return self.raised_at_s is not None

    def distance_px(self, anchor: np.ndarray, frame_wh: np.ndarray) -> float:
        return float(np.hypot(*((anchor - self.spot) * frame_wh)))

    def at_spot(self, anchor: np.ndarray, frame_wh: np.ndarray, tolerance: float) -> bool:
        """Whether a normalised anchor is within ``tolerance`` × settled-box diagonal of the spot."""
        return self.distance_px(anchor, frame_wh) <= tolerance * float(np.hypot(*(self.spot_wh * frame_wh)))

    def resettle(self, anchor: np.ndarray, box_wh: np.ndarray, time_s: float) -> None:
        """The object moved: it settles afresh here, and its dwell starts again."""
        self.spot, self.spot_wh, self.settle_time_s = anchor, box_wh, time_s
        self.sampler = EvidenceSampler(self.sampler.capacity, self.sampler_stride0)
        self.class_counts.clear()
        self.confidence_sum, self.observations, self.latest = 0.0, 0, None

    def observe(self, box: EvidenceBox) -> None:
        self.last_seen_s = box.time_s
        self.track_id = box.track_id
        if not self.track_ids or self.track_ids[-1] != box.track_id:
            self.track_ids.append(box.track_id)
        self.class_counts[box.class_name] += 1
        self.confidence_sum += box.confidence
        self.observations += 1
        self.latest = box
        self.sampler.offer(box)

    @property
    def class_name(self) -> str:
        return self.class_counts.most_common(1)[0][0] if self.class_counts else ""

    @property
    def confidence(self) -> float:
        return self.confidence_sum / self.observations if self.observations else 0.0


@dataclass(frozen=True, slots=True)
class _Cooldown:
    spot: np.ndarray
    spot_wh: np.ndarray
    until_s: float


class DwellRule:
    """An object of ``params.classes`` standing still in ``zone`` for ``params.dwell_s`` is a violation.

    Feed it every processed frame of its camera with :meth:`update`. Behaviour, all in frame time:

    - only boxes with a tracker id, of ``params.classes``, with confidence ≥ ``min_confidence`` and
      with their bottom-centre in the zone count;
    - an object *settles* where it is first seen; while its bottom-centre stays within
      ``stationary_tolerance`` × box diagonal of that spot, its dwell grows; moving further resets
      the spot and the dwell (slow drift adds up and resets it too);
    - "started" is raised once per occupancy when the dwell reaches ``dwell_s``, ``confirm_k`` of
      the last ``confirm_n`` updates saw it at the spot, the schedule is armed, and the spot is not
      cooling down. Its id is ``violation_id(camera, rule, zone, settle time)``;
    - missing for ≤ ``grace_s`` (a person walking past) keeps the dwell; a new tracker id at the
      spot of an object whose id vanished within ``grace_s`` is the same occupancy;
    - a raised violation ends ("ended", ``end_time_s`` = last seen) once its spot has been clear of
      the object for ``clear_s``; for ``cooldown_s`` after that, that spot raises nothing. An object
      that comes back to the spot within ``clear_s`` continues the same violation;
    - the schedule gates raising only: a violation raised while armed runs until the spot is clear.

    Frames must come in non-decreasing time; an older frame is ignored (logged once).
    """

    name: ClassVar[str] = ""
    #: evidence boxes kept per violation (samples across the dwell plus the latest observation)
    max_evidence_boxes: ClassVar[int] = 20
    #: occupancies kept per zone; a flood of spurious tracks cannot grow memory beyond this
    max_occupancies: ClassVar[int] = 64
    #: spots remembered for cooldown
    max_cooldowns: ClassVar[int] = 32

    def __init__(self, *, compound_id: str, camera_id: str, zone: Zone, params: RuleParams, tz: ZoneInfo,
                 model_version: str):
        if not self.name:
            raise TypeError(f"{type(self).__name__} must set a rule name")
        self.compound_id = compound_id
        self.camera_id = camera_id
        self.zone = zone
        self.params = params
        self.tz = tz
        self.model_version = model_version
        self._polygon = PolygonZone(zone)
        self._classes = frozenset(params.classes)
        self._occupancies: list[Occupancy] = []
        self._cooldowns: deque[_Cooldown] = deque(maxlen=self.max_cooldowns)
        self._last_time_s: float | None = None
        self._warned_backwards = False

    # ------------------------------------------------------------------ public

    def update(self, time_s: float, tracks: Detections, frame_wh: tuple[int, int],
               image: np.ndarray | None = None) -> list[RuleEvent]:
        """Advance the rule to frame time ``time_s``.

        Args:
            time_s: frame time of this frame (UTC epoch seconds, from the footage).
            tracks: this frame's tracked detections (``tracker_id`` >= 0; untracked boxes are ignored).
            frame_wh: (width, height) of the frame the boxes are in, in pixels.
            image: the frame's HxWx3 BGR pixels, for rules that compare the zone with a baseline;
                rules that judge from boxes alone (this one) ignore it.

        Returns:
            The events decided at this frame, "ended" before "started".
        """
        if self._last_time_s is not None and time_s < self._last_time_s:
            if not self._warned_backwards:
                log.warning("%s/%s/%s: frame time went backwards (%.3f < %.3f); ignoring such frames",
                            self.camera_id, self.name, self.zone.id, time_s, self._last_time_s)
                self._warned_backwards = True
            return []
        self._last_time_s = time_s
        wh = np.asarray(frame_wh, dtype=np.float64)
        present_ids = set(tracks.tracker_id[tracks.tracker_id >= 0].tolist())
        dets = self.select(tracks, frame_wh)
        hits = self._match(time_s, dets, wh, present_ids)

        for occ in self._occupancies:
            occ.confirm.push(occ in hits)
        events = self._expire(time_s)
        events += self._raise(time_s, hits, wh)
        return events

    def can_raise(self, time_s: float) -> bool:
        """Hook: whether this frame may raise a violation at all (beyond dwell, confirmation, schedule
        and cooldown). A rule may hold raising back, e.g. while a person stands at a bin."""
        return True

    def extra_details(self, occ: Occupancy) -> dict:
        """Hook: rule-specific entries merged into ``Violation.details``."""
        return {}

    def active(self) -> list[Violation]:
        """Violations raised and not yet ended, as of the last update (e.g. at the end of a re-scan)."""
        return [self._violation(o, None) for o in self._occupancies if o.violating]

    def occupied(self, time_s: float) -> bool:
        """Whether anything this rule watches stands in the zone as of frame time ``time_s``: an object
        seen at a spot within the last ``grace_s`` (dwelling, violating or not). A re-inspection calls
        the scene clear only when this is false (a raised violation whose object left is still
        "active" until ``clear_s`` passes, but the scene is already clear)."""
        return any(time_s - o.last_seen_s <= self.params.grace_s for o in self._occupancies)

    def select(self, tracks: Detections, frame_wh: tuple[int, int]) -> Detections:
        """The boxes this rule looks at: tracked, of its classes, confident enough, anchored in the zone.

        Subclasses may narrow it further (e.g. by box size)."""
        keep = (tracks.tracker_id >= 0) & (tracks.confidence >= self.params.min_confidence)
        keep &= np.fromiter((n in self._classes for n in tracks.names()), dtype=bool, count=len(tracks))
        dets = tracks[keep]
        return dets[self._polygon.trigger(dets, frame_wh)]

    # ------------------------------------------------------------------ matching

    def _match(self, time_s: float, dets: Detections, wh: np.ndarray, present_ids: set[int]) -> set[Occupancy]:
        """Assign this frame's boxes to occupancies; return the occupancies seen at their spot."""
        tol = self.params.stationary_tolerance
        anchors = dets.bottom_center().astype(np.float64) / wh
        sizes = (dets.xyxy[:, 2:] - dets.xyxy[:, :2]).astype(np.float64) / wh
        ids = dets.tracker_id.tolist()
        names = dets.names()
        hits: dict[Occupancy, int] = {}
        todo = list(range(len(dets)))

        def take(occ: Occupancy, i: int) -> None:
            hits[occ] = i
            for other in self._occupancies:  # an id belongs to one occupancy at a time
                if other is not occ and other.track_id == ids[i]:
                    other.track_id = -1

        # 1. The same track, still at its spot.
        for i in list(todo):
            occ = self._by_track(ids[i])
            if occ is not None and occ not in hits and occ.at_spot(anchors[i], wh, tol):
                take(occ, i)
                todo.remove(i)

        # 2. A box at the spot of an object whose own id is gone from the frame. For a dwelling
        #    object only a *fresh* id is taken over (the tracker switched ids behind an occlusion):
        #    a car already tracked elsewhere in the zone that drives across the spot must not
        #    inherit, or reset, the parked car's dwell. A raised violation takes over any box at its
        #    spot — the spot is still occupied — so a car that reverses back in, or a car that
        #    reappears, continues it instead of opening a duplicate; a passer-by is detached again
        #    in step 3 the next frame.
        for i in list(todo):
            fresh = self._by_track(ids[i]) is None
            options = [o for o in self._occupancies
                       if o not in hits and (fresh or o.violating) and o.track_id not in present_ids
                       and self._remembered(o, time_s) and o.at_spot(anchors[i], wh, tol)]
            if options:
                previous = self._by_track(ids[i])
                if previous is not None and not previous.violating:
                    self._occupancies.remove(previous)  # the same object, now known at this spot
                take(min(options, key=lambda o: (not o.violating, o.distance_px(anchors[i], wh))), i)
                todo.remove(i)

        # 3. The same track, moved: a dwelling object starts its dwell again where it is now; a
        #    raised violation stays at its spot (it ends once the spot is clear) and the object
        #    starts a new occupancy. Any other box is a new object.
        for i in todo:
            occ = self._by_track(ids[i])
            if occ is not None and not occ.violating:
                occ.resettle(anchors[i], sizes[i], time_s)
                take(occ, i)
            else:
                if occ is not None:
                    occ.track_id = -1
                take(self._new_occupancy(anchors[i], sizes[i], time_s, ids[i]), i)

        for occ, i in hits.items():
            x1, y1, x2, y2 = (float(v) for v in dets.xyxy[i])
            occ.observe(EvidenceBox(time_s=time_s, xyxy=(x1, y1, x2, y2), class_name=names[i],
                                    confidence=float(dets.confidence[i]), track_id=int(ids[i])))
        return set(hits)

    def _by_track(self, track_id: int) -> Occupancy | None:
        return next((o for o in self._occupancies if o.track_id == track_id), None)

    def _remembered(self, occ: Occupancy, time_s: float) -> bool:
        """Whether a missing object may still be matched: within grace while dwelling, within
        clear_s once raised (after that its violation has ended)."""
        window = self.params.clear_s if occ.violating else self.params.grace_s
        return time_s - occ.last_seen_s <= window

    def _new_occupancy(self, anchor: np.ndarray, box_wh: np.ndarray, time_s: float, track_id: int) -> Occupancy:
        p = self.params
        stride = p.dwell_s / (self.max_evidence_boxes - 1)
        occ = Occupancy(spot=anchor, spot_wh=box_wh, settle_time_s=time_s, last_seen_s=time_s, track_id=track_id,
                        confirm=KOfN(p.confirm_k, p.confirm_n),
                        sampler=EvidenceSampler(self.max_evidence_boxes - 1, stride), sampler_stride0=stride)
        self._occupancies.append(occ)
        if len(self._occupancies) > self.max_occupancies:
            # Drop the dwelling occupancy seen longest ago; raised violations are kept until they end.
            dwelling = [o for o in self._occupancies if not o.violating and o is not occ]
            if dwelling:
                self._occupancies.remove(min(dwelling, key=lambda o: o.last_seen_s))
        return occ

    # ------------------------------------------------------------------ decisions

    def _expire(self, time_s: float) -> list[RuleEvent]:
        events: list[RuleEvent] = []
        kept: list[Occupancy] = []
        for occ in self._occupancies:
            missing_s = time_s - occ.last_seen_s
            if occ.violating and missing_s >= self.params.clear_s:
                events.append(RuleEvent("ended", self._violation(occ, occ.last_seen_s), time_s))
                self._cooldowns.append(_Cooldown(occ.spot, occ.spot_wh, occ.last_seen_s + self.params.cooldown_s))
            elif not occ.violating and missing_s > self.params.grace_s:
                pass  # gone longer than the grace: its dwell is forgotten
            else:
                kept.append(occ)
        self._occupancies = kept
        return events

    def _raise(self, time_s: float, seen: set[Occupancy], wh: np.ndarray) -> list[RuleEvent]:
        events = []
        for occ in self._occupancies:
            if (occ in seen and not occ.violating and time_s - occ.settle_time_s >= self.params.dwell_s
                    and occ.confirm.confirmed and not self._cooling(occ, time_s, wh)
                    and self.params.schedule.armed(time_s, self.tz) and self.can_raise(time_s)):
                occ.raised_at_s = time_s
                occ.violation_id = self._new_violation_id(occ, wh)
                events.append(RuleEvent("started", self._violation(occ, None), time_s))
        return events

    def _cooling(self, occ: Occupancy, time_s: float, wh: np.ndarray) -> bool:
        """Whether ``occ`` stands at a spot whose violation ended less than ``cooldown_s`` ago."""
        # Violations end in order of their last-seen time (clear_s is fixed), so cooldowns expire
        # from the left.
        while self._cooldowns and self._cooldowns[0].until_s <= time_s:
            self._cooldowns.popleft()
        tol = self.params.stationary_tolerance
        return any(float(np.hypot(*((occ.spot - c.spot) * wh))) <= tol * float(np.hypot(*(c.spot_wh * wh)))
                   for c in self._cooldowns)

    def _new_violation_id(self, occ: Occupancy, wh: np.ndarray) -> str:
        """``violation_id(camera, rule, zone, settle time)``; when another raised violation of this
        rule already has that id (two objects settled in the same frame, e.g. both parked when a
        re-scan starts), the spot's position is added to the key so both are kept. Deterministic:
        the same footage gives the same ids."""
        vid = violation_id(self.camera_id, self.name, self.zone.id, occ.settle_time_s)
        taken = {o.violation_id for o in self._occupancies if o is not occ and o.violating}
        if vid in taken:
            x, y = (round(float(v), 3) for v in occ.spot)
            vid = violation_id(self.camera_id, self.name, f"{self.zone.id}@{x},{y}", occ.settle_time_s)
        return vid

    def _violation(self, occ: Occupancy, end_time_s: float | None) -> Violation:
        last_seen = occ.last_seen_s
        return Violation(
            id=occ.violation_id or violation_id(self.camera_id, self.name, self.zone.id, occ.settle_time_s),
            rule=self.name,
            compound_id=self.compound_id,
            camera_id=self.camera_id,
            zone=self.zone.id,
            start_time_s=occ.settle_time_s,
            last_seen_time_s=last_seen,
            end_time_s=end_time_s,
            confidence=round(occ.confidence, 4),
            model_version=self.model_version,
            boxes=occ.sampler.boxes(occ.latest),
            track_id=occ.latest.track_id if occ.latest else occ.track_id,
            details={
                "class_name": occ.class_name,
                "dwell_s": round(last_seen - occ.settle_time_s, 3),
                "raised_at_s": occ.raised_at_s,
                "track_ids": list(occ.track_ids),
                "zone_kind": self.zone.kind,
                **self.extra_details(occ),
            },
        )
