"""Flat-shaded 3D solids (convex parts plus decals) and how to draw them with a PinholeCamera."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from datasets.synth.camera import PinholeCamera


@dataclass
class Face:
    """A planar polygon in world coordinates. ``normal`` is outward; ``material`` picks the shading."""

    points: np.ndarray  # (K,3)
    colour: tuple[float, float, float]  # BGR albedo
    material: str = "paint"  # paint | glass | matte | light
    normal: np.ndarray | None = None


@dataclass
class Solid:
    """An object made of convex parts drawn in order, each followed by its decals.

    Attributes:
        parts: list of (faces, decals). Faces of one convex part never overlap once back faces are
            culled; decals are drawn after their part, if their normal faces the camera.
        outline: (M,3) world points whose projection bounds the object (its label box).
        shadow: (M,3) world points whose sun shadow on the ground is the object's shadow.
        footprint: (K,3) ground polygon darkened as contact shadow (ambient occlusion).
        label: class name for training labels, or None for clutter.
    """

    parts: list[tuple[list[Face], list[Face]]]
    outline: np.ndarray
    shadow: np.ndarray
    footprint: np.ndarray | None = None
    label: str | None = None
    object_id: int = 0
    centre: np.ndarray = field(default_factory=lambda: np.zeros(3))


@dataclass(frozen=True)
class Lighting:
    """Sun and sky. ``sun`` is a unit vector towards the sun (z > 0)."""

    sun: tuple[float, float, float] = (0.4, -0.5, 0.77)
    ambient: float = 0.55
    diffuse: float = 0.55
    sky: float = 0.25  # extra light on upward faces
    shadow_strength: float = 0.45  # 0 = no cast shadows (overcast), 0.6 = hard noon sun
    headlights: bool = False


def newell_normal(points: np.ndarray) -> np.ndarray:
    """Unit normal of a (nearly) planar polygon, oriented by its vertex order."""
    p, q = points, np.roll(points, -1, axis=0)
    n = np.array([np.sum((p[:, 1] - q[:, 1]) * (p[:, 2] + q[:, 2])),
                  np.sum((p[:, 2] - q[:, 2]) * (p[:, 0] + q[:, 0])),
                  np.sum((p[:, 0] - q[:, 0]) * (p[:, 1] + q[:, 1]))])
    norm = np.linalg.norm(n)
    return n / norm if norm > 1e-12 else np.array([0.0, 0.0, 1.0])


def convex_part(rings: list[np.ndarray], materials, colour, cap_bottom: bool = False) -> list[Face]:
    """Faces of the convex solid spanned by stacked rings of equal point count (bottom to top):
    a band of quads between each pair of rings and a cap on top. ``materials(i, k, normal)`` may
    return (material, colour) per band face to paint windows; it returns None for the default."""
    centre = np.mean(np.concatenate(rings), axis=0)
    faces: list[Face] = []

    def add(points: np.ndarray, mat_colour) -> None:
        n = newell_normal(points)
        if np.dot(n, points.mean(0) - centre) < 0:
            n = -n
        material, col = mat_colour
        faces.append(Face(points, col, material, n))

    for i in range(len(rings) - 1):
        a, b = rings[i], rings[i + 1]
        for k in range(len(a)):
            k2 = (k + 1) % len(a)
            quad = np.stack([a[k], a[k2], b[k2], b[k]])
            n = newell_normal(quad)
            if np.dot(n, quad.mean(0) - centre) < 0:
                n = -n
            choice = materials(i, k, n) if materials else None
            add(quad, choice or ("paint", colour))
    top = materials(len(rings) - 1, -1, np.array([0, 0, 1.0])) if materials else None
    add(rings[-1], top or ("paint", colour))
    if cap_bottom:
        add(rings[0], ("matte", colour))
    return faces


def shade(face: Face, camera: PinholeCamera, light: Lighting) -> tuple[int, int, int]:
    n = face.normal
    sun = np.asarray(light.sun)
    lambert = max(0.0, float(np.dot(n, sun)))
    base = np.asarray(face.colour, np.float64)
    up = max(0.0, n[2])
    if face.material == "glass":
        view = camera.centre - face.points.mean(0)
        view /= np.linalg.norm(view) + 1e-9
        refl = 2 * np.dot(n, view) * n - view  # what the glass mirrors: sky if pointing up
        sky = max(0.0, refl[2]) ** 0.7
        col = base * (0.55 + 0.3 * lambert) + np.array([70, 62, 55]) * sky * (light.ambient + light.sky)
    elif face.material == "light":
        col = base * (1.0 if light.headlights else 0.55 + 0.45 * lambert)
    else:
        col = base * (light.ambient + light.diffuse * lambert + light.sky * up)
        if face.material == "paint":
            view = camera.centre - face.points.mean(0)
            view /= np.linalg.norm(view) + 1e-9
            half = sun + view
            half /= np.linalg.norm(half) + 1e-9
            col = col + 160 * light.diffuse * max(0.0, float(np.dot(n, half))) ** 40
    return tuple(int(c) for c in np.clip(col, 0, 255))


def _fill(image: np.ndarray, pts: np.ndarray, colour) -> None:
    cv2.fillPoly(image, [np.round(pts * 16).astype(np.int32)], colour, cv2.LINE_AA, shift=4)


def draw_solid(image: np.ndarray, ids: np.ndarray | None, solid: Solid, camera: PinholeCamera,
               light: Lighting) -> None:
    """Draw one solid (painter's order is the caller's job: far objects first). ``ids`` is an
    optional int32 id-buffer that receives ``solid.object_id`` where the solid is drawn."""
    eye = camera.centre
    for faces, decals in solid.parts:
        for face in faces + decals:
            if np.dot(face.normal, eye - face.points.mean(0)) <= 0:
                continue
            px, depth = camera.project(face.points)
            if np.any(depth < 0.2):
                continue
            _fill(image, px, shade(face, camera, light))
            if ids is not None:
                cv2.fillPoly(ids, [np.round(px).astype(np.int32)], int(solid.object_id))


def shadow_polygon(points: np.ndarray, sun: np.ndarray) -> np.ndarray:
    """Ground (z=0) shadow of world points under a sun direction, as its convex hull (K,3)."""
    sun = np.asarray(sun, float)
    ground = points[:, :2] - points[:, 2:3] / max(sun[2], 0.15) * sun[:2]
    hull = cv2.convexHull(ground.astype(np.float32)).reshape(-1, 2)
    return np.column_stack([hull, np.zeros(len(hull))])


def draw_shadows(image: np.ndarray, solids: list[Solid], camera: PinholeCamera, light: Lighting) -> None:
    """Darken the ground under and beside each solid (cast shadow + contact shadow), softly."""
    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    contact = np.zeros((h, w), np.uint8)
    for solid in solids:
        if light.shadow_strength > 0:
            poly = shadow_polygon(solid.shadow, np.asarray(light.sun))
            px, depth = camera.project(poly)
            if np.all(depth > 0.2):
                cv2.fillPoly(mask, [np.round(px).astype(np.int32)], 255, cv2.LINE_AA)
        if solid.footprint is not None:
            px, depth = camera.project(solid.footprint)
            if np.all(depth > 0.2):
                cv2.fillPoly(contact, [np.round(px).astype(np.int32)], 255, cv2.LINE_AA)
    if not mask.any() and not contact.any():
        return
    dark = (cv2.GaussianBlur(mask, (0, 0), 1.6).astype(np.float32) / 255 * light.shadow_strength
            + cv2.GaussianBlur(contact, (0, 0), 2.5).astype(np.float32) / 255 * 0.45)
    dark = np.clip(dark, 0, 0.8)
    image[:] = (image.astype(np.float32) * (1 - dark[..., None])).astype(np.uint8)


def box_rings(length: float, width: float, z0: float, z1: float, chamfer: float = 0.0) -> list[np.ndarray]:
    """Two rings (bottom, top) of an axis-aligned box centred on the origin, in local coordinates."""
    hl, hw, c = length / 2, width / 2, chamfer
    if c > 0:
        xy = np.array([[hl, -hw + c], [hl, hw - c], [hl - c, hw], [-hl + c, hw], [-hl, hw - c],
                       [-hl, -hw + c], [-hl + c, -hw], [hl - c, -hw]])
    else:
        xy = np.array([[hl, -hw], [hl, hw], [-hl, hw], [-hl, -hw]])
    return [np.column_stack([xy, np.full(len(xy), z)]) for z in (z0, z1)]


def cylinder_rings(radius: float, z0: float, z1: float, sides: int = 10) -> list[np.ndarray]:
    a = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    xy = np.column_stack([np.cos(a), np.sin(a)]) * radius
    return [np.column_stack([xy, np.full(sides, z)]) for z in (z0, z1)]


def place(points: np.ndarray, x: float, y: float, yaw: float) -> np.ndarray:
    """Local (x forward, y left, z up) -> world, rotated by ``yaw`` (radians, from +x towards +y)."""
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    return points @ rot.T + np.array([x, y, 0.0])
