"""A pinhole camera over a flat world: x east, y north (away from the camera), z up, metres."""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass(frozen=True)
class PinholeCamera:
    """A fixed CCTV camera.

    Attributes:
        width, height: image size in pixels.
        focal_px: focal length in pixels (square pixels, principal point at the centre).
        position: (x, y, z) of the optical centre in metres.
        yaw_deg: heading, 0 = looking along +y, positive turns towards +x.
        pitch_deg: how far the camera looks down from the horizontal.
        roll_deg: rotation about the optical axis (a slightly crooked mount).
    """

    width: int
    height: int
    focal_px: float
    position: tuple[float, float, float]
    yaw_deg: float = 0.0
    pitch_deg: float = 35.0
    roll_deg: float = 0.0
    rotation: np.ndarray = field(init=False, repr=False, compare=False)
    intrinsics: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        yaw, pitch, roll = np.radians([self.yaw_deg, self.pitch_deg, self.roll_deg])
        forward = np.array([np.sin(yaw) * np.cos(pitch), np.cos(yaw) * np.cos(pitch), -np.sin(pitch)])
        right = np.array([np.cos(yaw), -np.sin(yaw), 0.0])
        down = np.cross(forward, right)
        right, down = np.cos(roll) * right + np.sin(roll) * down, -np.sin(roll) * right + np.cos(roll) * down
        object.__setattr__(self, "rotation", np.stack([right, down, forward]))
        object.__setattr__(self, "intrinsics", np.array([[self.focal_px, 0, self.width / 2],
                                                         [0, self.focal_px, self.height / 2], [0, 0, 1.0]]))

    @property
    def centre(self) -> np.ndarray:
        return np.asarray(self.position, dtype=np.float64)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(N,3) world points -> (N,3) camera coordinates (x right, y down, z depth)."""
        return (np.asarray(points, np.float64) - self.centre) @ self.rotation.T

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N,3) world points -> ((N,2) pixel coordinates, (N,) depth in metres). Points behind the
        camera get depth <= 0 and meaningless pixels; callers drop them."""
        cam = self.to_camera(points)
        depth = cam[:, 2]
        safe = np.where(depth > 1e-3, depth, 1e-3)
        px = cam[:, :2] / safe[:, None] * self.focal_px + np.array([self.width / 2, self.height / 2])
        return px, depth

    def plane_homography(self, origin, axis_u, axis_v, px_per_m: float) -> np.ndarray:
        """The 3x3 homography from texture pixels (col, row) of a planar texture to image pixels.

        The texture's pixel (0, 0) sits at ``origin``; columns run along ``axis_u`` and rows along
        ``axis_v`` (unit vectors in the world), ``px_per_m`` texture pixels per metre.
        """
        r, t = self.rotation, -self.rotation @ self.centre
        plane = np.stack([r @ np.asarray(axis_u, float), r @ np.asarray(axis_v, float),
                          r @ np.asarray(origin, float) + t], axis=1)
        scale = np.diag([1.0 / px_per_m, 1.0 / px_per_m, 1.0])
        return self.intrinsics @ plane @ scale

    def warp_plane(self, texture: np.ndarray, origin, axis_u, axis_v, px_per_m: float,
                   max_depth: float = 80.0) -> tuple[np.ndarray, np.ndarray]:
        """Render a planar texture into the image. Returns (image, mask) where mask (HxW float32 0..1)
        marks the pixels the plane covers in front of the camera and within ``max_depth``."""
        hom = self.plane_homography(origin, axis_u, axis_v, px_per_m)
        size = (self.width, self.height)
        image = cv2.warpPerspective(texture, hom, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        ones = np.full(texture.shape[:2], 255, np.uint8)
        cover = cv2.warpPerspective(ones, hom, size, flags=cv2.INTER_LINEAR, borderValue=0).astype(np.float32) / 255
        u, v = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        # Depth of each pixel's ray hit on the plane, to fade out what lies too far.
        normal = np.cross(np.asarray(axis_u, float), np.asarray(axis_v, float))
        rays = np.stack([(u - self.width / 2) / self.focal_px, (v - self.height / 2) / self.focal_px,
                         np.ones_like(u)], axis=-1) @ self.rotation  # world directions (unnormalised, z_cam=1)
        denom = rays @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = (np.asarray(origin, float) - self.centre) @ normal / denom
        # Pixels whose ray meets the plane behind the camera also map into the texture: drop them.
        front = np.isfinite(depth) & (depth > 0) & (depth < max_depth)
        return image, cover * front.astype(np.float32)
