"""Grid responsibility without a database: the site file's ``grid:``, ``building`` and ``floor`` (good and
bad input, errors naming the compound and the key), the most-specific-match rule on tiny hand-made areas,
and the rectification deadlines of the scoring table in the site's time zone."""
from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from service.grid import Area, Place, covers, most_specific
from service.scorecard import DEFAULT_SCORING, ScoringItem, load_scoring
from vision.config import load_site_config
from vision.errors import ConfigError

SHANGHAI = ZoneInfo("Asia/Shanghai")
SITE = """\
version: 1
detector:
  model: model.onnx
compounds:
  - id: sunrise
    grid:
      - {assignee: 物业经理 刘}
      - {building: "3", assignee: 3号楼 陈}
      - {building: "3", floor: 12, assignee: 12层 王}
      - {camera: gate, zone: lane, assignee: 保安 赵}
    cameras:
      - id: gate
        source: clip.mp4
        building: "3"
        floor: 12
        zones:
          - id: lane
            kind: fire_lane
            polygon: [[0.1, 0.5], [0.9, 0.5], [0.9, 0.9], [0.1, 0.9]]
            rules: [fire_lane]
          - id: lobby
            kind: lobby
            floor: 1
            polygon: [[0.1, 0.1], [0.5, 0.1], [0.5, 0.4], [0.1, 0.4]]
          - id: shed
            kind: parking
            building: 5号楼
            polygon: [[0.6, 0.1], [0.9, 0.1], [0.9, 0.4], [0.6, 0.4]]
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "clip.mp4").write_bytes(b"x")
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(tmp_path, text) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load_site_config(write(tmp_path, text))
    return info.value.problems


def test_grid_and_places_load(tmp_path):
    site = load_site_config(write(tmp_path, SITE))
    compound = site.compounds[0]
    assert [(g.level, g.assignee) for g in compound.grid] == [
        ("compound", "物业经理 刘"), ("building", "3号楼 陈"), ("floor", "12层 王"), ("zone", "保安 赵")]
    assert compound.grid[2].floor == "12"  # a number in YAML is kept as the floor's name
    gate = compound.cameras[0]
    lane, lobby, shed = gate.zones
    assert gate.place_of(lane) == ("3", "12")       # the camera's
    assert gate.place_of(lobby) == ("3", "1")       # the zone's floor in the camera's building
    assert gate.place_of(shed) == ("5号楼", None)    # another building: the camera's floor does not follow


@pytest.mark.parametrize("change, key, words", [
    # the entry's own shape
    ('{floor: 12, assignee: 12层 王}', "compounds[0].grid[2]", ["needs the building", "compound sunrise"]),
    ('{camera: gate, assignee: 12层 王}', "compounds[0].grid[2]", ["names both camera and zone"]),
    ('{camera: gate, zone: lane, building: "3", assignee: 12层 王}', "compounds[0].grid[2]", ["not both"]),
    ('{building: "3", floor: 12, assignee: "   "}', "compounds[0].grid[2].assignee", ["not blanks"]),
    ('{building: "3", floor: 12, assignee: "王\\t芳"}', "compounds[0].grid[2].assignee", ["should match pattern"]),
    ('{building: "3", floor: 12}', "compounds[0].grid[2].assignee", ["Field required"]),
    ('{building: yes, assignee: 王}', "compounds[0].grid[2].building", ["string"]),
    ('{building: "3", floor: 12, assignee: 王, phone: 138}', "compounds[0].grid[2].phone", ["unknown key"]),
    # against the compound's cameras, zones, buildings and floors
    ('{camera: gatex, zone: lane, assignee: 王}', "compounds[0].grid[2].camera", ["'gatex' is not a camera of compound sunrise"]),
    ('{camera: gate, zone: lanex, assignee: 王}', "compounds[0].grid[2].zone", ["camera gate of compound sunrise has no zone 'lanex'"]),
    ('{building: 3号楼, assignee: 王}', "compounds[0].grid[2].building", ["compound sunrise", "building '3号楼'", "'5号楼'"]),
    ('{building: "3", floor: 13, assignee: 王}', "compounds[0].grid[2].floor", ["floor '13' of building '3'"]),
    ('{building: "3", assignee: 又一个}', "compounds[0].grid[2]", ["the same building as grid[1]", "compound sunrise"]),
])
def test_bad_grid_entries_are_named_with_compound_line_and_key(tmp_path, change, key, words):
    found = problems(tmp_path, SITE.replace('{building: "3", floor: 12, assignee: 12层 王}', change))
    assert len(found) == 1, found
    [(where, reason)] = found
    assert where.startswith("line 9: ") and where.endswith(key), where
    for word in words:
        assert word in reason, reason


def test_floor_without_building_on_cameras_and_zones(tmp_path):
    no_building = SITE.replace('        building: "3"\n        floor: 12\n', '        floor: 12\n')
    found = problems(tmp_path, no_building)
    # the camera's floor, and the grid's building and floor entries that now match nothing
    assert any(w.endswith("compounds[0].cameras[0].floor") and "needs a building (compound sunrise, camera gate)" in r
               for w, r in found), found
    zone_floor = SITE.replace('        building: "3"\n        floor: 12\n', "").replace(
        '      - {building: "3", assignee: 3号楼 陈}\n      - {building: "3", floor: 12, assignee: 12层 王}\n', "")
    [(where, reason)] = problems(tmp_path, zone_floor)
    assert where.endswith("compounds[0].cameras[0].zones[1].floor")
    assert reason == "floor '1' needs a building (compound sunrise, camera gate, zone lobby)"


def test_example_site_file_has_a_grid():
    root = Path(__file__).resolve().parents[1]
    raw = yaml.safe_load((root / "configs" / "site.example.yaml").read_text(encoding="utf-8"))
    levels = {("building" in g) + ("floor" in g) + 3 * ("zone" in g) for g in raw["compounds"][0]["grid"]}
    assert levels == {0, 1, 2, 3}  # compound, building, floor and zone entries


# --- most specific match ---------------------------------------------------------------------------

WHOLE, B3, B3F12, B5 = Area(), Area("3"), Area("3", "12"), Area("5")
ZONE = Area(camera_id="gate", zone_id="lane")
ALL = [(WHOLE, "manager"), (B3, "b3"), (B3F12, "b3f12"), (B5, "b5"), (ZONE, "guard")]


def who(entries, place) -> str | None:
    best = most_specific(entries, place)
    return None if best is None else best[1]


def test_zone_beats_floor_beats_building_beats_compound():
    lane = Place("gate", "lane", "3", "12")
    assert who(ALL, lane) == "guard"
    assert who([e for e in ALL if e[1] != "guard"], lane) == "b3f12"
    assert who([e for e in ALL if e[1] not in ("guard", "b3f12")], lane) == "b3"
    assert who([(WHOLE, "manager")], lane) == "manager"
    assert who([], lane) is None
    # order of the entries does not matter
    assert who(list(reversed(ALL)), lane) == "guard"


def test_places_only_match_their_own_building_and_floor():
    assert who(ALL, Place("gate", "hall", "3", "1")) == "b3"            # another floor of building 3
    assert who(ALL, Place("yard", "bins", "5", "12")) == "b5"           # floor 12 of building 5 is not 3/12
    assert who(ALL, Place("yard", "bins", "7", None)) == "manager"      # a building nobody answers for
    assert who(ALL, Place("yard", "bins")) == "manager"                 # unplaced zone
    assert who([(B3, "b3"), (ZONE, "guard")], Place("yard", "bins")) is None
    assert who(ALL, Place("gate", "other", None, None)) == "manager"    # same camera, another zone
    assert not covers(ZONE, Place("lane", "gate"))                      # camera and zone are not interchangeable
    assert not covers(Area("3", "12"), Place("x", "y", "3", None))      # a building-wide place is on no floor


def test_area_problems():
    assert Area(floor="2").problem() == "floor '2' needs the building it is in"
    assert "both camera_id and zone_id" in Area(camera_id="gate").problem()
    assert "not both" in Area("3", camera_id="gate", zone_id="lane").problem()
    assert all(a.problem() is None for a, _ in ALL)


# --- deadlines ------------------------------------------------------------------------------------

def item(**deadline) -> ScoringItem:
    return ScoringItem(id="x", name="x", rule="fire_lane", points_each=1, unit="case", **deadline)


def test_deadline_in_hours_and_in_local_days():
    confirmed = dt.datetime(2026, 3, 4, 17, 30, tzinfo=dt.timezone.utc)  # 01:30 on 5 March in Shanghai
    assert item(deadline_hours=2).deadline(confirmed, SHANGHAI) == dt.datetime(2026, 3, 4, 19, 30, tzinfo=dt.timezone.utc)
    three_days = item(deadline_days=3).deadline(confirmed, SHANGHAI)
    # by the end of 8 March, Shanghai time (not of 7 March, which the UTC date would give)
    assert three_days.astimezone(SHANGHAI) == dt.datetime(2026, 3, 9, 0, 0, tzinfo=SHANGHAI)
    assert three_days.tzinfo == dt.timezone.utc
    # the time zone matters where a day turns: the same instant in UTC counts from 4 March
    assert item(deadline_days=3).deadline(confirmed, ZoneInfo("UTC")) == dt.datetime(2026, 3, 8, tzinfo=dt.timezone.utc)
    # a day with a daylight-saving change is still cut at local midnight
    new_york = ZoneInfo("America/New_York")
    assert item(deadline_days=1).deadline(dt.datetime(2026, 3, 7, 15, tzinfo=dt.timezone.utc), new_york) == \
        dt.datetime(2026, 3, 9, 0, 0, tzinfo=new_york)


@pytest.mark.parametrize("deadline, words", [({}, "exactly one"), ({"deadline_hours": 2, "deadline_days": 1}, "exactly one"),
                                            ({"deadline_hours": 0}, "greater than 0"), ({"deadline_days": 0}, "greater than or equal to 1"),
                                            ({"deadline_days": 1.5}, "integer"), ({"deadline_hours": 24 * 91}, "less than")])
def test_bad_deadlines_are_refused(tmp_path, deadline, words):
    with pytest.raises(ValueError, match=words):
        item(**deadline)
    # and in a scoring file, with the file named
    raw = yaml.safe_load(DEFAULT_SCORING.read_text(encoding="utf-8"))
    first = raw["sections"][0]["items"][0]
    first.pop("deadline_hours", None), first.pop("deadline_days", None)
    first.update(deadline)
    path = tmp_path / "scoring.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_scoring(path)
    assert info.value.path == str(path) and words in str(info.value)


def test_every_item_of_the_scoring_table_has_a_deadline():
    table = load_scoring()
    deadlines = {i.rule: (i.deadline_hours, i.deadline_days) for s in table.sections for i in s.items}
    assert deadlines == {"bin_overflow": (2, None), "corridor_clutter": (None, 3), "fire_lane": (1, None),
                         "ebike_indoor": (None, 1)}
