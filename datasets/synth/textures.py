"""Procedural textures (numpy + OpenCV): asphalt, paving, grass, facades. All return HxWx3 uint8 BGR."""
from __future__ import annotations

import cv2
import numpy as np


def fractal_noise(height: int, width: int, rng: np.random.Generator, octaves: int = 5,
                  base_cell: float = 64.0, persistence: float = 0.55) -> np.ndarray:
    """Smooth value noise in roughly -1..1: a sum of upsampled random grids, coarse to fine."""
    total = np.zeros((height, width), np.float32)
    amplitude, norm, cell = 1.0, 0.0, base_cell
    for _ in range(octaves):
        gh, gw = max(2, int(height / cell) + 2), max(2, int(width / cell) + 2)
        grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
        total += amplitude * cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
        norm += amplitude
        amplitude *= persistence
        cell = max(1.0, cell / 2)
    return total / norm


def tint(gray: np.ndarray, bgr: tuple[float, float, float]) -> np.ndarray:
    """A float grey map (around 1.0) times a colour -> uint8 BGR."""
    return np.clip(gray[..., None] * np.asarray(bgr, np.float32), 0, 255).astype(np.uint8)


def asphalt(height: int, width: int, rng: np.random.Generator, base: float = 92.0) -> np.ndarray:
    """Worn asphalt: mottled large-scale tone, fine aggregate grain, a few cracks, patches and stains."""
    tone = 1.0 + 0.10 * fractal_noise(height, width, rng, octaves=4, base_cell=160)
    grain = 0.10 * rng.standard_normal((height, width)).astype(np.float32)
    grain = cv2.GaussianBlur(grain, (0, 0), 0.7)
    speck = (rng.random((height, width)) < 0.01).astype(np.float32) * rng.uniform(0.15, 0.35)
    gray = (tone + grain + speck) * base
    warm = rng.uniform(-4, 4)
    img = np.clip(np.stack([gray - warm, gray, gray + warm], -1), 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 4))):  # repaired patches: darker rectangles
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(20, 160)), int(rng.integers(20, 120))
        patch = img[y:y + h, x:x + w].astype(np.int16) - int(rng.integers(8, 22))
        img[y:y + h, x:x + w] = np.clip(patch, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 10))):  # cracks: random walks
        p = np.array([rng.integers(0, width), rng.integers(0, height)], float)
        heading = rng.uniform(0, 2 * np.pi)
        pts = []
        for _ in range(int(rng.integers(8, 40))):
            heading += rng.normal(0, 0.5)
            p += 6 * np.array([np.cos(heading), np.sin(heading)])
            pts.append(p.copy())
        cv2.polylines(img, [np.int32(pts)], False, tuple(int(c) for c in np.asarray([45, 47, 50]) + rng.integers(0, 15)),
                      1, cv2.LINE_AA)
    for _ in range(int(rng.integers(0, 6))):  # oil stains
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(6, 40)), int(rng.integers(5, 25)))
        overlay = img.copy()
        cv2.ellipse(overlay, centre, axes, float(rng.uniform(0, 180)), 0, 360, (40, 40, 42), -1, cv2.LINE_AA)
        cv2.addWeighted(overlay, 0.35, img, 0.65, 0, img)
    return img


