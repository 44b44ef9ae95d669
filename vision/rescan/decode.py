"""Decoding for re-scans, beyond :class:`vision.sources.FileSource` (which the sampled mode uses as is):

- :func:`keyframes` decodes only the keyframes (the other packets are demuxed for the clip recorder
  but never reach the decoder, and ``skip_frame = "NONKEY"`` drops any that would);
- :func:`sampled_stretches` decodes only some stretches of a file, seeking to the keyframe before
  each, and picks frames on the *same* sampling ticks as a :class:`FileSource` reading the whole
  file would (ticks ``k / fps`` after the file's first frame), so the frames fed to the pipeline in
  a stretch are the very frames the sampled mode feeds it (disposable frames between two ticks, and
  the frames of a closed GOP after its last sampled one, are not decoded, as in :class:`FileSource`).

``threads`` is the number of decoder threads (0: FFmpeg's choice for the machine); a pool of
processes sharing the cores wants 1 each, so decoder threads and onnxruntime threads do not fight
over the same two cores.

Both hand every demuxed packet they pass to ``packet_sink`` (the clip recorder cuts H.264 clips from
them) and translate PyAV errors and truncated files into :class:`SourceError` naming the file.
"""
from __future__ import annotations

import math
import os
import queue
import statistics
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterator

import av

from vision.errors import SourceError
from vision.h264 import DisposableFrames, GopTails
from vision.sources import TICK_EPSILON_S, TRUNCATION_TOLERANCE_S, VideoPacket, open_video, stream_codec

_LIBRARY_ERRORS = (av.FFmpegError, OSError)


@dataclass(frozen=True)
class DecodedFrame:
    pts_s: float          # presentation time in the file (PTS × time base)
    image: "object"       # HxWx3 uint8 BGR


