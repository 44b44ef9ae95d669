"""RTSP/RTSPS camera sources on PyAV: TCP transport, timeouts, reconnect with exponential back-off and
jitter, and credentials that never reach a log line, a ``repr`` or an API answer.

A :class:`RtspSource` yields :class:`~vision.types.Frame` s forever: when the camera drops (the server
goes away, the network hangs, the decoder fails) it reports the camera offline through ``on_status``,
waits (``Backoff``), reopens the stream and reports it online again at the first decoded frame. It
stops only when :meth:`RtspSource.close` is called.

Frame time of a live stream is the wall clock at the first decoded frame of a connection plus the
stream's PTS since then, so frames keep their true spacing even when decoding runs late.

>>> mask_url("rtsp://admin:s3cret@10.0.0.7:554/Streaming/Channels/102")
'rtsp://admin:***@10.0.0.7:554/Streaming/Channels/102'
"""
from __future__ import annotations

import logging
import math
import random
import re
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import av

from vision.config import ENV_REFERENCE
from vision.errors import SourceError
from vision.sources import VideoPacket, stream_codec
from vision.types import Frame

log = logging.getLogger(__name__)

MASK = "***"
# query parameters some cameras take credentials in (Dahua/Hikvision style URLs)
SECRET_QUERY_KEYS = {"password", "pass", "pwd", "passwd", "token", "key", "secret", "auth", "user", "username"}
# of those, the ones whose value is a secret (a user name is not)
SECRET_VALUE_KEYS = SECRET_QUERY_KEYS - {"user", "username"}
_URL_IN_TEXT = re.compile(r"\b(rtsps?|rtmp|https?|srt)://[^\s'\"<>]+", re.IGNORECASE)


def split_userinfo(netloc: str) -> tuple[str | None, str | None, str]:
    """``user:password@host:port`` → ``(user, password, "host:port")``; ``None`` for a part the netloc
    does not have. The last ``@`` ends the user info (a password may hold ``@``), the first ``:`` ends
    the user name."""
    if "@" not in netloc:
        return None, None, netloc
    userinfo, host = netloc.rsplit("@", 1)
    user, colon, password = userinfo.partition(":")
    return user, (password if colon else None), host


def mask_url(url: str) -> str:
    """``url`` with its password (and secret query parameters) replaced by ``***``; the user name, host,
    port and path stay, so an operator can still tell which camera it is."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    user, password, host = split_userinfo(netloc)
    if user is not None:
        netloc = f"{user}@{host}" if password is None else f"{user}:{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if k.lower() in SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def literal_secrets(url: str) -> list[str]:
    """What in ``url`` (as written in a site file, before ``${VAR}`` is expanded) is a secret written out
    rather than taken from the environment: ``"password"`` for a password in the user info, and the
    name of each secret query parameter; empty when every secret is a whole ``${VAR}`` reference."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = []
    password = split_userinfo(parts.netloc)[1]
    if password is not None and not ENV_REFERENCE.fullmatch(password):
        found.append("password")
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in SECRET_VALUE_KEYS and value and not ENV_REFERENCE.fullmatch(value):
            found.append(f"query parameter {key!r}")
    return found


def mask_text(text: str) -> str:
    """Every URL inside ``text`` masked (FFmpeg error messages may quote the URL they failed on)."""
    return _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)), text)


