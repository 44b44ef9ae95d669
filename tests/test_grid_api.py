"""Grid responsibility through the real API on SQLite and PostgreSQL: the site file's grid and places are
stored at start-up; a confirmed violation's case goes to the most specific entry with its item's deadline,
audited as the system's doing; no entry → unassigned and listed as such; manual reassignment; grid
entries listed, added, changed and removed with role checks; bad input is 4xx and stores nothing."""
from __future__ import annotations

import datetime as dt
import textwrap
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.models import utcnow
from service.settings import Settings
from workflow import audit_count, future, make_user, post_event, review

SHANGHAI = ZoneInfo("Asia/Shanghai")
START = dt.datetime(2026, 3, 4, 2, 0, tzinfo=dt.timezone.utc)
POLY = "[[0.1, 0.5], [0.9, 0.5], [0.9, 0.9], [0.1, 0.9]]"
SITE = f"""\
version: 1
detector:
  model: model.onnx
compounds:
  - id: c1
    name: 阳光花园
    grid:
      - {{assignee: 物业经理 刘}}
      - {{building: "3", assignee: 3号楼 陈}}
      - {{building: "3", floor: 12, assignee: 12层 王}}
      - {{camera: cam1, zone: lane1, assignee: 保安 赵}}
    cameras:
      - id: cam1
        source: clip.mp4
        building: "3"
        floor: 12
        zones:
          - {{id: lane1, kind: fire_lane, polygon: {POLY}, rules: [fire_lane]}}
          - {{id: hall, kind: corridor, polygon: {POLY}, rules: [corridor_clutter]}}
          - {{id: lobby, kind: lobby, floor: 1, polygon: {POLY}, rules: [ebike_indoor]}}
      - id: cam2
        source: clip.mp4
        building: "5"
        zones:
          - {{id: bins, kind: bin_station, polygon: {POLY}, rules: [bin_overflow]}}
  - id: c2
    cameras:
      - id: cam9
        source: clip.mp4
        building: "3"
        floor: 12
        zones:
          - {{id: lane9, kind: fire_lane, polygon: {POLY}, rules: [fire_lane]}}
"""


def site_file(tmp_path, text: str = SITE):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "clip.mp4").write_bytes(b"x")
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def grid_settings(tmp_path, database_url, evidence_dir) -> Settings:
    return Settings(database_url=database_url, storage_url=f"file://{evidence_dir}", max_upload_mb=5,
                    site_config=site_file(tmp_path), migrate_on_startup=True)


@pytest.fixture
def app(grid_settings):  # overrides conftest's app: this one knows the site file
    return create_app(grid_settings)


@pytest.fixture
def people(app, client):
    return {"reviewer": make_user(app, client, "rev", {"c1": "reviewer", "c2": "reviewer"}),
            "supervisor": make_user(app, client, "sup", {"c1": "supervisor", "c2": "supervisor"}),
            "viewer": make_user(app, client, "view", {"c1": "viewer"})}


def confirm(client, make_event, worker, reviewer, **event) -> dict:
    """Post a violation, confirm it, and return its case as the API shows it."""
    vid = post_event(client, make_event, worker, **event)
    before = utcnow()
    assert review(client, reviewer, vid).status_code == 201
    after = utcnow()
    case_id = client.get(f"/api/v1/events/{vid}", headers=reviewer).json()["case_id"]
    case = client.get(f"/api/v1/cases/{case_id}", headers=reviewer).json()
    case["_confirmed_between"] = (before, after)
    return case


