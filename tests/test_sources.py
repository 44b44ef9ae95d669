"""FileSource and probe against real files written with PyAV/libx264 in tmp_path."""
from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from vision.errors import SourceError
from vision.sources import FileSource, probe

START = 1_700_000_000.0


def write_clip(path: Path, fps: int = 10, seconds: float = 4.0, size=(160, 120), pts_s=None,
               faststart: bool = True) -> Path:
    """Write an H.264 MP4. ``pts_s`` (a list of frame times) makes a variable-frame-rate clip."""
    w, h = size
    rng = np.random.default_rng(0)
    times = pts_s if pts_s is not None else [i / fps for i in range(round(fps * seconds))]
    with av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {}) as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "g": str(fps)})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if pts_s is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times):
            # Noise keeps the file from compressing to nothing, so cutting its bytes in half
            # really cuts the frames in half.
            img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            img[:, : (i * 3) % w] = 0
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts_s is not None:
                frame.pts, frame.time_base = round(t * 1000), Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "ten_fps.mp4")


def test_probe_describes_the_file(clip):
    info = probe(clip)
    assert info["codec"] == "h264"
    assert (info["width"], info["height"]) == (160, 120)
    assert info["fps"] == pytest.approx(10.0)
    assert info["duration_s"] == pytest.approx(4.0, abs=0.05)


def test_sampling_10fps_at_2fps_gives_every_fifth_frame(clip):
    with FileSource(clip, "cam1", sample_fps=2, start_time_s=START) as source:
        frames = list(source)
    assert len(frames) == 8
    assert [round(f.time_s - START, 3) for f in frames] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert frames[1].position == f"{clip}@0.500"
    assert all(f.camera_id == "cam1" and f.image.shape == (120, 160, 3) and f.image.dtype == np.uint8
               for f in frames)


def test_sampling_faster_than_the_file_yields_every_frame_once(clip):
    frames = list(FileSource(clip, "cam1", sample_fps=25, start_time_s=0.0))
    assert len(frames) == 40


def test_variable_frame_rate_picks_first_frame_at_or_after_each_tick(tmp_path):
    times = [0.0, 0.03, 0.35, 0.36, 0.9, 1.45, 1.5, 1.52, 2.6, 2.61, 2.7]
    path = write_clip(tmp_path / "vfr.mp4", pts_s=times, size=(64, 48))
    got = [round(f.time_s, 3) for f in FileSource(path, "cam1", sample_fps=2, start_time_s=0.0)]
    # ticks 0, .5, 1, 1.5, 2, 2.5: 0.9 answers .5, 1.45 answers 1, the 2.0 and 2.5 ticks share 2.6
    assert got == [0.0, 0.9, 1.45, 1.5, 2.6]


def test_loop_keeps_frame_time_increasing(clip):
    source = FileSource(clip, "cam1", sample_fps=2, start_time_s=START, loop=True)
    times = []
    for frame in source:
        times.append(frame.time_s - START)
        if len(times) == 20:
            break
    source.close()
    assert all(b > a for a, b in zip(times, times[1:]))
    # the second pass starts where the first one ended (4 s clip) and keeps the 2 fps rhythm
    assert times[8:10] == pytest.approx([4.0, 4.5])
    assert times[-1] == pytest.approx(9.5)


def test_realtime_paces_to_the_wall_clock(clip):
    t0 = time.monotonic()
    frames = list(FileSource(clip, "cam1", sample_fps=5, start_time_s=0.0, realtime=True))
    elapsed = time.monotonic() - t0
    assert len(frames) == 20
    assert elapsed >= 3.5  # last frame is at 3.8 s of footage


def test_close_from_another_thread_stops_a_realtime_source(clip):
    import threading

    source = FileSource(clip, "cam1", sample_fps=5, start_time_s=0.0, realtime=True, loop=True)
    threading.Timer(0.5, source.close).start()
    t0 = time.monotonic()
    count = sum(1 for _ in source)
    assert time.monotonic() - t0 < 2.0
    assert 1 <= count <= 6


def test_truncated_file_raises_naming_the_file(tmp_path, clip):
    # faststart keeps the index at the front: PyAV opens it and would end early without a word
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    source = FileSource(cut, "cam1", sample_fps=2, start_time_s=0.0)
    with pytest.raises(SourceError, match="cut.mp4") as info:
        list(source)
    assert "truncated" in str(info.value)


def test_truncated_file_without_index_raises_at_open(tmp_path):
    clip = write_clip(tmp_path / "moov_at_end.mp4", faststart=False)
    data = clip.read_bytes()
    cut = tmp_path / "cut_no_index.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match="cut_no_index.mp4") as info:
        FileSource(cut, "cam1", sample_fps=2, start_time_s=0.0)
    assert isinstance(info.value.__cause__, av.FFmpegError)


def test_random_bytes_raise_source_error(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError, match="junk.mp4") as info:
        FileSource(junk, "cam1", sample_fps=2, start_time_s=0.0)
    assert info.value.__cause__ is not None
    with pytest.raises(SourceError, match="junk.mp4"):
        probe(junk)


def test_missing_file_raises_source_error(tmp_path):
    with pytest.raises(SourceError, match="nowhere.mp4") as info:
        FileSource(tmp_path / "nowhere.mp4", "cam1", sample_fps=2, start_time_s=0.0)
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_file_without_video_stream_raises(tmp_path):
    path = tmp_path / "audio_only.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), np.float32)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with pytest.raises(SourceError, match="no video stream"):
        FileSource(path, "cam1", sample_fps=2, start_time_s=0.0)


def test_corrupt_bytes_mid_stream_raise_naming_the_file(tmp_path, clip):
    data = bytearray(clip.read_bytes())
    third = len(data) // 3
    data[third:2 * third] = np.random.default_rng(0).integers(0, 256, third, dtype=np.uint8).tobytes()
    bad = tmp_path / "scrambled.mp4"
    bad.write_bytes(bytes(data))
    source = FileSource(bad, "cam1", sample_fps=10, start_time_s=0.0)  # the index is intact: opens fine
    with pytest.raises(SourceError, match="scrambled.mp4"):
        list(source)
