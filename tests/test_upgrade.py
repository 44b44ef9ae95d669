"""Upgrades with data in the database (issue 11): the schema is built at the previous released
revision (``0002``, accounts, cases and audit), filled with violations, evidence rows, a review, a case,
a user with a grant, an API key and an audit entry written as that schema knew them (SQLAlchemy Core on
the reflected tables, not today's models), then upgraded to every head. The rows must come through
unchanged and be usable through the API (the old key lists the violations, the old user logs in and
sees the case), and the tables added since (camera health, worker leases, re-scan jobs) must work.
Runs on SQLite and on PostgreSQL (an empty database of its own on the shared server).
"""
from __future__ import annotations

import datetime as dt
import secrets

import pytest
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, insert, inspect, select

from service.app import create_app
from service.db import alembic_config, make_engine, session_factory, upgrade
from service.health_events import CameraHealthEvent, WorkerLease
from service.keys import hash_key
from service.models import GridEntry, GridPlace, RescanJob
from service.settings import Settings
from service.users import hash_password
from vision.types import violation_id

PREVIOUS = "0002"
PASSWORD = "old-schema-password-1"
START = dt.datetime(2026, 2, 1, 9, 30, tzinfo=dt.timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path):
    """An empty database URL: a new SQLite file, or a new empty PostgreSQL database (dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    admin, user, _template = request.getfixturevalue("pg_template")
    name = f"ce_upgrade_{secrets.token_hex(4)}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{user}@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fill_previous_schema(engine) -> dict:
    """Rows as the 0002 schema holds them; returns what was written, for comparison after the upgrade."""
    sqlite = engine.dialect.name == "sqlite"

    def when(value: dt.datetime):  # the project stores naive UTC on SQLite (service.models.UTCDateTime)
        return value.replace(tzinfo=None) if sqlite else value

    meta = MetaData()
    meta.reflect(engine)
    t = meta.tables
    ids = [violation_id("cam1", "fire_lane", "lane1", (START + dt.timedelta(minutes=i)).timestamp()) for i in range(3)]
    violations = [{
        "id": vid, "rule": "fire_lane", "compound_id": "c1", "camera_id": "cam1", "zone_id": "lane1",
        "start_time": when(START + dt.timedelta(minutes=i)), "last_seen_time": when(START + dt.timedelta(minutes=i, seconds=90)),
        "end_time": None, "confidence": 0.8 + i / 100, "model_version": "car-v1", "source": "live",
        "boxes": [{"time": (START + dt.timedelta(minutes=i, seconds=30)).isoformat(), "xyxy": [1.0, 2.0, 30.0, 40.0],
                   "class_name": "car", "confidence": 0.9, "track_id": i}],
        "review_state": "confirmed" if i == 0 else "unreviewed", "created_at": when(START),
    } for i, vid in enumerate(ids)]
    with engine.begin() as conn:
        conn.execute(insert(t["compounds"]), [{"id": "c1", "name": "老小区", "created_at": when(START)}])
        conn.execute(insert(t["cameras"]), [{"id": "cam1", "compound_id": "c1", "name": "1号门", "created_at": when(START)}])
        conn.execute(insert(t["violations"]), violations)
        conn.execute(insert(t["evidence_objects"]), [
            {"violation_id": vid, "kind": kind, "key": f"c1/cam1/2026/02/01/{vid}/{kind}.{ext}", "sha256": "ab" * 32,
             "size": 1234, "content_type": ctype}
            for vid in ids for kind, ext, ctype in (("snapshot", "jpg", "image/jpeg"), ("clip", "mp4", "video/mp4"),
                                                     ("sidecar", "json", "application/json"))])
        key_id = secrets.token_hex(8)  # a key reads ce_<id>_<secret> (service/keys.py)
        reviewer_key = f"ce_{key_id}_{secrets.token_urlsafe(32)}"
        conn.execute(insert(t["api_keys"]), [{"id": key_id, "name": "old reviewer key",
                                              "key_hash": hash_key(reviewer_key), "role": "reviewer",
                                              "compounds": ["c1"], "created_at": when(START), "revoked_at": None}])
        conn.execute(insert(t["reviews"]), [{"violation_id": ids[0], "verdict": "confirm", "reason": None,
                                             "note": "车停在消防通道", "reviewer_key_id": key_id,
                                             "decided_at": when(START + dt.timedelta(hours=1))}])
        user_id = conn.execute(insert(t["users"]).returning(t["users"].c.id), [
            {"username": "wang.li", "display_name": "王丽", "password_hash": hash_password(PASSWORD),
             "is_active": True, "created_at": when(START)}]).scalar_one()
        conn.execute(insert(t["role_grants"]), [{"user_id": user_id, "compound_id": "c1", "role": "supervisor"}])
        case_id = conn.execute(insert(t["cases"]).returning(t["cases"].c.id), [{
            "violation_id": ids[0], "compound_id": "c1", "camera_id": "cam1", "zone_id": "lane1", "rule": "fire_lane",
            "state": "open", "assignee": "物业保安队", "deadline": when(START + dt.timedelta(days=2)),
            "rectification_note": None, "created_at": when(START + dt.timedelta(hours=1)),
            "updated_at": when(START + dt.timedelta(hours=1)), "rectified_at": None, "reinspected_at": None,
            "closed_at": None}]).scalar_one()
        conn.execute(insert(t["audit_log"]), [{
            "at": when(START + dt.timedelta(hours=1)), "actor": key_id, "actor_name": "old reviewer key",
            "compound_id": "c1", "entity": "violation", "entity_id": ids[0], "action": "review",
            "before": {"review_state": "unreviewed"}, "after": {"review_state": "confirmed"}}])
    return {"ids": ids, "violations": violations, "reviewer_key": reviewer_key, "case_id": case_id}


def _rows(engine, table: str, order_by: str) -> list[dict]:
    meta = MetaData()
    meta.reflect(engine, only=[table])
    tbl = meta.tables[table]
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(select(tbl).order_by(tbl.c[order_by]))]


def test_upgrade_from_previous_release_keeps_data_and_new_tables_work(empty_database, tmp_path):
    url = empty_database
    upgrade(url, PREVIOUS)
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_heads() == (PREVIOUS,)
        assert not {"camera_health_events", "worker_leases", "rescan_jobs"} & set(inspect(engine).get_table_names())
        written = _fill_previous_schema(engine)
        tables = {"violations": "id", "evidence_objects": "key", "reviews": "id", "users": "id", "role_grants": "user_id",
                  "api_keys": "id", "cases": "id", "audit_log": "id", "compounds": "id", "cameras": "id"}
        before = {table: _rows(engine, table, key) for table, key in tables.items()}

        upgrade(url)  # every head, as `compoundeye db upgrade` and the service's start do

        heads = set(ScriptDirectory.from_config(alembic_config(url)).get_heads())
        with engine.connect() as conn:
            assert set(MigrationContext.configure(conn).get_current_heads()) == heads
        after = {table: _rows(engine, table, key) for table, key in tables.items()}
        # columns added since 0002 (compounds.company/district, cases.assigned_by) are empty on old rows;
        # every column the old rows had keeps its value
        old_columns = {table: set(rows[0]) for table, rows in before.items() if rows}
        kept = {table: [{k: row[k] for k in old_columns.get(table, row)} for row in rows] for table, rows in after.items()}
        assert kept == before, "rows changed during the upgrade"
        added = {(table, column): row[column] for table, rows in after.items() for row in rows
                 for column in set(row) - old_columns.get(table, set(row))}
        assert {"compounds", "cases"} <= {table for table, _ in added}
        assert all(value is None for value in added.values()), added
        assert len(after["violations"]) == 3 and len(after["evidence_objects"]) == 9
    finally:
        engine.dispose()

    app = create_app(Settings(database_url=url, storage_url=f"file://{tmp_path / 'evidence'}",
                              migrate_on_startup=True))
    with TestClient(app) as client:
        # the old key still lists the old violations, unchanged
        listed = client.get("/api/v1/events", headers={"X-API-Key": written["reviewer_key"]})
        assert listed.status_code == 200, listed.text
        items = {item["id"]: item for item in listed.json()["items"]}
        assert set(items) == set(written["ids"])
        for v in written["violations"]:
            item = items[v["id"]]
            assert (item["rule"], item["camera_id"], item["zone_id"], item["review_state"]) == \
                ("fire_lane", "cam1", "lane1", v["review_state"])
            assert dt.datetime.fromisoformat(item["start_time"]) == v["start_time"].replace(tzinfo=dt.timezone.utc)
            assert item["confidence"] == pytest.approx(v["confidence"])
        # the old user logs in with the old password and sees the old case
        token = client.post("/api/v1/auth/token", data={"username": "wang.li", "password": PASSWORD})
        assert token.status_code == 200, token.text
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        case = client.get(f"/api/v1/cases/{written['case_id']}", headers=bearer)
        assert case.status_code == 200, case.text
        assert (case.json()["violation_id"], case.json()["state"], case.json()["assignee"]) == \
            (written["ids"][0], "open", "物业保安队")
        assert case.json()["assigned_by"] is None  # assigned before the grid existed (0005_grid): not claimed for it
        # the case still moves through its cycle on the upgraded schema
        rectified = client.post(f"/api/v1/cases/{written['case_id']}/rectify", headers=bearer,
                                json={"note": "车已挪走"})
        assert rectified.status_code == 200, rectified.text
        assert rectified.json()["state"] == "rectified"

    # the tables added after 0002 take and give back rows
    engine = make_engine(url)
    try:
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        with session_factory(engine)() as session:
            session.add(CameraHealthEvent(id="h" * 32, compound_id="c1", camera_id="cam1", kind="covered",
                                          started_at=now, detail="lens covered"))
            session.add(WorkerLease(camera_id="cam1", worker_id="worker-a", expires_at=now))
            session.add(RescanJob(compound_id="c1", source="s3://footage/2026-02/", mode="sampled", status="queued",
                                  created_by="k-old", created_at=now))
            session.add(GridEntry(compound_id="c1", building="3", assignee="3号楼 陈", source="api"))
            session.add(GridPlace(camera_id="cam1", zone_id="lane1", compound_id="c1", building="3", floor="12"))
            session.commit()
        with session_factory(engine)() as session:
            assert session.get(CameraHealthEvent, "h" * 32).kind == "covered"
            assert session.get(WorkerLease, "cam1").expires_at == now
            job = session.scalars(select(RescanJob)).one()
            assert (job.status, job.files_done, job.cancel_requested) == ("queued", 0, False)
            entry = session.scalars(select(GridEntry)).one()
            assert (entry.building, entry.floor, entry.camera_id, entry.assignee) == ("3", "", "", "3号楼 陈")
            assert session.get(GridPlace, ("cam1", "lane1")).floor == "12"
    finally:
        engine.dispose()
