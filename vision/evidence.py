"""Evidence for a violation: a short H.264 clip with pre- and post-roll, an annotated snapshot, a crop of
the object and a JSON sidecar of the boxes, each written atomically and returned with its sha256.

- :class:`PacketRing` keeps a camera's recent *compressed* packets (as the camera sent them), whole
  GOPs bounded by seconds and bytes; :func:`cut_clip` muxes a span of them into an MP4 without
  re-encoding, from the keyframe at or before the span's start. This is the preferred path for H.264
  sources: about 1/10 of the memory of JPEG frames, no encoding cost, and the original pictures.
- :class:`FrameRing` keeps a camera's recent frames JPEG-compressed in memory, bounded by seconds
  and bytes, so a clip can start *before* the rule decided anything (pre-roll) — the fallback for
  sources that are not H.264 (re-encoded by :func:`write_clip`).
- :func:`write_clip` encodes frames to a browser-playable MP4 (H.264 High/yuv420p, ``moov`` first,
  a keyframe at least every second, timestamps from the frames' times so gaps stay gaps).
- :class:`ClipRecorder` ties the two together for the worker: ``request`` a span, keep ``push``-ing
  frames, and get ``(violation_id, ClipInfo)`` back once the span is over.
- :func:`write_snapshot`, :func:`write_crop`, :func:`sidecar_json` for the still evidence.

Nothing here talks to the object store: files go to local paths and the worker uploads them.
A file is either complete or absent — each is written to a temporary file in the same folder, synced
and renamed over the target.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import os
import tempfile
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence
from zoneinfo import ZoneInfo

import av
import cv2
import numpy as np
from av.video.frame import PictureType

from vision.config import Zone
from vision.errors import EvidenceError
from vision.sources import StreamCodec, VideoPacket
from vision.types import EvidenceBox, Frame, Violation
from vision.zones import draw_zone

log = logging.getLogger(__name__)

#: PTS unit of written clips: milliseconds, finer than any camera's frame interval.
CLIP_TIME_BASE = Fraction(1, 1000)
#: Longest time between two keyframes of a clip, so a browser can seek to within a second.
MAX_GOP_S = 1.0


# --------------------------------------------------------------------------- files


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _temp_beside(path: Path) -> Path:
    """An empty temporary file in ``path``'s folder (same file system, so the rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(tmp)