def paving(height: int, width: int, rng: np.random.Generator, tile_px: int, colour: tuple[int, int, int],
           joint: int = 1) -> np.ndarray:
    """Concrete or brick pavers on a grid, each tile a slightly different shade."""
    rows, cols = height // tile_px + 2, width // (2 * tile_px) + 2
    shade = rng.normal(1.0, 0.06, (rows, cols)).astype(np.float32)
    tiles = cv2.resize(shade, (cols * 2 * tile_px, rows * tile_px), interpolation=cv2.INTER_NEAREST)
    tiles = tiles[:height, :width]
    noise = 1.0 + 0.07 * fractal_noise(height, width, rng, octaves=3, base_cell=24)
    img = tint(tiles * noise, colour)
    joint_colour = tuple(int(c * 0.6) for c in colour)
    for y in range(0, height, tile_px):
        cv2.line(img, (0, y), (width, y), joint_colour, joint)
        offset = tile_px if (y // tile_px) % 2 else 0
        for x in range(-offset, width, 2 * tile_px):
            cv2.line(img, (x, y), (x, y + tile_px), joint_colour, joint)
    return img


def grass(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Lawn: green with patchy tone and blade-scale grain."""
    tone = 1.0 + 0.18 * fractal_noise(height, width, rng, octaves=5, base_cell=90)
    grain = 0.12 * rng.standard_normal((height, width)).astype(np.float32)
    gray = tone + grain
    base = np.array([rng.uniform(35, 60), rng.uniform(95, 130), rng.uniform(60, 95)], np.float32)
    return tint(gray, tuple(base))


def facade(height: int, width: int, rng: np.random.Generator, px_per_m: float) -> np.ndarray:
    """A residential building face seen from outside: tiled wall, floors of windows with frames,
    a unit entrance with a canopy, AC units, a drainpipe. The texture's row 0 is the top."""
    palette = [(205, 210, 215), (170, 190, 215), (150, 160, 175), (120, 135, 165), (200, 200, 195), (90, 110, 150)]
    wall_colour = np.asarray(palette[int(rng.integers(len(palette)))], np.float32) * rng.uniform(0.85, 1.05)
    tone = 1.0 + 0.06 * fractal_noise(height, width, rng, octaves=4, base_cell=60)
    img = tint(tone, tuple(wall_colour))
    floor_h = 3.0 * px_per_m
    bay = rng.uniform(3.0, 4.5) * px_per_m
    glass_base = np.array([rng.uniform(60, 110), rng.uniform(55, 90), rng.uniform(40, 70)])
    frame = (235, 235, 235) if rng.random() < 0.6 else (60, 60, 60)
    n_floors = int(height / floor_h) + 1
    for floor in range(n_floors):
        bottom = height - floor * floor_h
        cv2.line(img, (0, int(bottom)), (width, int(bottom)), tuple(int(c * 0.8) for c in wall_colour), 2)
        if floor == 0:
            continue  # ground floor: entrance and shutters drawn below
        for i in range(int(width / bay) + 1):
            x0 = i * bay + 0.25 * bay
            x1 = x0 + 0.5 * bay
            y1 = bottom - 0.9 * px_per_m
            y0 = y1 - 1.5 * px_per_m
            glass = tuple(int(c) for c in glass_base * rng.uniform(0.7, 1.4))
            cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), glass, -1)
            cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), frame, 2)
            cv2.line(img, (int((x0 + x1) / 2), int(y0)), (int((x0 + x1) / 2), int(y1)), frame, 1)
            if rng.random() < 0.3:  # AC unit under the window
                ax0, ay0 = int(x1 + 0.1 * px_per_m), int(y1 - 0.2 * px_per_m)
                cv2.rectangle(img, (ax0, ay0), (ax0 + int(0.8 * px_per_m), ay0 + int(0.55 * px_per_m)), (215, 218, 220), -1)
                cv2.circle(img, (ax0 + int(0.4 * px_per_m), ay0 + int(0.27 * px_per_m)), int(0.2 * px_per_m), (120, 120, 120), 1)
    # Ground floor: entrance doors with canopies and roller shutters.
    for _ in range(int(rng.integers(1, 4))):
        cx = rng.uniform(0.1, 0.9) * width
        dw, dh = 1.8 * px_per_m, 2.3 * px_per_m
        x0, x1, y0 = int(cx - dw / 2), int(cx + dw / 2), int(height - dh)
        cv2.rectangle(img, (x0, y0), (x1, height), (70, 60, 55), -1)
        cv2.rectangle(img, (x0, y0), (x1, height), (180, 180, 180), 2)
        cv2.line(img, ((x0 + x1) // 2, y0), ((x0 + x1) // 2, height), (150, 150, 150), 1)
        cv2.rectangle(img, (x0 - int(0.5 * px_per_m), y0 - int(0.35 * px_per_m)),
                      (x1 + int(0.5 * px_per_m), y0 - int(0.05 * px_per_m)), (90, 90, 95), -1)
    for _ in range(int(rng.integers(0, 3))):
        cx = rng.uniform(0.05, 0.95) * width
        sw = rng.uniform(2.5, 4.0) * px_per_m
        y0 = int(height - 2.6 * px_per_m)
        shutter = tuple(int(c) for c in rng.integers(140, 200, 3))
        cv2.rectangle(img, (int(cx), y0), (int(cx + sw), height), shutter, -1)
        for y in range(y0, height, max(2, int(0.12 * px_per_m))):
            cv2.line(img, (int(cx), y), (int(cx + sw), y), tuple(int(c * 0.8) for c in shutter), 1)
    for _ in range(int(rng.integers(1, 4))):  # drainpipes
        x = int(rng.uniform(0, width))
        cv2.line(img, (x, 0), (x, height), (180, 180, 180), max(2, int(0.12 * px_per_m)))
    # Grime near the ground.
    grime = np.linspace(1.0, 0.8, int(0.8 * px_per_m))[:, None, None]
    img[height - grime.shape[0]:] = (img[height - grime.shape[0]:] * grime).astype(np.uint8)
    return img
