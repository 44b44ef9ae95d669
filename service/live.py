"""Live view for the monitoring wall, and the live alert feed.

- ``LiveHub``: the worker publishes frames (with the zones and current tracks drawn) into it; each
  frame is encoded to JPEG once, at most ``max_fps`` per camera, so a busy camera cannot starve the
  pipeline and a viewer costs only the copy of bytes already encoded. Viewers read it as one MJPEG
  stream per camera (``live.mjpg``) or as one multiplexed wall stream for many cameras
  (:meth:`LiveHub.wall_stream`): a browser opens at most six HTTP/1.1 connections per host, so a
  16-tile wall of MJPEG ``<img>`` would stall after six tiles.
- ``AlertHub``: new violations fanned out to every open alert feed (SSE); publishing is thread-safe
  (the event API runs in the thread pool) and never blocks on a slow viewer.
"""
from __future__ import annotations

import asyncio
import collections
import json
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
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
        self._compounds: dict[str, str | None] = {}
        self._received: dict[str, float] = {}  # camera id -> wall-clock time of its latest frame
        self._lock = threading.Lock()
        self._seq = 0
        self.wall_viewers = 0  # open wall streams

    def register(self, camera: Camera, compound_id: str | None = None) -> None:
        """Show ``camera`` on the wall. ``compound_id`` scopes who may see it; a camera registered
        without one is shown only to callers with every compound (``"*"``)."""
        with self._lock:
            self._cameras[camera.id] = camera
            self._compounds[camera.id] = compound_id

    def cameras(self, compounds: Iterable[str] | None = None) -> list[dict]:
        """The registered cameras (only those of ``compounds`` when given; None means all), each with
        its compound, name, the frame time of its latest image and ``age_s``: wall-clock seconds since
        that image arrived (None before the first one)."""
        now = time.time()
        allowed = None if compounds is None else set(compounds)
        with self._lock:
            out = []
            for cam in self._cameras.values():
                compound = self._compounds.get(cam.id)
                if allowed is not None and compound not in allowed:
                    continue
                frame = self._frames.get(cam.id)
                received = self._received.get(cam.id)
                out.append({"id": cam.id, "name": cam.name or cam.id, "compound_id": compound,
                            "last_frame_time": frame.time_s if frame else None,
                            "age_s": round(now - received, 2) if received is not None else None,
                            "zones": [{"id": z.id, "name": z.name or z.id, "kind": z.kind, "rules": list(z.rules)}
                                      for z in cam.zones]})
            return out

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
        # No time stamp burnt in: the page shows the frame time in the site's time zone (the server's own
        # zone may differ), over the picture.
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 75])
        if ok:
            with self._lock:
                self._seq += 1
                self._frames[camera_id] = LiveFrame(buf.tobytes(), frame.time_s, self._seq)
                self._received[camera_id] = time.time()

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

    async def wall_stream(self, camera_ids: Callable[[], list[str]], *, poll_s: float = 0.1,
                          status_every_s: float = 1.0, max_seconds: float = 3600.0) -> AsyncIterator[bytes]:
        """One stream for a whole wall: every new frame of the cameras ``camera_ids()`` names (asked
        again with each status, so cameras registered later appear), and a status part every
        ``status_every_s`` (:meth:`cameras` for those cameras) that also tells a stalled camera from a
        dropped connection. Parts are :func:`wall_part` records."""
        seen: dict[str, int] = {}
        deadline, next_status = time.monotonic() + max_seconds, 0.0
        ids: list[str] = []
        with self._lock:
            self.wall_viewers += 1
        try:
            while time.monotonic() < deadline:
                if time.monotonic() >= next_status:
                    ids = camera_ids()
                    wanted = set(ids)
                    status = [c for c in self.cameras() if c["id"] in wanted]
                    yield wall_part({"type": "status", "cameras": status, "server_time": time.time()})
                    next_status = time.monotonic() + status_every_s
                for camera_id in ids:
                    frame = self.latest(camera_id)
                    if frame is not None and seen.get(camera_id) != frame.seq:
                        seen[camera_id] = frame.seq
                        yield wall_part({"type": "frame", "camera_id": camera_id, "time_s": frame.time_s,
                                         "seq": frame.seq}, frame.jpeg)
                        await asyncio.sleep(0)  # let a lost connection be noticed between frames of a burst
                await asyncio.sleep(poll_s)
        finally:  # also when the viewer goes away (Starlette cancels the response on disconnect)
            with self._lock:
                self.wall_viewers -= 1


WALL_MEDIA_TYPE = "application/x-compoundeye-wall"


def wall_part(header: dict, body: bytes = b"") -> bytes:
    """One record of the wall stream: ``u32 header length, header JSON (UTF-8), u32 body length, body``
    (big-endian). Frames carry the JPEG as body; status records have none."""
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return struct.pack(">I", len(head)) + head + struct.pack(">I", len(body)) + body


def read_wall_parts(data: bytes) -> tuple[list[tuple[dict, bytes]], bytes]:
    """Split ``data`` into complete wall records; returns them and the incomplete rest."""
    parts, offset = [], 0
    while len(data) - offset >= 4:
        (head_len,) = struct.unpack_from(">I", data, offset)
        if len(data) - offset < 8 + head_len:
            break
        (body_len,) = struct.unpack_from(">I", data, offset + 4 + head_len)
        end = offset + 8 + head_len + body_len
        if len(data) < end:
            break
        header = json.loads(data[offset + 4:offset + 4 + head_len])
        parts.append((header, data[offset + 8 + head_len:end]))
        offset = end
    return parts, data[offset:]


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue
    accept: Callable[[dict], bool]


class AlertHub:
    """New violations, fanned out to open alert feeds.

    ``publish`` may be called from any thread. Each feed has a bounded queue: a viewer that does not
    read loses its oldest alerts (it can re-read the list), never blocks the event API. The last
    ``keep`` alerts are kept with a sequence number so a reconnecting feed (``Last-Event-ID``) gets
    what it missed."""

    def __init__(self, keep: int = 200, queue_size: int = 100):
        self._lock = threading.Lock()
        self._subscribers: set[_Subscriber] = set()
        self._recent: collections.deque[tuple[int, dict]] = collections.deque(maxlen=keep)
        self._seq = 0
        self.queue_size = queue_size

    def publish(self, alert: dict, replay: bool = True) -> int:
        """Send ``alert`` (a JSON-able dict with at least ``compound_id``) to every feed that accepts it;
        returns its sequence number. ``replay=False``: not kept for reconnecting feeds (frequent
        progress messages must not push the alerts out of the replay window)."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            if replay:
                self._recent.append((seq, alert))
            subscribers = list(self._subscribers)
        for sub in subscribers:
            if sub.accept(alert):
                try:
                    sub.loop.call_soon_threadsafe(_put_dropping_oldest, sub.queue, (seq, alert))
                except RuntimeError:  # the feed's loop is closed: it is going away
                    pass
        return seq

    def since(self, seq: int, accept: Callable[[dict], bool]) -> list[tuple[int, dict]]:
        """Kept alerts after ``seq`` that ``accept`` lets through."""
        with self._lock:
            return [(s, a) for s, a in self._recent if s > seq and accept(a)]

    @property
    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def subscribe(self, accept: Callable[[dict], bool]) -> _Subscriber:
        """A new feed in the running event loop; call :meth:`unsubscribe` when it ends."""
        sub = _Subscriber(asyncio.get_running_loop(), asyncio.Queue(self.queue_size), accept)
        with self._lock:
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(sub)

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)


def _put_dropping_oldest(queue: asyncio.Queue, item) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(item)
