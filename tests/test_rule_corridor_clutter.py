"""Corridor clutter on synthetic 320x240 corridor images, one frame per second.

The zone is the lower 80 % of the image (the floor). An item is a bright block painted on the floor;
with short_s 10 s it becomes "static" about 10-20 s after it is put down, and the dwell (120 s) runs
from then.
"""
import numpy as np

from vision.config import CorridorClutterParams, Schedule, ScheduleWindow, Zone
from vision.rules import CorridorClutterRule
from vision.types import violation_id

from rule_support import SHANGHAI, T0, brighten, dets, floor, kinds, paint, rect, run, standing, with_noise

HALL = Zone(id="hall-12f", kind="corridor", polygon=((0, 0.2), (1, 0.2), (1, 1), (0, 1)),
            rules=("corridor_clutter",))
PARAMS = dict(dwell_s=120, short_s=10, baseline_s=300, clear_s=10, grace_s=5, cooldown_s=60, confirm_k=3,
              confirm_n=5)
WH = (320, 240)
FLOOR = floor(WH)
ITEM_BOX = (100, 150, 160, 210)
ITEM = paint(FLOOR, *ITEM_BOX, 230)
OTHER_BOX = (220, 80, 280, 130)


def make(**overrides) -> CorridorClutterRule:
    params = CorridorClutterParams.model_validate({**PARAMS, **overrides})
    return CorridorClutterRule(compound_id="c1", camera_id="b3-12f", zone=HALL, params=params, tz=SHANGHAI,
                               model_version="m1")


def item_between(start, stop, picture=ITEM):
    return lambda s: with_noise(picture if start <= s < stop else FLOOR, s)


def test_item_left_beyond_dwell_is_one_spot_raised_once():
    events = run(make(), {}, steps=600, image=item_between(10, 10_000), wh=WH)
    [(s, ev)] = events
    v = ev.violation
    settle = v.start_time_s - T0
    assert 10 < settle <= 30 and s == settle + 120
    assert v.id == violation_id("b3-12f", "corridor_clutter", "hall-12f", v.start_time_s)
    assert v.details["supported_by"] is None and v.details["area_m2"] is None
    assert 0.05 < v.details["area_fraction"] < 0.09         # 60x60 px of a 320x192 px zone
    x1, y1, x2, y2 = v.boxes[-1].xyxy                     # the spot's box, in frame pixels
    assert abs(x1 - 100) < 12 and abs(y1 - 150) < 12 and abs(x2 - 160) < 12 and abs(y2 - 210) < 12
    # Deterministic: the same footage gives the same id.
    assert run(make(), {}, steps=200, image=item_between(10, 10_000), wh=WH)[0][1].violation.id == v.id


def test_item_taken_away_before_dwell_raises_nothing():
    assert run(make(), {}, steps=400, image=item_between(10, 100), wh=WH) == []


def test_detection_supports_the_spot_and_area_in_square_metres():
    parcel = rect("box_or_parcel", *ITEM_BOX, track_id=3, conf=0.8)
    [(_, ev)] = run(make(zone_area_m2=12.0), {s: [parcel] for s in range(10, 300)}, steps=300,
                    image=item_between(10, 10_000), wh=WH)
    d = ev.violation.details
    assert d["supported_by"] == "box_or_parcel" and ev.violation.details["class_name"] == "box_or_parcel"
    assert abs(ev.violation.confidence - 0.8) < 1e-6 and 0.6 < d["area_m2"] < 1.1


def test_require_detection_drops_unsupported_spots():
    assert run(make(require_detection=True), {}, steps=300, image=item_between(10, 10_000), wh=WH) == []


def _walker(s, detected=True):
    """A person crossing the corridor at 12 px/s, left to right, from step 20 to 45."""
    x = 12 * (s - 20)
    return x, (standing("person", x + 20, 220, 77, w=40, h=110),) if detected else ()


def test_people_walking_through_never_trigger_detected_or_not():
    for detected in (True, False):
        script, pictures = {}, {}
        for s in range(20, 46):
            x, boxes = _walker(s, detected)
            script[s] = list(boxes)
            pictures[s] = paint(FLOOR, x, 110, x + 40, 220, 25)
        image = lambda s: with_noise(pictures.get(s, FLOOR), s)
        rule = make()
        assert run(rule, script, steps=300, image=image, wh=WH) == []
        assert not rule.model.static.any()


