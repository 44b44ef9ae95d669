"""Bin overflow on hand-made detections and synthetic 400x400 images, one frame per second.

The bin zone is the square 140..260 px; "around the bin" (near_margin 0.25) reaches 110..290 px. The
clean scene is a textured floor with a dark bin; a heap is a bright block over and above the bin.
"""
import numpy as np
import pytest

from vision.config import BinOverflowParams, Schedule, ScheduleWindow, Zone
from vision.rules import BinOverflowRule
from vision.types import violation_id

from rule_support import SHANGHAI, T0, brighten, dets, floor, kinds, paint, rect, run, standing, with_noise

BIN = Zone(id="bin-1", kind="bin_station", polygon=((0.35, 0.35), (0.65, 0.35), (0.65, 0.65), (0.35, 0.65)),
           rules=("bin_overflow",))
BIN_2 = Zone(id="bin-2", kind="bin_station", polygon=((0.7, 0.35), (0.95, 0.35), (0.95, 0.65), (0.7, 0.65)),
             rules=("bin_overflow",))
PARAMS = dict(dwell_s=60, confirm_k=3, confirm_n=5, grace_s=5, clear_s=10, cooldown_s=120, relearn_s=300)

CLEAN = paint(floor(), 150, 150, 250, 250, 50)              # the bin, closed
HEAP = paint(CLEAN, 140, 120, 260, 200, 210)                # bags heaped on and above it
HEAP_BOXES = [rect("garbage", 140, 120, 200, 200, 1), rect("garbage", 200, 120, 260, 200, 2),
              rect("garbage", 180, 110, 220, 150, 3)]       # several bags: still one bin, one violation
SMALL_BAG = rect("garbage", 150, 230, 180, 260, 4)          # a bag in an open bin: covers 6 % of the zone


def make(zone=BIN, **overrides) -> BinOverflowRule:
    params = BinOverflowParams.model_validate({**PARAMS, **overrides})
    return BinOverflowRule(compound_id="c1", camera_id="bins-west", zone=zone, params=params, tz=SHANGHAI,
                           model_version="m1")


def scene(heap_steps, picture=HEAP):
    """image(step): the heap at the given steps, the clean bin otherwise."""
    heap_steps = set(heap_steps)
    return lambda s: with_noise(picture if s in heap_steps else CLEAN, s)


def person(x=300, y=300, tid=50):
    return standing("person", x, y, tid, w=40, h=120)


def test_heap_lasting_beyond_dwell_raises_once_for_the_bin():
    steps = range(10, 300)
    events = run(make(), {s: HEAP_BOXES for s in steps}, steps=300, image=scene(steps))
    [(s, ev)] = events
    assert s == 70 and ev.kind == "started"
    v = ev.violation
    assert v.id == violation_id("bins-west", "bin_overflow", "bin-1", T0 + 10) and v.zone == "bin-1"
    assert v.details["garbage_cover"] == pytest.approx(0.67, abs=0.05)
    assert v.details["changed_fraction"] > 0.3 and len(v.details["garbage_boxes"]) == 3
    assert len(v.boxes) >= 2 and v.boxes[0].class_name == "overflow"
    # A re-scan of the same footage gives the same violation.
    assert run(make(), {s: HEAP_BOXES for s in steps}, steps=300, image=scene(steps))[0][1].violation.id == v.id


def test_heap_removed_before_dwell_raises_nothing():
    steps = range(10, 50)
    assert run(make(), {s: HEAP_BOXES for s in steps}, steps=200, image=scene(steps)) == []


def test_tidy_station_with_a_bag_in_the_bin_is_not_overflow_but_a_changed_heap_is():
    # The detector sees a bag in an open bin; the zone looks like its baseline.
    assert run(make(), {s: [SMALL_BAG] for s in range(10, 200)}, steps=200, image=scene([])) == []
    # The same single detection with the zone far from its baseline: overflow.
    steps = range(10, 200)
    [(s, ev)] = run(make(), {s: [SMALL_BAG] for s in steps}, steps=200, image=scene(steps))
    assert s == 70 and ev.violation.details["changed_fraction"] > 0.3


def test_a_changed_zone_without_garbage_is_not_overflow():
    steps = range(10, 200)   # e.g. a cart parked in front of the bin
    assert run(make(), {}, steps=200, image=scene(steps)) == []


def test_person_dumping_a_bag_into_the_bin_is_not_a_violation():
    dumping = {s: [person(200, 270)] for s in range(10, 26)}
    for s in range(15, 26):        # the bag is beside the bin while they open the lid
        dumping[s] = dumping[s] + [rect("garbage", 140, 200, 260, 260, 9)]
    assert run(make(), dumping, steps=200, image=scene(range(15, 26))) == []


def test_bag_left_beside_the_bin_counts_from_when_the_person_left():
    script = {s: [person(200, 270)] for s in range(10, 26)}
    for s in range(15, 200):
        script[s] = script.get(s, []) + HEAP_BOXES
    [(s, ev)] = run(make(), script, steps=200, image=scene(range(15, 200)))
    assert ev.violation.start_time_s == T0 + 26 and s == 86