def test_confirmed_case_goes_to_the_most_specific_entry_with_its_deadline(app, client, make_key, make_event, people):
    worker = make_key("worker", ["c1", "c2"])
    reviewer, supervisor = people["reviewer"], people["supervisor"]
    cases = {name: confirm(client, make_event, worker, reviewer, start=START + dt.timedelta(minutes=i), **event)
             for i, (name, event) in enumerate({
                 "zone": {"zone_id": "lane1"},                                           # its own zone entry
                 "floor": {"zone_id": "hall", "rule": "corridor_clutter"},               # building 3, floor 12
                 "building": {"zone_id": "lobby", "rule": "ebike_indoor"},               # building 3, floor 1
                 "unplaced": {"zone_id": "drawn-later"},                                 # not in the file: the camera's place
                 "compound": {"camera_id": "cam2", "zone_id": "bins", "rule": "bin_overflow"},  # building 5: nobody
                 "nobody": {"compound_id": "c2", "camera_id": "cam9", "zone_id": "lane9"},      # c2 has no grid
             }.items())}
    assert {n: c["assignee"] for n, c in cases.items()} == {
        "zone": "保安 赵", "floor": "12层 王", "building": "3号楼 陈", "unplaced": "12层 王", "compound": "物业经理 刘",
        "nobody": None}
    assert {n: c["assigned_by"] for n, c in cases.items()} == {
        "zone": "grid", "floor": "grid", "building": "grid", "unplaced": "grid", "compound": "grid", "nobody": None}

    def deadline(name: str) -> dt.datetime:
        return dt.datetime.fromisoformat(cases[name]["deadline"])

    # fire lane 1 h and bin 2 h after the confirmation; clutter by the end of the 3rd local day, e-bike of the 1st
    for name, hours in (("zone", 1), ("unplaced", 1), ("compound", 2)):
        before, after = cases[name]["_confirmed_between"]
        assert before + dt.timedelta(hours=hours) <= deadline(name) <= after + dt.timedelta(hours=hours)
    for name, days in (("floor", 3), ("building", 1)):
        before, after = cases[name]["_confirmed_between"]
        ends = {dt.datetime.combine(t.astimezone(SHANGHAI).date() + dt.timedelta(days=days + 1), dt.time(0),
                                    tzinfo=SHANGHAI) for t in (before, after)}
        assert deadline(name) in ends
        assert deadline(name).astimezone(SHANGHAI).time() == dt.time(0)
    assert cases["nobody"]["deadline"] is None

    # unassigned cases are visible as such: listed by `assigned=false`, and the opening audit entry says why
    unassigned = client.get("/api/v1/cases", params={"assigned": "false"}, headers=supervisor).json()
    assert [c["id"] for c in unassigned["items"]] == [cases["nobody"]["id"]]
    assigned = client.get("/api/v1/cases", params={"assigned": "true", "compound_id": "c1"}, headers=supervisor).json()
    assert assigned["total"] == 5
    log = client.get("/api/v1/audit", params={"entity": "case", "entity_id": str(cases["nobody"]["id"])},
                     headers=supervisor).json()["items"]
    assert [e["action"] for e in log] == ["open"] and log[0]["after"]["grid"] is None

    # the automatic assignment is audited: by the system, which entry matched, who confirmed, the deadline rule
    log = client.get("/api/v1/audit", params={"entity": "case", "entity_id": str(cases["floor"]["id"])},
                     headers=supervisor).json()["items"]
    assert [e["action"] for e in log] == ["open", "auto_assign"]
    auto = log[1]
    assert (auto["actor"], auto["before"]["assignee"], auto["after"]["assignee"]) == ("system", None, "12层 王")
    assert auto["after"]["matched"] == "floor" and (auto["after"]["building"], auto["after"]["floor"]) == ("3", "12")
    assert auto["after"]["confirmed_by"] == log[0]["actor"] and log[0]["actor"].startswith("user:")
    assert auto["after"]["deadline_rule"] == "corridor_clutter: end of day 3 (site time zone)"
    grid = client.get("/api/v1/compounds/c1/grid", headers=supervisor).json()
    floor_entry = next(e for e in grid["items"] if e["level"] == "floor")
    assert auto["after"]["grid_entry_id"] == floor_entry["id"]

    # a second violation of the same spot joins the case; the assignment is not redone
    joined = confirm(client, make_event, worker, reviewer, start=START + dt.timedelta(hours=2), zone_id="hall",
                     rule="corridor_clutter")
    assert joined["id"] == cases["floor"]["id"] and joined["deadline"] == cases["floor"]["deadline"]

    # a bulk confirmation assigns the same way (here: an unplaced zone takes its camera's floor)
    bulk_id = post_event(client, make_event, worker, start=START + dt.timedelta(hours=3), zone_id="stairs",
                         rule="ebike_indoor")
    bulk = client.post("/api/v1/reviews/bulk", headers=reviewer, json={"verdict": "confirm", "violation_ids": [bulk_id]})
    assert bulk.status_code == 200 and bulk.json()[0]["status"] == 201, bulk.text
    bulk_case = client.get(f"/api/v1/cases/{client.get(f'/api/v1/events/{bulk_id}', headers=reviewer).json()['case_id']}",
                           headers=reviewer).json()
    assert (bulk_case["assignee"], bulk_case["assigned_by"]) == ("12层 王", "grid")
    assert dt.datetime.fromisoformat(bulk_case["deadline"]).astimezone(SHANGHAI).time() == dt.time(0)

    # manual reassignment keeps working and says so
    new_deadline = future(72)
    moved = client.post(f"/api/v1/cases/{cases['floor']['id']}/assign", headers=supervisor,
                        json={"assignee": "外包保洁 孙", "deadline": new_deadline})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["assignee"], moved.json()["assigned_by"]) == ("外包保洁 孙", "manual")
    assert dt.datetime.fromisoformat(moved.json()["deadline"]) == dt.datetime.fromisoformat(new_deadline)
    nobody = client.post(f"/api/v1/cases/{cases['nobody']['id']}/assign", headers=supervisor,
                         json={"assignee": "c2 物业", "deadline": new_deadline})
    assert nobody.status_code == 200 and nobody.json()["assigned_by"] == "manual"
    # an assigned case can be rectified at once (it has its deadline)
    rectified = client.post(f"/api/v1/cases/{cases['zone']['id']}/rectify", headers=reviewer, json={"note": "车已挪走"})
    assert rectified.status_code == 200 and rectified.json()["state"] == "rectified"