def test_person_standing_in_front_of_the_item_does_not_reset_its_dwell():
    pictures = {s: paint(ITEM, 110, 100, 150, 215, 25) for s in range(60, 100)}   # 40 s > grace_s
    script = {s: [standing("person", 130, 215, 77, w=40, h=115)] for s in range(60, 100)}
    image = lambda s: with_noise(pictures.get(s, ITEM if s >= 10 else FLOOR), s)
    [(s, ev)] = run(make(), script, steps=300, image=image, wh=WH)
    reference = run(make(), {}, steps=300, image=item_between(10, 10_000), wh=WH)[0]
    assert s == reference[0] and ev.violation.start_time_s == reference[1].violation.start_time_s


def test_lighting_changes_do_not_trigger():
    ramp = lambda s: with_noise(brighten(FLOOR, 1.0 + 0.5 * min(s, 300) / 300), s)         # slow, 300 s
    switch = lambda s: with_noise(FLOOR if s < 50 else brighten(FLOOR, 1.4), s)             # lights on
    lamp = FLOOR.copy()
    lamp[:, :160] = brighten(FLOOR[:, :160], 1.5)                                           # one lamp
    local = lambda s: with_noise(FLOOR if s < 50 else lamp, s)
    for image in (ramp, switch, local):
        rule = make()
        assert run(rule, {}, steps=400, image=image, wh=WH) == []


def test_two_items_are_two_spots_with_different_ids_each_counted_once():
    both = paint(ITEM, *OTHER_BOX, 20)
    events = run(make(), {}, steps=900, image=item_between(10, 10_000, both), wh=WH)
    assert [e.kind for _, e in events] == ["started", "started"]
    assert len({e.violation.id for _, e in events}) == 2


def test_item_removed_ends_the_spot_then_cooldown_then_a_new_violation():
    gone, back = 250, 270
    image = lambda s: with_noise(ITEM if 10 <= s < gone or s >= back else FLOOR, s)
    events = run(make(), {}, steps=600, image=image, wh=WH)
    assert [e.kind for _, e in events] == ["started", "ended", "started"]
    first, ended, second = (e.violation for _, e in events)
    assert ended.id == first.id and ended.end_time_s < T0 + gone and events[1][0] < gone + 12
    # back at 270, static again ~285; dwell reached ~405, after the cooldown (ended + 60 s)
    assert second.start_time_s > T0 + back and second.id != first.id
    assert events[2][0] == second.start_time_s - T0 + 120


def test_returning_within_cooldown_waits_for_it():
    # Away for less than clear_s is the same violation going on.
    image = lambda s: with_noise(ITEM if 10 <= s < 250 or s >= 255 else FLOOR, s)
    assert [e.kind for _, e in run(make(), {}, steps=400, image=image, wh=WH)] == ["started"]
    gone, back = 250, 275
    image = lambda s: with_noise(ITEM if 10 <= s < gone or s >= back else FLOOR, s)
    events = run(make(cooldown_s=400), {}, steps=700, image=image, wh=WH)
    assert [e.kind for _, e in events] == ["started", "ended", "started"]
    assert events[2][0] >= events[1][1].violation.end_time_s - T0 + 400


def test_schedule_gates_raising():
    night = Schedule(windows=(ScheduleWindow(start="22:00", end="06:00"),))
    assert run(make(schedule=night), {}, steps=300, image=item_between(10, 10_000), wh=WH) == []


def test_reviewer_marks_the_scene_clean():
    rule = make()
    run(rule, {}, steps=60, image=item_between(10, 10_000), wh=WH)
    assert rule.model.static.any()
    rule.reset_baseline()   # "this is clean": the item is part of the corridor now
    assert run(rule, {}, steps=300, image=lambda s: with_noise(ITEM, s), wh=WH) == []


def test_memory_stays_bounded_with_items_coming_and_going():
    rule = make(dwell_s=30)
    rng = np.random.default_rng(5)
    picture = FLOOR
    for s in range(1500):
        if s % 40 == 0:   # a new random set of items every 40 s
            picture = FLOOR.copy()
            for _ in range(rng.integers(0, 25)):
                x, y = rng.integers(0, 300), rng.integers(50, 220)
                picture[y:y + 15, x:x + 15] = 240
        rule.update(T0 + s, dets(), WH, with_noise(picture, s))
    assert len(rule._occupancies) <= rule.max_occupancies and len(rule._blobs) <= rule.max_blobs
    assert len(rule._blob_info) <= rule.max_occupancies + 8 * rule.max_occupancies
    assert rule.model.long.shape == (64, 64) and rule.model.short.shape == (64, 64)


def test_without_images_detections_alone_are_used():
    parcel = standing("box_or_parcel", 130, 210, 3, w=60, h=60)
    events = run(make(), {s: [parcel] for s in range(0, 200)}, wh=WH)
    assert kinds(events) == [(120, "started")]
    assert events[0][1].violation.details["class_name"] == "box_or_parcel"
