"""service/dep_audit.py against a project-JSON index served on loopback (the real run is in RELIABILITY.md)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from service.dep_audit import audit, exit_code, format_report

ADVISORY = {"id": "PYSEC-2099-1", "aliases": ["CVE-2099-0001"], "summary": "path traversal", "fixed_in": ["2.1"],
            "link": "https://osv.dev/vulnerability/PYSEC-2099-1", "withdrawn": None, "details": "..."}
PROJECTS = {
    "alpha": {"info": {"version": "1.0"}, "vulnerabilities": []},
    "beta": {"info": {"version": "2.0"}, "vulnerabilities": [ADVISORY, {**ADVISORY, "id": "OLD-1", "withdrawn": "2099-02-01"}]},
    "gamma": {"info": {"version": "3.0"}, "vulnerabilities": []},
    "epsilon": {"info": {"version": "1.0.0"}},
}


@pytest.fixture()
def index():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            parts = self.path.strip("/").split("/")          # pypi/<name>/json
            if parts[0] == "broken":
                self.send_response(500)
                self.end_headers()
                return
            project = PROJECTS.get(parts[1]) if len(parts) == 3 and parts[2] == "json" else None
            body = json.dumps(project).encode() if project else b"{}"
            self.send_response(200 if project else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_only_latest_releases_count_as_checked_and_advisories_fail_the_audit(index):
    report = audit({"alpha": "1.0", "beta": "2.0", "gamma": "2.5", "delta": "0.1", "epsilon": "1.0"},
                   base_url=f"{index}/pypi")
    by_name = {r["name"]: r for r in report["results"]}
    assert by_name["alpha"]["status"] == "clean"
    assert by_name["beta"]["status"] == "vulnerable"
    assert [a["id"] for a in by_name["beta"]["advisories"]] == ["PYSEC-2099-1"]      # the withdrawn one is not
    assert by_name["gamma"]["status"] == "older" and by_name["gamma"]["latest"] == "3.0"   # never "clean"
    assert by_name["delta"]["status"] == "not-on-index"
    assert by_name["epsilon"]["status"] == "clean"      # 1.0 == 1.0.0; no vulnerabilities key at all
    assert report["checked"] == 3 and exit_code(report) == 1
    text = format_report(report)
    assert "VULNERABLE beta 2.0: PYSEC-2099-1" in text and "not checked: gamma 2.5 (latest 3.0)" in text


def test_nothing_checked_is_not_a_pass(index):
    clean_but_older = audit({"gamma": "2.5"}, base_url=f"{index}/pypi")
    assert clean_but_older["checked"] == 0 and exit_code(clean_but_older) == 2
    unreachable = audit({"alpha": "1.0"}, base_url=f"{index}/broken")
    assert unreachable["results"][0]["status"] == "error" and exit_code(unreachable) == 2
    assert exit_code(audit({"alpha": "1.0"}, base_url=f"{index}/pypi")) == 0
