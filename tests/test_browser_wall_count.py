"""The wall's alert count in headless Chromium when the site has more violations than the API counts:
"(1000+)" (the listing's total is a lower bound past 1000), and a new alert over the real event API
raises it to "(1001+)"."""
from __future__ import annotations

import datetime as dt

from playwright.sync_api import expect, sync_playwright

from browser_support import LiveServer, launch_chromium, log_in, make_evidence, post_event, screenshot, wait_until
from service.settings import Settings
from workflow import insert_violations


def test_wall_shows_a_capped_count_with_a_plus(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'ce.db'}", storage_url=f"file://{tmp_path / 'evidence'}")
    with LiveServer(settings) as server:
        insert_violations(server.app.state.sessions, 1001, dt.datetime(2026, 3, 1, tzinfo=dt.timezone.utc))
        server.user("guard", {"c1": "reviewer"})
        worker = server.key("worker", ["c1"])
        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 800})
                errors = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                log_in(page, server.url, "guard")
                expect(page.locator("#count")).to_have_text("(1000+)", timeout=15_000)
                expect(page.locator("#alerts li")).to_have_count(30)   # the wall's first page
                wait_until(lambda: page.evaluate("window.CE_WALL.feedState") == "open", 15, "the alert feed")
                stored = post_event(server.url, worker, make_evidence(), compound_id="c1", camera_id="cam1")
                expect(page.locator(f"#alert-{stored['id']}")).to_be_visible(timeout=5_000)
                expect(page.locator("#count")).to_have_text("(1001+)")
                screenshot(page, tmp_path, "wall-count")
                assert errors == []
            finally:
                browser.close()
