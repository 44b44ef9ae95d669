"""The authorization matrix: every endpoint × every role × own and foreign compound.

Own compound: the roles allowed get through (2xx, or 409/422 from the state of the data — never
401/403/404), the others get 403. Foreign compound: 404 for every role, exactly as an id that does not
exist, so a foreign compound's rows are neither listed nor readable. Refused requests change nothing."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from workflow import audit_count, make_user, past, post_batch, post_event, reinspect, review

START = dt.datetime(2026, 3, 4, 2, 0, tzinfo=dt.timezone.utc)
ROLES = ("admin", "supervisor", "reviewer", "viewer", "worker")
READERS = {"admin", "supervisor", "reviewer", "viewer"}
REVIEWERS = {"admin", "supervisor", "reviewer"}
MANAGERS = {"admin", "supervisor"}

# name -> (roles allowed in their own compound, request builder(ctx, compound) -> (method, url, kwargs))
ENDPOINTS = {
    "list events": (READERS | {"worker"}, lambda x, c: ("GET", "/api/v1/events", {"params": {"compound_id": c}})),
    "read event": (READERS | {"worker"}, lambda x, c: ("GET", f"/api/v1/events/{x[c]['read']}", {})),
    "read evidence": (READERS | {"worker"}, lambda x, c: ("GET", f"/api/v1/events/{x[c]['read']}/evidence/snapshot", {})),
    "post event": ({"admin", "worker"}, lambda x, c: ("POST_EVENT", c, {})),
    "post batch": ({"admin", "worker"}, lambda x, c: ("POST_BATCH", c, {})),
    "review queue": (REVIEWERS, lambda x, c: ("GET", "/api/v1/review-queue", {"params": {"compound_id": c}})),
    "claim": (REVIEWERS, lambda x, c: ("POST", f"/api/v1/events/{x[c]['queue']}/claim", {})),
    "release claim": (REVIEWERS, lambda x, c: ("DELETE", f"/api/v1/events/{x[c]['queue']}/claim", {})),
    "review": (REVIEWERS, lambda x, c: ("POST", f"/api/v1/events/{x[c]['queue']}/review",
                                        {"json": {"verdict": "reject", "reason": "false_alarm"}})),
    "list cases": (READERS | {"worker"}, lambda x, c: ("GET", "/api/v1/cases", {"params": {"compound_id": c}})),
    "read case": (READERS | {"worker"}, lambda x, c: ("GET", f"/api/v1/cases/{x[c]['case']}", {})),
    "case snapshot": (READERS | {"worker"}, lambda x, c: ("GET", x[c]["after_url"], {})),
    "assign": (MANAGERS, lambda x, c: ("POST", f"/api/v1/cases/{x[c]['case']}/assign",
                                       {"json": {"assignee": "team", "deadline": past()}})),
    "rectify": (REVIEWERS, lambda x, c: ("POST", f"/api/v1/cases/{x[c]['case']}/rectify", {"json": {"note": "done"}})),
    "reinspect": ({"admin", "supervisor", "worker"}, lambda x, c: ("REINSPECT", x[c]["case"], {})),
    "close": (MANAGERS, lambda x, c: ("POST", f"/api/v1/cases/{x[c]['case']}/close", {})),
    "reopen": (MANAGERS, lambda x, c: ("POST", f"/api/v1/cases/{x[c]['case']}/reopen", {"json": {}})),
    "scorecard": (READERS, lambda x, c: ("GET", f"/api/v1/compounds/{c}/scorecard", {"params": {"period": "2026-03"}})),
    "ledger csv": (READERS, lambda x, c: ("GET", f"/api/v1/compounds/{c}/ledger.csv", {"params": {"period": "2026-03"}})),
    "ledger xlsx": (READERS, lambda x, c: ("GET", f"/api/v1/compounds/{c}/ledger.xlsx", {"params": {"period": "2026-03"}})),
    "trend": (READERS, lambda x, c: ("GET", f"/api/v1/compounds/{c}/trend.svg", {"params": {"until": "2026-03"}})),
    "monthly report": (READERS, lambda x, c: ("GET", "/api/v1/reports/monthly",
                                              {"params": {"compound": c, "month": "2026-03", "format": "json"}})),
    # company reports, bulletins and ledger documents (issue 12): c1 and c2 are each their own company and district
    "company report": (READERS, lambda x, c: ("GET", "/api/v1/reports/company",
                                              {"params": {"company": x[c]["company"], "month": "2026-03",
                                                          "format": "json"}})),
    "bulletin": (READERS, lambda x, c: ("GET", "/api/v1/reports/bulletin",
                                        {"params": {"district": x[c]["district"], "month": "2026-03", "format": "json"}})),
    "list ledger": (READERS, lambda x, c: ("GET", "/api/v1/reports/ledger", {"params": {"compound": c}})),
    "ledger document": (READERS, lambda x, c: ("GET", f"/api/v1/reports/ledger/{x[c]['ledger']}", {})),
    "false alarms": (MANAGERS, lambda x, c: ("GET", "/api/v1/feedback/false-alarms", {"params": {"compound_id": c}})),
    "dataset": (MANAGERS, lambda x, c: ("GET", "/api/v1/feedback/dataset.zip", {"params": {"compound_id": c}})),
    "audit": (MANAGERS, lambda x, c: ("GET", "/api/v1/audit", {"params": {"compound_id": c}})),
    "grant": ({"admin"}, lambda x, c: ("PUT", f"/api/v1/users/{x['someone']}/grants/{c}", {"json": {"role": "viewer"}})),
    "create key": ({"admin"}, lambda x, c: ("POST", "/api/v1/keys",
                                            {"json": {"name": "w", "role": "worker", "compounds": [c]}})),
    # re-scans (issue 10): this app has no site file, so an allowed start is 409; the job is done, so an
    # allowed cancel is 409 too
    "start rescan": (MANAGERS, lambda x, c: ("POST", "/api/v1/rescans",
                                             {"json": {"source": f"s3://nvr-exports/{c}", "compound_id": c}})),
    "list rescans": (READERS, lambda x, c: ("GET", "/api/v1/rescans", {"params": {"compound_id": c}})),
    "read rescan": (READERS, lambda x, c: ("GET", f"/api/v1/rescans/{x[c]['rescan']}", {})),
    "rescan report": (READERS, lambda x, c: ("GET", f"/api/v1/rescans/{x[c]['rescan']}/report", {})),
    "cancel rescan": (MANAGERS, lambda x, c: ("POST", f"/api/v1/rescans/{x[c]['rescan']}/cancel", {})),
    # grid responsibility (issue 12): anyone scoped to the compound reads it, supervisors and admins write
    "list grid": (READERS | {"worker"}, lambda x, c: ("GET", f"/api/v1/compounds/{c}/grid", {})),
    "resolve grid": (READERS | {"worker"}, lambda x, c: ("GET", f"/api/v1/compounds/{c}/grid/resolve",
                                                         {"params": {"camera_id": x[c]["camera"], "zone_id": "lane1"}})),
    "add grid entry": (MANAGERS, lambda x, c: ("POST", f"/api/v1/compounds/{c}/grid",
                                               {"json": {"camera_id": x[c]["camera"], "zone_id": "lane1",
                                                         "assignee": "网格员"}})),
    "change grid entry": (MANAGERS, lambda x, c: ("PUT", f"/api/v1/compounds/{c}/grid/{x[c]['grid']}",
                                                  {"json": {"assignee": "新网格员"}})),
    "remove grid entry": (MANAGERS, lambda x, c: ("DELETE", f"/api/v1/compounds/{c}/grid/{x[c]['grid']}", {})),
}


def _ledger_document(app, compound: str) -> int:
    """A ledger document of ``compound`` (stored bytes and their row, as the scheduler leaves one)."""
    from service.ledger import ledger_key
    from service.models import LedgerDocument, utcnow
    data = f"%PDF-1.7 ledger of {compound}".encode()
    key = ledger_key("monthly_compound", compound, "2026-03", "pdf", "0" * 64)
    sha, size = app.state.store.put(key, data, "application/pdf")
    with app.state.sessions() as session:
        row = LedgerDocument(kind="monthly_compound", scope=compound, period="2026-03", format="pdf", key=key,
                             sha256=sha, size=size, content_type="application/pdf", compounds=[compound],
                             created_at=utcnow(), created_by="scheduler")
        session.add(row)
        session.commit()
        return row.id


def _set_organisation(app, compound: str, company: str, district: str) -> None:
    from service.models import Compound
    with app.state.sessions() as session:
        row = session.get(Compound, compound)
        row.company, row.district = company, district
        session.commit()


def _finished_rescan(app, compound: str) -> int:
    """A finished re-scan job of ``compound`` with a report, written as the runner leaves one."""
    from service.models import RescanJob, utcnow
    with app.state.sessions() as session:
        row = RescanJob(compound_id=compound, source=f"s3://nvr-exports/{compound}", mode="sampled", status="done",
                        created_by="key:setup", created_by_name="setup", created_at=utcnow(), finished_at=utcnow(),
                        report={"version": 1, "violations": [], "bad_files": []})
        session.add(row)
        session.commit()
        return row.id


@pytest.fixture
def world(app, client, make_key, make_event, evidence_bytes):
    """Compounds c1 (own) and c2 (foreign), each with a read-only violation, one in the queue and a case
    with one re-inspection; and the callers: a user per role granted in c1, a worker key for c1."""
    setup_admin = make_user(app, client, "root", {"*": "admin"})
    ctx = {}
    for compound, camera in (("c1", "cam1"), ("c2", "cam2")):
        worker = make_key("worker", [compound])
        ids = [post_event(client, make_event, worker, compound_id=compound, camera_id=camera,
                          start=START + dt.timedelta(minutes=i)) for i in range(3)]
        assert review(client, setup_admin, ids[2]).status_code == 201
        case_id = client.get(f"/api/v1/events/{ids[2]}", headers=setup_admin).json()["case_id"]
        assert client.post(f"/api/v1/cases/{case_id}/assign", json={"assignee": "t", "deadline": past()},
                           headers=setup_admin).status_code == 200
        inspected = reinspect(client, setup_admin, case_id, evidence_bytes["crop"], rule_active=True)
        assert inspected.status_code == 201, inspected.text
        ctx[compound] = {"read": ids[0], "queue": ids[1], "case": case_id,
                         "after_url": inspected.json()["inspections"][0]["after_url"], "camera": camera,
                         "rescan": _finished_rescan(app, compound), "ledger": _ledger_document(app, compound),
                         "company": f"{compound}物业", "district": f"{compound}街道",
                         "grid": client.post(f"/api/v1/compounds/{compound}/grid", json={"assignee": "物业"},
                                             headers=setup_admin).json()["id"]}
        _set_organisation(app, compound, ctx[compound]["company"], ctx[compound]["district"])
    callers = {role: make_user(app, client, role, {"c1": role}) for role in ROLES if role != "worker"}
    callers["worker"] = make_key("worker", ["c1"])
    with app.state.sessions() as session:
        from service.users import create_user
        ctx["someone"] = create_user(session, "someone", "long enough pw", {"c1": "viewer"}).id
        session.commit()
    return ctx, callers


def _send(client, make_event, evidence_bytes, ctx, compound, request, headers, serial):
    method, target, kwargs = request
    if method == "POST_EVENT":
        camera = ctx[target]["camera"]
        start = START + dt.timedelta(hours=1, seconds=serial)
        return make_event(compound_id=target, camera_id=camera, start=start).post(client, headers)
    if method == "POST_BATCH":  # a batch of one: the event's own result stands for the request's status
        post = make_event(compound_id=target, camera_id=ctx[target]["camera"],
                          start=START + dt.timedelta(hours=2, seconds=serial))
        response = post_batch(client, headers, [post])
        return _BatchAnswer(response.json()[0]) if response.status_code == 200 else response
    if method == "REINSPECT":
        return reinspect(client, headers, target, evidence_bytes["crop"], rule_active=False)
    return client.request(method, target, headers=headers, **kwargs)


class _BatchAnswer:
    """The result of the one event of a batch post, read as a response (status and text)."""

    def __init__(self, result: dict):
        self.status_code, self.text = result["status"], json.dumps(result)


@pytest.mark.parametrize("role", ROLES)
def test_every_endpoint_own_and_foreign_compound(app, client, make_event, evidence_bytes, world, role):
    ctx, callers = world
    headers = callers[role]
    problems = []
    for serial, (name, (allowed, build)) in enumerate(ENDPOINTS.items()):
        for compound in ("c1", "c2"):
            before = audit_count(app)
            response = _send(client, make_event, evidence_bytes, ctx, compound, build(ctx, compound), headers,
                             serial * 2 + (compound == "c2"))
            status = response.status_code
            if compound == "c2":
                ok, expected = status == 404, "404"
            elif role in allowed:
                ok, expected = status not in (401, 403, 404) and status < 500, "allowed"
            else:
                ok, expected = status == 403, "403"
            if status in (403, 404) and audit_count(app) != before:
                problems.append(f"{name} as {role} in {compound}: refused but the audit log changed")
            if not ok:
                problems.append(f"{name} as {role} in {compound}: {status} (expected {expected}) {response.text[:150]}")
    assert problems == []


def test_foreign_rows_are_not_listed(client, world):
    ctx, callers = world
    for role in ROLES:
        events = client.get("/api/v1/events", headers=callers[role]).json()
        assert events["total"] >= 3 and {e["compound_id"] for e in events["items"]} == {"c1"}
        cases = client.get("/api/v1/cases", headers=callers[role]).json()
        assert {c["compound_id"] for c in cases["items"]} == {"c1"}
    queue = client.get("/api/v1/review-queue", headers=callers["reviewer"]).json()
    assert {e["compound_id"] for e in queue["items"]} <= {"c1"}
    audit = client.get("/api/v1/audit", headers=callers["supervisor"]).json()
    assert audit["total"] > 0 and {e["compound_id"] for e in audit["items"]} == {"c1"}
    foreign = client.get(f"/api/v1/events/{ctx['c2']['read']}", headers=callers["viewer"])
    missing = client.get(f"/api/v1/events/{'0' * 32}", headers=callers["viewer"])
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"].replace(ctx["c2"]["read"], "X") == missing.json()["detail"].replace("0" * 32, "X")


def test_api_key_can_carry_any_role(client, make_key, world):
    ctx, _ = world
    supervisor_key = make_key("supervisor", ["c1"])
    viewer_key = make_key("viewer", ["c1"])
    assert client.get(f"/api/v1/cases/{ctx['c1']['case']}", headers=viewer_key).status_code == 200
    assert client.post(f"/api/v1/events/{ctx['c1']['queue']}/review", headers=viewer_key,
                       json={"verdict": "confirm"}).status_code == 403
    assert client.post(f"/api/v1/cases/{ctx['c1']['case']}/reopen", headers=supervisor_key,
                       json={}).status_code == 200
    assert client.get(f"/api/v1/cases/{ctx['c2']['case']}", headers=supervisor_key).status_code == 404
