"""E-bikes indoors on hand-made sequences: lobby/corridor dwell, fast elevator alert, charging flag."""
import numpy as np

from vision.config import EbikeIndoorParams, Schedule, ScheduleWindow, SiteConfig, Zone
from vision.rules import BinOverflowRule, CorridorClutterRule, EbikeIndoorRule, FireLaneRule, build_rules
from vision.types import violation_id

from rule_support import SHANGHAI, T0, dets, kinds, run, standing

LOBBY = Zone(id="lobby", kind="lobby", polygon=((0, 0.3), (1, 0.3), (1, 1), (0, 1)), rules=("ebike_indoor",))
LIFT = Zone(id="lift-1", kind="elevator", polygon=((0, 0), (1, 0), (1, 1), (0, 1)), rules=("ebike_indoor",))
BASE = dict(dwell_s=60, confirm_k=3, confirm_n=5, grace_s=5, clear_s=10, cooldown_s=60)


def make(zone=LOBBY, **overrides) -> EbikeIndoorRule:
    params = EbikeIndoorParams.model_validate({**BASE, **overrides})
    return EbikeIndoorRule(compound_id="c1", camera_id="b3-lobby", zone=zone, params=params, tz=SHANGHAI,
                           model_version="m1")


def bike(x=200, y=300, tid=1, cls="two_wheeler", **kw):
    return standing(cls, x, y, tid, w=120, h=90, **kw)


def test_ebike_parked_in_lobby_beyond_dwell_raises_once_charging_unknown():
    events = run(make(), {s: [bike()] for s in range(200)})
    [(s, ev)] = events
    assert s == 60 and ev.kind == "started"
    v = ev.violation
    assert v.id == violation_id("b3-lobby", "ebike_indoor", "lobby", T0)
    assert v.details["charging"] is None and v.details["charging_basis"] is None
    assert v.details["situation"] == "parked_indoors" and v.details["class_name"] == "two_wheeler"


def test_dwell_not_reached_and_riding_through_never_raise():
    assert run(make(), {**{s: [bike()] for s in range(50)}, 80: []}) == []
    assert run(make(), {s: [bike(x=10 + 8 * s)] for s in range(50)}) == []


def test_occlusion_within_grace_keeps_the_dwell_and_leaving_ends_it():
    script = {s: [bike()] for s in range(100) if not 30 <= s < 34}    # hidden 4 s < grace 5 s
    script[140] = []
    events = run(make(), script)
    assert kinds(events) == [(60, "started"), (109, "ended")]
    assert events[1][1].violation.end_time_s == T0 + 99


def test_elevator_alerts_within_two_seconds_even_while_being_wheeled():
    # 5 fps; the bike is pushed 15 px per frame across the cabin.
    events = run(make(zone=LIFT), {s: [bike(x=100 + 15 * s)] for s in range(20)}, dt=0.2)
    [(s, ev)] = events
    assert ev.trigger_time_s - T0 <= 2.0 and ev.violation.details["situation"] == "elevator"
    assert ev.violation.details["charging"] is None


def test_elevator_dwell_is_a_parameter():
    events = run(make(zone=LIFT, elevator_dwell_s=5), {s: [bike()] for s in range(40)}, dt=0.2)
    [(s, _)] = events
    assert s == 25


def test_socket_zone_reports_charging_suspected():
    [(_, ev)] = run(make(has_socket=True), {s: [bike()] for s in range(70)})
    assert ev.violation.details["charging"] is True and ev.violation.details["charging_basis"] == "at_socket"
    # A socket flag means nothing in a lift: nothing is plugged in there.
    [(_, ev)] = run(make(zone=LIFT, has_socket=True), {s: [bike()] for s in range(20)}, dt=0.2)
    assert ev.violation.details["charging"] is None


def test_bicycles_only_when_configured():
    assert run(make(), {s: [bike(cls="bicycle")] for s in range(70)}) == []
    assert len(run(make(classes=("two_wheeler", "bicycle")), {s: [bike(cls="bicycle")] for s in range(70)})) == 1


def test_schedule_and_cooldown():
    night = Schedule(windows=(ScheduleWindow(start="22:00", end="06:00"),))
    assert run(make(schedule=night), {s: [bike()] for s in range(100)}) == []        # 16:00 local
    script = {**{s: [bike()] for s in range(70)}, **{s: [bike()] for s in range(90, 160)}}
    # ends at 69 + 10 → cooldown until 129; back at 90, dwell reached at 150 > 129 → a new violation
    events = run(make(), script)
    assert kinds(events) == [(60, "started"), (79, "ended"), (150, "started")]
    assert events[2][1].violation.start_time_s == T0 + 90


def test_build_rules_builds_all_four_rules_with_their_parameters():
    site = SiteConfig.model_validate({
        "detector": {"model": "m.onnx"},
        "rules": {"ebike_indoor": {"dwell_s": 300}},
        "compounds": [{"id": "c1", "cameras": [{"id": "cam", "source": "x.mp4", "zones": [
            {"id": "lane", "kind": "fire_lane", "polygon": [[0, 0.5], [1, 0.5], [1, 1]], "rules": ["fire_lane"]},
            {"id": "bins", "kind": "bin_station", "polygon": [[0, 0], [0.3, 0], [0.3, 0.3]], "rules": ["bin_overflow"],
             "overrides": {"bin_overflow": {"changed_fraction": 0.4}}},
            {"id": "hall", "kind": "corridor", "polygon": [[0.5, 0], [1, 0], [1, 0.4]],
             "rules": ["corridor_clutter", "ebike_indoor"]},
            {"id": "lift", "kind": "elevator", "polygon": [[0, 0.3], [0.3, 0.3], [0.3, 0.6]], "rules": ["ebike_indoor"],
             "overrides": {"ebike_indoor": {"elevator_dwell_s": 1.0}}},
        ]}]}],
    })
    rules = build_rules(site, site.compounds[0], site.compounds[0].cameras[0], "m1")
    assert [type(r) for r in rules] == [FireLaneRule, BinOverflowRule, CorridorClutterRule, EbikeIndoorRule,
                                        EbikeIndoorRule]
    assert rules[1].params.changed_fraction == 0.4 and rules[1].params.classes == ("garbage",)
    assert rules[3].params.dwell_s == 300 and rules[3].params.classes == ("two_wheeler",)
    assert rules[4].params.dwell_s == 1.0
    # DwellRule ignores pixels: the frame may be passed or not.
    assert rules[0].update(T0, dets(), (400, 400), np.zeros((4, 4, 3), np.uint8)) == []
