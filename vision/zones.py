"""Zone membership: which boxes stand inside a camera's drawn polygon.

Zones are drawn in normalised 0..1 image coordinates (see :class:`vision.config.Zone`) so that they
survive a change of stream resolution (main vs sub stream, a camera re-configured from 1080p to 4K).
Membership is decided by the *bottom-centre* of each box — the point where a car or a bike touches
the ground — so a car whose roof overlaps a fire lane drawn on the road surface in the image, but
whose wheels stand beside it, is not "on" the fire lane.
"""
from __future__ import annotations

import cv2
import numpy as np
import shapely

from vision.config import Zone
from vision.types import Detections

BGR = tuple[int, int, int]


class PolygonZone:
    """One configured zone, ready to test boxes of frames of any size.

    Attributes:
        zone: the configuration zone (id, kind, normalised polygon, armed rules).

    Instead of scaling the polygon to every frame size (and caching one per size), the anchor points
    are divided by the frame size and tested against the normalised polygon: an axis-aligned scaling
    does not change which points lie inside a polygon, and there is nothing to cache or invalidate.
    Points on the polygon's edge count as inside, so a zone drawn to the image border still catches a
    car whose box is cut off by that border.

    >>> z = PolygonZone(Zone(id="lane", kind="fire_lane", polygon=((0, 0.5), (1, 0.5), (1, 1), (0, 1))))
    >>> dets = Detections(np.array([[10, 10, 50, 40], [10, 60, 50, 90]], np.float32),
    ...                   np.array([0.9, 0.9], np.float32), np.array([0, 0], np.int32), ("car",))
    >>> z.trigger(dets, (100, 100)).tolist()
    [False, True]
    """

    def __init__(self, zone: Zone):
        self.zone = zone
        self._polygon = shapely.Polygon(zone.polygon)
        shapely.prepare(self._polygon)  # speeds up repeated point tests

    def contains(self, points_xy: np.ndarray, frame_wh: tuple[int, int]) -> np.ndarray:
        """Whether each pixel point lies in the zone.

        Args:
            points_xy: (N, 2) pixel coordinates in a frame of size ``frame_wh``.
            frame_wh: (width, height) of that frame in pixels.

        Returns:
            (N,) bool array.
        """
        points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
        if points.shape[0] == 0:
            return np.zeros(0, dtype=bool)
        w, h = frame_wh
        if w <= 0 or h <= 0:
            raise ValueError(f"frame size must be positive, got {frame_wh}")
        # A detector may return a box reaching a little past the border; clamp so it is tested at
        # the border rather than dropped.
        norm = np.clip(points / np.array([w, h], dtype=np.float64), 0.0, 1.0)
        return np.asarray(shapely.intersects_xy(self._polygon, norm[:, 0], norm[:, 1]), dtype=bool)

    def trigger(self, detections: Detections, frame_wh: tuple[int, int]) -> np.ndarray:
        """(N,) bool: which detections have their bottom-centre anchor inside the zone."""
        return self.contains(detections.bottom_center(), frame_wh)

    def polygon_px(self, frame_wh: tuple[int, int]) -> np.ndarray:
        """The polygon in pixels of a frame of size (width, height), as (K, 2) int32 for OpenCV."""
        w, h = frame_wh
        pts = np.asarray(self.zone.polygon, dtype=np.float64) * np.array([w, h], dtype=np.float64)
        return np.round(pts).astype(np.int32)


def draw_zone(image: np.ndarray, zone: Zone, color: BGR = (0, 0, 255), *, thickness: int = 2,
              fill_alpha: float = 0.15, label: bool = True) -> np.ndarray:
    """Draw a zone's outline, a light fill and its id on an HxWx3 BGR image, **in place**.

    Drawing in place (the OpenCV way) avoids copying a full-resolution frame once per layer; pass a
    copy if the original must stay clean. Returns the same array for chaining.
    """
    h, w = image.shape[:2]
    pts = PolygonZone(zone).polygon_px((w, h))
    if fill_alpha > 0:
        overlay = image.copy()
        cv2.fillPoly(overlay, [pts], color)
        cv2.addWeighted(overlay, fill_alpha, image, 1.0 - fill_alpha, 0.0, dst=image)
    cv2.polylines(image, [pts], isClosed=True, color=color, thickness=thickness, lineType=cv2.LINE_AA)
    if label:
        # Hershey fonts are ASCII-only, so the zone id (an identifier) is written, not its display name.
        x, y = int(pts[:, 0].min()), int(pts[:, 1].min())
        scale = max(0.4, h / 1080 * 0.8)
        (tw, th), base = cv2.getTextSize(zone.id, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        y = max(y, th + base + 2)
        cv2.rectangle(image, (x, y - th - base - 2), (x + tw + 4, y), color, -1)
        cv2.putText(image, zone.id, (x + 2, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return image
