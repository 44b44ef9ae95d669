"""A compound scene: ground layout (road, kerbs, pavements, parking bays, fire lane), a building wall,
static clutter, and the renderer that draws cars into it frame by frame with exact boxes."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from datasets.synth import textures
from datasets.synth.camera import PinholeCamera
from datasets.synth.solids import Lighting, Solid, draw_shadows, draw_solid


@dataclass(frozen=True)
class GroundRect:
    """An axis-aligned rectangle on the ground, metres."""

    x0: float
    x1: float
    y0: float
    y1: float

    def corners(self) -> np.ndarray:
        return np.array([[self.x0, self.y0, 0], [self.x1, self.y0, 0], [self.x1, self.y1, 0], [self.x0, self.y1, 0]],
                        float)


@dataclass(frozen=True)
class ParkingRow:
    """A row of bays along x. ``y_kerb`` is the bay edge at the road; bays extend ``side`` (+1/-1) in y.
    ``parallel`` bays lie along the kerb, otherwise they are perpendicular to it."""

    x0: float
    y_kerb: float
    side: int
    n_bays: int
    bay_width: float = 2.5
    bay_depth: float = 5.0
    parallel: bool = False
    line_colour: tuple[int, int, int] = (225, 225, 225)

    @property
    def along(self) -> float:
        return self.bay_depth if self.parallel else self.bay_width

    @property
    def across(self) -> float:
        return self.bay_width if self.parallel else self.bay_depth

    def rect(self) -> GroundRect:
        y_far = self.y_kerb + self.side * self.across
        return GroundRect(self.x0, self.x0 + self.n_bays * self.along, min(self.y_kerb, y_far), max(self.y_kerb, y_far))

    def bay_pose(self, i: int, facing_road: bool) -> tuple[float, float, float]:
        """Ground position and yaw of a car parked in bay ``i``."""
        x = self.x0 + (i + 0.5) * self.along
        y = self.y_kerb + self.side * self.across / 2
        if self.parallel:
            return x, y, 0.0 if facing_road else np.pi
        toward_road = -np.pi / 2 * self.side  # side=+1 (bays beyond the kerb): road is at -y
        return x, y, toward_road if facing_road else toward_road + np.pi


@dataclass
class Layout:
    """Where everything lies on the ground, in metres. The road runs along x."""

    road_y: float
    road_width: float
    parking: list[ParkingRow] = field(default_factory=list)
    fire_lane: GroundRect | None = None
    fire_lane_style: str = "hatch"  # hatch | grid | text
    gate: GroundRect | None = None
    wall_y: float | None = None
    wall_height: float = 15.0
    near_ground: str = "paving"  # paving | grass
    far_ground: str = "paving"
    centre_line: str = "dashed"  # dashed | none | solid_yellow
    extent: GroundRect = GroundRect(-35, 35, -2, 45)
    static: list[Solid] = field(default_factory=list)

    @property
    def road(self) -> GroundRect:
        return GroundRect(self.extent.x0, self.extent.x1, self.road_y - self.road_width / 2,
                          self.road_y + self.road_width / 2)

    def lane_y(self, direction: int) -> float:
        """Centre of the lane used by traffic moving towards +x (direction=+1) or -x (-1): drive on the right."""
        return self.road_y - direction * self.road_width / 4


class GroundPainter:
    """Paints a top-down ground texture: texture pixel (col, row) = world (x0 + col/ppm, y1 - row/ppm)."""

    def __init__(self, extent: GroundRect, px_per_m: float):
        self.extent, self.ppm = extent, px_per_m
        self.width = int((extent.x1 - extent.x0) * px_per_m)
        self.height = int((extent.y1 - extent.y0) * px_per_m)

    def px(self, xy) -> np.ndarray:
        xy = np.asarray(xy, float).reshape(-1, 2)
        return np.column_stack([(xy[:, 0] - self.extent.x0) * self.ppm, (self.extent.y1 - xy[:, 1]) * self.ppm])

    def rect_px(self, r: GroundRect) -> tuple[int, int, int, int]:
        (c0, r0), (c1, r1) = self.px([[r.x0, r.y1], [r.x1, r.y0]])
        return int(c0), int(r0), int(c1), int(r1)

    def line(self, img, a, b, colour, width_m: float) -> None:
        p = self.px([a, b]).round().astype(np.int32)
        cv2.line(img, tuple(p[0]), tuple(p[1]), colour, max(1, int(round(width_m * self.ppm))), cv2.LINE_AA)

    def paste(self, img, r: GroundRect, patch_fn) -> None:
        c0, r0, c1, r1 = self.rect_px(r)
        c0, r0 = max(c0, 0), max(r0, 0)
        c1, r1 = min(c1, img.shape[1]), min(r1, img.shape[0])
        if c1 > c0 and r1 > r0:
            img[r0:r1, c0:c1] = patch_fn(r1 - r0, c1 - c0)


def _worn_paint(img: np.ndarray, mask: np.ndarray, colour, rng: np.random.Generator, opacity=0.85) -> None:
    """Blend paint into img where mask (uint8) is set, with wear (noise holes)."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return
    wear = textures.fractal_noise(h, w, rng, octaves=4, base_cell=20)
    alpha = (mask[y:y + h, x:x + w].astype(np.float32) / 255) * np.clip(opacity + 0.35 * wear, 0, 1)
    roi = img[y:y + h, x:x + w]
    roi[:] = (roi * (1 - alpha[..., None]) + np.asarray(colour, np.float32) * alpha[..., None]).astype(np.uint8)