def test_nothing_is_raised_while_a_person_is_at_the_bin():
    script = {s: HEAP_BOXES for s in range(10, 200)}
    for s in range(65, 80):
        script[s] = HEAP_BOXES + [person(200, 270)]
    [(s, ev)] = run(make(), script, steps=200, image=scene(range(10, 200)))
    assert s == 80 and ev.violation.start_time_s == T0 + 10


def test_violation_ends_when_the_bin_looks_emptied_not_when_the_detector_loses_the_bags():
    steps = range(10, 100)
    events = run(make(), {s: HEAP_BOXES for s in steps}, steps=200, image=scene(steps))
    assert kinds(events) == [(70, "started"), (109, "ended")]
    assert events[1][1].violation.end_time_s == T0 + 99 and events[1][1].violation.id == events[0][1].violation.id
    # The detector loses the bags at 100 but the heap is still there: the violation goes on...
    events = run(make(), {s: HEAP_BOXES for s in steps}, steps=380, image=scene(range(10, 380)))
    assert kinds(events) == [(70, "started")]
    # ...until the unexplained change has lasted relearn_s (the baseline is learned afresh).
    events = run(make(), {s: HEAP_BOXES for s in steps}, steps=430, image=scene(range(10, 430)))
    assert kinds(events) == [(70, "started"), (410, "ended")]


def test_person_walking_past_during_a_violation_does_not_end_it():
    script = {s: HEAP_BOXES for s in range(10, 200)}
    for s in range(100, 130):      # stands in front, hiding the bags from the detector for 30 s > clear_s
        script[s] = [person(200, 280)]
    assert kinds(run(make(), script, steps=200, image=scene(range(10, 200)))) == [(70, "started")]


def test_cooldown_then_a_new_violation_after_the_bin_was_emptied():
    heaps = set(range(10, 100)) | set(range(120, 400))
    events = run(make(), {s: HEAP_BOXES for s in heaps}, steps=400, image=scene(heaps))
    # first ends at 109 (last seen 99): cooldown until 219. Heaped again from 120: dwell reached at
    # 180, inside the cooldown; raised when the cooldown runs out.
    assert kinds(events) == [(70, "started"), (109, "ended"), (219, "started")]
    assert events[2][1].violation.start_time_s == T0 + 120
    assert events[2][1].violation.id != events[0][1].violation.id


def test_schedule_boundaries():
    day = Schedule(windows=(ScheduleWindow(start="06:00", end="16:00"),))
    steps = range(10, 200)
    assert run(make(schedule=day), {s: HEAP_BOXES for s in steps}, steps=200, image=scene(steps)) == []
    # From 15:58:00 local: the schedule is armed until 16:00:00 = step 120.
    t = T0 - 120
    [(s, _)] = run(make(schedule=day), {s: HEAP_BOXES for s in steps}, steps=200, image=scene(steps), t0=t)
    assert s == 70
    late = range(70, 200)           # heap appears at 15:59:10; dwell would end after 16:00
    assert run(make(schedule=day), {s: HEAP_BOXES for s in late}, steps=200, image=scene(late), t0=t) == []


def test_lighting_change_is_not_a_change_of_the_bin():
    rule = make()
    lit = lambda s: with_noise(CLEAN if s < 10 else brighten(CLEAN, 1.35), s)
    assert run(rule, {}, steps=100, image=lit) == []
    assert rule.last_measure.changed is not None and rule.last_measure.changed < 0.02
    # with the new lighting the heap is still measured as changed
    rule2 = make()
    heap_lit = lambda s: with_noise(CLEAN if s < 10 else brighten(HEAP, 1.35), s)
    assert len(run(rule2, {s: HEAP_BOXES for s in range(10, 100)}, steps=100, image=heap_lit)) == 1


def test_each_bin_counts_once_and_two_bins_twice():
    both = paint(HEAP, 290, 120, 370, 200, 220)
    boxes = HEAP_BOXES + [rect("garbage", 285, 120, 375, 200, 7)]
    rules = [make(), make(zone=BIN_2)]
    events = []
    for s in range(600):
        image = with_noise(CLEAN if s < 10 else both, s)
        for rule in rules:
            events += rule.update(T0 + s, dets(*(boxes if s >= 10 else [])), (400, 400), image)
    assert sorted(e.violation.zone for e in events) == ["bin-1", "bin-2"]
    assert all(e.kind == "started" for e in events)


def test_without_images_garbage_cover_alone_decides():
    events = run(make(), {s: HEAP_BOXES for s in range(10, 100)}, steps=200)
    assert kinds(events) == [(70, "started"), (109, "ended")]
    assert events[0][1].violation.details["changed_fraction"] is None
    assert run(make(), {s: [SMALL_BAG] for s in range(10, 200)}) == []


def test_baseline_memory_is_fixed_whatever_the_resolution():
    rule = make()
    big = np.zeros((1080, 1920, 3), np.uint8)
    rule.update(T0, dets(), (1920, 1080), big)
    assert rule.baseline.shape == (64, 64) and rule.baseline.dtype == np.float32
