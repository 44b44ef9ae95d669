"""The fire-lane rule on tiny hand-made sequences: one frame per second unless a test says otherwise.

The lane is the lower half of a 1000x1000 image; a car box is 100x60 px (diagonal ~117 px, so with
stationary_tolerance 0.25 it may wobble ~29 px around where it settled).
"""
import logging
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from vision.config import RuleParams, Schedule, ScheduleWindow, SiteConfig, Zone
from vision.rules import FireLaneRule, build_rules
from vision.types import Detections, violation_id

NAMES = ("person", "car", "truck_or_bus")
T0 = 1_714_550_400.0          # 2024-05-01 08:00:00 UTC = 16:00 in Asia/Shanghai
SHANGHAI = ZoneInfo("Asia/Shanghai")
WH = (1000, 1000)
LANE = Zone(id="lane-a", kind="fire_lane", polygon=((0, 0.5), (1, 0.5), (1, 1), (0, 1)), rules=("fire_lane",))
PARAMS = RuleParams(classes=("car", "truck_or_bus"), min_confidence=0.4, dwell_s=10, confirm_k=3, confirm_n=5,
                    stationary_tolerance=0.25, grace_s=3, cooldown_s=30, clear_s=5)


def car(x, y, track_id, conf=0.9, cls="car", w=100, h=60):
    """A box whose bottom centre (where the car touches the ground) is at (x, y)."""
    return (x - w / 2, y - h, x + w / 2, y), conf, NAMES.index(cls), track_id


def person(x, y, track_id):
    return car(x, y, track_id, cls="person", w=40, h=120)


def frame(*boxes) -> Detections:
    if not boxes:
        return Detections.empty(NAMES)
    xyxy, conf, cls, tid = zip(*boxes)
    return Detections(np.array(xyxy, np.float32), np.array(conf, np.float32), np.array(cls, np.int32), NAMES,
                      np.array(tid, np.int64))


def make_rule(zone=LANE, **overrides) -> FireLaneRule:
    params = RuleParams.model_validate({**PARAMS.model_dump(), **overrides})
    return FireLaneRule(compound_id="sunrise", camera_id="gate-1", zone=zone, params=params, tz=SHANGHAI,
                        model_version="yolo-test-1")


def run(rule, script, t0=T0, wh=WH):
    """Feed ``script`` — {second: [boxes]} for seconds 0..max, missing seconds are empty frames —
    and return [(second, event)]."""
    out = []
    for s in range(max(script) + 1):
        for ev in rule.update(t0 + s, frame(*script.get(s, [])), wh):
            out.append((s, ev))
    return out


def parked(seconds, x=500, y=800, track_id=1, **kw):
    return {s: [car(x, y, track_id, **kw)] for s in seconds}


def started(events):
    return [(s, e) for s, e in events if e.kind == "started"]


def test_car_passing_through_never_raises():
    script = {s: [car(50 + 30 * s, 800, 1)] for s in range(31)}   # 30 px/s along the lane
    assert run(make_rule(), script) == []


def test_car_stopping_for_the_dwell_raises_once_with_a_deterministic_id():
    script = {s: [car(100 + 80 * s, 800, 7)] for s in range(5)}   # drives in
    script.update(parked(range(5, 40), x=100 + 80 * 5, track_id=7))   # settles at second 5
    events = run(make_rule(), script)
    [(second, ev)] = events
    assert second == 15 and ev.kind == "started" and ev.trigger_time_s == T0 + 15
    v = ev.violation
    assert v.start_time_s == T0 + 5 and v.end_time_s is None and v.last_seen_time_s == T0 + 15
    assert v.id == violation_id("gate-1", "fire_lane", "lane-a", T0 + 5)
    assert (v.rule, v.compound_id, v.camera_id, v.zone, v.model_version) == (
        "fire_lane", "sunrise", "gate-1", "lane-a", "yolo-test-1")
    assert v.track_id == 7 and v.confidence == pytest.approx(0.9)
    assert v.details["class_name"] == "car" and v.details["dwell_s"] == 10
    assert 2 <= len(v.boxes) <= 20 and v.boxes[0].time_s == T0 + 5 and v.boxes[-1].time_s == T0 + 15
    # The same footage again gives the same events (frame time only, no clock).
    assert run(make_rule(), script) == events


def test_same_scene_at_another_resolution_gives_the_same_violation():
    script = parked(range(12), x=500, y=800)
    small = {s: [car(250, 400, 1, w=50, h=30)] for s in range(12)}
    [(_, a)] = run(make_rule(), script)
    [(_, b)] = run(make_rule(), small, wh=(500, 500))
    assert a.violation.id == b.violation.id and a.trigger_time_s == b.trigger_time_s