def test_grid_listed_from_the_site_file_and_resolved(client, people):
    viewer = people["viewer"]
    grid = client.get("/api/v1/compounds/c1/grid", headers=viewer)
    assert grid.status_code == 200, grid.text
    body = grid.json()
    assert [(e["level"], e["assignee"], e["source"]) for e in body["items"]] == [
        ("compound", "物业经理 刘", "site"), ("building", "3号楼 陈", "site"), ("floor", "12层 王", "site"),
        ("zone", "保安 赵", "site")]
    assert {(p["camera_id"], p["zone_id"]): (p["building"], p["floor"]) for p in body["places"]} == {
        ("cam1", None): ("3", "12"), ("cam1", "lane1"): ("3", "12"), ("cam1", "hall"): ("3", "12"),
        ("cam1", "lobby"): ("3", "1"), ("cam2", None): ("5", None), ("cam2", "bins"): ("5", None)}
    resolved = client.get("/api/v1/compounds/c1/grid/resolve", params={"camera_id": "cam1", "zone_id": "lobby"},
                          headers=viewer).json()
    assert (resolved["building"], resolved["floor"], resolved["entry"]["assignee"]) == ("3", "1", "3号楼 陈")
    assert client.get("/api/v1/compounds/c2/grid", headers=viewer).status_code == 404  # foreign to this viewer
    # another compound's camera has no place here (c2's building 3, floor 12 is neither revealed nor matched)
    foreign = client.get("/api/v1/compounds/c1/grid/resolve", params={"camera_id": "cam2", "zone_id": "bins"},
                         headers=viewer).json()
    assert foreign["building"] == "5"
    foreign = client.get("/api/v1/compounds/c1/grid/resolve", params={"camera_id": "cam9", "zone_id": "lane9"},
                         headers=viewer).json()
    assert (foreign["building"], foreign["floor"], foreign["entry"]["level"]) == (None, None, "compound")


