"""Bin overflow (垃圾箱满溢): garbage heaped on or piled around a bin, judged per ``bin_station`` zone.

Each overflowing bin costs 2 points, once. A bag detector alone cannot tell a heaped bin from a tidy
station whose bags sit inside closed bins, so the site draws each bin (or the station) as a zone and
the rule combines two signals inside it:

- **garbage detections** (``params.classes``) on the zone or within ``near_margin`` around it;
- **change from the zone's clean baseline**: a (GRID × GRID) gray image of the zone learned from
  frames with no garbage and no person, updated slowly, compared after matching the lighting.

A frame shows *overflow* when garbage boxes cover ``garbage_cover`` of the zone, or when garbage is
present and ``changed_fraction`` of the zone differs from the baseline. The zone is *clear* when no
garbage is detected and it looks like its baseline again (changed ≤ ``clear_fraction``: emptied).

While a person is at the bin the frame says nothing (someone dumping a bag is not a violation):
the dwell only starts once overflow is seen with nobody there, nothing is raised while a person is
there, and a raised violation is neither ended nor confirmed by such frames.

The zone-level judgement is fed to :class:`DwellRule` as one pseudo-object per zone (the zone's
bounding box, track id 1), so dwell, k-of-n, grace, schedule, cooldown, end and ids are the shared
ones — and one zone is at most one violation at a time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely import affinity

from vision.config import BinOverflowParams, RuleParams
from vision.rules.base import DwellRule, Occupancy
from vision.rules.pixels import ZoneRaster, clean_mask, ema_alpha, match_lighting
from vision.types import Detections

OVERFLOW_CLASS = "overflow"
_ZONE_TRACK_ID = 1
# A garbage box counts as "on or around the bin" when this much of it lies in the grown zone.
_MIN_BOX_OVERLAP = 0.3
# A person box this much inside the grown zone means someone is at the bin.
_MIN_PERSON_OVERLAP = 0.1
_MAX_DETAIL_BOXES = 8


@dataclass(frozen=True, slots=True)
class BinMeasure:
    """What one frame shows about one bin zone.

    Attributes:
        person_near: a person is in or near the zone (the frame is not evidence either way).
        garbage_xyxy: (N, 4) pixel boxes of garbage on or around the zone.
        garbage_confidence: the highest confidence among them (0 when none).
        cover: fraction of the zone covered by those boxes (0..1).
        changed: fraction of the zone that differs from its baseline, None without a baseline.
    """

    person_near: bool
    garbage_xyxy: np.ndarray
    garbage_confidence: float
    cover: float
    changed: float | None


class BinOverflowRule(DwellRule):
    """Overflow of one bin zone lasting ``params.dwell_s``; see the module docstring.

    Feed it with ``update(time_s, tracks, frame_wh, image)``. Without images it judges from garbage
    detections alone (``garbage_cover``), and "clear" means no garbage detected.

    Memory: one (GRID × GRID) float32 baseline per zone, plus :class:`DwellRule`'s bounded state.
    """

    name = "bin_overflow"

    def __init__(self, *, params: RuleParams, zone, **kwargs):
        if not isinstance(params, BinOverflowParams):
            params = BinOverflowParams.model_validate(params.model_dump())
        super().__init__(params=params, zone=zone, **kwargs)
        self.raster = ZoneRaster(zone)
        self._zone_poly = shapely.Polygon(zone.polygon)
        grow = 1.0 + 2.0 * params.near_margin
        self._near_poly = affinity.scale(self._zone_poly, grow, grow, origin="centroid")
        self._persons = frozenset(params.person_classes)
        self.baseline: np.ndarray | None = None
        self._last_image_s: float | None = None
        self._unexplained_since: float | None = None   # zone differs with nothing to explain it
        self._person_near = False
        self.last_measure: BinMeasure | None = None
        self._overflow_measure: BinMeasure | None = None  # the latest frame that showed overflow

    # ------------------------------------------------------------------ public

    def update(self, time_s: float, tracks: Detections, frame_wh: tuple[int, int],
               image: np.ndarray | None = None) -> list:
        """Judge this frame (detections and pixels), then advance the shared state machine.

        Returns the :class:`~vision.rules.base.RuleEvent` s decided at this frame."""
        if self._last_time_s is not None and time_s < self._last_time_s:
            return super().update(time_s, Detections.empty((OVERFLOW_CLASS,)), frame_wh)  # warns, ignores
        m = self.measure(tracks, frame_wh, image, time_s)
        self.last_measure = m
        self._person_near = m.person_near
        p = self.params
        garbage = len(m.garbage_xyxy) > 0
        overflow = not m.person_near and (
            m.cover >= p.garbage_cover or (garbage and m.changed is not None and m.changed >= p.changed_fraction))
        clear = not m.person_near and not garbage and (m.changed is None or m.changed <= p.clear_fraction)
        if overflow:
            self._overflow_measure = m
        tracking = bool(self._occupancies)
        violating = any(o.violating for o in self._occupancies)
        # Person at the bin: keep whatever was going on alive, start nothing. A raised violation
        # stays until the zone is clear (emptied), even if the detector loses the garbage meanwhile.
        feed = overflow or (m.person_near and tracking) or (violating and not clear)
        w, h = frame_wh
        x0, y0, x1, y1 = self.raster.rect
        pseudo = Detections(np.array([[x0 * w, y0 * h, x1 * w, y1 * h]], np.float32),
                            np.array([m.garbage_confidence or 0.5], np.float32), np.zeros(1, np.int32),
                            (OVERFLOW_CLASS,), np.array([_ZONE_TRACK_ID], np.int64))
        return super().update(time_s, pseudo if feed else Detections.empty((OVERFLOW_CLASS,)), frame_wh)

    def reset_baseline(self, image: np.ndarray | None = None) -> None:
        """A reviewer says "this is clean": learn the baseline from ``image`` (or the next clean frame)."""
        self.baseline = None if image is None else self.raster.crop(image)
        self._unexplained_since = None

    def measure(self, tracks: Detections, frame_wh: tuple[int, int], image: np.ndarray | None,
                time_s: float) -> BinMeasure:
        """Garbage and people around the zone, the changed fraction, and the baseline's update."""
        p = self.params
        w, h = frame_wh
        ok = tracks.confidence >= p.min_confidence
        names = tracks.names()
        norm = tracks.xyxy.astype(np.float64) / [w, h, w, h]
        boxes = shapely.box(norm[:, 0], norm[:, 1], norm[:, 2], norm[:, 3])
        area = np.maximum(shapely.area(boxes), 1e-12)
        inside = shapely.area(shapely.intersection(boxes, self._near_poly)) / area
        is_garbage = ok & np.fromiter((n in self._classes for n in names), bool, len(tracks))
        is_person = ok & np.fromiter((n in self._persons for n in names), bool, len(tracks))
        garbage = is_garbage & (inside >= _MIN_BOX_OVERLAP)
        person_near = bool((is_person & (inside >= _MIN_PERSON_OVERLAP)).any())
        cover = 0.0
        if garbage.any():
            heap = shapely.intersection(shapely.union_all(boxes[garbage]), self._near_poly)
            cover = min(1.0, float(heap.area) / max(self._zone_poly.area, 1e-12))
        changed = None
        if image is not None:
            people = self.raster.boxes_mask(tracks.xyxy[is_person], frame_wh, grow=0.1)
            changed = self._compare_and_learn(image, people, bool(garbage.any()) or person_near, time_s)
        return BinMeasure(person_near, tracks.xyxy[garbage], float(tracks.confidence[garbage].max(initial=0.0)),
                          round(cover, 4), changed)

    # ------------------------------------------------------------------ baseline

    def _compare_and_learn(self, image: np.ndarray, people: np.ndarray, explained: bool, time_s: float) -> float | None:
        """Changed fraction of the zone against the baseline, then update the baseline.

        The baseline learns only from frames with no garbage and no person that already look like
        it (slow lighting drift). A zone that stays different for ``relearn_s`` with nothing to
        explain it (the bin was replaced or moved) is learned afresh.
        """
        p = self.params
        current = self.raster.crop(image)
        dt = 0.0 if self._last_image_s is None else time_s - self._last_image_s
        self._last_image_s = time_s
        if self.baseline is None:
            if not explained:
                self.baseline = current
            return None
        current = match_lighting(current, self.baseline, self.raster.mask & ~people)
        diff = clean_mask(np.abs(current - self.baseline) > p.pixel_threshold) & self.raster.mask
        changed = round(float(diff.sum()) / float(self.raster.mask.sum()), 4)
        if explained:
            self._unexplained_since = None
        elif changed < p.changed_fraction:
            self._unexplained_since = None
            self.baseline += ema_alpha(dt, p.baseline_s) * (current - self.baseline)
        else:
            self._unexplained_since = self._unexplained_since if self._unexplained_since is not None else time_s
            if time_s - self._unexplained_since >= p.relearn_s:
                self.baseline, self._unexplained_since = current, None
        return changed

    # ------------------------------------------------------------------ DwellRule hooks

    def select(self, tracks: Detections, frame_wh: tuple[int, int]) -> Detections:
        return tracks  # the pseudo-object built in update(), already judged

    def can_raise(self, time_s: float) -> bool:
        return not self._person_near

    def extra_details(self, occ: Occupancy) -> dict:
        m = self._overflow_measure
        if m is None:
            return {}
        return {
            "garbage_boxes": [[round(float(v), 1) for v in box] for box in m.garbage_xyxy[:_MAX_DETAIL_BOXES]],
            "garbage_cover": m.cover,
            "changed_fraction": m.changed,
        }