class Backoff:
    """Exponential back-off with jitter: ``initial_s``, ×``factor`` per failure up to ``max_s``, each
    delay multiplied by a random factor in ``[1 - jitter, 1 + jitter]`` so that a hundred cameras
    behind one switch that reboots do not reconnect in lockstep."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 30.0, factor: float = 2.0, jitter: float = 0.25,
                 rng: random.Random | None = None):
        if not (0 < initial_s <= max_s and factor >= 1 and 0 <= jitter < 1):
            raise ValueError("need 0 < initial_s <= max_s, factor >= 1 and 0 <= jitter < 1")
        self.initial_s, self.max_s, self.factor, self.jitter = initial_s, max_s, factor, jitter
        self._rng = rng or random.Random()
        self.failures = 0

    def next_delay(self) -> float:
        """The delay before the next attempt; counts one more failure."""
        base = min(self.max_s, self.initial_s * self.factor ** min(self.failures, 64))
        self.failures += 1
        return base * self._rng.uniform(1 - self.jitter, 1 + self.jitter)

    def reset(self) -> None:
        self.failures = 0


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """A change of a stream's connection: ``online`` at the first frame after (re)connecting, offline
    when the connection fails or ends. ``reason`` never contains credentials."""

    camera_id: str
    online: bool
    time_s: float
    reason: str = ""


def _pts_seconds(av_frame, time_base: Fraction) -> float | None:
    return float(av_frame.pts * time_base) if av_frame.pts is not None else None


class RtspSource:
    """Frames of one RTSP/RTSPS stream, sampled at ``sample_fps``, reconnecting until closed.

    Args:
        url: ``rtsp://`` or ``rtsps://`` URL; may carry credentials (they are masked everywhere).
        camera_id: copied into every frame.
        sample_fps: frames per second to yield (every frame is decoded, as H.264 needs, but only the
            sampled ones are converted to numpy). ``None`` or 0: yield every decoded frame.
        open_timeout_s, read_timeout_s: give up opening / waiting for data after this long; a hung
            camera is then treated as a disconnect.
        backoff: reconnect delays (default 0.5 s doubling to 30 s, ±25 % jitter).
        on_status: called with a :class:`StreamStatus` on every online/offline change.
        packet_sink: called with every demuxed :class:`~vision.sources.VideoPacket` (evidence clips
            cut without re-encoding).
        decode: False for a stream used only for its packets (a camera's main stream for evidence).
        keyframes_only: decode only keyframes — for a detection substream sampled no faster than its
            GOP, a large saving of CPU (off by default).
    """

    def __init__(self, url: str, camera_id: str, sample_fps: float | None = None, *,
                 open_timeout_s: float = 5.0, read_timeout_s: float = 5.0, backoff: Backoff | None = None,
                 on_status: Callable[[StreamStatus], None] | None = None,
                 packet_sink: Callable[[VideoPacket], None] | None = None, decode: bool = True,
                 keyframes_only: bool = False):
        if not re.match(r"^rtsps?://", url, re.IGNORECASE):
            raise SourceError(mask_url(url), "not an rtsp:// or rtsps:// URL")
        self._url = url
        self.masked_url = mask_url(url)
        self.camera_id = camera_id
        self.sample_fps = float(sample_fps) if sample_fps else 0.0
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.backoff = backoff or Backoff()
        self.on_status = on_status
        self.packet_sink = packet_sink
        self.decode = decode
        self.keyframes_only = keyframes_only
        self.online = False
        self.connects = 0  # successful connections (first frame received)
        self.frames_decoded = 0
        self._reported: bool | None = None
        self._stop = threading.Event()

    def __repr__(self) -> str:
        return f"RtspSource({self.masked_url!r}, camera={self.camera_id!r}, online={self.online})"

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the iteration (from any thread) within about ``read_timeout_s``; the iterating thread
        closes the connection itself (FFmpeg contexts must not be closed under a running read)."""
        self._stop.set()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def __enter__(self) -> "RtspSource":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # -- iteration -------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        while not self._stop.is_set():
            reason = "stream ended"
            try:
                container = self._open()
            except SourceError as exc:
                reason = exc.reason
            else:
                try:
                    yield from self._frames(container)
                except SourceError as exc:
                    reason = exc.reason
                finally:
                    container.close()
            if self._stop.is_set():
                break
            self._set_status(False, reason)
            delay = self.backoff.next_delay()
            log.warning("camera %s: %s (%s); reconnecting in %.1f s", self.camera_id, reason, self.masked_url, delay)
            self._stop.wait(delay)

    def _open(self):
        options = {"rtsp_transport": "tcp",
                   # socket I/O timeout in µs: a hung camera raises instead of blocking forever
                   "timeout": str(int(self.read_timeout_s * 1e6))}
        try:
            container = av.open(self._url, mode="r", options=options,
                                timeout=(self.open_timeout_s, self.read_timeout_s))
        except (av.FFmpegError, OSError) as exc:
            # not ``from exc``: FFmpeg's message and the exception's filename carry the URL with its
            # password, and a chained traceback would print it
            raise SourceError(self.masked_url, f"cannot open stream: {mask_text(str(exc))}") from None
        if not container.streams.video:
            container.close()
            raise SourceError(self.masked_url, "the stream has no video track")
        return container

    def _set_status(self, online: bool, reason: str = "") -> None:
        """Report a change of connection state (the first failure to connect counts as a change)."""
        self.online = online
        if online == self._reported:
            return
        self._reported = online
        if online:
            self.connects += 1
            self.backoff.reset()
            log.info("camera %s: stream online (%s)", self.camera_id, self.masked_url)
        if self.on_status is not None:
            self.on_status(StreamStatus(self.camera_id, online, time.time(), mask_text(reason)))

    def _frames(self, container) -> Iterator[Frame]:
        stream = container.streams.video[0]
        if self.keyframes_only:
            stream.codec_context.skip_frame = "NONKEY"
        time_base = stream.time_base or Fraction(1, 90_000)
        codec = stream_codec(stream) if self.packet_sink is not None else None
        # frame time = pts + offset, where offset is the smallest (arrival wall time - pts) seen on this
        # connection: the first frames arrive in a burst (FFmpeg probes the stream first), so the
        # first frame alone would date later frames into the future and hide their latency
        offset: float | None = None
        last_time_s = -math.inf
        next_tick = -math.inf
        period_s = 1.0 / self.sample_fps if self.sample_fps else 0.0
        try:
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return
                if packet.dts is None and packet.size == 0:
                    continue  # the flush packet at the end of a stream
                if self.packet_sink is not None and packet.dts is not None:
                    pts = packet.pts if packet.pts is not None else packet.dts
                    pts_s = float(pts * time_base)
                    if offset is None or time.time() - pts_s < offset:
                        offset = time.time() - pts_s
                    self.packet_sink(VideoPacket(
                        data=bytes(packet), pts=pts, dts=packet.dts, duration=int(packet.duration or 0),
                        time_base=time_base, is_keyframe=bool(packet.is_keyframe),
                        time_s=pts_s + offset, codec=codec))
                if not self.decode:
                    if not self.online:
                        self._set_status(True)
                    continue
                for av_frame in packet.decode():
                    self.frames_decoded += 1
                    pts_s = _pts_seconds(av_frame, time_base)
                    now = time.time()
                    if not self.online:
                        self._set_status(True)
                    if pts_s is not None and (offset is None or now - pts_s < offset):
                        offset = now - pts_s
                    time_s = pts_s + offset if pts_s is not None else now
                    # PTS may step back (a server looping a file, a camera's clock reset): keep frame
                    # time increasing so rules and clips never see time run backwards.
                    if time_s <= last_time_s:
                        time_s = last_time_s + 1e-3
                    last_time_s = time_s
                    if period_s and time_s + 1e-3 < next_tick:
                        continue
                    # the next tick one period on; re-anchored when the stream stalled for longer
                    next_tick = next_tick + period_s if time_s - next_tick < period_s else time_s + period_s
                    image = av_frame.to_ndarray(format="bgr24")
                    yield Frame(self.camera_id, time_s, image, f"{self.masked_url}@{time_s:.3f}")
                    if self._stop.is_set():
                        return
        except (av.FFmpegError, OSError) as exc:
            raise SourceError(self.masked_url, f"stream failed: {mask_text(str(exc))}") from None