def test_occlusion_shorter_than_grace_keeps_the_dwell():
    script = parked([0, 1, 2, 3, 4, 8, 9, 10, 11, 12])
    for s in (5, 6, 7):                               # a person walks in front; the car is lost
        script[s] = [person(500, 820, 50)]
    [(second, ev)] = run(make_rule(), script)
    assert ev.violation.start_time_s == T0 + 0
    assert second == 10                               # 3 of the last 5 frames needed the car again


def test_occlusion_longer_than_grace_resets_the_dwell():
    script = parked([0, 1, 2, 3, 4] + list(range(9, 25)))   # missing 5..8: 4 s > grace 3 s
    [(second, ev)] = run(make_rule(), script)
    assert ev.violation.start_time_s == T0 + 9 and second == 19


def test_track_id_switch_at_the_same_spot_is_the_same_violation():
    script = parked(range(0, 5), track_id=1)
    script[5] = [person(500, 820, 50)]
    script.update(parked(range(6, 30), x=505, y=803, track_id=2))   # same car, new id, tiny jitter
    events = run(make_rule(), script)
    [(second, ev)] = events
    assert second == 10 and ev.violation.start_time_s == T0
    assert ev.violation.details["track_ids"] == [1, 2]


def test_car_driving_across_an_occluded_parked_car_does_not_take_over_its_dwell():
    script = parked(range(0, 4), track_id=1)
    # second 4..6: a car (id 9, already tracked in the lane) drives across, hiding the parked one
    script.update({s: [car(200 + 150 * (s - 2), 805, 9)] for s in range(2, 4)})
    script[2].append(car(500, 800, 1))
    script[3].append(car(500, 800, 1))
    script.update({s: [car(200 + 150 * (s - 2), 805, 9)] for s in range(4, 7)})   # passes x=500 at s=4
    script.update(parked(range(7, 20), track_id=1))
    [(second, ev)] = run(make_rule(), script)
    assert ev.violation.start_time_s == T0 and second == 10
    assert 9 not in ev.violation.details["track_ids"]


def test_leaving_ends_after_clear_s_with_end_time_last_seen():
    events = run(make_rule(), {**parked(range(0, 21)), 30: []})
    assert [(s, e.kind) for s, e in events] == [(10, "started"), (25, "ended")]
    ended = events[1][1].violation
    assert ended.id == events[0][1].violation.id
    assert ended.end_time_s == T0 + 20 and ended.last_seen_time_s == T0 + 20
    assert ended.details["dwell_s"] == 20 and events[1][1].trigger_time_s == T0 + 25


def test_standing_on_does_not_duplicate_and_memory_stays_bounded():
    rule = make_rule()
    events = []
    for s in range(2000):
        events += rule.update(T0 + s, frame(car(500, 800, 1)), WH)
    assert [e.kind for e in events] == ["started"]
    [active] = rule.active()
    assert len(active.boxes) <= 20
    assert active.boxes[0].time_s == T0 and active.boxes[-1].time_s == T0 + 1999
    gaps = np.diff([b.time_s for b in active.boxes[:-1]])
    assert gaps.max() <= 2.5 * gaps.min()             # spread over the whole dwell, not bunched up


def test_coming_back_during_cooldown_raises_nothing_but_after_cooldown_does():
    # First violation: parked 0..20, ends with end_time 20; cooldown runs until 50.
    first = {**parked(range(0, 21)), 24: []}
    during = {**first, **parked(range(30, 46))}       # back at 30, dwell reached at 40 < 50, gone by 46
    assert [(s, e.kind) for s, e in run(make_rule(), {**during, 60: []})] == [(10, "started"), (25, "ended")]

    after = {**first, **parked(range(55, 70))}        # back at 55 > 50
    events = run(make_rule(), after)
    assert [(s, e.kind) for s, e in events] == [(10, "started"), (25, "ended"), (65, "started")]
    assert events[2][1].violation.start_time_s == T0 + 55
    assert events[2][1].violation.id != events[0][1].violation.id


def test_cooldown_is_per_spot_and_lets_a_car_still_standing_raise_when_it_runs_out():
    first = {**parked(range(0, 21)), 24: []}
    other_spot = {**first, **parked(range(30, 45), x=150)}
    assert [(s, e.kind) for s, e in run(make_rule(), other_spot)][-1] == (40, "started")

    stays = {**first, **parked(range(30, 60))}        # back at 30 and still there when cooldown ends at 50
    events = run(make_rule(), stays)
    assert [(s, e.kind) for s, e in events][-1] == (50, "started")
    assert events[-1][1].violation.start_time_s == T0 + 30


