"""Video file sources: decode a file with PyAV and yield sampled :class:`~vision.types.Frame` s.

Sampling is by *frame time* (PTS × time base), never by frame count, so variable-frame-rate files,
B-frame reordering and dropped frames give the same sampled times as a clean constant-rate file.
Every PyAV error is translated here into :class:`~vision.errors.SourceError` naming the file.

>>> with FileSource("samples/footage/fire_lane_demo.mp4", "cam1", sample_fps=2,
...                 start_time_s=1_700_000_000.0) as source:   # doctest: +SKIP
...     for frame in source:
...         print(frame.position, frame.time_s)
"""
from __future__ import annotations

import io
import math
import os
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterator

import av

from vision.errors import SourceError
from vision.h264 import DisposableFrames, GopTails
from vision.types import Frame

# A file whose last decoded frame is this far before its declared end was cut short. Real
# recordings end a frame or two early because of rounding and B-frame delay, so the allowance is
# the larger of this and three frame periods.
TRUNCATION_TOLERANCE_S = 0.5
# A frame within this of a sampling tick counts as on the tick (PTS rounding in the container).
TICK_EPSILON_S = 1e-3
# realtime=True: when the consumer falls this far behind the footage, stop trying to catch up
# (re-anchor the clock) instead of bursting frames out as fast as they decode.
REALTIME_MAX_LAG_S = 1.0

_LIBRARY_ERRORS = (av.FFmpegError, OSError)


def open_video(path: str, threads: int = 0) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``path`` and return the container and its first video stream (multi-threaded decoding
    with ``threads`` decoder threads; 0: as many as FFmpeg picks for the machine)."""
    try:
        container = av.open(path, mode="r")
    except _LIBRARY_ERRORS as exc:
        raise SourceError(path, f"cannot open video: {exc}") from exc
    if not container.streams.video:
        container.close()
        raise SourceError(path, "the file has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads
    return container, stream


@dataclass(frozen=True, slots=True)
class StreamCodec:
    """What a muxer needs to write a source's packets without re-encoding them.

    Attributes:
        name: codec name (``"h264"``, ``"hevc"``, ``"mjpeg"``…).
        width, height: coded picture size.
        extradata: the codec's global header (SPS/PPS for H.264), compared to detect a changed stream.
        template_mp4: a tiny MP4 carrying the stream's codec parameters (one placeholder packet), opened
            by :func:`vision.evidence.cut_clip` as the template of its output stream.
    """

    name: str
    width: int
    height: int
    extradata: bytes
    template_mp4: bytes

    def same_stream(self, other: "StreamCodec | None") -> bool:
        """Whether packets of ``other`` can go into the same clip as packets of this one."""
        return other is not None and (self.name, self.width, self.height, self.extradata) == (
            other.name, other.width, other.height, other.extradata)


@dataclass(frozen=True, slots=True)
class VideoPacket:
    """One demuxed (still compressed) packet of a camera's stream, in decode order.

    Attributes:
        data: the packet's bytes as the container holds them.
        pts, dts: timestamps in ``time_base`` units on the source's continuous timeline (a looping
            file's later passes are shifted, so they keep increasing).
        duration: in ``time_base`` units (0 when unknown).
        time_base: seconds per timestamp unit.
        is_keyframe: a clip may start here.
        time_s: frame time of ``pts`` (the same clock as :attr:`Frame.time_s`).
        codec: the stream's :class:`StreamCodec` (shared by all packets of one stream).
    """

    data: bytes
    pts: int
    dts: int
    duration: int
    time_base: Fraction
    is_keyframe: bool
    time_s: float
    codec: StreamCodec

    @property
    def nbytes(self) -> int:
        return len(self.data)


def stream_codec(stream) -> StreamCodec:
    """The :class:`StreamCodec` of an open PyAV input video stream."""
    ctx = stream.codec_context
    buffer = io.BytesIO()
    try:
        with av.open(buffer, "w", format="mp4") as template:
            out = template.add_stream_from_template(stream)
            placeholder = av.Packet(b"\x00")  # the mp4 muxer writes its header on the first packet
            placeholder.pts = placeholder.dts = 0
            placeholder.stream = out
            template.mux(placeholder)
        template_mp4 = buffer.getvalue()
    except (av.FFmpegError, ValueError):
        template_mp4 = b""  # a codec MP4 cannot hold: clips of this stream are re-encoded
    return StreamCodec(ctx.name, int(ctx.width), int(ctx.height), bytes(ctx.extradata or b""), template_mp4)


def _declared_duration_s(container, stream) -> float | None:
    """The duration the file claims to have (stream first, then container), or None if unknown."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _nominal_fps(stream) -> float | None:
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    return float(rate) if rate else None


def probe(path: str | os.PathLike) -> dict:
    """Describe a video file without decoding it.

    Returns ``{"duration_s": float | None, "fps": float | None, "width": int, "height": int,
    "codec": str, "frames": int | None}``. Raises :class:`SourceError` naming the file if it is
    missing, not a video or has no video stream.
    """
    path = os.fspath(path)
    container, stream = open_video(path)
    try:
        return {
            "duration_s": _declared_duration_s(container, stream),
            "fps": _nominal_fps(stream),
            "width": int(stream.codec_context.width),
            "height": int(stream.codec_context.height),
            "codec": stream.codec_context.name,
            "frames": int(stream.frames) or None,
        }
    finally:
        container.close()


