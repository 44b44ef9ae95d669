"""Disposable H.264 frames (vision/h264.py): the NAL header parsing by hand, the skip decision on a
hand-made timeline, and a sampled FileSource that skips them yielding exactly the frames of a full
decode on a B-frame clip."""
from __future__ import annotations

import hashlib
from fractions import Fraction

import av
import numpy as np
import pytest

from vision import h264
from vision.h264 import DisposableFrames, is_disposable, nal_length_size
from vision.sources import TICK_EPSILON_S, FileSource

AVCC = bytes([1, 0x64, 0, 0x28, 0xFF, 0xE1, 0])   # avcC header, 4-byte NAL lengths


def nal(header: int, payload: bytes = b"\x88\x84") -> bytes:
    return (1 + len(payload)).to_bytes(4, "big") + bytes([header]) + payload


def test_nal_length_size_only_for_length_prefixed_h264():
    assert nal_length_size("h264", AVCC) == 4
    assert nal_length_size("h264", bytes([1, 0x64, 0, 0x28, 0xFD, 0xE1, 0])) == 2
    assert nal_length_size("h264", b"\x00\x00\x00\x01\x67") is None   # Annex B
    assert nal_length_size("hevc", AVCC) is None
    assert nal_length_size("h264", None) is None


def test_an_access_unit_is_disposable_only_when_no_slice_is_referenced():
    sei, b_slice, p_slice, idr = 0x06, 0x01, 0x41, 0x65
    assert is_disposable(nal(b_slice), 4)
    assert is_disposable(nal(sei) + nal(b_slice) + nal(b_slice), 4)
    assert not is_disposable(nal(p_slice), 4)            # nal_ref_idc 2
    assert not is_disposable(nal(b_slice) + nal(p_slice), 4)
    assert not is_disposable(nal(idr), 4)
    assert not is_disposable(nal(sei), 4)                # no slice at all
    assert not is_disposable(nal(b_slice)[:-1], 4)       # length runs past the end
    assert not is_disposable(b"", 4)


def test_a_frame_is_skipped_only_between_two_ticks_after_a_known_predecessor():
    frames = DisposableFrames("h264", AVCC, sample_fps=1.0, epsilon_s=TICK_EPSILON_S)
    disposable = nal(0x01)
    frames.note(0.4)
    frames.note(0.5)
    assert not frames.skip(disposable, 0.5)      # no origin yet: nothing is decided
    frames.origin_s = 0.0
    assert frames.skip(disposable, 0.5)          # 0.4 and 0.5 lie between the ticks at 0 and 1
    assert not frames.skip(nal(0x41), 0.5)       # referenced: always decoded
    frames.note(1.0)
    assert not frames.skip(disposable, 1.0)      # the tick at 1.0 picks it
    frames.note(1.9995)
    assert not frames.skip(disposable, 1.9995)   # within the tick slack of 2.0
    frames.note(3.3)
    assert not frames.skip(disposable, 3.3)      # predecessor 1.9995: the tick at 3 lies between
    assert frames.skipped == 1
    other = DisposableFrames("hevc", None, sample_fps=1.0, epsilon_s=TICK_EPSILON_S)
    other.origin_s = 0.0
    other.note(0.4)
    other.note(0.5)
    assert not other.skip(disposable, 0.5)


@pytest.fixture(scope="module")
def b_frame_clip(tmp_path_factory):
    """8 s at 10 fps, 320x180, libx264 with B-frames (most of them disposable), a square moving."""
    path = tmp_path_factory.mktemp("h264") / "bframes.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10, options={"preset": "veryfast", "g": "20"})
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 10)
        for i in range(80):
            image = np.full((180, 320, 3), 90, np.uint8)
            image[40:90, 10 + 3 * i:60 + 3 * i] = (200, 40, 40)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def sampled(path, fps: float) -> tuple[list[tuple[float, str]], int]:
    with FileSource(path, "cam", sample_fps=fps, start_time_s=100.0) as source:
        frames = [(round(f.time_s, 6), hashlib.sha256(f.image.tobytes()).hexdigest()) for f in source]
        return frames, source._disposable.skipped


@pytest.mark.parametrize("fps", [1.0, 3.0, 4.0])
def test_sampling_without_disposable_frames_yields_the_frames_of_a_full_decode(b_frame_clip, fps, monkeypatch):
    frames, skipped = sampled(b_frame_clip, fps)
    assert skipped > 0
    monkeypatch.setattr(h264.DisposableFrames, "skip", lambda self, packet, time_s: False)
    full, _ = sampled(b_frame_clip, fps)
    assert frames == full
    assert len(full) == round(8 * fps)
