"""The pages in headless Chromium against a real uvicorn server, a real worker on the sample footage and
the real HTTP event API: log in, see a tile update, see a new alert within 2 s of its post, play its clip
with the boxes drawn, confirm it, and see the case and the scorecard change. A user of another compound
sees none of it."""
from __future__ import annotations

import datetime as dt
import time
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from browser_support import (LiveServer, launch_chromium, log_in, make_evidence, post_event, screenshot, site_file,
                             wait_until)
from service.settings import Settings
from vision.config import load_site_config
from vision.worker import Worker

COMPOUND, CAMERA = "demo-compound", "demo-gate"


@pytest.fixture
def wall_server(database_url, tmp_path):
    """The API with the demo site (one camera) and a real worker replaying its footage into the live hub."""
    path = site_file(tmp_path)
    settings = Settings(database_url=database_url, storage_url=f"file://{tmp_path / 'evidence'}", site_config=path)
    with LiveServer(settings) as server:
        site = load_site_config(path)
        hub = server.app.state.live_hub
        for compound, camera in site.cameras():
            hub.register(camera, compound_id=compound.id)
        worker = Worker(site, path, api_key=server.key("worker"), api_url=server.url, realtime=True,
                        on_frame=hub.publish)
        worker.start()
        try:
            yield server
        finally:
            worker.stop()


def tile_frames(page) -> int:
    return int(page.locator(f"#tile-{CAMERA}").get_attribute("data-frames") or 0)


def test_wall_alert_review_case_and_scorecard(wall_server, tmp_path):
    server = wall_server
    server.user("guard", {COMPOUND: "supervisor"})
    server.user("outsider", {"other-compound": "reviewer"})
    worker_key = server.key("worker", name="test poster")
    evidence = make_evidence()
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))

            # Log in (asked for the scorecard first): the scorecard before any confirmation.
            month = dt.datetime.now(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m")
            log_in(page, server.url, "guard", f"/scorecard?compound={COMPOUND}&period={month}")
            fire_lane_count = page.locator('#breakdown tr[data-rule="fire_lane"] td.count')
            expect(fire_lane_count).to_have_text("0", timeout=15_000)
            score_before = float(page.locator("#breakdown").get_attribute("data-score"))

            # The wall shows the camera; its tile keeps updating.
            page.goto(server.url + "/")
            tile = page.locator(f"#tile-{CAMERA}")
            expect(tile).to_be_visible(timeout=30_000)
            wait_until(lambda: tile_frames(page) >= 2, 60, "the first live frames")
            first = tile_frames(page)
            wait_until(lambda: tile_frames(page) >= first + 3, 30, "the tile to update")
            expect(tile).to_have_attribute("data-health", "online")
            expect(page.locator("#compound option")).to_have_count(2)  # all + 示范小区
            assert "示范小区" in page.locator("#compound").inner_text()
            screenshot(page, tmp_path, "wall_live")

            # A new violation over the real event API reaches the feed within 2 s, flashes and sounds.
            wait_until(lambda: page.evaluate("window.CE_WALL.feedState") == "open", 15, "the alert feed")
            beeps = page.evaluate("window.CE_WALL.beeps")
            posted_at_ms = time.time() * 1000
            violation = post_event(server.url, worker_key, evidence, compound_id=COMPOUND, camera_id=CAMERA)
            item = page.locator(f"#alert-{violation['id']}")
            expect(item).to_be_visible(timeout=5_000)
            received_ms = float(item.get_attribute("data-received-at"))
            assert received_ms - posted_at_ms < 2000, f"the alert took {received_ms - posted_at_ms:.0f} ms"
            expect(item).to_have_class("new")
            expect(page.locator("#banner")).to_be_visible()
            assert page.evaluate("window.CE_WALL.beeps") == beeps + 1
            screenshot(page, tmp_path, "wall_alert")

            # Its review: the clip plays with the sidecar's box drawn over it; confirm with the keyboard.
            item.locator("a.review-link").click()
            page.wait_for_url(f"**/review?id={violation['id']}")
            expect(page.locator("#viewer")).to_have_attribute("data-id", violation["id"], timeout=15_000)
            page.wait_for_function("() => document.getElementById('clip').readyState >= 2", timeout=15_000)
            page.keyboard.press("Space")
            page.wait_for_function("() => document.getElementById('clip').currentTime > 0.5", timeout=15_000)
            page.keyboard.press("Space")  # pause, so the screenshot shows the box on a still frame
            expect(page.locator("#overlay")).to_have_attribute("data-boxes", "1", timeout=5_000)
            page.keyboard.press("+")
            expect(page.locator("#zoombox")).to_have_attribute("data-scale", "1.50")
            screenshot(page, tmp_path, "review_clip")
            page.keyboard.press("c")
            expect(page.locator("#toast")).to_contain_text("已确认", timeout=10_000)
            stored = httpx.get(f"{server.url}/api/v1/events/{violation['id']}",
                               headers={"X-API-Key": server.key("viewer")}).json()
            assert stored["review_state"] == "confirmed" and stored["case_id"] is not None

            # The case is listed (open, no deadline yet) and the scorecard lost the fire-lane point.
            page.goto(f"{server.url}/cases")
            row = page.locator(f'#cases tbody tr[data-id="{stored["case_id"]}"]')
            expect(row).to_be_visible(timeout=15_000)
            expect(row).to_contain_text("待整改")
            row.click()
            page.locator("#assignee").fill("物业张师傅")
            page.get_by_role("button", name="指派").click()
            expect(row).to_contain_text("物业张师傅", timeout=10_000)
            screenshot(page, tmp_path, "cases")
            page.goto(f"{server.url}/scorecard?compound={COMPOUND}&period={month}")
            expect(fire_lane_count).to_have_text("1", timeout=15_000)
            assert float(page.locator("#breakdown").get_attribute("data-score")) == score_before - 1
            page.wait_for_function("() => document.getElementById('trend').complete && document.getElementById('trend').naturalWidth > 0")
            screenshot(page, tmp_path, "scorecard")
            assert not errors, errors
        finally:
            browser.close()

        # Another compound's reviewer sees neither the camera nor the alert.
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 800})
            log_in(page, server.url, "outsider")
            expect(page.locator("#status")).to_have_text("已连接", timeout=15_000)
            page.wait_for_timeout(1500)  # two status records of the wall stream
            expect(page.locator(".tile")).to_have_count(0)
            expect(page.locator("#notiles")).to_be_visible()
            expect(page.locator("#alerts li")).to_have_count(0)
            screenshot(page, tmp_path, "wall_outsider", keep=False)
        finally:
            browser.close()