class FileSource:
    """Frames of one video file, sampled at ``sample_fps`` by frame time.

    Args:
        path: the video file.
        camera_id: copied into every frame.
        sample_fps: how many frames per second of footage to yield. For each sampling tick
            (``k / sample_fps`` after the first frame) the first frame at or after the tick is
            yielded; ticks with no frame of their own (gaps in VFR footage) are skipped, never filled
            with duplicates. A file slower than ``sample_fps`` yields every frame.
        start_time_s: frame time (UTC epoch seconds) of PTS 0 in the file.
        realtime: pace the output to the wall clock, as a live camera would (demo mode).
        loop: replay the file forever. Frame time keeps increasing: each pass is offset by the
            accumulated duration of the previous passes.
        threads: decoder threads (0: FFmpeg's choice for the machine; a process pool sharing the
            cores wants 1 per process).
        packet_sink: optional; called with every demuxed :class:`VideoPacket` of the video stream
            (all of them, not only the sampled ones), in decode order, before any frame decoded from
            it is yielded — e.g. :meth:`vision.evidence.ClipRecorder.push_packet`, so clips can be cut
            without re-encoding. An exception from the sink stops the iteration.

    Frames the sampling would not pick and no other frame refers to (H.264 disposable frames), and
    the frames of a closed GOP after the last one the sampling picks in it, are not decoded at all
    (see :mod:`vision.h264`); the frames yielded are exactly those of a full decode.

    Iterating yields :class:`Frame` with ``image`` BGR uint8, ``time_s = start_time_s + offset +
    pts_s`` and ``position = f"{path}@{pts_s:.3f}"``.

    Raises:
        SourceError: naming the file — at construction if it is missing, not a video or has no
            video stream; during iteration if decoding fails or the file ends well before its
            declared duration (a truncated upload or copy).

    The file is opened at construction, so a bad path fails at start-up, not at the first frame.
    Use it as a context manager or call :meth:`close`; ``close()`` may be called from another
    thread to stop an iteration (it also interrupts the realtime wait).
    """

    def __init__(self, path: str | os.PathLike, camera_id: str, sample_fps: float, start_time_s: float,
                 realtime: bool = False, loop: bool = False,
                 packet_sink: Callable[[VideoPacket], None] | None = None, threads: int = 0):
        if not sample_fps > 0:
            raise ValueError(f"sample_fps must be positive, got {sample_fps}")
        self.path = os.fspath(path)
        self.camera_id = camera_id
        self.sample_fps = float(sample_fps)
        self.start_time_s = float(start_time_s)
        self.realtime = realtime
        self.loop = loop
        self.packet_sink = packet_sink
        self.threads = int(threads)
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards _container between close() and the iterating thread
        self._iterating = False
        self._container, self._stream = open_video(self.path, self.threads)
        ctx = self._stream.codec_context
        self._disposable = DisposableFrames(ctx.name, bytes(ctx.extradata or b""), self.sample_fps, TICK_EPSILON_S)
        self._tails: GopTails | None = None   # the current pass's (its ``skipped`` count)

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop iteration and release the file. Safe to call more than once and from another thread."""
        self._stop.set()
        with self._lock:
            # An iteration in progress closes the container itself at its next step: closing it
            # under a running decoder from another thread is not safe in FFmpeg.
            if not self._iterating and self._container is not None:
                self._container.close()
                self._container = None

    def __enter__(self) -> "FileSource":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- iteration -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        with self._lock:
            if self._iterating:
                raise RuntimeError(f"{self.path}: FileSource is already being iterated")
            if self._stop.is_set():
                return
            self._iterating = True
        try:
            yield from self._frames()
        finally:
            with self._lock:
                self._iterating = False
                if self._container is not None:
                    self._container.close()
                    self._container = None

    def _frames(self) -> Iterator[Frame]:
        period_s = 1.0 / self.sample_fps
        tick_origin: float | None = None  # timeline time of the first sampling tick
        next_tick = -math.inf
        offset_s = 0.0  # accumulated duration of previous passes (loop=True)
        clock: tuple[float, float] | None = None  # (wall monotonic, timeline) anchor for realtime
        while not self._stop.is_set():
            if self._container is None:
                self._container, self._stream = open_video(self.path, self.threads)
            last_pts_s = None
            frame_period_s = None
            for pts_s, frame_period_s, av_frame in self._decode_pass(offset_s):
                last_pts_s = pts_s
                timeline_s = offset_s + pts_s
                if tick_origin is None:
                    tick_origin = self._disposable.origin_s = timeline_s
                if timeline_s + TICK_EPSILON_S < next_tick:
                    continue
                # Next tick strictly after this frame, counted from the origin (no float drift).
                k = math.floor((timeline_s - tick_origin + TICK_EPSILON_S) / period_s) + 1
                next_tick = tick_origin + k * period_s
                try:
                    image = av_frame.to_ndarray(format="bgr24")
                except _LIBRARY_ERRORS as exc:
                    raise SourceError(self.path, f"cannot convert frame at {pts_s:.3f} s: {exc}") from exc
                if self.realtime:
                    clock = self._wait_until(timeline_s, clock)
                    if self._stop.is_set():
                        return
                yield Frame(self.camera_id, self.start_time_s + timeline_s, image, f"{self.path}@{pts_s:.3f}")
                if self._stop.is_set():
                    return
            if not self.loop or last_pts_s is None:
                return
            # The next pass starts one frame period after this pass's last frame, so frame time
            # keeps increasing even if the file's first PTS is not 0 (B-frame delay).
            offset_s += last_pts_s + (frame_period_s or period_s)
            with self._lock:
                self._container.close()
                self._container = None

    def _decoded(self, container, stream, offset_s: float) -> Iterator["av.VideoFrame"]:
        """Frames of one pass: demux, hand every packet to the packet sink (if any), and decode
        those the sampling may need (disposable frames between two ticks are left out)."""
        time_base = stream.time_base or Fraction(1, 90_000)
        shift = round(offset_s / time_base)  # later passes of a looping file continue the timeline
        codec = stream_codec(stream) if self.packet_sink is not None else None
        disposable = self._disposable
        tails = self._tails = GopTails(disposable, lambda packet: None if packet.pts is None
                                       else offset_s + float(packet.pts * time_base))
        for packet, needed in tails(container.demux(stream)):
            if packet.dts is not None:
                pts = packet.pts if packet.pts is not None else packet.dts
                if self.packet_sink is not None:
                    self.packet_sink(VideoPacket(
                        data=bytes(packet), pts=pts + shift, dts=packet.dts + shift,
                        duration=int(packet.duration or 0), time_base=time_base,
                        is_keyframe=bool(packet.is_keyframe),
                        time_s=self.start_time_s + offset_s + float(pts * time_base), codec=codec))
                if packet.pts is not None:
                    timeline_s = offset_s + float(packet.pts * time_base)
                    disposable.note(timeline_s)
                    if not needed or disposable.skip(packet, timeline_s):
                        continue
                if packet.is_corrupt:
                    # a packet cut off by the end of a truncated file: a single-threaded decoder
                    # fails on it, a frame-threaded one drops it; leaving it out makes both report
                    # the truncation (checked against the declared duration below)
                    continue
            yield from packet.decode()

    def _decode_pass(self, offset_s: float = 0.0) -> Iterator[tuple[float, float | None, "av.VideoFrame"]]:
        """Decode the whole open file once, yielding ``(pts_s, frame_period_s, frame)`` in
        presentation order; raise SourceError on a decoding error or a truncated file.
        ``offset_s`` is where this pass starts on the looping timeline (for packet times)."""
        container, stream = self._container, self._stream
        time_base = stream.time_base or Fraction(1, 90_000)
        fps = _nominal_fps(stream)
        frame_period_s = 1.0 / fps if fps else None
        declared_s = _declared_duration_s(container, stream)
        start_s = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
        last_pts_s: float | None = None
        try:
            for av_frame in self._decoded(container, stream, offset_s):
                if av_frame.pts is not None:
                    pts_s = float(av_frame.pts * time_base)
                elif last_pts_s is not None:  # rare broken streams: extrapolate one frame period
                    pts_s = last_pts_s + (frame_period_s or 0.04)
                else:
                    pts_s = start_s
                last_pts_s = pts_s
                yield pts_s, frame_period_s, av_frame
                if self._stop.is_set():
                    return
        except _LIBRARY_ERRORS as exc:
            where = f"after {last_pts_s:.3f} s" if last_pts_s is not None else "before the first frame"
            raise SourceError(self.path, f"decoding failed {where}: {exc}") from exc
        # PyAV ends a truncated MP4 (index intact, data cut off) silently: compare with what the
        # file declares.
        if declared_s is not None and declared_s > 0:
            decoded_end_s = (last_pts_s if last_pts_s is not None else start_s) + (frame_period_s or 0.0)
            tolerance_s = max(TRUNCATION_TOLERANCE_S, 3 * (frame_period_s or 0.0))
            if decoded_end_s < start_s + declared_s - tolerance_s:
                got = "no frames" if last_pts_s is None else f"frames up to {last_pts_s:.3f} s"
                raise SourceError(self.path, f"file is truncated or corrupt: it declares {declared_s:.3f} s "
                                             f"but decoding produced {got}")

    def _wait_until(self, timeline_s: float, clock: tuple[float, float] | None) -> tuple[float, float]:
        """Sleep until the wall clock reaches the frame's place in the footage; returns the anchor."""
        now = time.monotonic()
        if clock is None:
            return now, timeline_s
        wall0, timeline0 = clock
        delay = (timeline_s - timeline0) - (now - wall0)
        if delay < -REALTIME_MAX_LAG_S:
            return now, timeline_s  # too far behind: re-anchor rather than burst
        if delay > 0:
            self._stop.wait(delay)  # close() interrupts the wait
        return clock
