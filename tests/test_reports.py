"""The monthly report (issue 12): a month of violations, reviews and cases made through the real API, every
figure of the report checked against counts made here from what the test did; a month without data says
so; the PDF opens and carries the Chinese text; the CLI writes the same report. SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import io
import random
from collections import Counter
from zoneinfo import ZoneInfo

import pytest
from pypdf import PdfReader
from typer.testing import CliRunner

from service.cli import app as cli_app
from workflow import future, make_user, past, post_event, reinspect, review

SHANGHAI = ZoneInfo("Asia/Shanghai")
RULES = ("fire_lane", "bin_overflow", "corridor_clutter", "ebike_indoor")
SECTIONS = {"environment": (("bin_overflow", 2), ("corridor_clutter", 1)),
            "fire_safety": (("fire_lane", 1), ("ebike_indoor", 1))}
SECTION_POINTS = 10


def local(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=SHANGHAI)


def expected_score(spots_by_rule: Counter) -> float:
    """The scorecard as the scoring table says: points each per case, a section loses at most its points."""
    return sum(SECTION_POINTS - min(sum(spots_by_rule[rule] * each for rule, each in items), SECTION_POINTS)
               for items in SECTIONS.values())


@pytest.fixture
def month_of_work(app, client, make_event, worker, evidence_bytes):
    """November 2026 at compound c1 (Shanghai time), made through the API, and what the test did."""
    rng = random.Random(12)
    supervisor = make_user(app, client, "boss", {"c1": "supervisor"})
    records = []  # (violation id, start, camera, zone, rule, verdict, reason)

    def add(start: dt.datetime, camera: str, zone: str, rule: str, verdict: str | None, reason: str | None = None):
        vid = post_event(client, make_event, worker, camera_id=camera, zone_id=zone, rule=rule,
                         start=start.astimezone(dt.timezone.utc))
        records.append({"id": vid, "start": start, "camera": camera, "zone": zone, "rule": rule,
                        "verdict": verdict, "reason": reason})

    # October: two cases left open (they are open cases of the November report), one false alarm
    add(local(2026, 10, 5, 9), "cam1", "oct-a", "fire_lane", "confirm")
    add(local(2026, 10, 31, 23, 30), "cam2", "oct-b", "bin_overflow", "confirm")  # 31 Oct 15:30 UTC: October
    add(local(2026, 10, 12, 9), "cam2", "oct-c", "ebike_indoor", "reject", "false_alarm")
    # November, the edges first: 1 Nov 00:30 Shanghai is still 31 October in UTC
    add(local(2026, 11, 1, 0, 30), "cam1", "z0", "fire_lane", "confirm")
    add(local(2026, 11, 30, 23, 59), "cam2", "z1", "bin_overflow", "reject", "not_a_violation")
    for _ in range(34):
        rule = rng.choice(RULES)
        start = local(2026, 11, rng.randint(1, 30), rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59))
        verdict = rng.choices(["confirm", "reject", None], weights=[55, 25, 20])[0]
        reason = rng.choice(["false_alarm", "not_a_violation", "duplicate"]) if verdict == "reject" else None
        add(start, rng.choice(["cam1", "cam2", "cam3"]), f"z{rng.randint(0, 2)}", rule, verdict, reason)
    # December 1 00:30 Shanghai (30 Nov 16:30 UTC): not November
    add(local(2026, 12, 1, 0, 30), "cam1", "dec-a", "corridor_clutter", "confirm")

    # reviews in the order the footage happened: the earliest confirmed violation of a spot opens its case
    for record in sorted(records, key=lambda r: r["start"]):
        if record["verdict"]:
            response = review(client, supervisor, record["id"], record["verdict"], record["reason"])
            assert response.status_code == 201, response.text
    case_of = {r["id"]: client.get(f"/api/v1/events/{r['id']}", headers=supervisor).json()["case_id"]
               for r in records if r["verdict"] == "confirm"}

    november = [r for r in records if r["start"].month == 11 and r["start"].year == 2026]
    openers = {}  # spot -> the case its first confirmed November violation opened
    for r in sorted(november, key=lambda r: r["start"]):
        if r["verdict"] == "confirm":
            openers.setdefault((r["camera"], r["zone"], r["rule"]), case_of[r["id"]])
    cases = sorted(openers.values())
    assert len(cases) >= 7 and len(set(cases)) == len(cases)

    def call(path: str, body: dict | None = None):
        response = client.post(f"/api/v1/cases/{path}", json=body if body is not None else None, headers=supervisor)
        assert response.status_code == 200, response.text

    def inspect(case_id: int, rule_active: bool):
        assert reinspect(client, worker, case_id, evidence_bytes["crop"], rule_active).status_code == 201

    fate = {}
    call(f"{cases[0]}/assign", {"assignee": "王师傅", "deadline": future(48)})  # closed on time
    call(f"{cases[0]}/rectify", {"note": "已清理"})
    inspect(cases[0], rule_active=False)
    call(f"{cases[0]}/close")
    fate[cases[0]] = "closed_on_time"
    call(f"{cases[1]}/assign", {"assignee": "李师傅", "deadline": past(2)})  # closed after its deadline
    inspect(cases[1], rule_active=False)
    call(f"{cases[1]}/close")
    fate[cases[1]] = "closed_late"
    call(f"{cases[2]}/assign", {"assignee": "张师傅", "deadline": past(2)})  # re-inspected, still there
    inspect(cases[2], rule_active=True)
    fate[cases[2]] = "overdue"
    call(f"{cases[3]}/assign", {"assignee": "赵师傅", "deadline": past(1)})  # deadline passed, nobody came
    fate[cases[3]] = "overdue"
    call(f"{cases[4]}/assign", {"assignee": "钱师傅", "deadline": future(24)})  # rectified in time
    call(f"{cases[4]}/rectify", {"note": "已整改"})
    fate[cases[4]] = "open_in_time"
    call(f"{cases[5]}/assign", {"assignee": "孙师傅", "deadline": future(24)})
    for case_id in cases[5:]:
        fate[case_id] = "open_in_time"
    october_cases = sorted({case_of[r["id"]] for r in records if r["start"].month == 10 and r["verdict"] == "confirm"})
    return {"supervisor": supervisor, "records": records, "november": november, "openers": openers, "fate": fate,
            "october_cases": october_cases, "inspected": {cases[0], cases[1], cases[2]}}


def test_monthly_report_figures_match_independent_counts(app, client, month_of_work, make_key):
    work = month_of_work
    viewer = make_user(app, client, "viewer", {"c1": "viewer"})
    response = client.get("/api/v1/reports/monthly", params={"compound": "c1", "month": "2026-11", "format": "json"},
                          headers=viewer)
    assert response.status_code == 200, response.text
    report = response.json()
    nov = work["november"]
    confirmed = [r for r in nov if r["verdict"] == "confirm"]
    rejected = [r for r in nov if r["verdict"] == "reject"]

    figures = report["violations"]
    assert report["has_data"] is True and report["timezone"] == "Asia/Shanghai"
    assert (report["first_day"], report["last_day"]) == ("2026-11-01", "2026-11-30")
    assert figures["found"] == len(nov) == 36
    assert figures["confirmed"] == len(confirmed)
    assert figures["rejected"] == len(rejected)
    assert figures["unreviewed"] == len(nov) - len(confirmed) - len(rejected)
    assert figures["false_alarm_rate"] == pytest.approx(len(rejected) / (len(confirmed) + len(rejected)))
    assert figures["rejected_by_reason"] == dict(Counter(r["reason"] for r in rejected))
    for rule in RULES:
        of_rule = [r for r in nov if r["rule"] == rule]
        got = figures["by_rule"].get(rule, {"found": 0, "confirmed": 0, "rejected": 0})
        assert (got["found"], got["confirmed"], got["rejected"]) == (
            len(of_rule), sum(r["verdict"] == "confirm" for r in of_rule), sum(r["verdict"] == "reject" for r in of_rule))

    fates = Counter(work["fate"].values())
    assert report["cases"] == {"opened": len(work["openers"]), "closed_on_time": fates["closed_on_time"],
                               "closed_late": fates["closed_late"], "overdue": fates["overdue"],
                               "open_in_time": fates["open_in_time"]}
    assert (fates["closed_on_time"], fates["closed_late"], fates["overdue"]) == (1, 1, 2)

    # the scorecard: one deduction per case (spot), sections capped; October had a fire lane and a bin
    spots_by_rule = Counter(rule for (_, _, rule) in work["openers"])
    score = expected_score(spots_by_rule)
    october_score = expected_score(Counter({"fire_lane": 1, "bin_overflow": 1}))
    card = report["scorecard"]
    assert card["score"] == score and card["points"] == 20
    assert {i["rule"]: i["count"] for s in card["sections"] for i in s["items"]} == {r: spots_by_rule[r] for r in RULES}
    assert report["previous_scorecard"]["period"] == "2026-10" and report["previous_scorecard"]["score"] == october_score
    assert report["score_change"] == score - october_score
    api_card = client.get("/api/v1/compounds/c1/scorecard", params={"period": "2026-11"}, headers=viewer).json()
    assert api_card["score"] == card["score"]
    assert [p[1] for p in report["trend"]] == [None, None, None, None, october_score, score]  # Jun-Sep: no data

    spots = Counter((r["camera"], r["zone"]) for r in confirmed)
    worst = sorted(spots.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1]))[:5]
    assert [(s["camera_id"], s["zone_id"], s["confirmed"]) for s in report["worst_spots"]] == [
        (camera, zone, n) for (camera, zone), n in worst]

    per_day = Counter((r["start"].day, r["verdict"] or "unreviewed") for r in nov)
    assert len(report["daily"]) == 30
    for day in report["daily"]:
        number = int(day["date"][8:])
        for state, verdict in (("confirmed", "confirm"), ("rejected", "reject"), ("unreviewed", "unreviewed")):
            assert day[state] == per_day[(number, verdict)], (day, state)

    # open cases: every case not closed that a violation up to the end of November opened (October's too)
    still_open = sorted([c for c, f in work["fate"].items() if not f.startswith("closed")] + work["october_cases"])
    assert report["open_cases_total"] == len(still_open)
    assert sorted(c["id"] for c in report["open_cases"]) == still_open
    listed = {c["id"]: c for c in report["open_cases"]}
    for case_id in still_open:
        assert listed[case_id]["before_key"], case_id  # the opening violation's snapshot
        assert bool(listed[case_id]["after_key"]) == (case_id in work["inspected"])
        assert listed[case_id]["overdue"] == (work["fate"].get(case_id) == "overdue")

    # the HTML shows the same figures and both snapshots of the re-inspected open case
    html = client.get("/api/v1/reports/monthly", params={"compound": "c1", "month": "2026-11"}, headers=viewer)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    page = html.text
    assert "月度报告" in page and f'id="found">{len(nov)}<' in page and f'id="confirmed">{len(confirmed)}<' in page
    assert f'id="overdue">2<' in page and f'id="score">{score:g}<' in page and "本月无数据" not in page
    overdue_inspected = next(c for c, f in work["fate"].items() if f == "overdue" and c in work["inspected"])
    block = page[page.index(f'id="case-{overdue_inspected}"'):]
    block = block[:block.index("\n</div>")]  # the case's own block (its inner divs end mid-line)
    assert block.count("data:image/jpeg;base64,") == 2
    worker_only = make_key("worker")
    assert client.get("/api/v1/reports/monthly", params={"compound": "c1", "month": "2026-11"},
                      headers=worker_only).status_code == 403


def test_month_without_data_says_so_and_the_pdf_has_the_chinese_text(app, client, month_of_work, settings, tmp_path):
    supervisor = month_of_work["supervisor"]
    empty = client.get("/api/v1/reports/monthly", params={"compound": "c1", "month": "2026-09", "format": "json"},
                       headers=supervisor).json()
    assert empty["has_data"] is False and empty["violations"]["found"] == 0 and empty["score_change"] is None
    assert empty["scorecard"]["has_data"] is False
    page = client.get("/api/v1/reports/monthly", params={"compound": "c1", "month": "2026-09"}, headers=supervisor).text
    assert "本月无数据" in page and 'id="score">无数据' in page
    for month in ("2026-13", "0001-01", "9999-12", "2026-1"):
        assert client.get("/api/v1/reports/monthly", params={"compound": "c1", "month": month},
                          headers=supervisor).status_code == 422, month

    pdf = client.get("/api/v1/reports/monthly", params={"compound": "c1", "month": "2026-11", "format": "pdf"},
                     headers=supervisor)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    reader = PdfReader(io.BytesIO(pdf.content))
    text = "".join(p.extract_text() for p in reader.pages)
    assert "月度报告" in text and "违规情况" in text and "整改情况" in text and "未销号整改单" in text
    fonts = {str(f.get_object().get("/BaseFont")) for p in reader.pages
             for f in (p["/Resources"].get("/Font") or {}).values()}
    assert fonts and all("Noto-Sans-CJK-SC" in name for name in fonts), fonts  # from fonts-noto-cjk
    empty_pdf = client.get("/api/v1/reports/monthly", params={"compound": "c1", "month": "2026-09", "format": "pdf"},
                           headers=supervisor)
    assert "本月无数据" in PdfReader(io.BytesIO(empty_pdf.content)).pages[0].extract_text()

    # the command writes the same report from the same database and evidence store
    out = tmp_path / "report.pdf"
    result = CliRunner().invoke(cli_app, ["report", "monthly", "--month", "2026-11", "--compound", "c1",
                                          "--format", "pdf", "--out", str(out), "--database-url",
                                          settings.database_url, "--storage-url", settings.storage_url])
    assert result.exit_code == 0, result.output
    assert "36 found" in result.output
    assert "月度报告" in PdfReader(out).pages[0].extract_text()
