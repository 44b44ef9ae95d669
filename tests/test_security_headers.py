"""CORS closed by default, open to exactly the listed origins; security headers on every response; the
pages work under their Content-Security-Policy in real Chromium (no violation reported) — issue 11."""
from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import sync_playwright

from browser_support import LiveServer, launch_chromium, log_in, make_evidence, post_event, site_file
from service.app import create_app
from service.security import content_security_policy
from service.settings import Settings

LISTED, UNLISTED = "https://ops.example.com", "https://evil.example.net"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization,content-type"}
HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


def _client(settings: Settings, **changes) -> TestClient:
    return TestClient(create_app(settings.model_copy(update=changes)))


def test_cors_is_closed_by_default(settings, reviewer):
    assert settings.cors_origins == ()
    with _client(settings) as client:
        for origin in (LISTED, UNLISTED):
            preflight = client.options("/api/v1/events", headers={"Origin": origin, **PREFLIGHT})
            assert "access-control-allow-origin" not in preflight.headers
            assert preflight.status_code == 405  # no CORS layer answers the preflight at all
            simple = client.get("/api/v1/events", headers={"Origin": origin, **reviewer})
            assert simple.status_code == 200
            assert not any(name.startswith("access-control-") for name in simple.headers)


def test_cors_allows_exactly_the_listed_origins(settings, make_key):
    with _client(settings, cors_origins=(LISTED, "http://127.0.0.1:8080")) as client:
        from service.keys import create_key
        with client.app.state.sessions() as session:
            key = {"X-API-Key": create_key(session, "r", "reviewer", ["c1"])}
        refused = client.options("/api/v1/events", headers={"Origin": UNLISTED, **PREFLIGHT})
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
        allowed = client.options("/api/v1/events", headers={"Origin": LISTED, **PREFLIGHT})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == LISTED
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in allowed.headers
        assert client.get("/api/v1/events", headers={"Origin": LISTED, **key}).headers[
            "access-control-allow-origin"] == LISTED
        unlisted = client.get("/api/v1/events", headers={"Origin": UNLISTED, **key})
        assert unlisted.status_code == 200 and "access-control-allow-origin" not in unlisted.headers


def test_cors_origins_from_the_environment(monkeypatch):
    monkeypatch.setenv("COMPOUNDEYE_CORS_ORIGINS", f" {LISTED}, http://127.0.0.1:8080 ")
    assert Settings().cors_origins == (LISTED, "http://127.0.0.1:8080")
    monkeypatch.setenv("COMPOUNDEYE_CORS_ORIGINS", "")
    assert Settings().cors_origins == ()
    for bad in ("*", "https://*.example.com", "ops.example.com", "https://ops.example.com/app"):
        monkeypatch.setenv("COMPOUNDEYE_CORS_ORIGINS", bad)
        with pytest.raises(ValueError, match="CORS origin"):
            Settings()


@pytest.mark.parametrize("path, status", [("/", 200), ("/login", 200), ("/review", 200), ("/static/app.css", 200),
                                          ("/static/login.js", 200), ("/healthz", 200), ("/api/v1/events", 401),
                                          ("/api/v1/ui/config", 200), ("/nowhere", 404), ("/openapi.json", 200)])
def test_security_headers_on_every_response(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    for name, value in HEADERS.items():
        assert response.headers[name] == value
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy


def test_security_headers_on_refusals_before_the_app(client, worker):
    too_large = client.post("/api/v1/events", content=b"x", headers={
        **worker, "Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(50 * 1024 * 1024)})
    assert too_large.status_code == 413 and too_large.headers["x-frame-options"] == "DENY"


def test_docs_get_their_own_policy(client):
    policy = client.get("/docs").headers["content-security-policy"]
    assert "https://cdn.jsdelivr.net" in policy and "frame-ancestors 'none'" in policy
    assert "cdn.jsdelivr.net" not in client.get("/").headers["content-security-policy"]


def test_policy_lets_browsers_load_presigned_s3_evidence():
    s3 = Settings(storage_url="s3://evidence/x", s3_endpoint="127.0.0.1:8333",
                  s3_public_endpoint="https://s3.example.com")
    policy = content_security_policy(s3)
    assert "media-src 'self' blob: https://s3.example.com" in policy
    assert "img-src 'self' blob: data: https://s3.example.com" in policy
    assert "127.0.0.1:8333" not in content_security_policy(Settings(storage_url="file://var/x"))


# --- the pages in Chromium under the policy -------------------------------------------------------------

COMPOUND, CAMERA = "demo-compound", "demo-gate"
CSP_WATCH = """() => { window.__csp = [];
  document.addEventListener('securitypolicyviolation',
    e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI)); }"""


def test_pages_work_under_the_policy_in_chromium(tmp_path):
    """Every page is opened logged in; the review page plays a clip and shows a snapshot. Chromium reports
    no CSP violation (console or ``securitypolicyviolation``) and no script error."""
    sqlite = f"sqlite:///{tmp_path / 'ce.db'}"
    settings = Settings(database_url=sqlite, storage_url=f"file://{tmp_path / 'evidence'}",
                        site_config=site_file(tmp_path))
    with LiveServer(settings) as server:
        server.user("boss", {"*": "admin"})
        post_event(server.url, server.key("worker"), make_evidence(), compound_id=COMPOUND, camera_id=CAMERA,
                   start=dt.datetime(2026, 3, 1, 10, tzinfo=dt.timezone.utc))
        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                problems: list[str] = []
                page.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                page.add_init_script(f"({CSP_WATCH})()")
                log_in(page, server.url, "boss", "/review")
                page.wait_for_function("() => { const v = document.querySelector('#clip');"
                                       " return v && v.readyState >= 2 && v.videoWidth > 0; }", timeout=20_000)
                page.wait_for_function("() => { const i = document.querySelector('#snap');"
                                       " return i && i.complete && i.naturalWidth > 0; }", timeout=20_000)
                problems += page.evaluate("window.__csp")
                for path in ("/", "/cases", "/scorecard", "/login"):
                    page.goto(server.url + path)
                    page.wait_for_load_state("load")
                    page.wait_for_timeout(2000)  # the page's own fetches and streams (the wall never goes idle)
                    problems += page.evaluate("window.__csp")
                    assert page.locator("header.topbar, form#form").count() >= 1, path
            finally:
                browser.close()
    assert problems == []
