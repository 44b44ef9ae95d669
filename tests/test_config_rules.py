"""Rule parameters in the site file: per-rule models, documented defaults, strict overrides."""
import pytest
from pydantic import ValidationError

from vision.config import (RULE_PARAMS, BinOverflowParams, CorridorClutterParams, EbikeIndoorParams, FireLaneParams,
                           load_site_config)
from site_files import problems as config_error
from site_files import write

SITE = """\
version: 1
detector:
  model: model.onnx
rules:
  fire_lane: {dwell_s: 90}
compounds:
  - id: sunrise
    cameras:
      - id: bins-west
        source: clip.mp4
        zones:
          - id: bin-1
            kind: bin_station
            polygon: [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]
            rules: [bin_overflow]
            overrides:
              bin_overflow: {changed_fraction: 0.4, dwell_s: 300}
          - id: lift
            kind: elevator
            polygon: [[0.6, 0.1], [0.9, 0.1], [0.9, 0.5], [0.6, 0.5]]
            rules: [ebike_indoor]
            overrides:
              ebike_indoor: {elevator_dwell_s: 1.0, has_socket: false}
          - id: hall
            kind: corridor
            polygon: [[0.1, 0.6], [0.9, 0.6], [0.9, 0.9], [0.1, 0.9]]
            rules: [corridor_clutter]
            overrides:
              corridor_clutter: {zone_area_m2: 14.5}
"""


def problems(tmp_path, text) -> str:
    return str(config_error(tmp_path, text))


def test_each_rule_has_its_own_parameter_model_and_defaults():
    assert set(RULE_PARAMS) == {"fire_lane", "bin_overflow", "corridor_clutter", "ebike_indoor"}
    assert BinOverflowParams().classes == ("garbage",) and BinOverflowParams().dwell_s == 600
    assert CorridorClutterParams().dwell_s == 1800 and "box_or_parcel" in CorridorClutterParams().classes
    assert EbikeIndoorParams().classes == ("two_wheeler",) and EbikeIndoorParams().elevator_dwell_s <= 2.0


def test_overrides_reach_the_rule_and_site_sections_keep_their_classes(tmp_path):
    site = load_site_config(write(tmp_path, SITE))
    zones = {z.id: z for z in site.compounds[0].cameras[0].zones}
    bins = site.rule_params("bin_overflow", zones["bin-1"])
    assert isinstance(bins, BinOverflowParams) and bins.changed_fraction == 0.4 and bins.dwell_s == 300
    lift = site.rule_params("ebike_indoor", zones["lift"])
    assert isinstance(lift, EbikeIndoorParams) and lift.elevator_dwell_s == 1.0
    assert site.rule_params("corridor_clutter", zones["hall"]).zone_area_m2 == 14.5
    # Writing one key of a rule's section keeps the rule's default classes (not an empty list).
    assert isinstance(site.rules.fire_lane, FireLaneParams)
    assert site.rules.fire_lane.dwell_s == 90 and site.rules.fire_lane.classes == ("car", "truck_or_bus")


def test_key_of_another_rule_is_unknown_and_named_with_camera_and_zone(tmp_path):
    text = problems(tmp_path, SITE.replace("{zone_area_m2: 14.5}", "{zone_area_m2: 14.5, changed_fraction: 0.3}"))
    assert "overrides.corridor_clutter" in text and "changed_fraction" in text
    assert "camera bins-west, zone hall" in text and "unknown" in text


def test_out_of_range_values_are_named(tmp_path):
    text = problems(tmp_path, SITE.replace("changed_fraction: 0.4", "changed_fraction: 1.5"))
    assert "overrides.bin_overflow.changed_fraction" in text and "camera bins-west, zone bin-1" in text
    assert "less than or equal to 1" in text
    text = problems(tmp_path, SITE.replace("elevator_dwell_s: 1.0", "elevator_dwell_s: -1"))
    assert "overrides.ebike_indoor.elevator_dwell_s" in text and "zone lift" in text


def test_inconsistent_pair_is_explained(tmp_path):
    text = problems(tmp_path, SITE.replace("changed_fraction: 0.4", "changed_fraction: 0.05"))
    assert "clear_fraction (0.08) must be less than changed_fraction (0.05)" in text and "zone bin-1" in text
    with pytest.raises(ValidationError, match="short_s"):
        CorridorClutterParams(short_s=600, baseline_s=300)


def test_site_section_with_unknown_key_is_rejected_with_line(tmp_path):
    text = problems(tmp_path, SITE.replace("fire_lane: {dwell_s: 90}", "fire_lane: {dwell_s: 90, has_socket: true}"))
    assert "line 5" in text and "rules.fire_lane.has_socket" in text and "unknown key" in text


def test_fire_lane_waits_two_minutes_by_default():
    assert FireLaneParams().dwell_s == 120


@pytest.mark.parametrize("schedule, reason", [
    ("{windows: []}", "empty schedule"),
    ("{windows: [{days: [], start: '08:00', end: '20:00'}]}", "at least one day"),
    ("{windows: [{start: '08:00', end: '08:00'}]}", "the window is empty"),
])
def test_empty_schedules_are_refused_with_camera_zone_and_key(tmp_path, schedule, reason):
    text = problems(tmp_path, SITE.replace("rules: [corridor_clutter]", "rules: [corridor_clutter]\n            schedule: " + schedule))
    assert "camera bins-west, zone hall" in text and "zones[2].schedule" in text
    assert reason in text


def test_windows_that_arm_something_are_accepted(tmp_path):
    site = load_site_config(write(tmp_path, SITE.replace(
        "rules: [corridor_clutter]", "rules: [corridor_clutter]\n            schedule: {windows: [{start: '22:00', end: '06:00'}]}")))
    hall = {z.id: z for z in site.compounds[0].cameras[0].zones}["hall"]
    assert len(site.rule_params("corridor_clutter", hall).schedule.windows) == 1


def test_negative_dwell_and_polygon_outside_the_frame_are_named(tmp_path):
    text = problems(tmp_path, SITE.replace("dwell_s: 300", "dwell_s: -5"))
    assert "overrides.bin_overflow.dwell_s" in text and "camera bins-west, zone bin-1" in text
    text = problems(tmp_path, SITE.replace("[0.9, 0.1], [0.9, 0.5]", "[1.4, 0.1], [0.9, 0.5]"))
    assert "zone lift" in text and "polygon" in text
