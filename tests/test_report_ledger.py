"""Ledger documents (台账, issue 12): the scheduler stepped with an injected clock — on the 1st it makes the
previous month's documents exactly once (a second pass and a restart add nothing), nothing on other
days or before the hour, a missed 1st is caught up at start-up; the API process runs it; the documents
are listed and downloaded through the API, scoped by compound, and the command makes a month on demand.
SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt
import hashlib
import io
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from pypdf import PdfReader
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from service import scorecard
from service.app import create_app
from service.cli import app as cli_app
from service.ledger import LedgerScheduler, due_month, generate_month
from service.models import Compound, LedgerDocument
from workflow import make_user, post_event, review

SHANGHAI = ZoneInfo("Asia/Shanghai")
ORGS = {"x1": ("甲物业", "东城街道"), "x2": ("甲物业", "西城街道"), "x3": (None, None)}


def local(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=SHANGHAI)


@pytest.fixture
def november(app, client, make_key, make_event):
    """Three compounds with November violations (x3 has no company or district), one reviewed each."""
    worker = make_key("worker", ["*"])
    boss = make_user(app, client, "boss", {c: "supervisor" for c in ORGS})
    for n, compound in enumerate(ORGS):
        ids = [post_event(client, make_event, worker, compound_id=compound, camera_id=f"{compound}-cam",
                          zone_id="lane1", start=local(2026, 11, 5 + n + k, 10).astimezone(dt.timezone.utc))
               for k in range(2)]
        assert review(client, boss, ids[0]).status_code == 201
    with app.state.sessions() as session:
        for compound, (company, district) in ORGS.items():
            # registered on 2 November (what decides which months a compound has documents for)
            session.execute(update(Compound).where(Compound.id == compound).values(
                company=company, district=district, created_at=local(2026, 11, 2, 9)))
        session.commit()
    return boss


def rows(app) -> list[tuple]:
    with app.state.sessions() as session:
        return sorted(session.execute(select(LedgerDocument.kind, LedgerDocument.scope, LedgerDocument.period,
                                             LedgerDocument.format, LedgerDocument.created_by)).all())


EXPECTED_NOVEMBER = [("bulletin_district", "东城街道", "2026-11", "pdf"), ("bulletin_district", "东城街道", "2026-11", "xlsx"),
                     ("bulletin_district", "西城街道", "2026-11", "pdf"), ("bulletin_district", "西城街道", "2026-11", "xlsx"),
                     ("monthly_company", "甲物业", "2026-11", "pdf"),
                     ("monthly_compound", "x1", "2026-11", "pdf"), ("monthly_compound", "x2", "2026-11", "pdf"),
                     ("monthly_compound", "x3", "2026-11", "pdf")]


def test_due_month_turns_at_the_hour_on_the_first_in_the_site_zone():
    assert due_month(local(2026, 12, 1, 0, 59), SHANGHAI) == "2026-10"
    assert due_month(local(2026, 12, 1, 1, 0), SHANGHAI) == "2026-11"
    assert due_month(local(2026, 12, 31, 23, 59), SHANGHAI) == "2026-11"
    assert due_month(local(2027, 1, 1, 1, 0), SHANGHAI) == "2026-12"
    # 1 December 01:00 in Shanghai is 30 November 17:00 UTC
    assert due_month(dt.datetime(2026, 11, 30, 17, 0, tzinfo=dt.timezone.utc), SHANGHAI) == "2026-11"
    assert due_month(local(2026, 12, 1, 6, 0), SHANGHAI, hour=7) == "2026-10"


def test_scheduler_makes_the_month_once_on_the_first(app, client, november):
    table = scorecard.load_scoring()
    now = [local(2026, 11, 30, 23, 0)]
    scheduler = LedgerScheduler(app.state.sessions, app.state.store, table, clock=lambda: now[0])
    # the days before: October is due, and no compound existed then or had a violation: nothing
    assert scheduler.run_once() == [] and rows(app) == []
    now[0] = local(2026, 12, 1, 0, 30)  # the 1st, before 01:00
    assert scheduler.run_once() == [] and rows(app) == []
    now[0] = local(2026, 12, 1, 1, 5)
    made = scheduler.run_once()
    assert sorted((d["kind"], d["scope"], d["period"], d["format"]) for d in made) == EXPECTED_NOVEMBER
    assert rows(app) == [(*row, "scheduler") for row in EXPECTED_NOVEMBER]
    now[0] = local(2026, 12, 1, 1, 35)
    assert scheduler.run_once() == []  # the same process again
    restarted = LedgerScheduler(app.state.sessions, app.state.store, table, clock=lambda: now[0])
    assert restarted.run_once() == []  # a restart on the 1st: nothing twice
    for day in range(2, 32):  # the other days of December
        now[0] = local(2026, 12, day, 9)
        assert LedgerScheduler(app.state.sessions, app.state.store, table, clock=lambda: now[0]).run_once() == []
    assert len(rows(app)) == len(EXPECTED_NOVEMBER)
    # by hand, the same month: nothing either
    assert generate_month(app.state.sessions, app.state.store, table, "2026-11", created_by="cli") == []

    # the documents: stored with their sha256, the right content
    with app.state.sessions() as session:
        docs = {(d.kind, d.scope, d.format): d for d in session.scalars(select(LedgerDocument))}
    for doc in docs.values():
        data = b"".join(app.state.store.open_range(doc.key))
        assert hashlib.sha256(data).hexdigest() == doc.sha256 and len(data) == doc.size
    x1 = docs[("monthly_compound", "x1", "pdf")]
    assert "月度报告" in PdfReader(io.BytesIO(b"".join(app.state.store.open_range(x1.key)))).pages[0].extract_text()
    assert docs[("monthly_company", "甲物业", "pdf")].compounds == ["x1", "x2"]
    sheet = load_workbook(io.BytesIO(b"".join(app.state.store.open_range(
        docs[("bulletin_district", "东城街道", "xlsx")].key))))["排名"]
    assert [cell.value for cell in sheet["C"][4:]] == ["x1"]

    # January 1st: December is due (the compounds existed in December, without violations: no data)
    now[0] = local(2027, 1, 1, 1, 0)
    made = scheduler.run_once()
    assert {(d["kind"], d["scope"]) for d in made if d["format"] == "pdf"} == {
        (k, s) for k, s, _, f in EXPECTED_NOVEMBER if f == "pdf"}
    assert all(d["period"] == "2026-12" for d in made)


def test_a_missed_first_is_caught_up_at_start_up(app, client, november, monkeypatch):
    monkeypatch.setattr("service.ledger.COMPOUNDS_PER_BATCH", 2)  # the compounds' reports in two batches
    table = scorecard.load_scoring()
    late = LedgerScheduler(app.state.sessions, app.state.store, table, clock=lambda: local(2026, 12, 9, 14))
    made = late.run_once()
    assert sorted((d["kind"], d["scope"], d["period"], d["format"]) for d in made) == EXPECTED_NOVEMBER
    assert late.run_once() == []


def test_the_api_process_runs_the_scheduler_and_serves_the_documents(app, client, november, settings, make_key):
    # a second API process on the same database, with the scheduler on and a clock on 1 December
    served = create_app(settings.model_copy(update={"report_schedule": True, "migrate_on_startup": False}))
    served.state.ledger_clock = lambda: local(2026, 12, 1, 2, 0)
    with TestClient(served) as other:
        assert served.state.ledger_scheduler.wait_passes(1, timeout_s=300)
        assert rows(app) == [(*row, "scheduler") for row in EXPECTED_NOVEMBER]

        boss = november
        listed = other.get("/api/v1/reports/ledger", params={"period": "2026-11"}, headers=boss)
        assert listed.status_code == 200 and listed.json()["total"] == len(EXPECTED_NOVEMBER)
        # a viewer of x1 only: x1's report and the east bulletin (x1 alone), not the company's (x1 and x2)
        x1_viewer = make_user(app, client, "x1viewer", {"x1": "viewer"})
        mine = other.get("/api/v1/reports/ledger", headers=x1_viewer).json()["items"]
        assert sorted((d["kind"], d["scope"], d["format"]) for d in mine) == [
            ("bulletin_district", "东城街道", "pdf"), ("bulletin_district", "东城街道", "xlsx"),
            ("monthly_compound", "x1", "pdf")]
        company_doc = next(d for d in listed.json()["items"] if d["kind"] == "monthly_company")
        assert other.get(f"/api/v1/reports/ledger/{company_doc['id']}", headers=x1_viewer).status_code == 403
        x3_doc = next(d for d in listed.json()["items"] if d["scope"] == "x3")
        assert other.get(f"/api/v1/reports/ledger/{x3_doc['id']}", headers=x1_viewer).status_code == 404
        assert other.get("/api/v1/reports/ledger", params={"compound": "x3"}, headers=x1_viewer).status_code == 404
        by_compound = other.get("/api/v1/reports/ledger", params={"compound": "x2"}, headers=boss).json()["items"]
        assert {d["scope"] for d in by_compound} == {"x2", "甲物业", "西城街道"}
        own = next(d for d in mine if d["kind"] == "monthly_compound")
        download = other.get(f"/api/v1/reports/ledger/{own['id']}", headers=x1_viewer)
        assert download.status_code == 200 and download.headers["content-type"] == "application/pdf"
        assert hashlib.sha256(download.content).hexdigest() == own["sha256"]
        assert "x1" in PdfReader(io.BytesIO(download.content)).pages[0].extract_text()
        assert other.get(f"/api/v1/reports/ledger/{own['id']}", headers=make_key("worker", ["x1"])).status_code == 403
        assert other.get("/api/v1/reports/ledger/999999", headers=boss).status_code == 404

    # a restart of that process on the 1st: nothing twice
    again = create_app(settings.model_copy(update={"report_schedule": True, "migrate_on_startup": False}))
    again.state.ledger_clock = lambda: local(2026, 12, 1, 3, 0)
    with TestClient(again):
        assert again.state.ledger_scheduler.wait_passes(1, timeout_s=120)
    with app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(LedgerDocument)) == len(EXPECTED_NOVEMBER)


def test_ledger_command_makes_a_month_on_demand(app, client, november, settings):
    args = ["report", "ledger", "--month", "2026-11", "--database-url", settings.database_url,
            "--storage-url", settings.storage_url]
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0, result.output
    assert f"{len(EXPECTED_NOVEMBER)} ledger documents made" in result.output
    assert rows(app) == [(*row, "cli") for row in EXPECTED_NOVEMBER]
    result = CliRunner().invoke(cli_app, args)
    assert result.exit_code == 0 and "0 ledger documents made" in result.output
    bad = CliRunner().invoke(cli_app, ["report", "ledger", "--month", "2026-13", "--database-url", settings.database_url])
    assert bad.exit_code == 2 and "invalid" in bad.output
