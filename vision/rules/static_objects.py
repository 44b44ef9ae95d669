"""Static-object detection in one zone: what was placed there and stays, against a clean baseline.

Two running averages of the zone's gray grid (see :mod:`vision.rules.pixels`):

- the **short-term** background (time constant ``short_s``, tens of seconds) takes in whatever
  stands still: a box put down becomes part of it within about a minute;
- the **long-term** background (``baseline_s``) is the clean baseline. It follows slow lighting
  drift, but never learns cells where something *arrived* — cells that changed suddenly (different
  from both backgrounds in one frame) and still differ from the baseline.

A cell is *static* when something arrived there, the short-term background agrees with the current
frame (it stopped moving) and disagrees with the baseline. People (detector boxes of person
classes) are cut out of every update, and under them the static mask keeps its previous value: a
person walking through changes nothing, a person standing in front of a box does not hide it.
A gradual lighting change never "arrives"; a sudden global one is removed by matching the gain; a
sudden local one (a lamp) is recognised per blob by its texture still matching the baseline.
"""
from __future__ import annotations

import cv2
import numpy as np

from vision.rules.pixels import ZoneRaster, clean_mask, ema_alpha, match_lighting, texture_correlation


class StaticObjectModel:
    """The two backgrounds and the static mask of one zone. Memory: five (GRID × GRID) arrays.

    Args:
        raster: the zone's grid.
        pixel_threshold: gray-level difference that counts as changed.
        short_s / baseline_s: time constants of the short-term and long-term backgrounds.
        lighting_correlation: a blob whose texture correlates at least this well with the baseline
            is a lighting change; the baseline takes it over at once.
    """

    def __init__(self, raster: ZoneRaster, *, pixel_threshold: float, short_s: float, baseline_s: float,
                 lighting_correlation: float):
        self.raster = raster
        self.pixel_threshold = pixel_threshold
        self.short_s, self.baseline_s = short_s, baseline_s
        self.lighting_correlation = lighting_correlation
        self.long: np.ndarray | None = None
        self.short: np.ndarray | None = None
        self.current: np.ndarray | None = None
        shape = (raster.grid, raster.grid)
        self.arrived = np.zeros(shape, bool)
        self.static = np.zeros(shape, bool)
        self._last_s: float | None = None

    def update(self, image: np.ndarray, people: np.ndarray, time_s: float) -> np.ndarray:
        """Take one frame (HxWx3 BGR) and the (GRID, GRID) person mask; return the static mask."""
        current = self.raster.crop(image)
        if self.long is None:
            self.long, self.short, self.current, self._last_s = current, current.copy(), current, time_s
            return self.static
        dt = time_s - self._last_s
        self._last_s = time_s
        thr = self.pixel_threshold
        current = match_lighting(current, self.long, self.raster.mask & ~people & ~self.arrived)
        self.current = current
        off_long = np.abs(current - self.long) > thr
        off_short = np.abs(current - self.short) > thr
        # Arrival needs a sudden change (off both backgrounds at once); it lasts while the cell
        # still differs from the baseline. Under a person nothing is known, so nothing changes.
        self.arrived = np.where(people, self.arrived, (self.arrived | (off_long & off_short)) & off_long)
        free = ~people
        self.short[free] += ema_alpha(dt, self.short_s) * (current[free] - self.short[free])
        learn = free & ~self.arrived
        self.long[learn] += ema_alpha(dt, self.baseline_s) * (current[learn] - self.long[learn])
        static = self.arrived & ~off_short & (np.abs(self.short - self.long) > thr) & self.raster.mask
        self.static = clean_mask(np.where(people, self.static, static)) & self.raster.mask
        return self.static

    def blobs(self, min_cells: int, max_blobs: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Connected static regions of at least ``min_cells`` cells, largest first, at most
        ``max_blobs``, each as (grid box ``[x1, y1, x2, y2]``, (GRID, GRID) bool region).

        Regions that look like a lighting change are handed to the baseline and left out."""
        count, labels, stats, _ = cv2.connectedComponentsWithStats(self.static.astype(np.uint8), connectivity=8)
        order = sorted(range(1, count), key=lambda i: -stats[i, cv2.CC_STAT_AREA])
        out = []
        for i in order:
            if stats[i, cv2.CC_STAT_AREA] < min_cells:
                break
            region = labels == i
            corr = texture_correlation(self.current, self.long, region)
            if corr is not None and corr >= self.lighting_correlation:
                self.accept(region)
                continue
            x, y, w, h = (int(v) for v in stats[i, :4])
            out.append((np.array([x, y, x + w, y + h], np.float64), region))
            if len(out) >= max_blobs:
                break
        return out

    def accept(self, region: np.ndarray | None = None) -> None:
        """The baseline takes the current look of ``region`` (all of the zone when None): "this is
        clean" from a reviewer, or a lighting change recognised by :meth:`blobs`."""
        if self.long is None:
            return
        region = np.ones_like(self.static) if region is None else region
        self.long[region] = self.current[region]
        self.short[region] = self.current[region]
        self.arrived[region] = False
        self.static[region] = False
