"""A zone's pixels at a fixed small size, for rules that compare a zone with its clean baseline.

Cameras at bin stations and in corridors are fixed, so "what the zone looks like when it is clean"
is a useful reference. Every model here is kept on a fixed grid (``GRID`` × ``GRID`` gray pixels of
the zone's bounding box), whatever the stream resolution: memory per zone is constant and a switch
from sub to main stream changes nothing.
"""
from __future__ import annotations

import cv2
import numpy as np

from vision.config import Zone

#: side of the square grid a zone's bounding box is resampled to (64×64 float32 = 16 KiB per model)
GRID = 64
# Ratios of dark pixels are noise; they do not vote on the lighting gain.
_MIN_GAIN_LEVEL = 8.0


class ZoneRaster:
    """Maps a zone between frame pixels and its fixed grid.

    Attributes:
        mask: (GRID, GRID) bool, the polygon on the grid.
        rect: (x0, y0, x1, y1) the polygon's bounding box, normalised 0..1.

    >>> r = ZoneRaster(Zone(id="z", kind="corridor", polygon=((0, 0), (1, 0), (1, 1), (0, 1))))
    >>> r.crop(np.zeros((100, 200, 3), np.uint8)).shape
    (64, 64)
    """

    def __init__(self, zone: Zone, grid: int = GRID):
        self.grid = grid
        poly = np.asarray(zone.polygon, dtype=np.float64)
        (x0, y0), (x1, y1) = poly.min(axis=0), poly.max(axis=0)
        self.rect = (float(x0), float(y0), float(x1), float(y1))
        scale = np.array([grid / max(x1 - x0, 1e-6), grid / max(y1 - y0, 1e-6)])
        pts = np.round((poly - [x0, y0]) * scale).astype(np.int32)
        mask = np.zeros((grid, grid), np.uint8)
        cv2.fillPoly(mask, [pts], 1)
        self.mask = mask.astype(bool)
        if not self.mask.any():
            self.mask[:] = True

    def _pixel_rect(self, frame_wh: tuple[int, int]) -> tuple[int, int, int, int]:
        w, h = frame_wh
        x0, y0, x1, y1 = self.rect
        px0, py0 = int(np.floor(x0 * w)), int(np.floor(y0 * h))
        px1, py1 = max(int(np.ceil(x1 * w)), px0 + 1), max(int(np.ceil(y1 * h)), py0 + 1)
        return px0, py0, min(px1, w), min(py1, h)

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The zone's bounding box of an HxWx3 BGR frame as a (GRID, GRID) float32 gray image, lightly
        blurred (sensor noise and JPEG blocks are not changes)."""
        h, w = image.shape[:2]
        x0, y0, x1, y1 = self._pixel_rect((w, h))
        # Taking every k-th pixel first (down to ~4× the grid) makes a 4K frame cost about what a small
        # one does; INTER_AREA still averages the remaining 4×4 cells, so noise stays averaged out.
        step = max(1, min(x1 - x0, y1 - y0) // (4 * self.grid))
        gray = cv2.cvtColor(np.ascontiguousarray(image[y0:y1:step, x0:x1:step]), cv2.COLOR_BGR2GRAY)
        small = cv2.resize(gray, (self.grid, self.grid), interpolation=cv2.INTER_AREA)
        return cv2.GaussianBlur(small.astype(np.float32), (3, 3), 0)

    def boxes_mask(self, xyxy: np.ndarray, frame_wh: tuple[int, int], grow: float = 0.0) -> np.ndarray:
        """(GRID, GRID) bool: grid cells covered by any of the (N, 4) pixel boxes, each grown by
        ``grow`` × its size on every side."""
        out = np.zeros((self.grid, self.grid), np.uint8)
        for x1, y1, x2, y2 in self.to_grid(np.asarray(xyxy, np.float64).reshape(-1, 4), frame_wh, grow):
            out[max(int(np.floor(y1)), 0):max(int(np.ceil(y2)), 0), max(int(np.floor(x1)), 0):max(int(np.ceil(x2)), 0)] = 1
        return out.astype(bool)

    def to_grid(self, xyxy: np.ndarray, frame_wh: tuple[int, int], grow: float = 0.0) -> np.ndarray:
        """(N, 4) pixel boxes of a frame of size ``frame_wh`` → (N, 4) boxes in grid cells."""
        w, h = frame_wh
        x0, y0, x1, y1 = self.rect
        boxes = np.asarray(xyxy, np.float64).reshape(-1, 4).copy()
        size = boxes[:, 2:] - boxes[:, :2]
        boxes[:, :2] -= size * grow
        boxes[:, 2:] += size * grow
        sx, sy = self.grid / max((x1 - x0) * w, 1e-6), self.grid / max((y1 - y0) * h, 1e-6)
        return (boxes - [x0 * w, y0 * h, x0 * w, y0 * h]) * [sx, sy, sx, sy]

    def to_frame(self, grid_xyxy: np.ndarray, frame_wh: tuple[int, int]) -> np.ndarray:
        """(N, 4) boxes in grid cells → (N, 4) float32 pixel boxes of a frame of size ``frame_wh``."""
        w, h = frame_wh
        x0, y0, x1, y1 = self.rect
        sx, sy = (x1 - x0) * w / self.grid, (y1 - y0) * h / self.grid
        boxes = np.asarray(grid_xyxy, np.float64).reshape(-1, 4) * [sx, sy, sx, sy]
        return (boxes + [x0 * w, y0 * h, x0 * w, y0 * h]).astype(np.float32)


def match_lighting(current: np.ndarray, reference: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """``current`` scaled so its overall brightness matches ``reference``.

    The gain is the median of ``reference / current`` over the ``usable`` cells: a light switched on,
    the camera's auto-exposure or the sun behind a cloud change the whole zone by about one factor,
    while an item placed in it changes less than half of the cells, which the median ignores.
    """
    ok = usable & (current > _MIN_GAIN_LEVEL) & (reference > _MIN_GAIN_LEVEL)
    if ok.sum() < 16:
        return current
    gain = float(np.median(reference[ok] / current[ok]))
    return current * float(np.clip(gain, 0.25, 4.0))


def ema_alpha(dt_s: float, time_constant_s: float) -> float:
    """Weight of a new observation in a running average with the given time constant, for a step of
    ``dt_s`` seconds of frame time — so the models behave the same at 2 fps and at 10 fps."""
    return float(1.0 - np.exp(-max(dt_s, 0.0) / time_constant_s))


def clean_mask(mask: np.ndarray) -> np.ndarray:
    """A changed-pixel mask without single-cell specks and with small holes closed."""
    kernel = np.ones((3, 3), np.uint8)
    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    return cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel).astype(bool)


def texture_correlation(a: np.ndarray, b: np.ndarray, region: np.ndarray, min_std: float = 4.0) -> float | None:
    """Pearson correlation of ``a`` and ``b`` over ``region``; None when either is too flat to tell.

    A lighting change (a lamp, a sun patch) keeps the texture of the floor under it — high
    correlation — while an item placed on it replaces that texture."""
    if region.sum() < 9:
        return None
    x, y = a[region].astype(np.float64), b[region].astype(np.float64)
    if x.std() < min_std or y.std() < min_std:
        return None
    return float(np.corrcoef(x, y)[0, 1])