def paint_ground(layout: Layout, rng: np.random.Generator, px_per_m: float = 24.0) -> tuple[np.ndarray, GroundPainter]:
    """The ground texture for a layout."""
    gp = GroundPainter(layout.extent, px_per_m)
    h, w = gp.height, gp.width
    ppm = int(px_per_m)
    tile_colours = [(150, 155, 160), (120, 130, 165), (170, 172, 170), (95, 105, 150), (140, 150, 150)]
    img = textures.paving(h, w, rng, max(4, int(0.4 * ppm)), tile_colours[int(rng.integers(len(tile_colours)))])
    road = layout.road
    near = GroundRect(layout.extent.x0, layout.extent.x1, layout.extent.y0, road.y0 - 0.2)
    far = GroundRect(layout.extent.x0, layout.extent.x1, road.y1 + 0.2, layout.extent.y1)
    for region, kind in ((near, layout.near_ground), (far, layout.far_ground)):
        if kind == "grass":
            gp.paste(img, region, lambda hh, ww: textures.grass(hh, ww, rng))
        elif kind == "paving" and rng.random() < 0.5:
            colour = tile_colours[int(rng.integers(len(tile_colours)))]
            gp.paste(img, region, lambda hh, ww, c=colour: textures.paving(hh, ww, rng, max(4, int(0.3 * ppm)), c))
    # Parking bays: asphalt or grass pavers under the bays.
    for row in layout.parking:
        base = float(rng.uniform(80, 110))
        gp.paste(img, row.rect(), lambda hh, ww, b=base: textures.asphalt(hh, ww, rng, b))
    gp.paste(img, road, lambda hh, ww: textures.asphalt(hh, ww, rng, float(rng.uniform(70, 105))))
    # Tyre wear: darker bands along the lanes.
    for direction in (1, -1):
        y = layout.lane_y(direction)
        for off in (-0.8, 0.8):
            band = GroundRect(road.x0, road.x1, y + off - 0.3, y + off + 0.3)
            c0, r0, c1, r1 = gp.rect_px(band)
            r0, r1 = max(r0, 0), min(r1, h)
            if r1 > r0:
                img[r0:r1] = (img[r0:r1] * rng.uniform(0.9, 0.97)).astype(np.uint8)
    # Kerbs.
    kerb = (185, 188, 190)
    for y in (road.y0 - 0.1, road.y1 + 0.1):
        gp.line(img, (road.x0, y), (road.x1, y), kerb, 0.2)
        for x in np.arange(road.x0, road.x1, 1.0):
            gp.line(img, (x, y - 0.1), (x, y + 0.1), (120, 122, 125), 0.03)
    # Centre line.
    if layout.centre_line == "dashed":
        for x in np.arange(road.x0, road.x1, 6.0):
            gp.line(img, (x, layout.road_y), (x + 3.0, layout.road_y), (215, 218, 220), 0.12)
    elif layout.centre_line == "solid_yellow":
        gp.line(img, (road.x0, layout.road_y), (road.x1, layout.road_y), (40, 190, 225), 0.12)
    # Parking bay lines.
    for row in layout.parking:
        mask = np.zeros((h, w), np.uint8)
        r = row.rect()
        y_far = row.y_kerb + row.side * row.across
        for i in range(row.n_bays + 1):
            x = row.x0 + i * row.along
            p = gp.px([[x, row.y_kerb], [x, y_far]]).round().astype(np.int32)
            cv2.line(mask, tuple(p[0]), tuple(p[1]), 255, max(1, int(0.12 * px_per_m)), cv2.LINE_AA)
        p = gp.px([[r.x0, y_far], [r.x1, y_far]]).round().astype(np.int32)
        cv2.line(mask, tuple(p[0]), tuple(p[1]), 255, max(1, int(0.12 * px_per_m)), cv2.LINE_AA)
        _worn_paint(img, mask, row.line_colour, rng, 0.8)
    if layout.fire_lane is not None:
        _paint_fire_lane(img, gp, layout.fire_lane, layout.fire_lane_style, rng)
    if layout.gate is not None:
        mask = np.zeros((h, w), np.uint8)
        g = layout.gate
        for y in (g.y0, g.y1):
            p = gp.px([[g.x0, y], [g.x1, y]]).round().astype(np.int32)
            cv2.line(mask, tuple(p[0]), tuple(p[1]), 255, max(1, int(0.3 * px_per_m)))
        _worn_paint(img, mask, (230, 230, 230), rng, 0.75)
    # Manhole covers and drains.
    for _ in range(int(rng.integers(1, 5))):
        x = rng.uniform(road.x0, road.x1)
        y = rng.uniform(road.y0 + 0.5, road.y1 - 0.5)
        c = gp.px([[x, y]])[0].round().astype(int)
        cv2.circle(img, tuple(c), int(0.35 * px_per_m), (70, 72, 75), -1, cv2.LINE_AA)
        cv2.circle(img, tuple(c), int(0.35 * px_per_m), (55, 55, 58), max(1, int(0.05 * px_per_m)), cv2.LINE_AA)
    return img, gp


