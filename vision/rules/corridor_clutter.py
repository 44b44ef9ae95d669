"""Corridor clutter (楼道乱堆乱放): items left in a corridor, stairwell or lobby beyond ``dwell_s``.

The standard deducts 1 point per spot, so the rule reports *spots*: regions of the zone where
something was placed and stays. The detector knows some such items (``box_or_parcel``, ``garbage``,
bicycles) but not shoe racks, chairs or bags of every kind, so the spots come from pixels — a
:class:`~vision.rules.static_objects.StaticObjectModel` against the zone's clean baseline — and
detections of ``params.classes`` overlapping a spot are supporting evidence (its class name and
confidence; with ``require_detection`` only supported spots count).

Each static region is fed to :class:`DwellRule` as a pseudo-object (its box, a blob id kept across
frames by overlap), so dwell, k-of-n, grace, schedule, per-spot cooldown, end (the spot looks like
the baseline again for ``clear_s``) and deterministic ids are the shared ones: one violation per spot.
Without images (``image=None``) the rule falls back to the detector boxes alone.
"""
from __future__ import annotations

import numpy as np

from vision.config import CorridorClutterParams, RuleParams
from vision.rules.base import DwellRule, Occupancy
from vision.rules.pixels import ZoneRaster
from vision.rules.static_objects import StaticObjectModel
from vision.types import Detections

STATIC_CLASS = "static_object"
#: confidence of a spot that no detection supports (pixels alone say "something is there")
UNSUPPORTED_CONFIDENCE = 0.5
# Blob ids follow a region from frame to frame when the boxes overlap this much (IoU).
_BLOB_IOU = 0.3
# A detection supports a spot when this much of the smaller of the two boxes overlaps.
_SUPPORT_OVERLAP = 0.3


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _overlap_of_smaller(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy / smaller if smaller > 0 else 0.0


class CorridorClutterRule(DwellRule):
    """Spots of static clutter in a corridor/stairwell/lobby zone, each standing ``params.dwell_s``.

    ``details`` of a violation: ``area_fraction`` of the zone the spot covers, ``area_m2`` (when the
    zone has ``zone_area_m2``; a flat estimate that ignores perspective, else None) and
    ``supported_by`` (the detector class that confirms it, or None).

    Memory: the zone's model (five GRID × GRID arrays) and at most ``max_blobs`` spots per frame.
    """

    name = "corridor_clutter"
    #: static regions considered per frame (largest first)
    max_blobs = 16

    def __init__(self, *, params: RuleParams, zone, **kwargs):
        if not isinstance(params, CorridorClutterParams):
            params = CorridorClutterParams.model_validate(params.model_dump())
        super().__init__(params=params, zone=zone, **kwargs)
        self.raster = ZoneRaster(zone)
        self.model = StaticObjectModel(self.raster, pixel_threshold=params.pixel_threshold, short_s=params.short_s,
                                       baseline_s=params.baseline_s,
                                       lighting_correlation=params.lighting_correlation)
        self._persons = frozenset(params.person_classes)
        self._class_names = (STATIC_CLASS, *params.classes)
        self._blobs: list[tuple[int, np.ndarray]] = []    # (blob id, grid box) of the previous frame
        self._next_blob_id = 1
        self._blob_info: dict[int, dict] = {}             # blob id → details, for current occupancies
        self._feeding_blobs = False

    # ------------------------------------------------------------------ public

    def update(self, time_s: float, tracks: Detections, frame_wh: tuple[int, int],
               image: np.ndarray | None = None) -> list:
        """Update the zone's model with this frame, find its static spots, advance the state machine.

        Returns the :class:`~vision.rules.base.RuleEvent` s decided at this frame."""
        if image is None or (self._last_time_s is not None and time_s < self._last_time_s):
            self._feeding_blobs = False     # boxes alone (or a frame from the past, which base ignores)
            return super().update(time_s, tracks, frame_wh)
        p = self.params
        confident = tracks[tracks.confidence >= p.min_confidence]
        people = confident.of_classes(tuple(self._persons))
        self.model.update(image, self.raster.boxes_mask(people.xyxy, frame_wh, grow=0.1), time_s)
        min_cells = max(4, int(np.ceil(p.min_spot_fraction * self.raster.mask.sum())))
        blobs = self.model.blobs(min_cells, self.max_blobs)
        support = confident.of_classes(p.classes)
        support_grid = self.raster.to_grid(support.xyxy, frame_wh)
        support_names = support.names()

        ids, boxes, confs, classes = [], [], [], []
        matched = self._assign_ids([box for box, _ in blobs])
        for (box, region), blob_id in zip(blobs, matched):
            overlaps = [_overlap_of_smaller(box, d) for d in support_grid]
            best = int(np.argmax(overlaps)) if overlaps else -1
            supported = best >= 0 and overlaps[best] >= _SUPPORT_OVERLAP
            if p.require_detection and not supported:
                continue
            fraction = float(region.sum()) / float(self.raster.mask.sum())
            self._blob_info[blob_id] = {
                "area_fraction": round(fraction, 4),
                "area_m2": round(fraction * p.zone_area_m2, 2) if p.zone_area_m2 > 0 else None,
                "supported_by": support_names[best] if supported else None,
            }
            ids.append(blob_id)
            boxes.append(box)
            confs.append(float(support.confidence[best]) if supported else UNSUPPORTED_CONFIDENCE)
            classes.append(self._class_names.index(support_names[best]) if supported else 0)
        pseudo = (Detections(self.raster.to_frame(np.array(boxes), frame_wh), np.array(confs, np.float32),
                             np.array(classes, np.int32), self._class_names, np.array(ids, np.int64))
                  if ids else Detections.empty(self._class_names))
        self._feeding_blobs = True
        events = super().update(time_s, pseudo, frame_wh)
        keep = {o.track_id for o in self._occupancies} | {i for o in self._occupancies for i in o.track_ids}
        self._blob_info = {k: v for k, v in self._blob_info.items() if k in keep}
        return events

    def reset_baseline(self) -> None:
        """A reviewer says "this is clean": the zone as it looks now becomes the baseline."""
        self.model.accept()

    # ------------------------------------------------------------------ helpers

    def _assign_ids(self, boxes: list[np.ndarray]) -> list[int]:
        """Blob ids: a region overlapping a previous frame's region keeps its id (greedy by IoU)."""
        previous = list(self._blobs)
        ids = []
        for box in boxes:
            scores = [(_iou(box, pbox), pid) for pid, pbox in previous]
            best = max(scores, default=(0.0, -1))
            if best[0] >= _BLOB_IOU:
                ids.append(best[1])
                previous = [(pid, pbox) for pid, pbox in previous if pid != best[1]]
            else:
                ids.append(self._next_blob_id)
                self._next_blob_id += 1
        self._blobs = list(zip(ids, boxes))
        return ids

    # ------------------------------------------------------------------ DwellRule hooks

    def select(self, tracks: Detections, frame_wh: tuple[int, int]) -> Detections:
        # Blobs lie in the zone by construction (their bottom edge may not, for a slanted polygon).
        return tracks if self._feeding_blobs else super().select(tracks, frame_wh)

    def extra_details(self, occ: Occupancy) -> dict:
        info = self._blob_info.get(occ.track_id) or next(
            (self._blob_info[i] for i in reversed(occ.track_ids) if i in self._blob_info), None)
        if info is None:
            return {"area_fraction": None, "area_m2": None, "supported_by": None}
        return dict(info)
