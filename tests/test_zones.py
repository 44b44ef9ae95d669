"""Zones decide membership by where a box touches the ground, at any resolution."""
import numpy as np

from vision.config import Zone
from vision.types import Detections
from vision.zones import PolygonZone, draw_zone

NAMES = ("car",)
# Fire lane drawn on the lower half of the image, down to the border.
LANE = Zone(id="lane", kind="fire_lane", polygon=((0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)))
# A vertical strip in the middle of the image.
STRIP = Zone(id="strip", kind="fire_lane", polygon=((0.4, 0.0), (0.6, 0.0), (0.6, 1.0), (0.4, 1.0)))


def dets(*boxes) -> Detections:
    n = len(boxes)
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.full(n, 0.9, np.float32),
                      np.zeros(n, np.int32), NAMES)


def test_bottom_centre_decides_membership():
    zone = PolygonZone(STRIP)
    d = dets([420, 100, 580, 200],   # anchor (500, 200): inside the strip
             [250, 100, 450, 200],   # overlaps the strip, anchor (350, 200) outside
             [700, 100, 800, 200])   # nowhere near
    assert zone.trigger(d, (1000, 1000)).tolist() == [True, False, False]


def test_membership_survives_a_resolution_change():
    zone = PolygonZone(LANE)
    normalised = np.array([[0.1, 0.2, 0.3, 0.45], [0.1, 0.3, 0.3, 0.55], [0.6, 0.7, 0.9, 0.95]])
    for w, h in [(640, 360), (1920, 1080), (3840, 2160), (1001, 777)]:
        d = dets(*(normalised * [w, h, w, h]))
        assert zone.trigger(d, (w, h)).tolist() == [False, True, True], (w, h)


def test_box_cut_off_by_the_border_counts_when_the_zone_reaches_it():
    zone = PolygonZone(LANE)
    d = dets([100, 800, 300, 1080],      # bottom exactly on the image border
             [100, 800, 300, 1090])      # a detector box a little past the border
    assert zone.trigger(d, (1920, 1080)).tolist() == [True, True]


def test_empty_detections():
    assert PolygonZone(LANE).trigger(Detections.empty(NAMES), (640, 480)).shape == (0,)


def test_polygon_px_scales_to_the_frame():
    px = PolygonZone(LANE).polygon_px((640, 360))
    assert px.dtype == np.int32
    assert px.tolist() == [[0, 180], [640, 180], [640, 360], [0, 360]]


def test_draw_zone_draws_in_place_and_keeps_shape():
    image = np.zeros((360, 640, 3), np.uint8)
    out = draw_zone(image, STRIP, (0, 0, 255))
    assert out is image and out.shape == (360, 640, 3)
    assert image[:, 250:390, 2].max() == 255          # outline drawn near x = 0.4 * 640 = 256
    assert image[180, 320, 2] > 0 and image[180, 100].sum() == 0  # filled inside, untouched outside
