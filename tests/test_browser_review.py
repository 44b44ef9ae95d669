"""The review page in headless Chromium against a real uvicorn server: a reviewer logs in and decides 20
violations with the keyboard alone; times are shown in the site's zone; English is one click away; a
violation claimed by another reviewer cannot be decided."""
from __future__ import annotations

import datetime as dt

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from browser_support import (PASSWORD, LiveServer, launch_chromium, make_evidence, post_event, screenshot, site_file,
                             wait_until)
from service.settings import Settings

COMPOUND, CAMERA = "demo-compound", "demo-gate"
START = dt.datetime(2026, 3, 1, 10, 0, 0, tzinfo=dt.timezone.utc)  # 18:00 in Asia/Shanghai
# what the reviewer presses for the n-th violation, and the decision it stands for
KEYS = [(["c"], ("confirm", None)), (["1"], ("reject", "false_alarm")), (["r", "2"], ("reject", "not_a_violation")),
        (["Enter"], ("confirm", None)), (["3"], ("reject", "duplicate")), (["4"], ("reject", "already_handled"))]


@pytest.fixture
def review_server(database_url, tmp_path):
    settings = Settings(database_url=database_url, storage_url=f"file://{tmp_path / 'evidence'}",
                        site_config=site_file(tmp_path))
    with LiveServer(settings) as server:
        yield server


def test_reviewer_decides_twenty_violations_with_the_keyboard_alone(review_server, tmp_path):
    server = review_server
    server.user("reviewer1", {COMPOUND: "reviewer"})
    worker_key, viewer_key = server.key("worker"), server.key("viewer")
    evidence = make_evidence()
    posted = [post_event(server.url, worker_key, evidence, compound_id=COMPOUND, camera_id=CAMERA,
                         start=START + dt.timedelta(minutes=i)) for i in range(20)]
    expected: dict[str, tuple[str, str | None]] = {}
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url + "/review")
            page.wait_for_url("**/login**")
            expect(page.locator("#username")).to_be_focused()
            page.keyboard.type("reviewer1")
            page.keyboard.press("Tab")
            page.keyboard.type(PASSWORD)
            page.keyboard.press("Enter")
            page.wait_for_url("**/review")
            viewer = page.locator("#viewer")
            expect(viewer).to_have_attribute("data-id", posted[0]["id"], timeout=15_000)  # oldest first
            # The start time is shown in Asia/Shanghai (UTC+8).
            expect(page.locator("#details")).to_contain_text("2026/03/01 18:00:00")
            page.keyboard.press("j")
            expect(viewer).to_have_attribute("data-id", posted[1]["id"])
            page.keyboard.press("k")
            expect(viewer).to_have_attribute("data-id", posted[0]["id"])
            screenshot(page, tmp_path, "review_queue")

            for n in range(20):
                current = viewer.get_attribute("data-id")
                assert current and current not in expected, f"decision {n}: {current!r} shown again"
                expect(page.locator("#bconfirm")).to_be_enabled()
                keys, decision = KEYS[n % len(KEYS)]
                for key in keys:
                    page.keyboard.press(key)
                expected[current] = decision
                if n < 19:
                    expect(viewer).not_to_have_attribute("data-id", current, timeout=15_000)
            expect(page.locator("#empty")).to_be_visible(timeout=15_000)
            wait_until(lambda: page.evaluate("window.CE_REVIEW.decided") == 20, 10, "20 decisions")
            screenshot(page, tmp_path, "review_done")
            assert not errors, errors
        finally:
            browser.close()

    assert set(expected) == {v["id"] for v in posted}
    for violation_id, (verdict, reason) in expected.items():
        stored = httpx.get(f"{server.url}/api/v1/events/{violation_id}", headers={"X-API-Key": viewer_key}).json()
        assert stored["review"]["verdict"] == verdict and stored["review"]["reason"] == reason, stored["review"]
        assert stored["review"]["reviewer_user_id"] is not None


def test_english_and_a_violation_claimed_by_someone_else(review_server, tmp_path):
    server = review_server
    server.user("reviewer2", {COMPOUND: "reviewer"})
    other = server.key("reviewer", name="other reviewer")
    violation = post_event(server.url, server.key("worker"), make_evidence(), compound_id=COMPOUND, camera_id=CAMERA,
                           start=START)
    claim = httpx.post(f"{server.url}/api/v1/events/{violation['id']}/claim", headers={"X-API-Key": other})
    assert claim.status_code == 200, claim.text
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            page.goto(f"{server.url}/review?id={violation['id']}")
            page.locator("#username").fill("reviewer2")
            page.locator("#password").fill(PASSWORD)
            page.locator("#submit").click()
            page.wait_for_url("**/review?id=*")
            expect(page.locator("#viewer")).to_have_attribute("data-id", violation["id"], timeout=15_000)
            expect(page.locator("#decided")).to_contain_text("他人正在审核")
            expect(page.locator("#bconfirm")).to_be_disabled()
            page.keyboard.press("c")  # nothing happens: the other reviewer holds the claim
            page.wait_for_timeout(500)
            page.locator("#lang").click()
            expect(page.locator("#bconfirm")).to_contain_text("Confirm", timeout=15_000)
            expect(page.locator("#decided")).to_contain_text("Being reviewed by someone else")
            expect(page.locator("#details")).to_contain_text("01/03/2026, 18:00:00")
            screenshot(page, tmp_path, "review_english")
        finally:
            browser.close()
    stored = httpx.get(f"{server.url}/api/v1/events/{violation['id']}", headers={"X-API-Key": other}).json()
    assert stored["review_state"] == "unreviewed"