def test_outside_the_armed_schedule_nothing_is_raised():
    night = Schedule(windows=(ScheduleWindow(start="22:00", end="06:00"),))
    assert run(make_rule(schedule=night), parked(range(0, 30))) == []   # 16:00 local: disarmed
    # Parked from 21:59:50 local; the schedule arms at 22:00:00 and the dwell is already 10 s.
    t_2159_50 = T0 + 6 * 3600 - 10
    [(second, ev)] = run(make_rule(schedule=night), parked(range(0, 30)), t0=t_2159_50)
    assert second == 10 and ev.violation.start_time_s == t_2159_50


def test_low_confidence_or_wrong_class_raises_nothing():
    assert run(make_rule(), parked(range(0, 30), conf=0.3)) == []
    assert run(make_rule(), {s: [person(500, 800, 1)] for s in range(30)}) == []
    assert len(run(make_rule(), parked(range(0, 30), cls="truck_or_bus"))) == 1


def test_untracked_boxes_are_ignored():
    assert run(make_rule(), parked(range(0, 30), track_id=-1)) == []


def test_flickering_detection_is_never_confirmed():
    script = parked(range(0, 40, 3))                  # seen 1 frame in 3: at most 2 of any 5
    assert run(make_rule(), {**script, 40: []}) == []


def test_slow_drift_beyond_tolerance_resets_the_dwell():
    # 3 px/s: leaves the 29 px tolerance after 10 s, exactly when the dwell would be reached.
    assert run(make_rule(), {s: [car(500 + 3 * s, 800, 1)] for s in range(60)}) == []
    # 1 px/s wobble stays within tolerance for the 10 s dwell.
    [(second, _)] = run(make_rule(), {s: [car(500 + s, 800, 1)] for s in range(12)})
    assert second == 10


def test_anchor_outside_the_lane_is_not_in_it_even_if_the_box_overlaps():
    strip = Zone(id="strip", kind="fire_lane", polygon=((0.4, 0), (0.6, 0), (0.6, 1), (0.4, 1)))
    # A wide box (x 250..450) overlaps the strip (x 400..600), but its bottom centre (x 350) is outside.
    script = {s: [car(350, 800, 1, w=200)] for s in range(30)}
    assert run(make_rule(zone=strip), script) == []
    assert len(run(make_rule(zone=strip), {s: [car(500, 800, 1, w=200)] for s in range(30)})) == 1


def test_frames_going_back_in_time_are_ignored():
    rule = make_rule()
    assert rule.update(T0 + 5, frame(car(500, 800, 1)), WH) == []
    assert rule.update(T0 + 1, frame(car(500, 800, 1)), WH) == []


def test_build_rules_instantiates_implemented_rules_and_warns_once_for_the_rest(caplog, monkeypatch):
    monkeypatch.setattr("vision.rules._warned_unimplemented", set())
    # Every armed rule name is implemented now; pretend ebike_indoor is not, to test the warning.
    monkeypatch.setattr("vision.rules.RULES", {"fire_lane": FireLaneRule})
    site = SiteConfig.model_validate({
        "detector": {"model": "m.onnx"},
        "compounds": [{"id": "sunrise", "cameras": [{"id": "gate-1", "source": "x.mp4", "zones": [
            {"id": "lane-a", "kind": "fire_lane", "polygon": [[0, 0.5], [1, 0.5], [1, 1]],
             "rules": ["fire_lane", "ebike_indoor"], "overrides": {"fire_lane": {"dwell_s": 30}}},
            {"id": "lobby", "kind": "lobby", "polygon": [[0, 0], [0.5, 0], [0.5, 0.5]], "rules": ["ebike_indoor"]},
        ]}]}],
    })
    compound = site.compounds[0]
    camera = compound.cameras[0]
    with caplog.at_level(logging.WARNING, logger="vision.rules"):
        rules = build_rules(site, compound, camera, "yolo-test-1")
        build_rules(site, compound, camera, "yolo-test-1")
    [rule] = rules
    assert isinstance(rule, FireLaneRule) and rule.zone.id == "lane-a" and rule.params.dwell_s == 30
    assert rule.tz == SHANGHAI and rule.model_version == "yolo-test-1"
    assert sum("ebike_indoor" in r.getMessage() for r in caplog.records) == 1
