"""Disposable H.264 frames and GOP tails (vision/h264.py): the NAL header parsing by hand, the skip decision on a
hand-made timeline, and a sampled FileSource that skips them yielding exactly the frames of a full
decode on a B-frame clip."""
from __future__ import annotations

import hashlib
import math
from fractions import Fraction

import av
import numpy as np
import pytest

from vision import h264
from vision.h264 import DisposableFrames, GopTails, is_disposable, nal_length_size
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


def sampled(path, fps: float, threads: int = 0) -> tuple[list[tuple[float, str]], int]:
    with FileSource(path, "cam", sample_fps=fps, start_time_s=100.0, threads=threads) as source:
        frames = [(round(f.time_s, 6), hashlib.sha256(f.image.tobytes()).hexdigest()) for f in source]
        return frames, source._disposable.skipped


def tails_skipped(path, fps: float, threads: int = 0) -> tuple[list[tuple[float, str]], int]:
    with FileSource(path, "cam", sample_fps=fps, start_time_s=100.0, threads=threads) as source:
        frames = [(round(f.time_s, 6), hashlib.sha256(f.image.tobytes()).hexdigest()) for f in source]
        return frames, source._tails.skipped


def decode_everything(monkeypatch) -> None:
    monkeypatch.setattr(h264.DisposableFrames, "skip", lambda self, packet, time_s: False)
    monkeypatch.setattr(h264.GopTails, "__call__", lambda self, packets: ((p, True) for p in packets))


@pytest.mark.parametrize("fps", [1.0, 3.0, 4.0])
def test_sampling_without_disposable_frames_yields_the_frames_of_a_full_decode(b_frame_clip, fps, monkeypatch):
    frames, skipped = sampled(b_frame_clip, fps)
    assert skipped > 0
    decode_everything(monkeypatch)
    full, _ = sampled(b_frame_clip, fps)
    assert frames == full
    assert len(full) == round(8 * fps)


@pytest.mark.parametrize("fps,threads", [(1.0, 1), (1.0, 0), (0.4, 1), (0.25, 0), (2.0, 1)])
def test_gop_tails_after_the_last_sampled_frame_stay_undecoded_and_change_no_frame(b_frame_clip, fps, threads,
                                                                                  monkeypatch):
    """The clip has a keyframe every 2 s: at 1 fps the second half of every GOP but the first and
    last is not needed; at 0.4 and 0.25 fps whole GOPs are skipped; at 2 fps (a tick every 0.5 s)
    only the last 0.5 s of each."""
    frames, skipped = tails_skipped(b_frame_clip, fps, threads)
    assert skipped > 0
    decode_everything(monkeypatch)
    full, _ = tails_skipped(b_frame_clip, fps, threads)
    assert frames == full
    assert len(full) == math.ceil(8 * fps - 1e-9)


def _packets(times, keys, idr=True):
    """Fake demuxed packets: ``bytes`` with PyAV's attributes; an IDR or a non-IDR slice NAL."""
    class P(bytes):
        pass
    out = []
    for i, (t, key) in enumerate(zip(times, keys)):
        nal = (0x65 if idr else 0x41) if key else 0x41   # nal_ref_idc 3; type 5 (IDR) or 1
        p = P(len(b"xx").to_bytes(4, "big") + bytes([nal, 0x88]))
        p.dts, p.pts, p.is_keyframe = i, t, key
        out.append(p)
    return out


def test_gop_tails_plan_on_fake_packets():
    frames = DisposableFrames("h264", AVCC, sample_fps=1.0, epsilon_s=TICK_EPSILON_S)
    frames.origin_s = 0.0
    # three GOPs of 2 s at 4 fps, in presentation order (no B-frames), keyframes at 0, 2, 4
    times = [i * 0.25 for i in range(24)]
    keys = [t in (0.0, 2.0, 4.0) for t in times]
    tails = GopTails(frames, lambda p: p.pts)
    plan = [(p.pts, needed) for p, needed in tails(_packets(times, keys))]
    assert [t for t, _ in plan] == times   # every packet once, in order
    skipped = [t for t, needed in plan if not needed]
    # GOP 1 (the first) whole; GOP 2 up to its frame at 3.0 s; GOP 3 (the last) whole
    assert skipped == [3.25, 3.5, 3.75]
    assert tails.skipped == 3
    # non-IDR keyframes (open GOPs): nothing is cut
    tails = GopTails(frames, lambda p: p.pts)
    assert all(needed for _, needed in tails(_packets(times, keys, idr=False)))
    # a GOP longer than the limit is decoded whole
    tails = GopTails(frames, lambda p: p.pts, max_packets=4)
    assert all(needed for _, needed in tails(_packets(times, keys)))
