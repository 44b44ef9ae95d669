"""Static clutter that is not a car: bins, planters with bushes, bollards, lamp posts, cartons, trees,
a guard booth, parked two-wheelers. They make the scene look lived-in and give the detector negatives."""
from __future__ import annotations

import numpy as np

from datasets.synth.solids import Face, Solid, box_rings, convex_part, cylinder_rings, place


def _solid(parts, label=None) -> Solid:
    points = np.concatenate([f.points for faces, decals in parts for f in faces])
    return Solid(parts=parts, outline=points, shadow=points, footprint=None, label=label, centre=points.mean(0))


def wheelie_bin(x: float, y: float, yaw: float, colour) -> Solid:
    body = convex_part([place(r, x, y, yaw) for r in box_rings(0.58, 0.72, 0.0, 0.95)], None, colour)
    lid_colour = tuple(c * 0.85 for c in colour)
    lid = convex_part([place(r, x, y, yaw) for r in box_rings(0.64, 0.78, 0.95, 1.02)], None, lid_colour)
    return _solid([(body, []), (lid, [])])


def planter(x: float, y: float, yaw: float, length: float, rng: np.random.Generator) -> Solid:
    concrete = (150, 155, 158)
    box = convex_part([place(r, x, y, yaw) for r in box_rings(length, 0.7, 0.0, 0.5)], None, concrete)
    green = (rng.uniform(30, 60), rng.uniform(90, 130), rng.uniform(40, 80))
    radius = 0.33
    a = np.linspace(0, 2 * np.pi, 9, endpoint=False)
    rings = []
    for z, scale in ((0.5, 0.9), (0.8, 1.0), (1.05, 0.6)):
        xy = np.column_stack([np.cos(a) * (length / 2) * scale, np.sin(a) * radius * scale])
        rings.append(place(np.column_stack([xy, np.full(9, z)]), x, y, yaw))
    bush = convex_part(rings, None, green)
    return _solid([(box, []), (bush, [])])


def bollard(x: float, y: float, striped: bool = True) -> Solid:
    colour = (40, 190, 230) if striped else (160, 160, 165)
    post = convex_part([r + [x, y, 0] for r in cylinder_rings(0.09, 0.0, 0.8, 8)], None, colour)
    band = convex_part([r + [x, y, 0] for r in cylinder_rings(0.095, 0.5, 0.62, 8)], None, (30, 30, 30))
    return _solid([(post, []), (band, [])] if striped else [(post, [])])


def lamp_post(x: float, y: float, yaw: float, height: float = 5.0) -> Solid:
    pole = convex_part([r + [x, y, 0] for r in cylinder_rings(0.07, 0.0, height, 8)], None, (110, 110, 115))
    head = convex_part([place(r, x, y, yaw) for r in box_rings(0.7, 0.25, height - 0.15, height)], None, (90, 90, 95))
    return _solid([(pole, []), (head, [])])


def carton_pile(x: float, y: float, yaw: float, rng: np.random.Generator) -> Solid:
    parts = []
    z = 0.0
    for _ in range(int(rng.integers(1, 4))):
        l, w, h = rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.5), rng.uniform(0.2, 0.45)
        off = rng.normal(0, 0.08, 2)
        brown = (rng.uniform(60, 90), rng.uniform(110, 140), rng.uniform(160, 190))
        parts.append((convex_part([place(r, x + off[0], y + off[1], yaw + rng.normal(0, 0.3))
                                   for r in box_rings(l, w, z, z + h)], None, brown), []))
        z += h
    return _solid(parts)


def tree(x: float, y: float, rng: np.random.Generator) -> Solid:
    trunk = convex_part([r + [x, y, 0] for r in cylinder_rings(0.14, 0.0, 2.6, 8)], None, (50, 70, 90))
    r = rng.uniform(1.4, 2.4)
    base = 2.4
    green = (rng.uniform(30, 55), rng.uniform(85, 120), rng.uniform(45, 75))
    a = np.linspace(0, 2 * np.pi, 10, endpoint=False) + rng.uniform(0, 1)
    rings = []
    for z, scale in ((base, 0.55), (base + 0.8 * r, 1.0), (base + 1.6 * r, 0.75), (base + 2.0 * r, 0.3)):
        jitter = rng.uniform(0.9, 1.1, 10)
        rings.append(np.column_stack([np.cos(a) * r * scale * jitter + x, np.sin(a) * r * scale * jitter + y,
                                      np.full(10, z)]))
    canopy = convex_part(rings, None, green)
    return _solid([(trunk, []), (canopy, [])])


def guard_booth(x: float, y: float, yaw: float) -> Solid:
    walls = convex_part([place(r, x, y, yaw) for r in box_rings(2.2, 1.8, 0.0, 2.5)], None, (200, 205, 210))
    roof = convex_part([place(r, x, y, yaw) for r in box_rings(2.6, 2.2, 2.5, 2.7)], None, (70, 60, 140))
    fwd = np.array([np.cos(yaw), np.sin(yaw), 0])
    side = np.array([-np.sin(yaw), np.cos(yaw), 0])
    c = np.array([x, y, 0]) + fwd * 1.101
    window = np.stack([c - side * 0.7 + [0, 0, 1.0], c + side * 0.7 + [0, 0, 1.0],
                       c + side * 0.7 + [0, 0, 2.1], c - side * 0.7 + [0, 0, 2.1]])
    return _solid([(walls, [Face(window, (90, 70, 50), "glass", fwd)]), (roof, [])])


def two_wheeler(x: float, y: float, yaw: float, rng: np.random.Generator) -> Solid:
    """An e-bike / scooter parked on its stand (a negative for the car detector)."""
    colour = tuple(float(c) for c in rng.integers(30, 220, 3))
    body = convex_part([place(r, x, y, yaw) for r in box_rings(1.5, 0.35, 0.25, 0.7, 0.1)], None, colour)
    seat = convex_part([place(r, x - 0.2 * np.cos(yaw), y - 0.2 * np.sin(yaw), yaw)
                        for r in box_rings(0.6, 0.28, 0.7, 0.85)], None, (25, 25, 25))
    fwd = np.array([np.cos(yaw), np.sin(yaw), 0])
    bar = convex_part([place(r, x + 0.6 * fwd[0], y + 0.6 * fwd[1], yaw) for r in box_rings(0.15, 0.65, 0.95, 1.05)],
                      None, (40, 40, 40))
    stem = convex_part([place(r, x + 0.6 * fwd[0], y + 0.6 * fwd[1], yaw) for r in box_rings(0.12, 0.12, 0.3, 0.95)],
                       None, colour)
    return _solid([(body, []), (seat, []), (stem, []), (bar, [])])
