"""Company reports and bulletins (issue 12): a month of violations and reviews for six compounds of two
property companies in two districts, registered from a site file and made through the real API; every
figure of the company report and of the bulletins (order, ranks, ties, scores, items) is checked
against counts made here from what the test did. The XLSX is read back with openpyxl, the PDFs with
pypdf. Scope and bad input too. SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import io
import random
from collections import Counter
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader
from typer.testing import CliRunner

from service.catalog import register_site
from service.cli import app as cli_app
from vision.config import load_site_config
from workflow import future, make_user, past, post_event, reinspect, review

SHANGHAI = ZoneInfo("Asia/Shanghai")
MODEL = __import__("pathlib").Path(__file__).resolve().parent.parent / "models" / "compound-v1.onnx"
EACH = {"bin_overflow": 2, "corridor_clutter": 1, "fire_lane": 1, "ebike_indoor": 1}
ITEM_OF = {"bin_overflow": "overflowing_bin", "corridor_clutter": "corridor_clutter", "fire_lane": "fire_lane",
           "ebike_indoor": "illegal_charging"}
SECTIONS = (("bin_overflow", "corridor_clutter"), ("fire_lane", "ebike_indoor"))
SECTION_POINTS = 10
JIA, YI = "甲物业服务有限公司", "乙物业"
EAST, WEST = "东城区东华门街道", "西城街道"
COMPOUNDS = {"a1": (JIA, EAST), "a2": (JIA, EAST), "a3": (JIA, WEST),
             "b1": (YI, EAST), "b2": (YI, WEST), "b3": (YI, WEST)}
RULES = tuple(EACH)


def local(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=SHANGHAI)


def expected_score(spots_by_rule: Counter) -> float:
    """The scoring table by hand: points each per case (spot), a section loses at most its points."""
    return sum(SECTION_POINTS - min(sum(spots_by_rule[r] * EACH[r] for r in rules), SECTION_POINTS)
               for rules in SECTIONS)


def site_file(tmp_path) -> str:
    lines = ["version: 1", "timezone: Asia/Shanghai", f"detector: {{model: {MODEL}}}", "compounds:"]
    for compound, (company, district) in COMPOUNDS.items():
        lines += [f"  - id: {compound}", f"    name: {compound.upper()}小区", f"    company: {company}",
                  f"    district: {district}", "    cameras:"]
        lines += [f"      - {{id: {compound}-cam{k}, source: 'rtsp://127.0.0.1:8554/{compound}{k}'}}" for k in (1, 2)]
    path = tmp_path / "site.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def district_month(app, client, make_key, make_event, evidence_bytes, tmp_path):
    """November 2026 (Shanghai) at the six compounds, through the API, and what the test did."""
    with app.state.sessions() as session:
        register_site(session, load_site_config(site_file(tmp_path)))
    worker = make_key("worker", ["*"])
    boss = make_user(app, client, "boss", {c: "supervisor" for c in COMPOUNDS})
    rng = random.Random(1212)
    records = []

    def add(compound, start, camera, zone, rule, verdict, reason=None):
        vid = post_event(client, make_event, worker, compound_id=compound, camera_id=f"{compound}-{camera}",
                         zone_id=zone, rule=rule, start=start.astimezone(dt.timezone.utc))
        records.append({"id": vid, "compound": compound, "start": start, "spot": (camera, zone, rule),
                        "rule": rule, "verdict": verdict, "reason": reason})

    def noise(compound, count):  # rejected and unreviewed violations at spots never confirmed
        for i in range(count):
            verdict = rng.choice(["reject", None])
            add(compound, local(2026, 11, rng.randint(1, 30), rng.randint(0, 23), rng.randint(0, 59)), "cam2",
                f"n{i % 2}", rng.choice(RULES), verdict, "false_alarm" if verdict else None)

    # a2 and b1 lose the same points (two fire-lane cases and a bin): a tie in the east district
    for compound in ("a2", "b1"):
        add(compound, local(2026, 11, 3, 9), "cam1", "lane1", "fire_lane", "confirm")
        add(compound, local(2026, 11, 9, 9), "cam1", "lane1", "fire_lane", "confirm")  # joins its case
        add(compound, local(2026, 11, 20, 21), "cam1", "lane2", "fire_lane", "confirm")
        add(compound, local(2026, 11, 14, 7), "cam2", "bin1", "bin_overflow", "confirm")
        noise(compound, 3 if compound == "a2" else 2)
    # the others at random; a1 starts 1 Nov 00:30 Shanghai (31 Oct in UTC)
    add("a1", local(2026, 11, 1, 0, 30), "cam1", "lane1", "fire_lane", "confirm")
    for compound in ("a1", "a3", "b2"):
        for _ in range(7):
            rule = rng.choice(RULES)
            add(compound, local(2026, 11, rng.randint(1, 30), rng.randint(0, 23), rng.randint(0, 59)), "cam1",
                f"z{rng.randint(0, 3)}", rule, verdict := rng.choices(["confirm", "reject", None], weights=[60, 25, 15])[0],
                "not_a_violation" if verdict == "reject" else None)
        noise(compound, 2)
    # October: a1 and a2 have a previous month; b3 has October only (November: no data)
    add("a1", local(2026, 10, 10, 10), "cam1", "oct1", "bin_overflow", "confirm")
    add("a2", local(2026, 10, 11, 10), "cam1", "oct1", "corridor_clutter", "confirm")
    add("a2", local(2026, 10, 12, 10), "cam1", "oct2", "ebike_indoor", "confirm")
    add("b3", local(2026, 10, 13, 10), "cam1", "oct1", "fire_lane", "confirm")
    add("b3", local(2026, 12, 1, 0, 30), "cam1", "dec1", "fire_lane", "confirm")  # 30 Nov UTC, December here

    for record in sorted(records, key=lambda r: r["start"]):
        if record["verdict"]:
            assert review(client, boss, record["id"], record["verdict"], record["reason"]).status_code == 201
    case_of = {r["id"]: client.get(f"/api/v1/events/{r['id']}", headers=boss).json()["case_id"]
               for r in records if r["verdict"] == "confirm"}

    # per compound: its first November case closed on time, its second overdue, the rest open in time
    fate = {}
    for compound in COMPOUNDS:
        cases = sorted({case_of[r["id"]] for r in records if r["compound"] == compound and r["verdict"] == "confirm"
                        and r["start"].month == 11})
        for n, case_id in enumerate(cases):
            if n == 0:
                for path, body in ((f"{case_id}/assign", {"assignee": "王师傅", "deadline": future(48)}),
                                   (f"{case_id}/rectify", {"note": "已整改"})):
                    assert client.post(f"/api/v1/cases/{path}", json=body, headers=boss).status_code == 200
                assert reinspect(client, worker, case_id, evidence_bytes["crop"], rule_active=False).status_code == 201
                assert client.post(f"/api/v1/cases/{case_id}/close", headers=boss).status_code == 200
                fate[case_id] = "closed_on_time"
            elif n == 1:
                assert client.post(f"/api/v1/cases/{case_id}/assign", json={"assignee": "李师傅", "deadline": past(3)},
                                   headers=boss).status_code == 200
                fate[case_id] = "overdue"
            else:
                fate[case_id] = "open_in_time"
    return {"records": records, "case_of": case_of, "fate": fate, "boss": boss}


def expected_figures(work: dict, compound: str, first: dt.date, last: dt.date) -> dict:
    """What the test did at ``compound`` between two local dates (both included), counted here."""
    mine = [r for r in work["records"] if r["compound"] == compound and first <= r["start"].date() <= last]
    confirmed = [r for r in mine if r["verdict"] == "confirm"]
    spots = {r["spot"] for r in confirmed}
    cases = {work["case_of"][r["id"]] for r in confirmed}
    fates = Counter(work["fate"].get(c, "opened in another month") for c in cases)
    by_rule = Counter(rule for (_, _, rule) in spots)
    return {"found": len(mine), "confirmed": len(confirmed), "rejected": sum(r["verdict"] == "reject" for r in mine),
            "unreviewed": sum(r["verdict"] is None for r in mine), "cases": len(cases), "fates": fates,
            "by_rule": by_rule, "score": expected_score(by_rule) if mine else None}


NOV = (dt.date(2026, 11, 1), dt.date(2026, 11, 30))
OCT = (dt.date(2026, 10, 1), dt.date(2026, 10, 31))


def expected_ranking(work: dict, compounds: list[str], first: dt.date, last: dt.date) -> list[tuple]:
    """(rank, tie, compound, score) in bulletin order, ranked here: competition ranking, ties by id, no data last."""
    scores = {c: expected_figures(work, c, first, last)["score"] for c in compounds}
    scored = sorted((c for c in compounds if scores[c] is not None), key=lambda c: (-scores[c], c))
    out = []
    for c in scored:
        higher = sum(scores[o] > scores[c] for o in scored)
        tie = sum(scores[o] == scores[c] for o in scored) > 1
        out.append((higher + 1, tie, c, scores[c]))
    return out + [(None, False, c, None) for c in sorted(c for c in compounds if scores[c] is None)]


def test_company_report_and_bulletins_match_independent_counts(app, client, district_month, make_key):
    work = district_month
    viewer = make_user(app, client, "viewer", {c: "viewer" for c in COMPOUNDS})
    response = client.get("/api/v1/reports/company", params={"company": JIA, "month": "2026-11", "format": "json"},
                          headers=viewer)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["company"] == JIA and [row["compound_id"] for row in report["compounds"]] == ["a1", "a2", "a3"]
    totals = Counter()
    scores, changes = [], []
    for row in report["compounds"]:
        c = row["compound_id"]
        nov, octo = expected_figures(work, c, *NOV), expected_figures(work, c, *OCT)
        assert (row["found"], row["confirmed"], row["rejected"], row["unreviewed"]) == (
            nov["found"], nov["confirmed"], nov["rejected"], nov["unreviewed"]), c
        assert (row["cases_opened"], row["closed_on_time"], row["overdue"], row["open_in_time"], row["closed_late"]) == (
            nov["cases"], nov["fates"]["closed_on_time"], nov["fates"]["overdue"], nov["fates"]["open_in_time"], 0), c
        assert row["score"] == nov["score"] and row["previous_score"] == octo["score"], c
        change = None if nov["score"] is None or octo["score"] is None else nov["score"] - octo["score"]
        assert row["score_change"] == change, c
        assert row["district"] == COMPOUNDS[c][1] and row["compound_name"] == f"{c.upper()}小区"
        totals.update({k: nov[k] for k in ("found", "confirmed", "rejected", "unreviewed", "cases")})
        totals.update({f: nov["fates"][f] for f in ("closed_on_time", "overdue", "open_in_time")})
        scores += [nov["score"]] if nov["score"] is not None else []
        changes += [change] if change is not None else []
    t = report["totals"]
    assert (t["found"], t["confirmed"], t["rejected"], t["unreviewed"], t["cases_opened"]) == (
        totals["found"], totals["confirmed"], totals["rejected"], totals["unreviewed"], totals["cases"])
    assert (t["closed_on_time"], t["overdue"], t["open_in_time"]) == (
        totals["closed_on_time"], totals["overdue"], totals["open_in_time"])
    assert t["false_alarm_rate"] == pytest.approx(totals["rejected"] / (totals["confirmed"] + totals["rejected"]))
    assert (t["compounds"], t["compounds_with_data"]) == (3, len(scores))
    assert t["average_score"] == pytest.approx(sum(scores) / len(scores))
    assert t["average_change"] == pytest.approx(sum(changes) / len(changes))  # a1 and a2 have October
    assert len(changes) == 2
    # each compound's own section is its monthly report
    own = client.get("/api/v1/reports/monthly", params={"compound": "a2", "month": "2026-11", "format": "json"},
                     headers=viewer).json()
    assert report["reports"][1]["violations"] == own["violations"] and report["reports"][1]["cases"] == own["cases"]

    # company 乙物业: b3 has no November data — no score, never 100; not in the average
    yi = client.get("/api/v1/reports/company", params={"company": YI, "month": "2026-11", "format": "json"},
                    headers=viewer).json()
    b3 = next(row for row in yi["compounds"] if row["compound_id"] == "b3")
    assert b3["has_data"] is False and b3["score"] is None and b3["found"] == 0 and b3["previous_score"] == 1 * 19
    assert yi["totals"]["compounds_with_data"] == 2
    page = client.get("/api/v1/reports/company", params={"company": YI, "month": "2026-11"}, headers=viewer).text
    assert 'id="b3-no-data"' in page and "本月无数据" in page and 'id="b3-score">无数据' in page

    # bulletin of the east district: order, ranks, the a2/b1 tie, scores, items
    east = client.get("/api/v1/reports/bulletin", params={"district": EAST, "month": "2026-11", "format": "json"},
                      headers=viewer).json()
    expected = expected_ranking(work, ["a1", "a2", "b1"], *NOV)
    assert [(e["rank"], e["tie"], e["compound_id"], e["score"]) for e in east["ranking"]] == expected
    assert any(tie for _, tie, _, _ in expected), expected  # a2 and b1: the same points lost
    assert [e["compound_id"] for e in east["ranking"] if e["tie"]] == ["a2", "b1"]
    for entry in east["ranking"]:
        nov = expected_figures(work, entry["compound_id"], *NOV)
        assert {d["rule"]: (d["count"], d["points"]) for d in entry["deductions"]} == {
            rule: (n, n * EACH[rule]) for rule, n in nov["by_rule"].items()}
        assert (entry["found"], entry["confirmed"]) == (nov["found"], nov["confirmed"])
    item_totals = Counter()
    for c in ("a1", "a2", "b1"):
        item_totals.update(expected_figures(work, c, *NOV)["by_rule"])
    assert {i["rule"]: (i["count"], i["points"]) for i in east["items"]} == {
        rule: (item_totals[rule], item_totals[rule] * EACH[rule]) for rule in RULES}

    # the west district: b3 without data is listed last, unranked
    west = client.get("/api/v1/reports/bulletin", params={"district": WEST, "month": "2026-11", "format": "json"},
                      headers=viewer).json()
    assert [(e["rank"], e["tie"], e["compound_id"], e["score"]) for e in west["ranking"]] == \
        expected_ranking(work, ["a3", "b2", "b3"], *NOV)
    assert west["ranking"][-1]["compound_id"] == "b3" and west["ranking"][-1]["rank"] is None
    assert west["ranked"] == 2

    # from/to dates: the first half of November, the whole company 乙物业
    half = client.get("/api/v1/reports/bulletin", params={"company": YI, "from": "2026-11-01", "to": "2026-11-15",
                                                          "format": "json"}, headers=viewer).json()
    assert half["period"] == "2026-11-01~2026-11-15"
    assert [(e["rank"], e["tie"], e["compound_id"], e["score"]) for e in half["ranking"]] == \
        expected_ranking(work, ["b1", "b2", "b3"], dt.date(2026, 11, 1), dt.date(2026, 11, 15))

    # scope: a user of a1 and a2 only sees those in the company report and the bulletin of every compound
    partial = make_user(app, client, "partial", {"a1": "viewer", "a2": "viewer"})
    part = client.get("/api/v1/reports/company", params={"company": JIA, "month": "2026-11", "format": "json"},
                      headers=partial).json()
    assert [row["compound_id"] for row in part["compounds"]] == ["a1", "a2"]
    everything = client.get("/api/v1/reports/bulletin", params={"month": "2026-11", "format": "json"},
                            headers=partial).json()
    assert [e["compound_id"] for e in everything["ranking"]] == [c for _, _, c, _ in expected_ranking(
        work, ["a1", "a2"], *NOV)]
    assert client.get("/api/v1/reports/company", params={"company": YI, "month": "2026-11"},
                      headers=partial).status_code == 404
    assert client.get("/api/v1/reports/bulletin", params={"district": WEST, "month": "2026-11"},
                      headers=make_user(app, client, "eastonly", {"a1": "viewer"})).status_code == 404
    assert client.get("/api/v1/reports/company", params={"company": JIA, "month": "2026-11"},
                      headers=make_key("worker", ["a1"])).status_code == 403

    # bad input: clear 4xx
    bad = [({"district": "无此街道", "month": "2026-11"}, 404), ({"district": EAST, "month": "2026-13"}, 422),
           ({"district": EAST, "month": "2026-1"}, 422), ({"district": EAST, "from": "2026-11-20", "to": "2026-11-02"}, 422),
           ({"district": EAST, "from": "2026-11-01"}, 422), ({"district": EAST}, 422),
           ({"district": EAST, "month": "2026-11", "from": "2026-11-01", "to": "2026-11-02"}, 422),
           ({"district": EAST, "from": "2026-02-30", "to": "2026-03-02"}, 422),
           ({"district": EAST, "from": "2025-01-01", "to": "2026-11-02"}, 422),
           ({"district": EAST, "company": JIA, "month": "2026-11"}, 422),
           ({"district": " 东城", "month": "2026-11"}, 422), ({"district": "a/b", "month": "2026-11"}, 422)]
    for params, status in bad:
        response = client.get("/api/v1/reports/bulletin", params=params, headers=viewer)
        assert response.status_code == status, (params, response.text)
    assert "after" in client.get("/api/v1/reports/bulletin", params={"district": EAST, "from": "2026-11-20",
                                                                     "to": "2026-11-02"}, headers=viewer).json()["detail"]
    assert client.get("/api/v1/reports/company", params={"company": "无此公司", "month": "2026-11"},
                      headers=viewer).status_code == 404
    assert client.get("/api/v1/reports/company", params={"company": JIA, "month": "0001-01"},
                      headers=viewer).status_code == 422


def test_bulletin_xlsx_and_pdfs_and_commands(app, client, district_month, settings, tmp_path):
    work, boss = district_month, district_month["boss"]
    expected = expected_ranking(work, ["a1", "a2", "b1"], *NOV)
    xlsx = client.get("/api/v1/reports/bulletin", params={"district": EAST, "month": "2026-11", "format": "xlsx"},
                      headers=boss)
    assert xlsx.status_code == 200 and xlsx.headers["content-type"].startswith("application/vnd.openxmlformats")
    book = load_workbook(io.BytesIO(xlsx.content))
    sheet = book["排名"]
    assert EAST in sheet["A1"].value and "2026-11" in sheet["A1"].value
    header = [cell.value for cell in sheet[4]]
    rows = [dict(zip(header, [cell.value for cell in row])) for row in sheet.iter_rows(min_row=5)]
    assert [(r["排名 rank"], r["并列 tie"] == "并列", r["小区编号 compound"], r["得分 score"]) for r in rows] == expected
    for row in rows:
        nov = expected_figures(work, row["小区编号 compound"], *NOV)
        assert (row["发现 found"], row["确认 confirmed"]) == (nov["found"], nov["confirmed"])
        assert row["物业公司 company"] == COMPOUNDS[row["小区编号 compound"]][0]
        for rule in RULES:
            name = next(h for h in header if h.endswith("次数 count") and ITEM_NAMES[rule] in h)
            assert row[name] == nov["by_rule"][rule], (row["小区编号 compound"], rule)
    detail = list(book["扣分明细"].iter_rows(min_row=2, values_only=True))
    assert sum(r[5] for r in detail) == sum(expected_figures(work, c, *NOV)["by_rule"].total() for c in ("a1", "a2", "b1"))
    west = load_workbook(io.BytesIO(client.get("/api/v1/reports/bulletin", headers=boss, params={
        "district": WEST, "month": "2026-11", "format": "xlsx"}).content))["排名"]
    last = [cell.value for cell in list(west.iter_rows(min_row=5))[-1]]
    assert last[0] is None and last[2] == "b3" and last[6] == "无数据"  # no rank, no score: never 100

    pdf = client.get("/api/v1/reports/bulletin", params={"district": EAST, "month": "2026-11", "format": "pdf"},
                     headers=boss)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "小区考核通报" in text and "得分排名" in text and "并列" in text and "扣分项汇总" in text and EAST in text
    company_pdf = client.get("/api/v1/reports/company", params={"company": YI, "month": "2026-11", "format": "pdf"},
                             headers=boss)
    reader = PdfReader(io.BytesIO(company_pdf.content))
    text = "".join(p.extract_text() for p in reader.pages)
    assert YI in text and "公司汇总" in text and "各小区情况" in text and "本月无数据" in text and "违规情况" in text
    fonts = {str(f.get_object().get("/BaseFont")) for p in reader.pages
             for f in (p["/Resources"].get("/Font") or {}).values()}
    assert fonts and all("Noto-Sans-CJK" in name for name in fonts), fonts

    # the commands write the same from the same database
    out = tmp_path / "bulletin.xlsx"
    result = CliRunner().invoke(cli_app, ["report", "bulletin", "--district", EAST, "--month", "2026-11", "--format",
                                          "xlsx", "--out", str(out), "--database-url", settings.database_url])
    assert result.exit_code == 0, result.output
    again = [cell.value for cell in load_workbook(out)["排名"]["C"][4:]]
    assert again == [c for _, _, c, _ in expected]
    out = tmp_path / "company.pdf"
    result = CliRunner().invoke(cli_app, ["report", "company", "--company", YI, "--month", "2026-11", "--format", "pdf",
                                          "--out", str(out), "--database-url", settings.database_url])
    assert result.exit_code == 0, result.output
    assert YI in PdfReader(out).pages[0].extract_text() and "3 compounds (2 with data)" in result.output
    out = tmp_path / "bulletin.pdf"
    result = CliRunner().invoke(cli_app, ["report", "bulletin", "--district", WEST, "--month", "2026-11", "--out", str(out),
                                          "--database-url", settings.database_url])
    assert result.exit_code == 0, result.output
    assert "无数据" in "".join(p.extract_text() for p in PdfReader(out).pages)
    assert [line.split()[-1] for line in result.output.splitlines()[1:]][-1] == "data"  # b3: 无数据 no data, last
    for args in (["--district", "无此街道", "--month", "2026-11"], ["--district", EAST, "--from", "2026-11-09",
                                                                   "--to", "2026-11-01"]):
        result = CliRunner().invoke(cli_app, ["report", "bulletin", *args, "--out", str(tmp_path / "x.pdf"),
                                              "--database-url", settings.database_url])
        assert result.exit_code == 2 and "error:" in result.output, result.output


ITEM_NAMES = {"bin_overflow": "垃圾桶满溢", "corridor_clutter": "楼道堆物", "fire_lane": "占用消防通道",
              "ebike_indoor": "电动车违规停放充电"}


def test_site_file_company_and_district_are_validated_and_kept_in_sync(app, tmp_path):
    from service.models import Compound
    from vision.errors import ConfigError

    path = site_file(tmp_path)
    with app.state.sessions() as session:
        register_site(session, load_site_config(path))
        assert (session.get(Compound, "a1").company, session.get(Compound, "a1").district) == (JIA, EAST)
    text = open(path, encoding="utf-8").read()
    # removed from the file: cleared in the database at the next start
    open(path, "w", encoding="utf-8").write(text.replace(f"    company: {JIA}\n", "", 1))
    with app.state.sessions() as session:
        register_site(session, load_site_config(path))
        assert (session.get(Compound, "a1").company, session.get(Compound, "a1").district) == (None, EAST)
    for bad in ("' 甲物业'", "甲/乙", "''", "x" * 101):
        open(path, "w", encoding="utf-8").write(text.replace(f"company: {JIA}", f"company: {bad}", 1))
        with pytest.raises(ConfigError) as caught:
            load_site_config(path)
        assert "compounds[0].company" in str(caught.value), str(caught.value)
