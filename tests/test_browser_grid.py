"""The cases page in headless Chromium shows who answers for each case: the grid's person (tagged 网格) for a
zone the grid covers, a red 未分配 for one it does not, and the unassigned filter lists only the latter."""
from __future__ import annotations

import datetime as dt

import httpx
from playwright.sync_api import expect, sync_playwright

from browser_support import LiveServer, launch_chromium, log_in, make_evidence, post_event, screenshot
from service.settings import Settings
from test_grid_api import site_file

START = dt.datetime(2026, 3, 4, 2, 0, tzinfo=dt.timezone.utc)


def test_cases_page_shows_grid_assignee_and_unassigned(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ce.db'}", storage_url=f"file://{tmp_path / 'evidence'}",
                        site_config=site_file(tmp_path / "site"))
    with LiveServer(settings) as server:
        server.user("sup", {"c1": "supervisor", "c2": "supervisor"})
        worker, supervisor_key = server.key("worker", ["c1", "c2"]), server.key("supervisor", ["c1", "c2"])
        evidence = make_evidence()
        for compound, camera, zone in (("c1", "cam1", "lane1"), ("c2", "cam9", "lane9")):
            stored = post_event(server.url, worker, evidence, compound_id=compound, camera_id=camera, zone_id=zone,
                                start=START)
            decided = httpx.post(f"{server.url}/api/v1/events/{stored['id']}/review", json={"verdict": "confirm"},
                                 headers={"X-API-Key": supervisor_key}, timeout=30)
            assert decided.status_code == 201, decided.text
        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 800})
                errors = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                log_in(page, server.url, "sup", "/cases")
                rows = page.locator("#cases tbody tr")
                expect(rows).to_have_count(2, timeout=15_000)
                graded = rows.filter(has_text="保安 赵")
                expect(graded.locator("td.assignee .tag.grid")).to_have_text("网格")
                expect(rows.filter(has_text="未分配").locator("td.assignee .tag.unassigned")).to_have_count(1)
                graded.click()
                expect(page.locator("#detail .assignment")).to_contain_text("保安 赵 · 网格自动派单")
                screenshot(page, tmp_path, "cases-grid")
                page.locator("#unassigned").check()
                expect(rows).to_have_count(1)
                expect(rows.first).to_contain_text("未分配")
                rows.first.click()
                expect(page.locator("#detail .assignment")).to_contain_text("网格中没有负责该区域的人员")
                screenshot(page, tmp_path, "cases-unassigned")
                assert errors == []
            finally:
                browser.close()