def _grid(client, headers, compound="c1") -> list[dict]:
    return client.get(f"/api/v1/compounds/{compound}/grid", headers=headers).json()["items"]


def test_grid_crud_roles_and_bad_input(app, client, make_key, people):
    supervisor, viewer = people["supervisor"], people["viewer"]
    admin = make_user(app, client, "adm", {"*": "admin"})
    url = "/api/v1/compounds/c1/grid"
    created = client.post(url, headers=supervisor, json={"building": "5", "assignee": "5号楼 周"})
    assert created.status_code == 201, created.text
    entry = created.json()
    assert (entry["level"], entry["building"], entry["floor"], entry["source"]) == ("building", "5", None, "api")
    resolved = client.get(f"{url}/resolve", params={"camera_id": "cam2", "zone_id": "bins"}, headers=viewer).json()
    assert resolved["entry"]["id"] == entry["id"]

    stored, audited = _grid(client, viewer), audit_count(app)
    refused = {
        "viewer may not add": (viewer, "POST", url, {"building": "5", "floor": "1", "assignee": "x"}, 403),
        "worker may not add": (make_key("worker", ["c1"]), "POST", url, {"assignee": "x", "building": "5", "floor": "2"}, 403),
        "reviewer may not change": (make_user(app, client, "rev2", {"c1": "reviewer"}), "PUT", f"{url}/{entry['id']}",
                                    {"building": "5", "assignee": "y"}, 403),
        "foreign compound": (make_user(app, client, "other", {"c2": "supervisor"}), "POST", url, {"assignee": "x"}, 404),
        "the area is taken": (supervisor, "POST", url, {"building": "5", "assignee": "又一个"}, 409),
        "taken by a site entry": (supervisor, "POST", url, {"building": "3", "floor": 12, "assignee": "x"}, 409),
        "floor without building": (supervisor, "POST", url, {"floor": "1", "assignee": "x"}, 422),
        "half a zone": (supervisor, "POST", url, {"camera_id": "cam1", "assignee": "x"}, 422),
        "zone and building": (supervisor, "POST", url, {"camera_id": "cam1", "zone_id": "hall", "building": "3",
                                                        "assignee": "x"}, 422),
        "unknown building": (supervisor, "POST", url, {"building": "9", "assignee": "x"}, 422),
        "unknown floor": (supervisor, "POST", url, {"building": "3", "floor": "40", "assignee": "x"}, 422),
        "camera of another compound": (admin, "POST", url, {"camera_id": "cam9", "zone_id": "lane9", "assignee": "x"}, 422),
        "unknown zone": (supervisor, "POST", url, {"camera_id": "cam1", "zone_id": "roof", "assignee": "x"}, 422),
        "blank assignee": (supervisor, "POST", url, {"building": "5", "floor": "3", "assignee": "  "}, 422),
        "no assignee": (supervisor, "POST", url, {"building": "5", "floor": "3"}, 422),
        "unknown key": (supervisor, "POST", url, {"building": "5", "floor": "3", "assignee": "x", "phone": "1"}, 422),
        "building a list": (supervisor, "POST", url, {"building": ["5"], "assignee": "x"}, 422),
        "long assignee": (supervisor, "POST", url, {"assignee": "x" * 201}, 422),
        "NUL in the assignee": (supervisor, "POST", url, {"building": "5", "floor": "3", "assignee": "王\x00芳"}, 422),
        "newline in a building": (supervisor, "POST", url, {"building": "5\n", "floor": "3", "assignee": "x"}, 422),
        "NUL in a floor": (supervisor, "PUT", f"{url}/{entry['id']}", {"building": "5", "floor": "\x00", "assignee": "x"}, 422),
        "bad compound id": (supervisor, "POST", "/api/v1/compounds/C1!/grid", {"assignee": "x"}, 422),
        "site entry is read-only": (supervisor, "PUT", f"{url}/{_grid(client, viewer)[0]['id']}", {"assignee": "x"}, 409),
        "site entry stays": (supervisor, "DELETE", f"{url}/{_grid(client, viewer)[0]['id']}", None, 409),
        "no such entry": (supervisor, "DELETE", f"{url}/999999", None, 404),
        "entry of another compound": (supervisor, "DELETE", f"/api/v1/compounds/c2/grid/{entry['id']}", None, 404),
        "update to a taken area": (supervisor, "PUT", f"{url}/{entry['id']}", {"building": "3", "assignee": "x"}, 409),
    }
    for name, (headers, method, target, body, expected) in refused.items():
        response = client.request(method, target, headers=headers, **({"json": body} if body is not None else {}))
        assert response.status_code == expected, f"{name}: {response.status_code} {response.text}"
    assert _grid(client, viewer) == stored and audit_count(app) == audited, "a refused request changed something"

    # the whole compound of c2 through the API (no site grid there), a zone entry in c1
    c2_whole = client.post("/api/v1/compounds/c2/grid", headers=supervisor, json={"assignee": "c2 物业"})
    assert c2_whole.status_code == 201 and c2_whole.json()["level"] == "compound"
    zone = client.post(url, headers=admin, json={"camera_id": "cam2", "zone_id": "bins", "assignee": "垃圾站 吴"})
    assert zone.status_code == 201 and zone.json()["level"] == "zone"

    changed = client.put(f"{url}/{entry['id']}", headers=supervisor, json={"building": 5, "floor": None, "assignee": "5号楼 郑"})
    assert changed.status_code == 200, changed.text
    assert (changed.json()["assignee"], changed.json()["building"]) == ("5号楼 郑", "5")
    assert client.delete(f"{url}/{zone.json()['id']}", headers=supervisor).status_code == 204
    resolved = client.get(f"{url}/resolve", params={"camera_id": "cam2", "zone_id": "bins"}, headers=viewer).json()
    assert resolved["entry"]["assignee"] == "5号楼 郑"  # the zone entry is gone: the building's again
    log = client.get("/api/v1/audit", params={"entity": "grid_entry", "compound_id": "c1"}, headers=supervisor).json()
    api_actions = [(e["action"], e["actor"].split(":")[0]) for e in log["items"] if e["actor"] != "system"]
    assert sorted(api_actions) == sorted([("create", "user"), ("create", "user"), ("update", "user"), ("delete", "user")])


def test_site_file_changes_replace_site_entries_at_start_up(tmp_path, grid_settings, client, people):
    supervisor = people["supervisor"]
    # an API entry for building 5, then a new site file that names building 5 and drops the zone entry
    made = client.post("/api/v1/compounds/c1/grid", headers=supervisor, json={"building": "5", "assignee": "API 周"})
    assert made.status_code == 201
    changed = SITE.replace("      - {camera: cam1, zone: lane1, assignee: 保安 赵}\n",
                           '      - {building: "5", assignee: 文件 冯}\n').replace("3号楼 陈", "3号楼 新楼长")
    restarted = create_app(grid_settings.model_copy(update={"site_config": site_file(tmp_path / "v2", changed)}))
    with TestClient(restarted) as again:
        items = _grid(again, supervisor)
    assert [(e["level"], e["building"], e["assignee"], e["source"]) for e in items] == [
        ("compound", None, "物业经理 刘", "site"), ("building", "3", "3号楼 新楼长", "site"),
        ("building", "5", "文件 冯", "site"), ("floor", "3", "12层 王", "site")]
    assert items[2]["id"] == made.json()["id"]  # the API entry was taken over by the file, not duplicated
