"""Tracker: hand-written detection sequences, stepped one frame at a time."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from vision.tracker import Tracker
from vision.types import Detections

NAMES = ("car", "two_wheeler", "garbage")
T0 = 1_700_000_000.0
STEP = 0.2  # 5 fps


def dets(*boxes, conf=0.9, cls=0) -> Detections:
    xyxy = np.array(boxes, np.float32).reshape(-1, 4)
    n = len(xyxy)
    conf = np.broadcast_to(np.asarray(conf, np.float32), (n,))
    cls = np.broadcast_to(np.asarray(cls, np.int32), (n,))
    return Detections(xyxy, conf, cls, NAMES)


@pytest.fixture(autouse=True)
def no_library_warnings():
    # ByteTrack warns on out-of-order or duplicate timestamps; the wrapper must never trigger that
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def make_tracker(**kw) -> Tracker:
    return Tracker(**{"frame_rate": 5.0, "lost_track_s": 2.0, "forget_after_s": 4.0, **kw})


def test_slowly_moving_box_keeps_its_id():
    tracker = make_tracker()
    ids = []
    for i in range(10):
        out = tracker.update(dets([100 + 3 * i, 100, 200 + 3 * i, 180]), T0 + i * STEP)
        ids.extend(out.tracker_id.tolist())
    # the first frame only starts the track; from the second on it has one stable id
    assert len(ids) == 9 and len(set(ids)) == 1
    state = tracker.states[ids[0]]
    assert state.first_seen_s == pytest.approx(T0 + STEP)
    assert state.last_seen_s == pytest.approx(T0 + 9 * STEP)
    assert state.hits == 9
    assert state.last_xyxy == pytest.approx((127, 100, 227, 180))


def test_two_separated_boxes_get_two_ids_and_keep_class_and_confidence():
    tracker = make_tracker()
    for i in range(3):
        out = tracker.update(dets([100, 100, 200, 180], [400, 300, 460, 400], conf=[0.9, 0.8], cls=[0, 1]),
                             T0 + i * STEP)
    assert len(set(out.tracker_id.tolist())) == 2
    by_class = dict(zip(out.names(), out.confidence.tolist()))
    assert by_class == pytest.approx({"car": 0.9, "two_wheeler": 0.8})
    assert {tracker.states[int(t)].class_name for t in out.tracker_id} == {"car", "two_wheeler"}


def test_short_gap_keeps_the_id_long_gap_gets_a_new_one():
    tracker = make_tracker()
    box = [100, 100, 200, 180]
    t = T0
    for _ in range(5):
        out = tracker.update(dets(box), t)
        t += STEP
    first_id = int(out.tracker_id[0])
    for _ in range(5):  # 1 s without the object (a van drives past), less than lost_track_s
        assert len(tracker.update(dets(), t)) == 0
        t += STEP
    out = tracker.update(dets(box), t)
    assert out.tracker_id.tolist() == [first_id]

    t += 3.0  # longer than lost_track_s
    tracker.update(dets(box), t)
    out = tracker.update(dets(box), t + STEP)
    assert len(out) == 1 and int(out.tracker_id[0]) != first_id


def test_state_of_forgotten_tracks_is_dropped():
    tracker = make_tracker()
    for i in range(3):
        out = tracker.update(dets([100, 100, 200, 180]), T0 + i * STEP)
    old_id = int(out.tracker_id[0])
    assert old_id in tracker.states
    tracker.update(dets(), T0 + 3.0)  # 2.6 s unseen: within forget_after_s
    assert old_id in tracker.states
    tracker.update(dets(), T0 + 5.0)  # 4.6 s unseen: forgotten
    assert old_id not in tracker.states and len(tracker.states) == 0


def test_class_is_a_majority_vote_over_a_bounded_window():
    tracker = make_tracker(vote_window=5, history=4)
    classes = [1, 1, 1, 0, 0, 1, 0, 0, 0]
    for i, cls in enumerate(classes):
        out = tracker.update(dets([100, 100, 200, 180], cls=cls), T0 + i * STEP)
    state = tracker.states[int(out.tracker_id[0])]
    # the first frame only starts the track; votes come from frames 1..8, the window keeps 5
    assert list(state.class_votes) == ["car", "two_wheeler", "car", "car", "car"]
    assert state.class_name == "car"
    assert len(state.recent) == 4


def test_class_vote_tie_goes_to_the_latest():
    tracker = make_tracker(vote_window=4)
    for i, cls in enumerate([0, 0, 0, 1, 1]):
        out = tracker.update(dets([100, 100, 200, 180], cls=cls), T0 + i * STEP)
    assert tracker.states[int(out.tracker_id[0])].class_name == "two_wheeler"


def test_low_confidence_detection_continues_a_track_but_does_not_start_one():
    tracker = make_tracker()
    for i in range(3):
        out = tracker.update(dets([100, 100, 200, 180]), T0 + i * STEP)
    tid = int(out.tracker_id[0])
    # the car is half hidden: the detector is unsure, the track goes on
    out = tracker.update(dets([101, 100, 201, 180], [500, 300, 560, 380], conf=[0.3, 0.3]), T0 + 3 * STEP)
    assert out.tracker_id.tolist() == [tid]
    out = tracker.update(dets([500, 300, 560, 380], conf=0.3), T0 + 4 * STEP)
    assert len(out) == 0


def test_frame_time_stepping_back_a_little_is_tolerated_a_lot_restarts_with_fresh_ids():
    tracker = make_tracker()
    for i in range(3):
        out = tracker.update(dets([100, 100, 200, 180]), T0 + i * STEP)
    tid = int(out.tracker_id[0])
    out = tracker.update(dets([100, 100, 200, 180]), T0 + 2 * STEP - 0.05)  # PTS jitter at a loop seam
    assert out.tracker_id.tolist() == [tid]
    tracker.update(dets([100, 100, 200, 180]), T0 - 3600)  # another piece of footage
    assert tid not in tracker.states
    out = tracker.update(dets([100, 100, 200, 180]), T0 - 3600 + STEP)
    assert len(out) == 1 and int(out.tracker_id[0]) > tid  # never reuses an id


def test_number_of_tracks_is_bounded():
    tracker = make_tracker(max_tracks=3)
    boxes = [[i * 50, 0, i * 50 + 40, 40] for i in range(6)]
    for i in range(3):
        tracker.update(dets(*boxes), T0 + i * STEP)
    assert len(tracker.states) == 3


def test_empty_frames_are_fine():
    tracker = make_tracker()
    out = tracker.update(Detections.empty(NAMES), T0)
    assert len(out) == 0 and out.class_names == NAMES


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="forget_after_s"):
        Tracker(lost_track_s=10, forget_after_s=5)
    with pytest.raises(ValueError, match="frame_rate"):
        Tracker(frame_rate=0)
