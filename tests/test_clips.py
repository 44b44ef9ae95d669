"""Clips cut from compressed packets (no re-encoding): the packet ring, cut_clip, FileSource's packet
sink and ClipRecorder's packet path, each checked by really decoding the MP4 written."""
from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np
import pytest

from vision.errors import EvidenceError
from vision.evidence import ClipRecorder, PacketRing, cut_clip
from vision.sources import FileSource

T0 = 1_714_550_400.0
FPS = 25
GOP = 50  # a keyframe every 2 s, like a camera's main stream


def make_video(path: Path, seconds: float, codec: str = "libx264", bframes: int = 0, wh=(320, 240)) -> Path:
    """A synthetic video with a moving bar; H.264 with a fixed GOP unless ``codec`` says otherwise."""
    w, h = wh
    options = {"g": str(GOP), "keyint_min": str(GOP), "sc_threshold": "0", "preset": "ultrafast",
               "bf": str(bframes)} if codec == "libx264" else {"g": str(GOP)}
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=FPS, options=options)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(int(seconds * FPS)):
            image = np.full((h, w, 3), 30, np.uint8)
            image[:, (i * 3) % (w - 20):(i * 3) % (w - 20) + 20] = 230
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def decoded(path) -> dict:
    """What a player sees: codec, duration, and (time, keyframe) of every decoded frame."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(float(f.time), f.key_frame) for f in container.decode(stream)]
        return {"codec": stream.codec_context.name, "duration": container.duration / av.time_base,
                "frames": frames, "pix_fmt": stream.codec_context.pix_fmt}


@pytest.fixture(scope="module")
def h264(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clips") / "cam.mp4", 12)


def packets_of(path, **kwargs) -> list:
    got = []
    with FileSource(path, "gate-1", sample_fps=5, start_time_s=T0, packet_sink=got.append, **kwargs) as source:
        frames = list(source)
    assert frames  # frames still come out while packets go to the sink
    return got


def test_file_source_hands_every_packet_to_the_sink_with_frame_times(h264):
    packets = packets_of(h264)
    assert len(packets) == 12 * FPS
    assert packets[0].is_keyframe and packets[0].time_s == pytest.approx(T0)
    assert [p.time_s for p in packets if p.is_keyframe] == pytest.approx([T0 + 2 * k for k in range(6)])
    assert packets[0].codec.name == "h264" and (packets[0].codec.width, packets[0].codec.height) == (320, 240)
    assert all(p.codec is packets[0].codec for p in packets)


def test_looping_source_continues_packet_times(h264):
    got = []
    with FileSource(h264, "gate-1", sample_fps=5, start_time_s=T0, loop=True, packet_sink=got.append) as source:
        for frame in source:
            if frame.time_s > T0 + 14:
                break
    times = [p.dts * p.time_base for p in got]
    assert all(b > a for a, b in zip(times, times[1:]))       # no step back at the loop boundary
    assert got[-1].time_s > T0 + 14


def test_cut_clip_starts_at_the_keyframe_before_the_start_and_plays(h264, tmp_path):
    packets = packets_of(h264)
    clip = cut_clip(packets, T0 + 5.3, T0 + 9.0, tmp_path / "cut.mp4")
    seen = decoded(clip.path)
    assert seen["codec"] == "h264" and seen["pix_fmt"] == "yuv420p"
    assert seen["frames"][0] == (0.0, True)                    # the first frame is a keyframe
    assert clip.first_time_s == pytest.approx(T0 + 4.0)        # the keyframe at or before 5.3 s
    assert clip.last_time_s == pytest.approx(T0 + 9.0)
    assert len(seen["frames"]) == clip.frame_count == 5 * FPS + 1
    assert seen["duration"] == pytest.approx(5.04, abs=0.05) and clip.duration_s == pytest.approx(5.04)
    assert clip.first_time_s <= T0 + 5.3 and clip.first_time_s + seen["frames"][-1][0] >= T0 + 9.0 - 1e-6
    data = Path(clip.path).read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")            # faststart
    assert hashlib.sha256(data).hexdigest() == clip.sha256 and clip.size_bytes == len(data)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cut_clip_with_b_frames_decodes_every_packet(tmp_path):
    video = make_video(tmp_path / "b.mp4", 8, bframes=2)
    packets = packets_of(video)
    clip = cut_clip(packets, T0 + 3, T0 + 6, tmp_path / "b-cut.mp4")
    seen = decoded(clip.path)
    assert len(seen["frames"]) == clip.frame_count and seen["frames"][0][1]
    assert clip.first_time_s == pytest.approx(T0 + 2.0)


def test_cut_clip_refuses_what_it_cannot_cut(tmp_path, h264):
    with pytest.raises(EvidenceError):
        cut_clip([], T0, T0 + 1, tmp_path / "none.mp4")
    packets = packets_of(h264)
    with pytest.raises(EvidenceError, match="no keyframe"):
        cut_clip([p for p in packets if not p.is_keyframe], T0, T0 + 3, tmp_path / "nokey.mp4")
    mpeg4 = packets_of(make_video(tmp_path / "m.mp4", 3, codec="mpeg4"))
    with pytest.raises(EvidenceError, match="not H.264"):
        cut_clip(mpeg4, T0, T0 + 2, tmp_path / "m-cut.mp4")
    assert not (tmp_path / "m-cut.mp4").exists() and not (tmp_path / "nokey.mp4").exists()


def test_packet_ring_keeps_whole_gops_covering_max_seconds(h264):
    ring = PacketRing(max_seconds=5, max_bytes=10**9)
    for packet in packets_of(h264):
        ring.push(packet)
        assert ring.packets_from(-1)[0].is_keyframe
        assert ring.newest_time_s - ring.oldest_time_s <= 5 + 2.0   # max_seconds plus at most one GOP
    assert ring.newest_time_s == pytest.approx(T0 + 12 - 1 / FPS)
    assert ring.oldest_time_s == pytest.approx(T0 + 6.0)             # covers 11.96 - 5 = 6.96 from a keyframe
    assert [p.time_s for p in ring.packets_from(T0 + 9.5)][0] == pytest.approx(T0 + 8.0)
    assert ring.packets_from(T0)[0].time_s == pytest.approx(T0 + 6.0)   # older than the ring: oldest keyframe


def test_packet_ring_byte_bound_and_restart(h264):
    packets = packets_of(h264)
    gop_bytes = sum(p.nbytes for p in packets[:GOP])
    ring = PacketRing(max_seconds=60, max_bytes=int(gop_bytes * 2.5))
    for packet in packets:
        ring.push(packet)
    assert ring.nbytes <= ring.max_bytes and ring.packets_from(0)[0].is_keyframe
    tiny = PacketRing(max_seconds=60, max_bytes=1)
    for packet in packets[:GOP + 3]:
        tiny.push(packet)
    assert len(tiny) == 3                                  # the newest GOP is always kept
    fresh = PacketRing(max_seconds=5, max_bytes=10**9)
    assert not fresh.push(packets[1])                      # nothing before a first keyframe
    for packet in packets:
        fresh.push(packet)
    fresh.push(packets[0])                                 # a timeline that went back: start again
    assert len(fresh) == 1


def test_recorder_cuts_clips_from_packets_without_jpeg_frames(h264, tmp_path):
    recorder = ClipRecorder("gate-1", tmp_path, fps=5, max_seconds=8, max_bytes=50_000_000, packets=True)
    ready = []
    with FileSource(h264, "gate-1", sample_fps=5, start_time_s=T0, packet_sink=recorder.push_packet) as source:
        for frame in source:
            ready += recorder.push(frame)
            if abs(frame.time_s - (T0 + 6)) < 1e-6:
                recorder.request("v1", T0 + 3.5, T0 + 9)   # violation start 4.5 s, pre-roll 1 s
    assert recorder.cutting_packets and len(recorder.ring) == 0     # no JPEG frames were kept
    [(vid, clip)] = ready
    seen = decoded(clip.path)
    assert vid == "v1" and seen["codec"] == "h264" and seen["frames"][0] == (0.0, True)
    assert clip.first_time_s == pytest.approx(T0 + 2.0) and clip.last_time_s == pytest.approx(T0 + 9.0)
    assert clip.first_time_s + seen["frames"][-1][0] == pytest.approx(T0 + 9.0)


def test_recorder_falls_back_to_re_encoding_when_the_source_is_not_h264(tmp_path):
    video = make_video(tmp_path / "m.mp4", 6, codec="mpeg4")
    recorder = ClipRecorder("gate-1", tmp_path / "out", fps=5, max_seconds=8, max_bytes=50_000_000, packets=True)
    with FileSource(video, "gate-1", sample_fps=5, start_time_s=T0, packet_sink=recorder.push_packet) as source:
        for frame in source:
            recorder.push(frame)
            if abs(frame.time_s - (T0 + 3)) < 1e-6:
                recorder.request("v1", T0 + 1, T0 + 10)
    assert not recorder.cutting_packets and len(recorder.ring) > 0
    [(vid, clip)] = recorder.flush()
    seen = decoded(clip.path)
    assert seen["codec"] == "h264" and seen["frames"][0][1] and clip.first_time_s == pytest.approx(T0 + 1.0)