def test_sixteen_tiles_update_and_a_stopped_stream_shows_stalled_then_offline(database_url, tmp_path):
    """16 cameras on one wall stream; one camera's frames stop (its tile says 画面停滞), then the server
    goes away (every tile says 离线)."""
    from test_pages_live import _camera, _frame  # the same synthetic cameras as the stream tests
    import threading

    settings = Settings(database_url=database_url, storage_url=f"file://{tmp_path / 'evidence'}")
    server = LiveServer(settings).__enter__()
    stopped = False
    try:
        server.user("guard", {"c1": "viewer"})
        hub = server.app.state.live_hub
        cameras = [f"cam{i:02d}" for i in range(16)]
        for cam in cameras:
            hub.register(_camera(cam), compound_id="c1")
        halt, quiet = threading.Event(), threading.Event()

        def publish():
            t = 1_000.0
            while not halt.is_set():
                for cam in cameras:
                    if not (cam == "cam05" and quiet.is_set()):
                        hub.publish(cam, _frame(cam, t), None)
                t += 0.25
                time.sleep(0.25)
        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 900})
                log_in(page, server.url, "guard")
                expect(page.locator(".tile")).to_have_count(16, timeout=20_000)
                wait_until(lambda: page.evaluate("[...document.querySelectorAll('.tile')].every(t => +t.dataset.frames >= 3)"),
                           30, "every tile to update")
                expect(page.locator('.tile[data-health="online"]')).to_have_count(16)
                screenshot(page, tmp_path, "wall_16")
                quiet.set()
                expect(page.locator("#tile-cam05")).to_have_attribute("data-health", "stalled", timeout=20_000)
                expect(page.locator("#tile-cam05 .health")).to_have_text("画面停滞")
                expect(page.locator("#tile-cam04")).to_have_attribute("data-health", "online")
                screenshot(page, tmp_path, "wall_stalled")
                halt.set()
                publisher.join(timeout=5)
                server.__exit__(None, None, None)
                stopped = True
                expect(page.locator('.tile[data-health="offline"]')).to_have_count(16, timeout=20_000)
                expect(page.locator("#tile-cam00 .health")).to_have_text("离线")
                screenshot(page, tmp_path, "wall_offline", keep=False)
            finally:
                browser.close()
    finally:
        if not stopped:
            server.__exit__(None, None, None)
