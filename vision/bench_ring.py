"""``compoundeye bench ring``: how many bytes a camera's clip ring holds for a 1080p 25 fps main stream.

A synthetic camera stream is generated with PyAV (1920x1080, 25 fps, H.264 at a camera-like bitrate,
keyframe every 2 s, a textured background with sensor noise and a moving object, so the encoder spends
its bitrate), then fed through both rings with the pre-roll as ``max_seconds``:

- :class:`~vision.evidence.PacketRing` — the compressed packets as the camera sent them;
- :class:`~vision.evidence.FrameRing` — decoded frames re-compressed as JPEG (quality 85), at 25 fps and
  at the worker's default clip rate of 10 fps.

Figures are the payload bytes at their peak plus the Python object overhead of the entries.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from vision.evidence import FrameRing, PacketRing
from vision.sources import FileSource

WIDTH, HEIGHT, FPS, GOP_S = 1920, 1080, 25, 2
TARGET_BYTES = 64 * 1024 * 1024


def make_stream(path: Path, seconds: float, bitrate_kbps: int, seed: int = 0) -> Path:
    """Write a 1080p25 H.264 MP4 of ``seconds`` with about ``bitrate_kbps`` (CBR-like rate control)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    background = (np.stack([(xx * 255 // WIDTH), (yy * 255 // HEIGHT), ((xx + yy) % 256)], -1)
                  .astype(np.int16) // 2 + rng.integers(0, 60, (HEIGHT, WIDTH, 3), dtype=np.int16))
    noise = [rng.integers(-6, 7, (HEIGHT, WIDTH, 3), dtype=np.int16) for _ in range(8)]
    rate = str(bitrate_kbps * 1000)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS, options={
            "preset": "ultrafast", "g": str(GOP_S * FPS), "keyint_min": str(GOP_S * FPS), "sc_threshold": "0",
            "b": rate, "maxrate": rate, "bufsize": str(bitrate_kbps * 1000 * 2)})
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.bit_rate = bitrate_kbps * 1000
        for i in range(int(seconds * FPS)):
            image = background + noise[i % len(noise)]
            x = (i * 12) % (WIDTH - 300)
            image[500:700, x:x + 300] = (200, 40, 40)
            frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _overhead(entries: int, per_entry: int) -> int:
    return entries * per_entry


def bench_ring(pre_roll_s: float = 10.0, bitrate_kbps: int = 4000, seconds: float | None = None) -> dict:
    """Measure both rings holding ``pre_roll_s`` of a generated stream; returns the figures as a dict
    (bytes, MiB, ratio packet/JPEG, whether each is under the 64 MiB per camera target)."""
    seconds = seconds or pre_roll_s + 2 * GOP_S + 2
    with tempfile.TemporaryDirectory(prefix="compoundeye-bench-ring-") as tmp:
        started = time.perf_counter()
        path = make_stream(Path(tmp) / "main-1080p25.mp4", seconds, bitrate_kbps)
        generate_s = time.perf_counter() - started
        file_bytes = path.stat().st_size
        packets = PacketRing(pre_roll_s, 1 << 40)
        jpeg25 = FrameRing(pre_roll_s, 1 << 40, jpeg_quality=85)
        jpeg10 = FrameRing(pre_roll_s, 1 << 40, jpeg_quality=85)
        peak = {"packets": 0, "jpeg25": 0, "jpeg10": 0}
        entries = {"packets": 0, "jpeg25": 0, "jpeg10": 0}
        packet_overhead = jpeg_overhead = 0
        last_tick = None
        with FileSource(path, "bench", sample_fps=FPS, start_time_s=0.0, packet_sink=packets.push) as source:
            for frame in source:
                entry = jpeg25.push(frame)
                tick = int(frame.time_s * 10 + 1e-6)  # the first frame of every 0.1 s
                if tick != last_tick:
                    jpeg10.push(frame)
                    last_tick = tick
                for name, ring in (("packets", packets), ("jpeg25", jpeg25), ("jpeg10", jpeg10)):
                    if ring.nbytes > peak[name]:
                        peak[name], entries[name] = ring.nbytes, len(ring)
                packet_overhead = packet_overhead or (sys.getsizeof(packets.packets_from(0)[0]) + 33)
                jpeg_overhead = sys.getsizeof(entry) + 33
        held_s = (packets.newest_time_s or 0) - (packets.oldest_time_s or 0)

    def figure(name: str, per_entry: int) -> dict:
        total = peak[name] + _overhead(entries[name], per_entry)
        return {"peak_bytes": total, "peak_mib": round(total / 2**20, 2), "payload_bytes": peak[name],
                "entries": entries[name], "under_64_mib": total < TARGET_BYTES}

    result = {
        "stream": {"width": WIDTH, "height": HEIGHT, "fps": FPS, "gop_s": GOP_S, "bitrate_kbps": bitrate_kbps,
                   "seconds": seconds, "file_bytes": file_bytes,
                   "measured_kbps": round(file_bytes * 8 / seconds / 1000)},
        "pre_roll_s": pre_roll_s,
        "packet_ring": {**figure("packets", packet_overhead), "held_s": round(held_s, 2)},
        "jpeg_ring_25fps": figure("jpeg25", jpeg_overhead),
        "jpeg_ring_10fps": figure("jpeg10", jpeg_overhead),
        "raw_bgr_25fps_bytes": int(WIDTH * HEIGHT * 3 * FPS * pre_roll_s),
        "generate_s": round(generate_s, 1),
    }
    result["ratio_jpeg25_to_packets"] = round(result["jpeg_ring_25fps"]["peak_bytes"]
                                              / max(1, result["packet_ring"]["peak_bytes"]), 1)
    return result