def _declared_s(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _fps(stream) -> float | None:
    rate = stream.average_rate or stream.base_rate or stream.guessed_rate
    return float(rate) if rate else None


class PacketForwarder:
    """Turns PyAV packets into :class:`VideoPacket` for a sink, each packet once (by DTS), even when
    stretches re-read the GOP before them."""

    def __init__(self, stream, start_time_s: float, sink: Callable[[VideoPacket], None] | None):
        self.sink = sink
        self.time_base = stream.time_base or Fraction(1, 90_000)
        self.codec = stream_codec(stream) if sink is not None else None
        self.start_time_s = start_time_s
        self.last_dts: int | None = None
        self.last_pts_s: float | None = None

    def __call__(self, packet) -> None:
        if packet.dts is None:
            return
        pts = packet.pts if packet.pts is not None else packet.dts
        pts_s = float(pts * self.time_base)
        self.last_pts_s = pts_s if self.last_pts_s is None else max(self.last_pts_s, pts_s)
        if self.sink is None or (self.last_dts is not None and packet.dts <= self.last_dts):
            return
        self.last_dts = packet.dts
        self.sink(VideoPacket(data=bytes(packet), pts=pts, dts=packet.dts, duration=int(packet.duration or 0),
                              time_base=self.time_base, is_keyframe=bool(packet.is_keyframe),
                              time_s=self.start_time_s + pts_s, codec=self.codec))


def keyframe_interval_s(path: str, max_packets: int = 2000) -> float | None:
    """The median time between keyframes over the start of the file (demuxing only), or None."""
    container, stream = open_video(path)
    try:
        times = []
        time_base = stream.time_base or Fraction(1, 90_000)
        for i, packet in enumerate(container.demux(stream)):
            if packet.dts is not None and packet.is_keyframe and packet.pts is not None:
                times.append(float(packet.pts * time_base))
                if len(times) >= 6:
                    break
            if i >= max_packets:
                break
    except _LIBRARY_ERRORS as exc:
        raise SourceError(path, f"cannot read packets: {exc}") from exc
    finally:
        container.close()
    gaps = [b - a for a, b in zip(times, times[1:]) if b > a]
    return statistics.median(gaps) if gaps else None


def _check_complete(path: str, container, stream, last_pts_s: float | None, what: str) -> None:
    declared = _declared_s(container, stream)
    if not declared:
        return
    time_base = stream.time_base or Fraction(1, 90_000)
    start_s = float(stream.start_time * time_base) if stream.start_time is not None else 0.0
    fps = _fps(stream)
    period = 1.0 / fps if fps else 0.0
    end = (last_pts_s if last_pts_s is not None else start_s) + period
    if end < start_s + declared - max(TRUNCATION_TOLERANCE_S, 3 * period):
        got = f"no {what}" if last_pts_s is None else f"{what} up to {last_pts_s:.3f} s"
        raise SourceError(path, f"file is truncated or corrupt: it declares {declared:.3f} s but reading produced {got}")


def keyframes(path: str, start_time_s: float = 0.0, packet_sink: Callable[[VideoPacket], None] | None = None,
              should_stop: Callable[[], bool] | None = None, threads: int = 0,
              prefetch: bool = False) -> Iterator[DecodedFrame]:
    """Decode only the keyframes of ``path``, in order. Every packet goes to ``packet_sink`` (with
    frame times ``start_time_s + pts``). Raises SourceError on decoding errors and truncated files.

    ``prefetch``: demux and decode in a thread of its own, up to :data:`PREFETCH_FRAMES` keyframes
    ahead, so that decoding the next keyframe overlaps whatever the caller does with this one (the
    model): for a process that has the machine's cores to itself. The packets still reach
    ``packet_sink`` in the caller's thread, in decode order, before the frames decoded from them."""
    if not prefetch:
        yield from _keyframes(path, start_time_s, packet_sink, should_stop, threads)
        return
    yield from _prefetched(path, start_time_s, packet_sink, should_stop, threads)


#: How many decoded keyframes a prefetching read may hold ahead of its caller.
PREFETCH_FRAMES = 3


def _prefetched(path, start_time_s, packet_sink, should_stop, threads) -> Iterator[DecodedFrame]:
    items: queue.Queue = queue.Queue(maxsize=PREFETCH_FRAMES)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        held: list[VideoPacket] = []
        sink = (lambda packet: held.append(packet)) if packet_sink is not None else None   # the current list
        try:
            for frame in _keyframes(path, start_time_s, sink, stop.is_set, threads):
                if not put((held, frame)):
                    return
                held = []
            put((held, done))
        except BaseException as exc:   # handed to the caller's thread, which raises it
            put((held, exc))

    worker = threading.Thread(target=produce, name=f"keyframes:{os.path.basename(path)}", daemon=True)
    worker.start()
    try:
        while True:
            packets, item = items.get()
            for packet in packets:
                packet_sink(packet)
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
            if should_stop is not None and should_stop():
                return
    finally:
        stop.set()
        worker.join()


def _keyframes(path: str, start_time_s: float, packet_sink: Callable[[VideoPacket], None] | None,
               should_stop: Callable[[], bool] | None, threads: int) -> Iterator[DecodedFrame]:
    container, stream = open_video(path, threads)
    try:
        stream.codec_context.skip_frame = "NONKEY"
        forward = PacketForwarder(stream, start_time_s, packet_sink)
        time_base = stream.time_base or Fraction(1, 90_000)
        last = None
        flagged = False   # the container marks keyframes (MP4, MKV): other packets stay undecoded
        try:
            for packet in container.demux(stream):
                forward(packet)
                if packet.dts is not None:
                    if packet.is_corrupt:   # cut off by a truncation: reported by _check_complete
                        continue
                    if packet.is_keyframe:
                        flagged = True
                    elif flagged:
                        continue
                for frame in packet.decode():
                    if frame.pts is None:
                        continue
                    last = float(frame.pts * time_base)
                    yield DecodedFrame(last, frame.to_ndarray(format="bgr24"))
                    if should_stop is not None and should_stop():
                        return
        except _LIBRARY_ERRORS as exc:
            where = f"after {last:.3f} s" if last is not None else "before the first keyframe"
            raise SourceError(path, f"decoding failed {where}: {exc}") from exc
        _check_complete(path, container, stream, forward.last_pts_s, "packets")
    finally:
        container.close()


def merge_stretches(stretches: list[tuple[float, float]], join_gap_s: float) -> list[tuple[float, float]]:
    """Sort and merge stretches that overlap or are less than ``join_gap_s`` apart."""
    merged: list[list[float]] = []
    for start, end in sorted(stretches):
        if merged and start - merged[-1][1] <= join_gap_s:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def sampled_stretches(path: str, stretches: list[tuple[float, float]], sample_fps: float, origin_s: float,
                      start_time_s: float = 0.0, packet_sink: Callable[[VideoPacket], None] | None = None,
                      should_stop: Callable[[], bool] | None = None, threads: int = 0) -> Iterator[DecodedFrame]:
    """Frames of ``path`` within each ``(start_s, end_s)`` stretch (file PTS seconds, sorted, not
    overlapping), sampled at ``sample_fps`` on the ticks of a whole-file :class:`FileSource` whose
    first frame is at ``origin_s``."""
    period = 1.0 / sample_fps
    container, stream = open_video(path, threads)
    try:
        time_base = stream.time_base or Fraction(1, 90_000)
        forward = PacketForwarder(stream, start_time_s, packet_sink)
        ctx = stream.codec_context
        disposable = DisposableFrames(ctx.name, bytes(ctx.extradata or b""), sample_fps, TICK_EPSILON_S)
        disposable.origin_s = origin_s
        last = None
        for start_s, end_s in stretches:
            # Start on a tick: the first frame at or after it is the one a whole-file pass picks.
            start_s = origin_s + max(0, math.floor((start_s - origin_s) / period + 1e-9)) * period
            next_tick = start_s
            try:
                container.seek(max(0, int(start_s / time_base)), stream=stream, backward=True, any_frame=False)
                done = False
                tails = GopTails(disposable, lambda packet: None if packet.pts is None else float(packet.pts * time_base))
                for packet, needed in tails(container.demux(stream)):
                    forward(packet)
                    if packet.dts is not None and packet.pts is not None:
                        packet_s = float(packet.pts * time_base)
                        disposable.note(packet_s)
                        if not needed or packet.is_corrupt or disposable.skip(packet, packet_s):
                            continue
                    for frame in packet.decode():
                        if frame.pts is None:
                            continue
                        t = float(frame.pts * time_base)
                        last = t
                        if t > end_s + TICK_EPSILON_S:
                            done = True
                            break
                        if t + TICK_EPSILON_S < next_tick:
                            continue
                        k = math.floor((t - origin_s + TICK_EPSILON_S) / period) + 1
                        next_tick = origin_s + k * period
                        yield DecodedFrame(t, frame.to_ndarray(format="bgr24"))
                        if should_stop is not None and should_stop():
                            return
                    if done:
                        break
            except _LIBRARY_ERRORS as exc:
                where = f"after {last:.3f} s" if last is not None else f"near {start_s:.3f} s"
                raise SourceError(path, f"decoding failed {where}: {exc}") from exc
    finally:
        container.close()