def _commit(tmp: Path, path: Path) -> None:
    with open(tmp, "rb+") as fh:  # the bytes must be on disk before the name points at them
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_atomic(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` via a temporary file and a rename; return its sha256 (hex).

    Raises:
        EvidenceError: the file could not be written (the target is left untouched).
    """
    path = Path(path)
    tmp = None
    try:
        tmp = _temp_beside(path)
        tmp.write_bytes(data)
        _commit(tmp, path)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise EvidenceError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    return hashlib.sha256(data).hexdigest()


def _encode_jpeg(image: np.ndarray, quality: int, what: str) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise EvidenceError(f"{what}: JPEG encoding failed for an image of shape {image.shape}")
    return buf.tobytes()


# --------------------------------------------------------------------------- ring buffer


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """A frame kept as JPEG bytes; ``decode()`` gives the :class:`Frame` back (lossy)."""

    camera_id: str
    time_s: float
    position: str
    jpeg: bytes

    def decode(self) -> Frame:
        image = cv2.imdecode(np.frombuffer(self.jpeg, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise EvidenceError(f"{self.camera_id}@{self.time_s:.3f}: cannot decode a buffered frame")
        return Frame(self.camera_id, self.time_s, image, self.position)


class FrameRing:
    """A camera's most recent frames, JPEG-compressed in memory, oldest dropped first.

    Holds frames spanning at most ``max_seconds`` of frame time and at most ``max_bytes`` of JPEG
    data (whichever bound bites first; the newest frame is always kept). A 1080p JPEG at quality 85
    is roughly 150–400 kB, so 60 s at 10 fps is about 100–250 MB: size ``max_bytes`` accordingly.

    Frames must be pushed in non-decreasing time. A frame older than the newest one means a new
    timeline (a stream restarted with other timestamps): the ring is emptied first.
    """

    def __init__(self, max_seconds: float, max_bytes: int, jpeg_quality: int = 85):
        if max_seconds <= 0 or max_bytes <= 0:
            raise ValueError(f"max_seconds and max_bytes must be positive, got {max_seconds}, {max_bytes}")
        self.max_seconds = float(max_seconds)
        self.max_bytes = int(max_bytes)
        self.jpeg_quality = int(jpeg_quality)
        self._frames: deque[EncodedFrame] = deque()
        self._nbytes = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def nbytes(self) -> int:
        """JPEG bytes held."""
        return self._nbytes

    @property
    def oldest_time_s(self) -> float | None:
        return self._frames[0].time_s if self._frames else None

    @property
    def newest_time_s(self) -> float | None:
        return self._frames[-1].time_s if self._frames else None

    def push(self, frame: Frame) -> EncodedFrame:
        """Compress and keep ``frame``, evicting what falls out of the bounds; return the kept entry."""
        if self._frames and frame.time_s < self._frames[-1].time_s:
            log.warning("%s: frame time went back from %.3f to %.3f; frame buffer emptied",
                        frame.camera_id, self._frames[-1].time_s, frame.time_s)
            self._frames.clear()
            self._nbytes = 0
        entry = EncodedFrame(frame.camera_id, frame.time_s, frame.position,
                             _encode_jpeg(frame.image, self.jpeg_quality, f"{frame.camera_id}@{frame.time_s:.3f}"))
        self._frames.append(entry)
        self._nbytes += len(entry.jpeg)
        oldest_allowed = frame.time_s - self.max_seconds
        while len(self._frames) > 1 and (self._frames[0].time_s < oldest_allowed or self._nbytes > self.max_bytes):
            self._nbytes -= len(self._frames.popleft().jpeg)
        return entry

    def encoded_between(self, t0: float, t1: float) -> list[EncodedFrame]:
        """The kept entries with ``t0 <= time_s <= t1``, oldest first (still compressed)."""
        return [f for f in self._frames if t0 <= f.time_s <= t1]

    def frames_between(self, t0: float, t1: float) -> list[Frame]:
        """The kept frames with ``t0 <= time_s <= t1``, decoded, oldest first."""
        return [f.decode() for f in self.encoded_between(t0, t1)]


class PacketRing:
    """A camera's most recent compressed packets, whole GOPs, oldest GOP dropped first.

    Packets are pushed in decode order (:class:`~vision.sources.VideoPacket`, e.g. from
    ``FileSource(packet_sink=ring.push)``). The ring always starts with a keyframe: packets before
    the first keyframe are dropped, and eviction removes a whole GOP (a keyframe and what follows it
    up to the next keyframe). Bounds:

    - ``max_seconds``: the oldest GOP goes once the *next* keyframe is at least ``max_seconds``
      older than the newest packet — so any start time within ``max_seconds`` of the newest packet
      still has its keyframe in the ring (the ring spans ``max_seconds`` plus up to one GOP);
    - ``max_bytes``: the oldest GOPs go while the packet bytes exceed it (the newest GOP is kept).

    A packet whose time goes back (a new timeline) or whose stream parameters changed (another
    resolution or SPS) empties the ring first.
    """

    def __init__(self, max_seconds: float, max_bytes: int):
        if max_seconds <= 0 or max_bytes <= 0:
            raise ValueError(f"max_seconds and max_bytes must be positive, got {max_seconds}, {max_bytes}")
        self.max_seconds = float(max_seconds)
        self.max_bytes = int(max_bytes)
        self._gops: deque[list[VideoPacket]] = deque()
        self._gop_bytes: deque[int] = deque()
        self._nbytes = 0
        self._newest_s: float | None = None
        self.codec: StreamCodec | None = None

    def __len__(self) -> int:
        return sum(len(g) for g in self._gops)

    @property
    def empty(self) -> bool:
        """Nothing held (in constant time, unlike ``len``)."""
        return not self._gops

    @property
    def nbytes(self) -> int:
        """Packet bytes held."""
        return self._nbytes

    @property
    def oldest_time_s(self) -> float | None:
        return self._gops[0][0].time_s if self._gops else None

    @property
    def newest_time_s(self) -> float | None:
        return self._newest_s

    def clear(self) -> None:
        self._gops.clear()
        self._gop_bytes.clear()
        self._nbytes = 0
        self._newest_s = None

    def push(self, packet: VideoPacket) -> bool:
        """Keep ``packet`` (evicting old GOPs); return False when it was dropped (no keyframe yet)."""
        if not packet.codec.same_stream(self.codec) or (
                self._newest_s is not None and packet.time_s < self._newest_s - self.max_seconds):
            if self._gops:
                log.info("packet ring: new stream or timeline at %.3f; ring emptied", packet.time_s)
            self.clear()
            self.codec = packet.codec
        if packet.is_keyframe:
            self._gops.append([])
            self._gop_bytes.append(0)
        elif not self._gops:
            return False
        self._gops[-1].append(packet)
        self._gop_bytes[-1] += packet.nbytes
        self._nbytes += packet.nbytes
        self._newest_s = packet.time_s if self._newest_s is None else max(self._newest_s, packet.time_s)
        while len(self._gops) > 1 and (self._gops[1][0].time_s <= self._newest_s - self.max_seconds
                                       or self._nbytes > self.max_bytes):
            self._gops.popleft()
            self._nbytes -= self._gop_bytes.popleft()
        return True

    def packets_from(self, start_s: float) -> list[VideoPacket]:
        """The held packets from the last keyframe at or before ``start_s`` (or from the oldest
        keyframe when the ring does not reach back that far), in decode order; [] when empty."""
        first = 0
        for i, gop in enumerate(self._gops):
            if gop[0].time_s <= start_s + 1e-6:
                first = i
        return [p for gop in list(self._gops)[first:] for p in gop]


# --------------------------------------------------------------------------- clips


@dataclass(frozen=True, slots=True)
class ClipInfo:
    """A written clip.

    Attributes:
        path: where it was written.
        sha256: hex digest of the file's bytes.
        size_bytes: file size.
        duration_s: playable duration: last frame time − first frame time + one frame (1 / fps).
        frame_count: frames encoded.
        first_time_s, last_time_s: frame times of the first and last frame (clip time 0 is
            ``first_time_s``).
        width, height: encoded size in pixels.
    """

    path: str
    sha256: str
    size_bytes: int
    duration_s: float
    frame_count: int
    first_time_s: float
    last_time_s: float
    width: int
    height: int


def write_clip(frames: Iterable[Frame], path: str | os.PathLike, fps: float, *, preset: str = "veryfast",
               crf: int = 23) -> ClipInfo:
    """Encode frames to a browser-playable H.264 MP4.

    Args:
        frames: frames in increasing time (a generator is fine: frames are encoded one at a time,
            so a long clip never sits decoded in memory). A frame not later than the previous one
            is skipped. Frames of another size than the first are resized to it.
        path: the MP4 to write; replaced atomically.
        fps: the nominal frame rate; sets the duration of the last frame and the encoder's rate
            control. Timestamps come from the frames' times, so dropped frames or a stalled
            stream show as a held picture of the right length, not as fast-forward.
        preset, crf: libx264 speed/quality trade-off.

    Returns:
        :class:`ClipInfo` of the written file.

    Raises:
        EvidenceError: no frames, or the file could not be encoded or written.

    The file is H.264 (libx264, yuv420p) with ``movflags=faststart`` (the index is at the start, so
    a browser can play while downloading). The first frame is a keyframe and a keyframe is forced
    whenever a second of frame time has passed since the last one (GOP ≤ 1 s, also across gaps).
    An odd width or height is cropped by one pixel (yuv420p needs even sizes).
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path = Path(path)
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise EvidenceError(f"{path}: no frames to write")
    width, height = first.width & ~1, first.height & ~1
    gop_frames = max(1, int(fps * MAX_GOP_S))
    count, last_time, last_key_time = 0, None, None
    tmp = None
    try:
        tmp = _temp_beside(path)
        with av.open(str(tmp), "w", format="mp4", options={"movflags": "faststart"}) as out:
            stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001), options={
                "preset": preset, "crf": str(crf), "g": str(gop_frames), "sc_threshold": "0"})
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.time_base = CLIP_TIME_BASE
            stream.codec_context.time_base = CLIP_TIME_BASE
            stream.codec_context.profile = "High"
            for frame in _chain(first, frames):
                if last_time is not None and round((frame.time_s - last_time) * 1000) <= 0:
                    log.debug("%s: skipping frame at %.3f, not after %.3f", path, frame.time_s, last_time)
                    continue
                image = frame.image
                if image.shape[1] != width or image.shape[0] != height:
                    image = (image[:height, :width] if image.shape[1] in (width, width + 1)
                             and image.shape[0] in (height, height + 1)
                             else cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA))
                video = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
                video.pts = round((frame.time_s - first.time_s) * 1000)
                video.time_base = CLIP_TIME_BASE
                if last_key_time is None or frame.time_s - last_key_time >= MAX_GOP_S - 1e-6:
                    video.pict_type = PictureType.I  # forced keyframe: GOP ≤ 1 s of frame time
                    last_key_time = frame.time_s
                for packet in stream.encode(video):
                    out.mux(packet)
                count += 1
                last_time = frame.time_s
            for packet in stream.encode():
                out.mux(packet)
        sha256 = _sha256_file(tmp)
        size = tmp.stat().st_size
        _commit(tmp, path)
    except Exception as exc:
        # Whatever failed — the encoder, the disk, or decoding a buffered frame — no half-written
        # file may stay behind.
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, EvidenceError):
            raise
        raise EvidenceError(f"{path}: cannot write clip: {exc}") from exc
    return ClipInfo(path=str(path), sha256=sha256, size_bytes=size,
                    duration_s=round(last_time - first.time_s + 1.0 / fps, 6), frame_count=count,
                    first_time_s=first.time_s, last_time_s=last_time, width=width, height=height)


def cut_clip(packets: Sequence[VideoPacket], start_s: float, end_s: float, path: str | os.PathLike) -> ClipInfo:
    """Mux the packets of ``[start_s, end_s]`` (frame times) into an MP4 without re-encoding.

    Args:
        packets: one stream's packets in decode order (e.g. :meth:`PacketRing.packets_from` plus
            what came after), all H.264 with the same :class:`~vision.sources.StreamCodec`.
        start_s, end_s: the span. The clip starts at the last keyframe at or before ``start_s``
            (the first keyframe given if none is that early) and stops before the first packet,
            in decode order, whose time is after ``end_s``.
        path: the MP4 to write (``movflags=faststart``); replaced atomically.

    Returns:
        :class:`ClipInfo`; ``first_time_s`` is the keyframe's frame time (clip time 0).

    Raises:
        EvidenceError: no packets, no keyframe, not H.264, or muxing/writing failed (no file is
            left behind). Callers fall back to re-encoding buffered frames.
    """
    path = Path(path)
    if not packets:
        raise EvidenceError(f"{path}: no packets to cut")
    codec = packets[0].codec
    if codec.name != "h264" or not codec.template_mp4:
        raise EvidenceError(f"{path}: source codec is {codec.name}, not H.264; the clip must be re-encoded")
    keys = [i for i, p in enumerate(packets) if p.is_keyframe]
    if not keys:
        raise EvidenceError(f"{path}: no keyframe among {len(packets)} packets")
    first = next((i for i in reversed(keys) if packets[i].time_s <= start_s + 1e-6), keys[0])
    chosen: list[VideoPacket] = []
    for packet in packets[first:]:
        if packet.time_s > end_s + 1e-6:
            break
        if not packet.codec.same_stream(codec):
            log.warning("%s: stream parameters changed at %.3f; clip cut there", path, packet.time_s)
            break
        chosen.append(packet)
    time_base = chosen[0].time_base
    offset = chosen[0].dts
    tmp = None
    try:
        tmp = _temp_beside(path)
        with av.open(io.BytesIO(codec.template_mp4)) as template, \
                av.open(str(tmp), "w", format="mp4", options={"movflags": "faststart"}) as out:
            stream = out.add_stream_from_template(template.streams.video[0])
            stream.time_base = time_base
            for packet in chosen:
                av_packet = av.Packet(packet.data)
                av_packet.pts, av_packet.dts = packet.pts - offset, packet.dts - offset
                av_packet.duration = packet.duration
                av_packet.time_base = time_base
                av_packet.is_keyframe = packet.is_keyframe
                av_packet.stream = stream
                out.mux(av_packet)
        sha256 = _sha256_file(tmp)
        size = tmp.stat().st_size
        _commit(tmp, path)
    except Exception as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise EvidenceError(f"{path}: cannot cut clip: {exc}") from exc
    times = sorted(p.time_s for p in chosen)
    frame_s = (float(chosen[-1].duration * time_base) if chosen[-1].duration
               else float(np.median(np.diff(times))) if len(times) > 1 else 0.0)
    return ClipInfo(path=str(path), sha256=sha256, size_bytes=size,
                    duration_s=round(times[-1] - times[0] + frame_s, 6), frame_count=len(chosen),
                    first_time_s=times[0], last_time_s=times[-1], width=codec.width, height=codec.height)


def _chain(first: Frame, rest: Iterator[Frame]) -> Iterator[Frame]:
    yield first
    yield from rest


def clip_span(violation: Violation, trigger_time_s: float, pre_roll_s: float, post_roll_s: float) -> tuple[float, float]:
    """The span of frame time a violation's clip should cover:
    ``[violation.start_time_s − pre_roll_s, trigger_time_s + post_roll_s]`` — from a little before
    the object settled to a little after the rule raised it."""
    return violation.start_time_s - pre_roll_s, trigger_time_s + post_roll_s


def _estimate_fps(frames: Sequence[EncodedFrame], default: float = 10.0) -> float:
    """The frame rate the frames were taken at: the median interval, robust to a few gaps."""
    intervals = np.diff([f.time_s for f in frames])
    intervals = intervals[intervals > 0]
    return float(np.clip(1.0 / np.median(intervals), 0.1, 120.0)) if intervals.size else default


@dataclass(slots=True)
class _PendingClip:
    violation_id: str
    start_s: float
    end_s: float
    frames: list[EncodedFrame] = field(default_factory=list)
    packets: list[VideoPacket] = field(default_factory=list)
    packets_done: bool = False  # a packet after end_s was seen: nothing more to collect


class ClipRecorder:
    """Clips for one camera: keeps the :class:`FrameRing` and writes each requested span once it is over.

    Use::

        recorder = ClipRecorder("gate-1", "var/clips", fps=10, max_seconds=90, max_bytes=300_000_000)
        for frame in frames:
            for violation_id, clip in recorder.push(frame):   # usually empty
                ...upload clip.path...
            ...
            recorder.request(v.id, *clip_span(v, event.trigger_time_s, pre_roll_s, post_roll_s))
        for violation_id, clip in recorder.flush():           # at the end of the stream
            ...

    Span capping: at ``request`` time the clip takes the frames the ring still holds from ``start_s``
    on, so the clip starts at ``max(start_s, oldest frame in the ring)``. For a full pre-roll the
    ring's ``max_seconds`` must cover the rule's ``dwell_s + pre_roll_s`` (the violation starts when
    the object settled, ``dwell_s`` before the trigger). After the request the clip collects pushed
    frames itself until ``end_s`` — sharing the ring's JPEG bytes, not copying them — so the
    post-roll is never cut by ring eviction; what is still to come is limited to ``max_seconds``
    after the newest frame at request time, so a pending clip holds at most twice the ring. Frames pushed after a request with times in the span are included; push every frame you
    want in the clip (e.g. at the evidence frame rate) through this recorder.

    Packets (``packets=True``): feed the source's compressed packets to :meth:`push_packet` (e.g.
    ``FileSource(packet_sink=recorder.push_packet)``). Once H.264 packets arrive, the recorder keeps
    a :class:`PacketRing` instead of JPEG frames (the frame ring is emptied and frames are no longer
    compressed) and cuts clips with :func:`cut_clip`, from the keyframe at or before the span's start,
    without re-encoding. ``push(frame)`` still decides when a span is over. Sources that are not
    H.264 (or no packets at all) keep the JPEG frame ring and the re-encoding path.

    Writing a clip blocks ``push``/``flush`` for the encoding time (about 0.3 s for 10 s of 640x360,
    several seconds for a long 1080p span); run the recorder off the detection thread if that
    matters. A clip that cannot be written, or has no frames left, is logged and dropped: the
    violation goes out without a clip rather than blocking the others.
    """

    def __init__(self, camera_id: str = "", out_dir: str | os.PathLike | None = None, *, max_seconds: float,
                 max_bytes: int, fps: float | None = None, jpeg_quality: int = 85, preset: str = "veryfast",
                 packets: bool = False):
        """
        Args:
            camera_id: for log messages.
            out_dir: where clips are written as ``<violation_id>.mp4``; by default a private temporary
                folder (the caller moves or uploads the files it gets back).
            max_seconds, max_bytes, jpeg_quality: the :class:`FrameRing` bounds.
            fps: the clips' nominal frame rate; by default estimated per clip from its frame times.
            preset: libx264 preset.
            packets: accept compressed packets through :meth:`push_packet` and cut H.264 clips
                from a :class:`PacketRing` (same ``max_seconds``/``max_bytes`` bounds).
        """
        self.camera_id = camera_id
        self.out_dir = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="compoundeye-clips-"))
        self.fps = fps
        self.preset = preset
        self.ring = FrameRing(max_seconds, max_bytes, jpeg_quality)
        self.packet_ring = PacketRing(max_seconds, max_bytes) if packets else None
        self._pending: dict[str, _PendingClip] = {}

    @property
    def cutting_packets(self) -> bool:
        """Whether clips are cut from compressed H.264 packets (else re-encoded from JPEG frames)."""
        ring = self.packet_ring
        return ring is not None and ring.codec is not None and ring.codec.name == "h264" and not ring.empty

    def push_packet(self, packet: VideoPacket) -> None:
        """Buffer one compressed packet (decode order) and add it to the pending clips it belongs to.
        Packets of a codec other than H.264 are ignored (clips are then re-encoded from frames)."""
        if self.packet_ring is None or packet.codec.name != "h264":
            return
        was_cutting = self.cutting_packets
        self.packet_ring.push(packet)
        if not was_cutting and self.cutting_packets:
            log.info("%s: cutting clips from H.264 packets; JPEG frame buffer released", self.camera_id)
            self.ring = FrameRing(self.ring.max_seconds, self.ring.max_bytes, self.ring.jpeg_quality)
        for clip in self._pending.values():
            if clip.packets_done or not clip.packets:
                continue
            if packet.time_s > clip.end_s + 1e-6:
                clip.packets_done = True
            else:
                clip.packets.append(packet)

    def pending(self) -> list[str]:
        """Violation ids whose clips are still waiting for their end."""
        return list(self._pending)

    def request(self, violation_id: str, start_s: float, end_s: float) -> None:
        """Register a clip of ``[start_s, end_s]`` (frame times) for ``violation_id``.

        The clip is returned from the first ``push`` whose frame time is ≥ ``end_s`` (or from
        ``flush``). A repeated request for an id that is still pending is ignored (retries are
        harmless)."""
        if end_s < start_s:
            raise ValueError(f"{self.camera_id}: clip end {end_s} is before its start {start_s}")
        if violation_id in self._pending:
            return
        held = [] if self.cutting_packets else self.ring.encoded_between(start_s, end_s)
        packets = self.packet_ring.packets_from(start_s) if self.cutting_packets else []
        if packets and packets[0].time_s > start_s + 1e-6:
            log.info("%s: clip for %s starts at %.3f instead of %.3f: older packets are no longer buffered",
                     self.camera_id, violation_id, packets[0].time_s, start_s)
        if held and held[0].time_s > start_s + 1.0:
            log.info("%s: clip for %s starts at %.3f instead of %.3f: older frames are no longer buffered",
                     self.camera_id, violation_id, held[0].time_s, start_s)
        # What is still to come is collected outside the ring's bounds; limit it to the ring's
        # length so a mistaken far-future end cannot hold frames without bound.
        newest = self.packet_ring.newest_time_s if packets else self.ring.newest_time_s
        limit = (newest if newest is not None and newest >= start_s else start_s) + self.ring.max_seconds
        if end_s > limit:
            log.warning("%s: clip for %s cut at %.3f instead of %.3f (longer than the frame buffer)",
                        self.camera_id, violation_id, limit, end_s)
        self._pending[violation_id] = _PendingClip(violation_id, start_s, min(end_s, limit), held,
                                                   [p for p in packets if p.time_s <= min(end_s, limit) + 1e-6])

    def push(self, frame: Frame) -> list[tuple[str, ClipInfo]]:
        """Buffer ``frame`` (JPEG, unless clips are cut from packets); return the clips whose span
        ended at or before its time, written."""
        entry = None if self.cutting_packets else self.ring.push(frame)
        ready = []
        for clip in list(self._pending.values()):
            if (entry is not None and clip.start_s <= entry.time_s <= clip.end_s
                    and (not clip.frames or entry.time_s > clip.frames[-1].time_s)):
                clip.frames.append(entry)
            if frame.time_s >= clip.end_s:
                ready.append(clip)
        return self._write(ready)

    def flush(self) -> list[tuple[str, ClipInfo]]:
        """Write every pending clip with the frames it has (end of stream, shutdown)."""
        return self._write(list(self._pending.values()))

    def _write(self, clips: list[_PendingClip]) -> list[tuple[str, ClipInfo]]:
        done = []
        for clip in clips:
            del self._pending[clip.violation_id]
            path = self.out_dir / f"{clip.violation_id}.mp4"
            if clip.packets:
                try:
                    done.append((clip.violation_id, cut_clip(clip.packets, clip.start_s, clip.end_s, path)))
                    continue
                except EvidenceError:
                    log.exception("%s: clip for %s could not be cut from packets; re-encoding frames",
                                  self.camera_id, clip.violation_id)
            if not clip.frames:
                log.warning("%s: no buffered frames for the clip of %s (%.3f–%.3f); no clip",
                            self.camera_id, clip.violation_id, clip.start_s, clip.end_s)
                continue
            try:
                info = write_clip((f.decode() for f in clip.frames), path, self.fps or _estimate_fps(clip.frames),
                                  preset=self.preset)
            except EvidenceError:
                log.exception("%s: clip for %s not written", self.camera_id, clip.violation_id)
                continue
            done.append((clip.violation_id, info))
        return done


# --------------------------------------------------------------------------- stills

VIOLATION_BGR = (0, 0, 255)
ZONE_BGR = (0, 200, 255)


def box_at(violation: Violation, time_s: float) -> EvidenceBox | None:
    """The violation's evidence box nearest in time to ``time_s`` (None if it has none)."""
    if not violation.boxes:
        return None
    return min(violation.boxes, key=lambda b: abs(b.time_s - time_s))


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _label(image: np.ndarray, text: str, org: tuple[int, int], color, scale: float) -> None:
    """Text on a filled band so it stays readable on any background; ``org`` is the band's top-left."""
    thickness = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    h, w = image.shape[:2]
    x = int(min(max(org[0], 0), max(w - tw - 6, 0)))
    y = int(min(max(org[1], 0), max(h - th - base - 6, 0)))
    cv2.rectangle(image, (x, y), (x + tw + 6, y + th + base + 6), color, -1)
    cv2.putText(image, text, (x + 3, y + th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness,
                cv2.LINE_AA)


def annotate(frame: Frame, violation: Violation, zone: Zone, tz: ZoneInfo) -> np.ndarray:
    """A copy of the frame with the zone, the violation's box (class, confidence, dwell) and the frame
    time in the site's time zone burnt in. Text is ASCII (OpenCV's fonts): ids, not display names."""
    image = frame.image.copy()
    h = image.shape[0]
    scale = max(0.5, h / 1080 * 0.9)
    draw_zone(image, zone, ZONE_BGR, thickness=max(2, h // 540))
    box = box_at(violation, frame.time_s)
    if box is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in box.xyxy)
        cv2.rectangle(image, (x1, y1), (x2, y2), VIOLATION_BGR, max(2, h // 360))
        dwell = _fmt_duration(frame.time_s - violation.start_time_s)
        text = f"{box.class_name} {box.confidence:.2f} dwell {dwell}"
        (_, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, int(round(scale * 2))))
        _label(image, text, (x1, y1 - th - base - 6 if y1 - th - base - 6 >= 0 else y2), VIOLATION_BGR, scale)
    local = dt.datetime.fromtimestamp(frame.time_s, tz)
    stamp = f"{local:%Y-%m-%d %H:%M:%S} {local:%Z} (UTC{local:%z})  {violation.camera_id}  {violation.rule}"
    _label(image, stamp, (0, 0), (0, 0, 0), scale)
    return image


def write_snapshot(frame: Frame, violation: Violation, zone: Zone, path: str | os.PathLike, quality: int = 90,
                   *, tz: ZoneInfo) -> str:
    """Write the annotated full-resolution JPEG (see :func:`annotate`) to ``path``; return its sha256.

    Raises:
        EvidenceError: encoding or writing failed (no partial file is left).
    """
    return write_atomic(path, _encode_jpeg(annotate(frame, violation, zone, tz), quality, str(path)))


def crop_box(frame_wh: tuple[int, int], xyxy: Sequence[float], margin: float) -> tuple[int, int, int, int]:
    """Pixel rectangle (x1, y1, x2, y2) of a box grown by ``margin`` × its size on each side, clipped to
    the frame and at least one pixel wide and high."""
    w, h = frame_wh
    x1, y1, x2, y2 = xyxy
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    cx1 = int(np.clip(np.floor(x1 - mx), 0, w - 1))
    cy1 = int(np.clip(np.floor(y1 - my), 0, h - 1))
    cx2 = int(np.clip(np.ceil(x2 + mx), cx1 + 1, w))
    cy2 = int(np.clip(np.ceil(y2 + my), cy1 + 1, h))
    return cx1, cy1, cx2, cy2


def write_crop(frame: Frame, violation: Violation, path: str | os.PathLike, quality: int = 90, *,
               margin: float = 0.25) -> str:
    """Write a JPEG of the violation's object (its box nearest to the frame time, grown by ``margin``
    × box size on each side, clipped to the image), unannotated; return its sha256.

    Raises:
        EvidenceError: the violation has no box, or encoding/writing failed.
    """
    box = box_at(violation, frame.time_s)
    if box is None:
        raise EvidenceError(f"{path}: violation {violation.id} has no box to crop")
    x1, y1, x2, y2 = crop_box((frame.width, frame.height), box.xyxy, margin)
    return write_atomic(path, _encode_jpeg(frame.image[y1:y2, x1:x2], quality, str(path)))


def sidecar_bytes(violation: Violation, boxes_per_time: Mapping[float, Sequence[EvidenceBox]] | None = None, *,
                  frame_wh: tuple[int, int] | None = None, clip_start_s: float | None = None) -> bytes:
    """The boxes per frame time as JSON, for a page to overlay on the unannotated clip.

    Args:
        violation: the violation (its id, rule, times; its own boxes when ``boxes_per_time`` is None).
        boxes_per_time: frame time → boxes to show at that time (e.g. every tracked box in the zone
            while the clip runs). Defaults to the violation's evidence boxes.
        frame_wh: the pixel size the boxes refer to, so a page can scale them to the player.
        clip_start_s: frame time of the clip's first frame (``ClipInfo.first_time_s``); adds each
            frame's ``clip_offset_s``, the player's ``currentTime`` at which to show its boxes.

    Returns:
        UTF-8 JSON bytes, keys sorted and floats rounded, so the same input gives the same bytes
        (and sha256). Layout::

            {"schema": "compoundeye.sidecar/1", "violation_id": ..., "rule": ..., "camera_id": ...,
             "zone": ..., "start_time_s": ..., "last_seen_time_s": ..., "end_time_s": ...,
             "frame_width": ..., "frame_height": ..., "clip_start_s": ...,
             "frames": [{"time_s": ..., "clip_offset_s": ..., "boxes": [
                 {"xyxy": [x1, y1, x2, y2], "class_name": ..., "confidence": ..., "track_id": ...}]}]}
    """
    if boxes_per_time is None:
        grouped: dict[float, list[EvidenceBox]] = {}
        for b in violation.boxes:
            grouped.setdefault(b.time_s, []).append(b)
        boxes_per_time = grouped
    frames = []
    for time_s in sorted(boxes_per_time):
        entry = {"time_s": round(time_s, 3), "boxes": [
            {"xyxy": [round(float(v), 1) for v in b.xyxy], "class_name": b.class_name,
             "confidence": round(float(b.confidence), 4), "track_id": int(b.track_id)}
            for b in boxes_per_time[time_s]]}
        if clip_start_s is not None:
            entry["clip_offset_s"] = round(time_s - clip_start_s, 3)
        frames.append(entry)
    doc = {
        "schema": "compoundeye.sidecar/1",
        "violation_id": violation.id, "rule": violation.rule, "camera_id": violation.camera_id,
        "zone": violation.zone, "start_time_s": violation.start_time_s,
        "last_seen_time_s": violation.last_seen_time_s, "end_time_s": violation.end_time_s,
        "frames": frames,
    }
    if frame_wh is not None:
        doc["frame_width"], doc["frame_height"] = int(frame_wh[0]), int(frame_wh[1])
    if clip_start_s is not None:
        doc["clip_start_s"] = clip_start_s
    return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sidecar_json(violation: Violation, path: str | os.PathLike,
                 boxes_per_time: Mapping[float, Sequence[EvidenceBox]] | None = None, *,
                 frame_wh: tuple[int, int] | None = None, clip_start_s: float | None = None) -> str:
    """Write :func:`sidecar_bytes` to ``path`` atomically; return its sha256.

    Raises:
        EvidenceError: the file could not be written.
    """
    return write_atomic(path, sidecar_bytes(violation, boxes_per_time, frame_wh=frame_wh, clip_start_s=clip_start_s))
