"""Evidence: clips a browser can play with the right span, a bounded frame ring, annotated stills,
all written atomically with a sha256 that matches the bytes on disk."""
import hashlib
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import av
import cv2
import numpy as np
import pytest

from vision.config import Zone
from vision.errors import EvidenceError
from vision.evidence import (ClipRecorder, FrameRing, clip_span, sidecar_bytes, sidecar_json, write_clip,
                             write_crop, write_snapshot)
from vision.types import EvidenceBox, Frame, Violation, violation_id

T0 = 1_714_550_400.0      # 2024-05-01 08:00:00 UTC
FPS = 10
LANE = Zone(id="lane-a", kind="fire_lane", polygon=((0, 0.5), (1, 0.5), (1, 1), (0, 1)), rules=("fire_lane",))


def synthetic(i: int, time_s: float, wh=(320, 240)) -> Frame:
    """A frame with a textured background and a rectangle moving 4 px per frame."""
    w, h = wh
    image = np.zeros((h, w, 3), np.uint8)
    image[:, :, 1] = (np.arange(w) * 255 // w).astype(np.uint8)
    x = (4 * i) % (w - 40)
    cv2.rectangle(image, (x, h // 2), (x + 40, h // 2 + 30), (255, 255, 255), -1)
    return Frame("gate-1", time_s, image, f"synthetic@{i}")


def violation(start_s: float, trigger_s: float, box=(100.0, 120.0, 180.0, 200.0)) -> Violation:
    boxes = tuple(EvidenceBox(t, box, "car", 0.87, 7) for t in (start_s, (start_s + trigger_s) / 2, trigger_s))
    return Violation(id=violation_id("gate-1", "fire_lane", "lane-a", start_s), rule="fire_lane",
                     compound_id="sunrise", camera_id="gate-1", zone="lane-a", start_time_s=start_s,
                     last_seen_time_s=trigger_s, end_time_s=None, confidence=0.87, model_version="m1",
                     boxes=boxes, track_id=7)


def probe(path):
    """(codec, pix_fmt, duration_s, [(frame time, is keyframe)]) decoded with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec, pix_fmt = stream.codec_context.name, stream.codec_context.pix_fmt
        duration = container.duration / av.time_base
        frames = [(float(f.time), f.key_frame) for f in container.decode(stream)]
    return codec, pix_fmt, duration, frames


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_recorder_writes_a_browser_playable_clip_of_the_requested_span(tmp_path):
    pre_roll_s, post_roll_s = 5.0, 5.0
    v = violation(start_s=T0 + 8, trigger_s=T0 + 10)
    start_s, end_s = clip_span(v, T0 + 10, pre_roll_s, post_roll_s)
    recorder = ClipRecorder("gate-1", tmp_path, max_seconds=30, max_bytes=50_000_000)   # fps estimated
    ready = []
    for i in range(20 * FPS):                      # 20 s of footage at 10 fps
        t = T0 + i / FPS
        ready += [(i, r) for r in recorder.push(synthetic(i, t))]
        if i == 10 * FPS:                          # the rule triggers at second 10
            recorder.request(v.id, start_s, end_s)
    [(i, (vid, clip))] = ready
    assert vid == v.id and i == 15 * FPS           # written as soon as the post-roll was pushed
    assert recorder.flush() == [] and recorder.pending() == []

    path = Path(clip.path)
    assert path == tmp_path / f"{v.id}.mp4" and no_temp_files(tmp_path)
    codec, pix_fmt, duration, frames = probe(path)
    span = pre_roll_s + (10 - 8) + post_roll_s      # 12 s
    assert codec == "h264" and pix_fmt == "yuv420p"
    assert abs(duration - span) <= 1 / FPS + 1e-6
    assert abs(clip.duration_s - span) <= 1 / FPS + 1e-6
    assert clip.frame_count == len(frames) == 121
    assert (clip.first_time_s, clip.last_time_s) == (pytest.approx(T0 + 3), pytest.approx(T0 + 15))
    assert frames[0] == (0.0, True)
    keyframe_times = [t for t, key in frames if key]
    assert max(np.diff(keyframe_times)) <= 1.0 + 1e-6
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")     # faststart
    assert hashlib.sha256(data).hexdigest() == clip.sha256 and clip.size_bytes == len(data)


def test_clip_keeps_gaps_in_frame_time(tmp_path):
    times = [i / FPS for i in range(30)] + [6 + i / FPS for i in range(20)]   # nothing from 2.9 s to 6 s
    clip = write_clip((synthetic(i, T0 + t) for i, t in enumerate(times)), tmp_path / "gap.mp4", FPS)
    _, _, duration, frames = probe(clip.path)
    decoded = [round(t, 3) for t, _ in frames]
    assert decoded[29:31] == [2.9, 6.0]
    assert duration == pytest.approx(8.0, abs=1 / FPS)
    keys = [t for t, key in frames if key]
    assert 6.0 in keys                                  # a keyframe right after the gap


def test_clip_with_odd_frame_size_is_cropped_to_even(tmp_path):
    clip = write_clip([synthetic(i, T0 + i / FPS, wh=(321, 241)) for i in range(5)], tmp_path / "odd.mp4", FPS)
    assert (clip.width, clip.height) == (320, 240)
    assert probe(clip.path)[0] == "h264"


def test_clip_without_frames_is_an_error_and_leaves_nothing(tmp_path):
    with pytest.raises(EvidenceError):
        write_clip([], tmp_path / "empty.mp4", FPS)
    assert list(tmp_path.iterdir()) == []


def test_ring_evicts_by_seconds():
    ring = FrameRing(max_seconds=5, max_bytes=10**9)
    for i in range(100):
        ring.push(synthetic(i, T0 + i / FPS))
    assert ring.newest_time_s == T0 + 9.9
    assert ring.oldest_time_s == pytest.approx(T0 + 4.9)
    frames = ring.frames_between(T0 + 8, T0 + 9)
    assert [round(f.time_s - T0, 1) for f in frames] == [round(8 + i / 10, 1) for i in range(11)]
    assert frames[0].image.shape == (240, 320, 3) and frames[0].camera_id == "gate-1"


def test_ring_evicts_by_bytes_but_keeps_the_newest_frame():
    one = FrameRing(60, 10**9)
    one.push(synthetic(0, T0))
    frame_bytes = one.nbytes
    ring = FrameRing(max_seconds=60, max_bytes=int(frame_bytes * 3.5))
    for i in range(50):
        ring.push(synthetic(i, T0 + i / FPS))
        assert ring.nbytes <= ring.max_bytes
    assert 2 <= len(ring) <= 4 and ring.newest_time_s == T0 + 4.9
    tiny = FrameRing(max_seconds=60, max_bytes=10)
    tiny.push(synthetic(0, T0))
    assert len(tiny) == 1


def test_ring_restarts_when_time_goes_back():
    ring = FrameRing(max_seconds=60, max_bytes=10**9)
    for i in range(10):
        ring.push(synthetic(i, T0 + i))
    ring.push(synthetic(0, T0))
    assert len(ring) == 1


def test_recorder_caps_the_pre_roll_to_what_the_ring_holds(tmp_path):
    recorder = ClipRecorder("gate-1", tmp_path, fps=FPS, max_seconds=4, max_bytes=50_000_000)
    for i in range(10 * FPS):
        recorder.push(synthetic(i, T0 + i / FPS))
    recorder.request("v1", T0 + 2, T0 + 12)        # only 5.9..9.9 is still buffered
    ready = []
    for i in range(10 * FPS, 11 * FPS):
        ready += recorder.push(synthetic(i, T0 + i / FPS))
    assert ready == [] and recorder.pending() == ["v1"]
    [(vid, clip)] = recorder.flush()                # end of stream before the span ended
    assert vid == "v1" and clip.first_time_s == pytest.approx(T0 + 5.9)
    assert clip.last_time_s == pytest.approx(T0 + 10.9)


def test_recorder_without_frames_for_a_span_writes_nothing(tmp_path):
    recorder = ClipRecorder("gate-1", tmp_path, fps=FPS, max_seconds=4, max_bytes=50_000_000)
    recorder.request("v1", T0, T0 + 1)
    assert recorder.flush() == [] and list(tmp_path.iterdir()) == []


def test_snapshot_is_an_annotated_full_resolution_jpeg(tmp_path):
    frame = synthetic(0, T0 + 70, wh=(1920, 1080))
    v = violation(start_s=T0, trigger_s=T0 + 70, box=(800.0, 600.0, 1100.0, 800.0))
    path = tmp_path / "snap.jpg"
    sha = write_snapshot(frame, v, LANE, path, 90, tz=ZoneInfo("Asia/Shanghai"))
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha and no_temp_files(tmp_path)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (1080, 1920, 3)
    assert image[600, 950, 2] > 200 and image[600, 950, 0] < 80     # red box edge burnt in
    assert np.abs(image.astype(int) - frame.image).mean() > 1          # annotated, not a plain copy
    assert frame.image[600, 950, 2] == 0                               # the frame itself is untouched


def test_crop_is_the_object_with_margin(tmp_path):
    frame = synthetic(0, T0, wh=(640, 480))
    v = violation(T0, T0, box=(100.0, 100.0, 200.0, 180.0))
    sha = write_crop(frame, v, tmp_path / "crop.jpg", margin=0.25)
    data = (tmp_path / "crop.jpg").read_bytes()
    assert hashlib.sha256(data).hexdigest() == sha
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (120, 150, 3)
    edge = violation(T0, T0, box=(0.0, 0.0, 50.0, 40.0))            # margin clipped at the border
    write_crop(frame, edge, tmp_path / "edge.jpg", margin=0.5)
    assert cv2.imread(str(tmp_path / "edge.jpg")).shape == (60, 75, 3)


def test_sidecar_lists_boxes_per_frame_time(tmp_path):
    v = violation(T0 + 8, T0 + 10)
    doc = json.loads(sidecar_bytes(v, frame_wh=(1920, 1080), clip_start_s=T0 + 3))
    assert doc["violation_id"] == v.id and doc["frame_width"] == 1920
    assert [f["clip_offset_s"] for f in doc["frames"]] == [5.0, 6.0, 7.0]
    assert doc["frames"][0]["boxes"][0] == {"xyxy": [100.0, 120.0, 180.0, 200.0], "class_name": "car",
                                            "confidence": 0.87, "track_id": 7}
    sha = sidecar_json(v, tmp_path / "v.json", clip_start_s=T0 + 3)
    assert hashlib.sha256((tmp_path / "v.json").read_bytes()).hexdigest() == sha
    assert sidecar_bytes(v) == sidecar_bytes(v)      # same input, same bytes


def test_failed_write_raises_and_leaves_no_partial_file(tmp_path):
    frame = synthetic(0, T0)
    (tmp_path / "taken").mkdir()                     # a folder where the file should go
    with pytest.raises(EvidenceError):
        write_snapshot(frame, violation(T0, T0), LANE, tmp_path / "taken", tz=ZoneInfo("UTC"))
    assert no_temp_files(tmp_path)


def test_clip_failing_midway_leaves_no_partial_file(tmp_path):
    def frames():
        for i in range(5):
            yield synthetic(i, T0 + i / FPS)
        raise EvidenceError("buffered frame cannot be decoded")

    with pytest.raises(EvidenceError):
        write_clip(frames(), tmp_path / "broken.mp4", FPS)
    assert list(tmp_path.iterdir()) == []