def _paint_fire_lane(img, gp: GroundPainter, lane: GroundRect, style: str, rng: np.random.Generator) -> None:
    h, w = img.shape[:2]
    c0, r0, c1, r1 = gp.rect_px(lane)
    yellow, red = (30, 200, 240), (40, 40, 200)
    border = np.zeros((h, w), np.uint8)
    cv2.rectangle(border, (c0, r0), (c1, r1), 255, max(2, int(0.18 * gp.ppm)))
    if style in ("hatch", "grid"):
        hatch_y = np.zeros((h, w), np.uint8)
        hatch_r = np.zeros((h, w), np.uint8)
        step = int(1.0 * gp.ppm)
        span = (c1 - c0) + (r1 - r0)
        for i, k in enumerate(range(-span, span, step)):
            target = hatch_y if (style == "grid" or i % 2 == 0) else hatch_r
            cv2.line(target, (c0 + k, r1), (c0 + k + (r1 - r0), r0), 255, max(1, int(0.22 * gp.ppm)), cv2.LINE_AA)
            if style == "grid":
                cv2.line(target, (c0 + k, r0), (c0 + k + (r1 - r0), r1), 255, max(1, int(0.15 * gp.ppm)), cv2.LINE_AA)
        inside = np.zeros((h, w), np.uint8)
        cv2.rectangle(inside, (c0, r0), (c1, r1), 255, -1)
        _worn_paint(img, cv2.bitwise_and(hatch_y, inside), yellow, rng, 0.8)
        _worn_paint(img, cv2.bitwise_and(hatch_r, inside), red, rng, 0.75)
    _worn_paint(img, border, yellow, rng, 0.9)
    # "FIRE LANE" lettering across the lane, in a cleared box (OpenCV has no CJK glyphs).
    text = "FIRE LANE" if rng.random() < 0.7 else "NO PARKING"
    scale = gp.ppm / 12
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_DUPLEX, scale, 2)
    cx, cy = (c0 + c1) // 2, (r0 + r1) // 2
    if tw < (c1 - c0) * 0.9 and th < (r1 - r0):
        cv2.rectangle(img, (cx - tw // 2 - 8, cy - th // 2 - 8), (cx + tw // 2 + 8, cy + th // 2 + 8), (72, 72, 74), -1)
        cv2.putText(img, text, (cx - tw // 2, cy + th // 2), cv2.FONT_HERSHEY_DUPLEX, scale, yellow,
                    max(2, int(scale * 2)), cv2.LINE_AA)


@dataclass
class PostFx:
    """Camera artefacts applied to each rendered frame."""

    gain: float = 1.0
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # BGR multipliers (white balance / time of day)
    noise_sigma: float = 2.5
    blur_sigma: float = 0.6
    vignette: float = 0.15
    grayscale: bool = False  # night IR mode
    osd: str | None = None  # on-screen text (timestamp), drawn top-left


def clip_polygon_to_unit(poly: np.ndarray) -> np.ndarray:
    """Sutherland–Hodgman clip of a (K,2) polygon to the unit square."""
    out = [tuple(p) for p in poly]
    for axis, keep_low, bound in ((0, True, 0.0), (0, False, 1.0), (1, True, 0.0), (1, False, 1.0)):
        inp, out = out, []
        if not inp:
            break

        def inside(p):
            return p[axis] >= bound if keep_low else p[axis] <= bound

        prev = inp[-1]
        for cur in inp:
            if inside(cur):
                if not inside(prev):
                    out.append(_cross(prev, cur, axis, bound))
                out.append(cur)
            elif inside(prev):
                out.append(_cross(prev, cur, axis, bound))
            prev = cur
    return np.array(out, float).reshape(-1, 2)


def _cross(a, b, axis, bound):
    t = (bound - a[axis]) / (b[axis] - a[axis])
    return tuple(a[i] + t * (b[i] - a[i]) for i in range(2))


class SceneRenderer:
    """Renders frames of one layout seen by one camera."""

    def __init__(self, camera: PinholeCamera, layout: Layout, rng: np.random.Generator, px_per_m: float = 24.0):
        self.camera, self.layout = camera, layout
        ground, gp = paint_ground(layout, rng, px_per_m)
        ext = layout.extent
        self.ground, self.ground_mask = camera.warp_plane(ground, (ext.x0, ext.y1, 0.0), (1, 0, 0), (0, -1, 0),
                                                          px_per_m, max_depth=90)
        self.wall = self.wall_mask = None
        if layout.wall_y is not None:
            wppm = 16.0
            tex = textures.facade(int(layout.wall_height * wppm), int((ext.x1 - ext.x0) * wppm), rng, wppm)
            self.wall, self.wall_mask = camera.warp_plane(tex, (ext.x0, layout.wall_y, layout.wall_height),
                                                          (1, 0, 0), (0, 0, -1), wppm, max_depth=120)
            # The wall hides the ground behind it.
            self.ground_mask = self.ground_mask * (1 - self.wall_mask)
        sky_top = np.array([rng.uniform(200, 235), rng.uniform(180, 210), rng.uniform(150, 190)], np.float32)
        rows = np.linspace(0, 1, camera.height, dtype=np.float32)[:, None, None]
        self.sky = np.broadcast_to(sky_top * (0.85 + 0.15 * rows), (camera.height, camera.width, 3))
        self._base_cache: dict = {}

    def zone_polygon(self, rect: GroundRect) -> np.ndarray:
        """The ground rectangle as a normalised image polygon, clipped to the frame (K,2)."""
        cam = self.camera
        # Subdivide edges so the clip follows the true projected outline even near the frame edge.
        corners = rect.corners()
        pts = []
        for a, b in zip(corners, np.roll(corners, -1, axis=0)):
            for t in np.linspace(0, 1, 8, endpoint=False):
                pts.append(a + (b - a) * t)
        px, depth = cam.project(np.array(pts))
        px = px[depth > 0.2]
        norm = px / np.array([cam.width, cam.height])
        poly = clip_polygon_to_unit(norm)
        if len(poly) >= 3:
            poly = cv2.approxPolyDP(poly.astype(np.float32).reshape(-1, 1, 2), 0.002, True).reshape(-1, 2)
        return poly

    def base_image(self, light: Lighting) -> np.ndarray:
        """The static background (ground, wall, sky) lit for ``light``, float32."""
        key = (light.sun, light.ambient, light.diffuse, light.sky)
        if key not in self._base_cache:
            ground_light = light.ambient + light.diffuse * max(0.0, light.sun[2]) + light.sky
            wall_light = light.ambient + light.diffuse * max(0.0, -light.sun[1]) + 0.3 * light.sky
            img = self.sky * (1 - np.clip(self.ground_mask + (self.wall_mask if self.wall is not None else 0), 0, 1))[..., None]
            img = img + self.ground.astype(np.float32) * (self.ground_mask * ground_light)[..., None]
            if self.wall is not None:
                img = img + self.wall.astype(np.float32) * (self.wall_mask * wall_light)[..., None]
            self._base_cache = {key: np.clip(img, 0, 255).astype(np.uint8)}
        return self._base_cache[key]

    def render(self, cars: list[Solid], light: Lighting, post: PostFx,
               rng: np.random.Generator) -> tuple[np.ndarray, dict[int, dict]]:
        """Draw one frame. Returns (BGR uint8 image, {object_id: {"xyxy": [...], "visible": fraction}})
        for every labelled solid that is at least partly in the frame."""
        cam = self.camera
        img = self.base_image(light).copy()
        solids = list(self.layout.static) + list(cars)
        draw_shadows(img, solids, cam, light)
        ids = np.zeros((cam.height, cam.width), np.int32)
        order = sorted(solids, key=lambda s: -cam.to_camera(s.centre[None])[0, 2])
        for solid in order:
            draw_solid(img, ids if solid.label else None, solid, cam, light)
        labels: dict[int, dict] = {}
        for solid in cars:
            if solid.label is None:
                continue
            px, depth = cam.project(solid.outline)
            if np.any(depth < 0.5):
                continue
            x0, y0 = px.min(0)
            x1, y1 = px.max(0)
            full_area = max(1.0, (x1 - x0) * (y1 - y0))
            cx0, cy0 = max(0.0, x0), max(0.0, y0)
            cx1, cy1 = min(float(cam.width), x1), min(float(cam.height), y1)
            if cx1 - cx0 < 2 or cy1 - cy0 < 2:
                continue
            silhouette = np.zeros((cam.height, cam.width), np.uint8)
            hull = cv2.convexHull(px.astype(np.float32)).reshape(-1, 2)
            cv2.fillPoly(silhouette, [np.round(hull).astype(np.int32)], 1)
            hull_area = max(1, int(silhouette.sum()))
            visible_px = int(np.count_nonzero(ids[silhouette.astype(bool)] == solid.object_id))
            labels[solid.object_id] = {
                "xyxy": [float(cx0), float(cy0), float(cx1), float(cy1)],
                "in_frame": float((cx1 - cx0) * (cy1 - cy0) / full_area),
                "visible": float(visible_px / hull_area),
            }
        return self.finish(img, post, rng), labels

    def finish(self, img: np.ndarray, post: PostFx, rng: np.random.Generator) -> np.ndarray:
        """Camera artefacts: blur, white balance and gain, vignetting, sensor noise, IR mode, OSD."""
        h, w = img.shape[:2]
        out = img.astype(np.float32)
        if post.blur_sigma > 0:
            out = cv2.GaussianBlur(out, (0, 0), post.blur_sigma)
        out *= np.asarray(post.tint, np.float32) * post.gain
        if post.vignette > 0:
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
            out *= (1 - post.vignette * r2 / 2)[..., None]
        if post.grayscale:
            g = out @ np.array([0.114, 0.587, 0.299], np.float32)
            out = np.repeat(g[..., None], 3, axis=2)
        if post.noise_sigma > 0:
            noise = rng.standard_normal((h, w), dtype=np.float32) * post.noise_sigma
            out += noise[..., None] + rng.standard_normal((h, w, 3), dtype=np.float32) * (post.noise_sigma * 0.4)
        out = np.clip(out, 0, 255).astype(np.uint8)
        if post.osd:
            for colour, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
                cv2.putText(out, post.osd, (10, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, thick, cv2.LINE_AA)
        return out
