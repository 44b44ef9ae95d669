"""Scorecard from configs/scoring.yaml: periods in Asia/Shanghai, per-item counts, section caps, ledger
CSV/XLSX and the trend chart — on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import io
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from service.scorecard import load_scoring, parse_period, previous_months
from workflow import make_user, post_event, review

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_periods_are_local_to_the_site():
    march = parse_period("2026-03", SHANGHAI)
    assert march.start == dt.datetime(2026, 2, 28, 16, 0, tzinfo=dt.timezone.utc)
    assert march.end == dt.datetime(2026, 3, 31, 16, 0, tzinfo=dt.timezone.utc)
    assert parse_period("2026-W10", SHANGHAI).start.date() == dt.date(2026, 3, 2)
    assert parse_period("2026-12", SHANGHAI).end.date() == dt.date(2027, 1, 1)
    assert previous_months("2026-02", 3) == ["2025-12", "2026-01", "2026-02"]
    with pytest.raises(ValueError):
        parse_period("2026-13", SHANGHAI)


def test_scoring_table_matches_the_standard():
    table = load_scoring()
    items = {i.rule: (i.points_each, i.unit) for s in table.sections for i in s.items}
    assert items == {"bin_overflow": (2, "bin"), "corridor_clutter": (1, "spot"), "fire_lane": (1, "case"),
                     "ebike_indoor": (1, "case")}
    assert table.timezone == "Asia/Shanghai"


def test_scorecard_counts_cases_caps_sections_and_exports(app, client, worker, make_event):
    reviewer = make_user(app, client, "rev", {"c1": "reviewer"})
    # six overflowing bins at six bin stations (12 points, capped at the section's 10), one car on a
    # fire lane, one rejected e-bike; one bin on 1 April 01:00 Shanghai = 31 March 17:00 UTC: April.
    bins = [post_event(client, make_event, worker, rule="bin_overflow", zone_id=f"bin{i}",
                       start=dt.datetime(2026, 3, 10, 2, i, tzinfo=dt.timezone.utc)) for i in range(6)]
    april = post_event(client, make_event, worker, rule="bin_overflow", zone_id="bin0",
                       start=dt.datetime(2026, 3, 31, 17, 0, tzinfo=dt.timezone.utc))
    fire = post_event(client, make_event, worker, start=dt.datetime(2026, 3, 11, 2, 0, tzinfo=dt.timezone.utc))
    ebike = post_event(client, make_event, worker, rule="ebike_indoor", zone_id="hall",
                       start=dt.datetime(2026, 3, 12, 2, 0, tzinfo=dt.timezone.utc))
    for vid in bins + [april, fire]:
        assert review(client, reviewer, vid).status_code == 201
    assert review(client, reviewer, ebike, verdict="reject", reason="false_alarm").status_code == 201

    card = client.get("/api/v1/compounds/c1/scorecard", params={"period": "2026-03"}, headers=reviewer).json()
    environment, fire_safety = card["sections"]
    assert environment["items"][0]["count"] == 6 and environment["items"][0]["deducted"] == 12
    assert environment["deducted_uncapped"] == 12 and environment["deducted"] == 10 and environment["score"] == 0
    assert [i["count"] for i in fire_safety["items"]] == [1, 0]
    assert (card["points"], card["deducted"], card["score"]) == (20, 11, 9)
    april_card = client.get("/api/v1/compounds/c1/scorecard", params={"period": "2026-04"}, headers=reviewer).json()
    assert april_card["deducted"] == 2
    assert client.get("/api/v1/compounds/c1/scorecard", params={"period": "March"},
                      headers=reviewer).status_code == 422

    ledger = client.get("/api/v1/compounds/c1/ledger.csv", params={"period": "2026-03"}, headers=reviewer)
    assert ledger.status_code == 200 and ledger.headers["content-type"].startswith("text/csv")
    lines = ledger.content.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("violation_id,start_time_local") and len(lines) == 1 + 8
    assert "垃圾桶满溢" in ledger.content.decode("utf-8-sig")
    assert any(ebike in line and ",reject,false_alarm," in line for line in lines)

    xlsx = client.get("/api/v1/compounds/c1/ledger.xlsx", params={"period": "2026-03"}, headers=reviewer)
    book = load_workbook(io.BytesIO(xlsx.content))
    assert book.sheetnames == ["ledger", "scorecard"] and book["ledger"].max_row == 9
    assert list(book["scorecard"].iter_rows(values_only=True))[-1][-1] == 9

    svg = client.get("/api/v1/compounds/c1/trend.svg", params={"until": "2026-04", "months": 3}, headers=reviewer)
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content
    png = client.get("/api/v1/compounds/c1/trend.png", params={"until": "2026-04"}, headers=reviewer)
    assert png.content.startswith(b"\x89PNG")


def test_trend_leaves_months_without_data_as_gaps(app, client, worker, make_event):
    """January and March have confirmed violations, February none at all: February is a gap marked
    无数据 / no data in the trend, not a full score (issue 12)."""
    import re

    viewer = make_user(app, client, "watcher", {"c1": "viewer"})
    reviewer = make_user(app, client, "rev", {"c1": "reviewer"})
    for start in (dt.datetime(2026, 1, 10, 2, tzinfo=dt.timezone.utc), dt.datetime(2026, 3, 10, 2, tzinfo=dt.timezone.utc)):
        assert review(client, reviewer, post_event(client, make_event, worker, start=start)).status_code == 201
    february = client.get("/api/v1/compounds/c1/scorecard", params={"period": "2026-02"}, headers=viewer).json()
    assert (february["has_data"], february["violations_found"]) == (False, 0)
    january = client.get("/api/v1/compounds/c1/scorecard", params={"period": "2026-01"}, headers=viewer).json()
    assert (january["has_data"], january["violations_found"], january["score"]) == (True, 1, 19)

    svg = client.get("/api/v1/compounds/c1/trend.svg", params={"until": "2026-03", "months": 3}, headers=viewer).text
    assert svg.count("<!-- no data -->") == svg.count("<!-- 无数据 -->") == 1
    marker = re.search(r'<path id="(m[0-9a-f]+)"[^>]*style="[^"]*#1f6feb', svg).group(1)
    assert svg.count(f'xlink:href="#{marker}"') == 2  # a point for January and March only
    line = re.search(r'<g id="line2d_\d+">\s*<path d="([^"]+)"[^>]*style="[^"]*stroke: #1f6feb', svg)
    assert line.group(1).count("M") == 2 and "L" not in line.group(1)  # no segment drawn across February
