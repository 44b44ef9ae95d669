"""Procedural cars: sedans, hatchbacks, SUVs and MPVs as shaded solids with glass, wheels, lights and plates."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets.synth.solids import Face, Solid, convex_part, place

# (BGR albedo, weight): white, black, silver and grey dominate Chinese compounds.
CAR_COLOURS = [
    ((225, 225, 222), 0.24), ((28, 28, 30), 0.18), ((170, 170, 168), 0.14), ((105, 105, 108), 0.10),
    ((35, 35, 160), 0.06), ((140, 70, 25), 0.06), ((80, 40, 20), 0.04), ((150, 180, 200), 0.04),
    ((40, 80, 40), 0.03), ((30, 150, 210), 0.03), ((40, 60, 110), 0.03), ((190, 160, 120), 0.03),
    ((60, 45, 115), 0.02),
]
BODY_TYPES = {  # type: (length, width, height) ranges in metres, weight
    "sedan": ((4.4, 5.0), (1.75, 1.9), (1.40, 1.50), 0.36),
    "hatchback": ((3.9, 4.4), (1.68, 1.8), (1.42, 1.55), 0.18),
    "suv": ((4.3, 4.9), (1.80, 1.95), (1.60, 1.78), 0.30),
    "mpv": ((4.6, 5.1), (1.80, 1.90), (1.72, 1.90), 0.10),
    "micro": ((2.9, 3.4), (1.50, 1.60), (1.50, 1.62), 0.06),
}


@dataclass(frozen=True)
class CarSpec:
    body_type: str
    length: float
    width: float
    height: float
    colour: tuple[float, float, float]
    roof_colour: tuple[float, float, float]
    glass: tuple[float, float, float]
    plate: str  # blue | green | yellow
    roof_rails: bool
    sunroof: bool


def random_car_spec(rng: np.random.Generator, body_type: str | None = None,
                    colour: tuple[float, float, float] | None = None) -> CarSpec:
    """A plausible car of random type, size and colour."""
    types = list(BODY_TYPES)
    if body_type is None:
        weights = np.array([BODY_TYPES[t][3] for t in types])
        body_type = types[int(rng.choice(len(types), p=weights / weights.sum()))]
    (l0, l1), (w0, w1), (h0, h1), _ = BODY_TYPES[body_type]
    if colour is None:
        weights = np.array([w for _, w in CAR_COLOURS])
        base = np.asarray(CAR_COLOURS[int(rng.choice(len(CAR_COLOURS), p=weights / weights.sum()))][0], float)
        colour = tuple(np.clip(base * rng.uniform(0.85, 1.1) + rng.normal(0, 6, 3), 5, 250))
    roof = (22.0, 22.0, 24.0) if rng.random() < 0.12 else colour
    glass = tuple(np.clip(np.array([48, 42, 36]) * rng.uniform(0.6, 1.3) + rng.normal(0, 5, 3), 5, 120))
    plate = str(rng.choice(["blue", "green", "yellow"], p=[0.72, 0.25, 0.03]))
    return CarSpec(body_type, float(rng.uniform(l0, l1)), float(rng.uniform(w0, w1)), float(rng.uniform(h0, h1)),
                   colour, roof, glass, plate, body_type in ("suv", "mpv") and rng.random() < 0.6, rng.random() < 0.2)


def _octagon(x_front: float, x_rear: float, half_width: float, chamfer_front: float, chamfer_rear: float,
             z_front: float, z_rear: float) -> np.ndarray:
    cf, cr, hw = chamfer_front, chamfer_rear, half_width
    xy = np.array([[x_front, -hw + cf], [x_front, hw - cf], [x_front - cf, hw], [x_rear + cr, hw],
                   [x_rear, hw - cr], [x_rear, -hw + cr], [x_rear + cr, -hw], [x_front - cf, -hw]])
    span = x_front - x_rear
    z = z_rear + (xy[:, 0] - x_rear) / span * (z_front - z_rear)
    return np.column_stack([xy, z])


def _quad_on(face: np.ndarray, u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    """Sub-quad of a quad (a, b, c, d with a-b the bottom edge, d-c the top edge) by fractions."""
    a, b, c, d = face

    def at(u, v):
        bottom = a + (b - a) * u
        top = d + (c - d) * u
        return bottom + (top - bottom) * v

    return np.stack([at(u0, v0), at(u1, v0), at(u1, v1), at(u0, v1)])


def _disc(centre: np.ndarray, axis_a: np.ndarray, axis_b: np.ndarray, radius: float, sides: int = 14,
          start: float = 0.0, stop: float = 2 * np.pi) -> np.ndarray:
    a = np.linspace(start, stop, sides, endpoint=stop - start < 2 * np.pi - 1e-6)
    return centre + radius * (np.cos(a)[:, None] * axis_a + np.sin(a)[:, None] * axis_b)


def car_solid(spec: CarSpec, x: float, y: float, yaw: float, object_id: int = 0,
              headlights_on: bool = False) -> Solid:
    """The car at ground position (x, y), heading ``yaw`` (radians; 0 = facing +x)."""
    L, W, H = spec.length, spec.width, spec.height
    hl, hw = L / 2, W / 2
    kind = spec.body_type
    clearance = 0.16 if kind != "suv" else 0.22
    wheel_r = {"micro": 0.27, "suv": 0.36, "mpv": 0.34}.get(kind, 0.32)
    deck = {"sedan": 0.78, "hatchback": 0.80, "suv": 0.95, "mpv": 0.92, "micro": 0.80}[kind]
    belt = clearance + 0.55 * (deck - clearance)
    # Cabin extent along x: where the windscreen starts and where the roof/rear glass ends.
    cab_front = {"sedan": hl - 1.45, "hatchback": hl - 1.15, "suv": hl - 1.25, "mpv": hl - 0.95, "micro": hl - 0.65}[kind]
    cab_rear = {"sedan": -hl + 1.0, "hatchback": -hl + 0.12, "suv": -hl + 0.1, "mpv": -hl + 0.08, "micro": -hl + 0.1}[kind]
    roof_front = cab_front - {"sedan": 0.85, "hatchback": 0.8, "suv": 0.7, "mpv": 0.75, "micro": 0.55}[kind]
    roof_rear = cab_rear + {"sedan": 0.55, "hatchback": 0.32, "suv": 0.16, "mpv": 0.12, "micro": 0.15}[kind]

    def world(points):
        return place(points, x, y, yaw)

    body_rings = [
        _octagon(hl - 0.05, -hl + 0.05, hw - 0.06, 0.35, 0.25, clearance, clearance),
        _octagon(hl, -hl, hw, 0.38, 0.25, belt, belt),
        _octagon(hl - 0.08, -hl + 0.05, hw - 0.07, 0.42, 0.3, deck - 0.07, deck),
    ]
    cabin_rings = [
        _octagon(cab_front, cab_rear, hw - 0.1, 0.12, 0.1, deck, deck),
        _octagon(roof_front, roof_rear, hw - 0.24, 0.18, 0.12, H, H),
    ]
    body_rings = [world(r) for r in body_rings]
    cabin_rings = [world(r) for r in cabin_rings]
    colour, glass = spec.colour, spec.glass

    body = convex_part(body_rings, None, colour, cap_bottom=True)

    def cabin_material(ring: int, k: int, normal: np.ndarray):
        if k == -1:
            return ("paint", spec.roof_colour)
        if k in (0, 4):  # windscreen (front) and rear window
            return ("glass", glass)
        return ("paint", colour)  # sides (windows added as decals) and pillars

    cabin = convex_part(cabin_rings, cabin_material, colour)
    forward = np.array([np.cos(yaw), np.sin(yaw), 0.0])
    left = np.array([-np.sin(yaw), np.cos(yaw), 0.0])

    cabin_decals: list[Face] = []
    lower, upper = cabin_rings
    for k, sign in ((2, 1), (6, -1)):  # the two long sides: ring points k..k+1
        k2 = (k + 1) % 8
        quad = np.stack([lower[k], lower[k2], upper[k2], upper[k]])
        normal = sign * left
        if kind in ("sedan", "micro"):
            spans = [(0.05, 0.47), (0.53, 0.93)]
        elif kind == "hatchback":
            spans = [(0.05, 0.45), (0.51, 0.80), (0.84, 0.95)]
        else:
            spans = [(0.04, 0.36), (0.41, 0.70), (0.75, 0.95)]
        for u0, u1 in spans:
            if sign < 0:  # this side runs rear-to-front
                u0, u1 = 1 - u1, 1 - u0
            cabin_decals.append(Face(_quad_on(quad, u0, u1, 0.1, 0.88), glass, "glass", normal))
    roof = upper
    if spec.sunroof:
        centre = roof.mean(0)
        pts = np.stack([centre + forward * 0.35 + left * 0.35, centre - forward * 0.25 + left * 0.35,
                        centre - forward * 0.25 - left * 0.35, centre + forward * 0.35 - left * 0.35]) + [0, 0, 0.005]
        cabin_decals.append(Face(pts, (25, 25, 28), "glass", np.array([0, 0, 1.0])))
    if spec.roof_rails:
        for side in (1, -1):
            c = roof.mean(0) + side * left * (hw - 0.35) + [0, 0, 0.01]
            pts = np.stack([c + forward * 0.9 + left * 0.03, c - forward * 0.9 + left * 0.03,
                            c - forward * 0.9 - left * 0.03, c + forward * 0.9 - left * 0.03])
            cabin_decals.append(Face(pts, (40, 40, 40), "matte", np.array([0, 0, 1.0])))

    body_decals: list[Face] = []
    ground_x = np.array([x, y, 0.0])
    wheelbase_half = hl - {"micro": 0.55, "mpv": 0.85}.get(kind, 0.9)
    for side in (1, -1):
        normal = side * left
        for fx in (wheelbase_half, -wheelbase_half + 0.05):
            c = ground_x + forward * fx + left * side * (hw + 0.005) + np.array([0, 0, wheel_r])
            arch = _disc(c, forward, np.array([0, 0, 1.0]), wheel_r * 1.12, 12, 0.0, np.pi)
            body_decals.append(Face(arch, (18, 18, 20), "matte", normal))
            body_decals.append(Face(_disc(c, forward, np.array([0, 0, 1.0]), wheel_r), (32, 32, 34), "matte", normal))
            body_decals.append(Face(_disc(c + normal * 0.003, forward, np.array([0, 0, 1.0]), wheel_r * 0.58, 10),
                                    (150, 150, 155), "paint", normal))
    front_c = ground_x + forward * (hl + 0.003)
    rear_c = ground_x - forward * (hl + 0.003)
    up = np.array([0, 0, 1.0])

    def rect(centre, half_w, z0, z1):
        return np.stack([centre - left * half_w + up * z0, centre + left * half_w + up * z0,
                         centre + left * half_w + up * z1, centre - left * half_w + up * z1])

    lamp = (235, 240, 245) if headlights_on else (200, 205, 210)
    for side in (1, -1):
        c = front_c + left * side * (hw - 0.42)
        body_decals.append(Face(rect(c, 0.2, deck - 0.2, deck - 0.09), lamp, "light", forward))
        c = rear_c + left * side * (hw - 0.35)
        body_decals.append(Face(rect(c, 0.18, deck - 0.22, deck - 0.1), (30, 30, 170), "light", -forward))
    body_decals.append(Face(rect(front_c, hw - 0.7, belt - 0.05, deck - 0.12), (35, 35, 38), "matte", forward))
    plate_colour = {"blue": (150, 70, 20), "green": (120, 200, 110), "yellow": (40, 190, 230)}[spec.plate]
    for c, n in ((front_c, forward), (rear_c, -forward)):
        body_decals.append(Face(rect(c + n * 0.002, 0.23, clearance + 0.12, clearance + 0.26), plate_colour, "paint", n))

    outline = np.concatenate(body_rings + cabin_rings + [
        np.stack([ground_x + forward * fx + left * s * hw + up * zz
                  for fx in (hl - 0.9, -hl + 0.9) for s in (1, -1) for zz in (0.0,)])])
    footprint = world(_octagon(hl + 0.05, -hl - 0.05, hw + 0.08, 0.4, 0.3, 0.0, 0.0))
    shadow = np.concatenate([body_rings[1], cabin_rings[1], footprint])
    return Solid(parts=[(body, body_decals), (cabin, cabin_decals)], outline=outline, shadow=shadow,
                 footprint=footprint, label="car", object_id=object_id, centre=ground_x + up * H / 2)
