"""Live view for the monitoring page: the latest annotated frame of each camera, as MJPEG.

The worker publishes frames (with the zones and current tracks drawn) into a ``LiveHub``; the page
shows ``/api/v1/cameras/{camera_id}/live.mjpg``. Frames are encoded at most ``max_fps`` per camera
so a busy camera cannot starve the pipeline.
"""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from vision.config import Camera
from vision.types import Detections, Frame


@dataclass
class LiveFrame:
    jpeg: bytes
    time_s: float
    seq: int


class LiveHub:
    """Latest annotated JPEG per camera. Thread-safe; readers poll by sequence number."""

    def __init__(self, max_fps: float = 4.0, width: int = 640):
        self.max_fps = max_fps
        self.width = width
        self._frames: dict[str, LiveFrame] = {}
        self._cameras: dict[str, Camera] = {}
        self._lock = threading.Lock()
        self._seq = 0

    def register(self, camera: Camera) -> None:
        with self._lock:
            self._cameras[camera.id] = camera

    def cameras(self) -> list[dict]:
        with self._lock:
            return [{"id": cam.id, "name": cam.name or cam.id,
                     "last_frame_time": self._frames[cam.id].time_s if cam.id in self._frames else None}
                    for cam in self._cameras.values()]

    def publish(self, camera_id: str, frame: Frame, tracks: Detections | None) -> None:
        last = self._frames.get(camera_id)
        if last is not None and frame.time_s - last.time_s < 1.0 / self.max_fps:
            return
        camera = self._cameras.get(camera_id)
        image = frame.image
        scale = self.width / image.shape[1] if image.shape[1] > self.width else 1.0
        if scale != 1.0:
            image = cv2.resize(image, (self.width, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        else:
            image = image.copy()
        h, w = image.shape[:2]
        if camera is not None:
            for zone in camera.zones:
                pts = (np.array(zone.polygon) * [w, h]).astype(np.int32)
                colour = (0, 0, 255) if zone.kind == "fire_lane" else (255, 200, 0)
                cv2.polylines(image, [pts], True, colour, 2, cv2.LINE_AA)
                cv2.putText(image, zone.id, tuple(int(v) for v in pts[0]), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1,
                            cv2.LINE_AA)
        if tracks is not None:
            for (x1, y1, x2, y2), tid, name, conf in zip(tracks.xyxy * scale, tracks.tracker_id, tracks.names(),
                                                         tracks.confidence):
                cv2.rectangle(image, (int(x1), int(y1)), (int(x2), int(y2)), (0, 255, 0), 2)
                cv2.putText(image, f"#{tid} {name} {conf:.2f}", (int(x1), max(12, int(y1) - 4)),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 0), 1, cv2.LINE_AA)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(frame.time_s))
        cv2.putText(image, stamp, (8, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])
        if ok:
            with self._lock:
                self._seq += 1
                self._frames[camera_id] = LiveFrame(buf.tobytes(), frame.time_s, self._seq)

    def latest(self, camera_id: str) -> LiveFrame | None:
        with self._lock:
            return self._frames.get(camera_id)

    async def mjpeg(self, camera_id: str, max_seconds: float = 3600.0):
        """Async generator of multipart/x-mixed-replace parts for one camera."""
        seen, deadline = -1, time.monotonic() + max_seconds
        while time.monotonic() < deadline:
            frame = self.latest(camera_id)
            if frame is not None and frame.seq != seen:
                seen = frame.seq
                yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: " + str(len(frame.jpeg)).encode()
                       + b"\r\n\r\n" + frame.jpeg + b"\r\n")
            await asyncio.sleep(0.1)
