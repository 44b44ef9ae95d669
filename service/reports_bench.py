"""How long the monthly reports of a property company take on PostgreSQL:
``python -m service.reports_bench [--compounds 50] [--violations 100000] [--json]``.

Makes a fresh database on the local PostgreSQL (127.0.0.1:5432, dropped afterwards unless ``--keep``),
migrates it, and fills one month (and a lighter previous month) for ``--compounds`` compounds: cameras,
zones, violations of the four rules spread over the month, reviews (55 % confirmed, 25 % rejected),
one case per spot with confirmed violations (closed on time, closed late, overdue or open), the openers'
snapshots in a local evidence folder. Then it times, in one run:

- ``all_figures_s``: :func:`service.reports.monthly_reports` for every compound at once (the figures);
- ``per_compound_figures_s``: the same one compound at a time, all of them;
- ``one_report_html_s`` / ``one_report_pdf_s``: one compound's full report with its snapshots, HTML then PDF;
- ``company_figures_s``: :func:`service.company_report.company_report` of the one property company all the
  compounds belong to; ``company_html_s`` / ``company_pdf_s``: its full report (totals, table, charts,
  every compound's section with up to 20 open cases in a table);
- ``bulletin_figures_s`` / ``bulletin_xlsx_s`` / ``bulletin_pdf_s``: the bulletin of one district (half the
  compounds) for the month.

``--out DIR`` keeps the company report and the bulletin (PDF, XLSX) there, to look at.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import secrets
import sys
import tempfile
import time

import cv2
import numpy as np
import psycopg
from sqlalchemy import insert, text

from pathlib import Path

from service import bulletins, company_report, reports, scorecard
from service.db import make_engine, session_factory, upgrade
from service.models import ApiKey, Camera, Case, Compound, EvidenceObject, Review, Violation
from service.storage import LocalStore

PG = "127.0.0.1", 5432
RULES = ("fire_lane", "bin_overflow", "corridor_clutter", "ebike_indoor")
REASONS = ("false_alarm", "not_a_violation", "duplicate")
COMPANY, DISTRICTS = "示范物业服务有限公司", ("东城区东华门街道", "西城区金融街街道")


def _admin() -> tuple[psycopg.Connection, str]:
    problems = []
    for user in ("postgres", "root"):
        for dbname in ("test", "postgres"):
            try:
                return psycopg.connect(host=PG[0], port=PG[1], user=user, dbname=dbname, autocommit=True,
                                       connect_timeout=3), user
            except psycopg.Error as exc:
                problems.append(f"{user}@{dbname}: {exc}")
    raise SystemExit(f"PostgreSQL on {PG[0]}:{PG[1]} is not reachable: {'; '.join(problems)}")


def _month_rows(rng: random.Random, compounds: list[str], cameras: int, zones: int, count: int,
                period: scorecard.Period) -> list[dict]:
    seconds = (period.end - period.start).total_seconds()
    rows = []
    for _ in range(count):
        compound = rng.choice(compounds)
        start = period.start + dt.timedelta(seconds=rng.random() * seconds)
        state = rng.choices(("confirmed", "rejected", "unreviewed"), weights=(55, 25, 20))[0]
        rows.append({"id": secrets.token_hex(16), "rule": rng.choice(RULES), "compound_id": compound,
                     "camera_id": f"{compound}-cam{rng.randrange(cameras)}", "zone_id": f"z{rng.randrange(zones)}",
                     "start_time": start, "last_seen_time": start + dt.timedelta(seconds=90), "end_time": None,
                     "confidence": 0.8, "model_version": "bench", "source": "live", "boxes": [],
                     "review_state": state, "created_at": start})
    return rows


def fill(session, store: LocalStore, compounds: int, cameras: int, zones: int, violations: int, month: str,
         table: scorecard.ScoringTable, seed: int = 12) -> dict:
    """Insert the bench data; returns row counts."""
    rng = random.Random(seed)
    ids = [f"co{i:02d}" for i in range(1, compounds + 1)]
    session.execute(insert(Compound), [{"id": c, "name": f"第{i + 1}小区", "company": COMPANY,
                                        "district": DISTRICTS[i % 2]} for i, c in enumerate(ids)])
    session.execute(insert(Camera), [{"id": f"{c}-cam{k}", "compound_id": c, "name": f"{k}号摄像机"}
                                     for c in ids for k in range(cameras)])
    session.execute(insert(ApiKey), [{"id": "bench", "name": "bench", "key_hash": "0" * 64, "role": "reviewer",
                                      "compounds": ["*"]}])
    rows = _month_rows(rng, ids, cameras, zones, violations, scorecard.parse_period(month, table.zone))
    rows += _month_rows(rng, ids, cameras, zones, violations // 5,
                        scorecard.parse_period(reports.previous_month(month), table.zone))
    for start in range(0, len(rows), 10_000):
        session.execute(insert(Violation), rows[start:start + 10_000])
    reviews = [{"violation_id": r["id"], "verdict": "confirm" if r["review_state"] == "confirmed" else "reject",
                "reason": None if r["review_state"] == "confirmed" else rng.choice(REASONS),
                "reviewer_key_id": "bench", "decided_at": r["start_time"] + dt.timedelta(hours=1)}
               for r in rows if r["review_state"] != "unreviewed"]
    for start in range(0, len(reviews), 10_000):
        session.execute(insert(Review), reviews[start:start + 10_000])
    # one case per spot, opened by its earliest confirmed violation
    openers: dict[tuple, dict] = {}
    for r in sorted((r for r in rows if r["review_state"] == "confirmed"), key=lambda r: r["start_time"]):
        openers.setdefault((r["compound_id"], r["camera_id"], r["zone_id"], r["rule"]), r)
    ok, jpeg = cv2.imencode(".jpg", np.full((360, 640, 3), 90, np.uint8))
    sha, size = store.put("bench/before.jpg", jpeg.tobytes(), "image/jpeg")
    now = dt.datetime.now(dt.timezone.utc)
    cases, evidence = [], []
    for number, ((compound, camera, zone, rule), opener) in enumerate(openers.items(), start=1):
        fate = rng.choices(("on_time", "late", "overdue", "open"), weights=(60, 10, 10, 20))[0]
        deadline = opener["start_time"] + dt.timedelta(days=3)
        closed_at = {"on_time": deadline - dt.timedelta(days=1), "late": deadline + dt.timedelta(days=1)}.get(fate)
        if fate == "open":
            deadline = now + dt.timedelta(days=3)
        cases.append({"id": number, "violation_id": opener["id"], "compound_id": compound, "camera_id": camera,
                      "zone_id": zone, "rule": rule, "state": "closed" if closed_at else "open",
                      "assignee": "物业保洁组", "deadline": deadline, "closed_at": closed_at,
                      "created_at": opener["start_time"], "updated_at": opener["start_time"]})
        evidence.append({"violation_id": opener["id"], "kind": "snapshot", "key": "bench/before.jpg",
                         "sha256": sha, "size": size, "content_type": "image/jpeg"})
    for start in range(0, len(cases), 10_000):
        session.execute(insert(Case), cases[start:start + 10_000])
        session.execute(insert(EvidenceObject), evidence[start:start + 10_000])
    session.execute(text(
        "UPDATE violations v SET case_id = c.id FROM cases c WHERE v.review_state = 'confirmed' AND "
        "v.compound_id = c.compound_id AND v.camera_id = c.camera_id AND v.zone_id = c.zone_id AND v.rule = c.rule"))
    session.execute(text("SELECT setval(pg_get_serial_sequence('cases', 'id'), (SELECT max(id) FROM cases))"))
    session.commit()
    for name in ("violations", "reviews", "cases", "evidence_objects"):
        session.execute(text(f"ANALYZE {name}"))
    return {"compounds": compounds, "violations_in_month": violations, "violations_total": len(rows),
            "reviews": len(reviews), "cases": len(cases)}


def run(compounds: int, violations: int, month: str, cameras: int, zones: int, keep: bool,
        out: Path | None = None) -> dict:
    admin, user = _admin()
    name = f"ce_reports_bench_{secrets.token_hex(3)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://{user}@{PG[0]}:{PG[1]}/{name}"
    engine = None
    try:
        upgrade(url)
        engine = make_engine(url)
        table = scorecard.load_scoring()
        with tempfile.TemporaryDirectory() as folder, session_factory(engine)() as session:
            store = LocalStore(folder)
            began = time.perf_counter()
            counts = fill(session, store, compounds, cameras, zones, violations, month, table)
            result = {"database": name if keep else "(dropped)", **counts, "month": month,
                      "insert_s": round(time.perf_counter() - began, 2)}
            ids = [f"co{i:02d}" for i in range(1, compounds + 1)]

            began = time.perf_counter()
            every = reports.monthly_reports(session, table, ids, month)
            result["all_figures_s"] = round(time.perf_counter() - began, 3)
            began = time.perf_counter()
            for compound in ids:
                reports.monthly_report(session, table, compound, month)
            result["per_compound_figures_s"] = round(time.perf_counter() - began, 3)

            began = time.perf_counter()
            one = reports.monthly_report(session, table, ids[0], month, store=store)
            html = reports.render_html(one)
            result["one_report_html_s"] = round(time.perf_counter() - began, 3)
            began = time.perf_counter()
            pdf = reports.render_pdf(html)
            result["one_report_pdf_s"] = round(time.perf_counter() - began, 3)
            result["one_report"] = {"compound": ids[0], "found": one["violations"]["found"],
                                    "open_cases": one["open_cases_total"], "html_bytes": len(html),
                                    "pdf_bytes": len(pdf)}
            result["found_total"] = sum(r["violations"]["found"] for r in every.values())

            began = time.perf_counter()
            company_report.company_report(session, table, COMPANY, ids, month)
            result["company_figures_s"] = round(time.perf_counter() - began, 3)
            began = time.perf_counter()
            company = company_report.company_report(session, table, COMPANY, ids, month)
            company_html = company_report.render_html(company)
            result["company_html_s"] = round(time.perf_counter() - began, 3)
            began = time.perf_counter()
            company_pdf = reports.render_pdf(company_html)
            result["company_pdf_s"] = round(time.perf_counter() - began, 3)
            result["company_report"] = {"compounds": len(company["compounds"]), "html_bytes": len(company_html),
                                        "pdf_bytes": len(company_pdf)}

            began = time.perf_counter()
            district = [c for i, c in enumerate(ids) if i % 2 == 0]
            data = bulletins.bulletin(session, table, district, scorecard.parse_period(month, table.zone),
                                      scope_kind="district", scope_name=DISTRICTS[0])
            result["bulletin_figures_s"] = round(time.perf_counter() - began, 3)
            began = time.perf_counter()
            xlsx = bulletins.render_xlsx(data, table)
            result["bulletin_xlsx_s"] = round(time.perf_counter() - began, 3)
            began = time.perf_counter()
            bulletin_pdf = reports.render_pdf(bulletins.render_html(data))
            result["bulletin_pdf_s"] = round(time.perf_counter() - began, 3)
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                (out / f"company-{month}.pdf").write_bytes(company_pdf)
                (out / f"bulletin-{month}.pdf").write_bytes(bulletin_pdf)
                (out / f"bulletin-{month}.xlsx").write_bytes(xlsx)
                (out / f"{ids[0]}-{month}.pdf").write_bytes(pdf)
        return result
    finally:
        if engine is not None:
            engine.dispose()
        if not keep:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compounds", type=int, default=50)
    parser.add_argument("--violations", type=int, default=100_000, help="violations in the month")
    parser.add_argument("--month", default="2026-11")
    parser.add_argument("--cameras", type=int, default=10, help="cameras per compound")
    parser.add_argument("--zones", type=int, default=4, help="zones per camera")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--json", action="store_true", help="one JSON line")
    parser.add_argument("--out", type=Path, help="write the company report and the bulletin (PDF, XLSX) here")
    args = parser.parse_args(argv)
    result = run(args.compounds, args.violations, args.month, args.cameras, args.zones, args.keep, args.out)
    print(json.dumps(result, ensure_ascii=False, indent=None if args.json else 2))


if __name__ == "__main__":
    main(sys.argv[1:])
