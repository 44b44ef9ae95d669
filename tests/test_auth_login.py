"""Login (OAuth2 password flow), token expiry and revocation, revoked keys, the CLI, and migration 0002
over a 0001 database with data in it — on SQLite and PostgreSQL."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, text, update
from typer.testing import CliRunner

from service.cli import app as cli
from service.db import make_engine, upgrade
from service.keys import key_id_of
from service.models import AccessToken, Case, User, Violation
from workflow import PASSWORD, make_user


def test_login_me_logout(app, client):
    headers = make_user(app, client, "alice", {"c1": "reviewer", "c2": "viewer"})
    me = client.get("/api/v1/auth/me", headers=headers).json()
    assert me["kind"] == "user" and me["roles"] == {"c1": "reviewer", "c2": "viewer"}
    with app.state.sessions() as session:
        stored = session.scalar(select(User.password_hash).where(User.username == "alice"))
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 401


def test_wrong_password_and_unknown_user_401(app, client):
    make_user(app, client, "bob", {"c1": "viewer"})
    for username, password in (("bob", "wrong password"), ("nobody", PASSWORD)):
        response = client.post("/api/v1/auth/token", data={"username": username, "password": password})
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_failed_logins_are_throttled_per_name_and_address(app, client):
    make_user(app, client, "carol", {"c1": "viewer"})
    make_user(app, client, "dave", {"c1": "viewer"})
    login = lambda user, password: client.post("/api/v1/auth/token", data={"username": user, "password": password})
    for _ in range(5):
        assert login("carol", "guess").status_code == 401
    blocked = login("carol", PASSWORD)          # the right password does not get through while throttled
    assert blocked.status_code == 429 and 1 <= int(blocked.headers["retry-after"]) <= 300
    assert login("Carol ", "guess").status_code == 429   # the same name, however it is written
    assert login("dave", PASSWORD).status_code == 200     # another user is not locked out by carol's
    # a good login clears the name's failures
    assert login("dave", "guess").status_code == 401 and login("dave", PASSWORD).status_code == 200
    for _ in range(4):
        assert login("dave", "guess").status_code == 401
    assert login("dave", PASSWORD).status_code == 200
    # many names guessed from one address: the address is throttled after 30 failures in the window
    for i in range(30 - 5 - 5):
        assert login(f"nobody{i}", "guess").status_code == 401
    assert login("dave", PASSWORD).status_code == 429


def test_expired_token_and_disabled_user_refused(app, client):
    headers = make_user(app, client, "carol", {"c1": "viewer"})
    assert client.get("/api/v1/events", headers=headers).status_code == 200
    with app.state.sessions() as session:
        session.execute(update(AccessToken).values(expires_at=dt.datetime.now(dt.timezone.utc)
                                                   - dt.timedelta(seconds=1)))
        session.commit()
    assert client.get("/api/v1/events", headers=headers).status_code == 401
    headers = client.post("/api/v1/auth/token", data={"username": "carol", "password": PASSWORD}).json()
    headers = {"Authorization": f"Bearer {headers['access_token']}"}
    with app.state.sessions() as session:
        session.execute(update(User).values(is_active=False))
        session.commit()
    assert client.get("/api/v1/events", headers=headers).status_code == 401
    assert client.post("/api/v1/auth/token", data={"username": "carol", "password": PASSWORD}).status_code == 401


def test_revoked_key_refused(app, client, make_key):
    admin = make_user(app, client, "root", {"*": "admin"})
    created = client.post("/api/v1/keys", headers=admin, json={"name": "w1", "role": "worker", "compounds": ["c1"]})
    assert created.status_code == 201
    worker = {"X-API-Key": created.json()["key"]}
    assert client.get("/api/v1/events", headers=worker).status_code == 200
    assert client.post(f"/api/v1/keys/{created.json()['id']}/revoke", headers=admin).status_code == 200
    response = client.get("/api/v1/events", headers=worker)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "ApiKey"
    assert [k["revoked_at"] is not None for k in client.get("/api/v1/keys", headers=admin).json()] == [True]


def test_grant_takes_effect_on_existing_token(app, client):
    admin = make_user(app, client, "root", {"*": "admin"})
    dave = make_user(app, client, "dave", {"c1": "viewer"})
    assert client.get("/api/v1/cases", params={"compound_id": "c2"}, headers=dave).status_code == 404
    user_id = client.get("/api/v1/auth/me", headers=dave).json()["id"]
    assert client.put(f"/api/v1/users/{user_id}/grants/c2", json={"role": "supervisor"},
                      headers=admin).status_code == 200
    assert client.get("/api/v1/cases", params={"compound_id": "c2"}, headers=dave).status_code == 200
    assert client.delete(f"/api/v1/users/{user_id}/grants/c2", headers=admin).status_code == 204
    assert client.get("/api/v1/cases", params={"compound_id": "c2"}, headers=dave).status_code == 404


def test_cli_first_admin_and_worker_key(database_url, monkeypatch, client):
    runner = CliRunner()
    monkeypatch.setenv("COMPOUNDEYE_NEW_PASSWORD", "a long admin password")
    result = runner.invoke(cli, ["users", "create", "admin", "--grant", "*=admin", "--database-url", database_url])
    assert result.exit_code == 0, result.output
    token = client.post("/api/v1/auth/token", data={"username": "admin", "password": "a long admin password"})
    assert token.status_code == 200
    result = runner.invoke(cli, ["keys", "create", "--name", "gate worker", "--compound", "c1",
                                 "--database-url", database_url])
    assert result.exit_code == 0, result.output
    key = result.output.strip().splitlines()[-1]
    assert client.get("/api/v1/auth/me", headers={"X-API-Key": key}).json()["roles"] == {"c1": "worker"}
    result = runner.invoke(cli, ["keys", "revoke", key_id_of(key), "--database-url", database_url])
    assert result.exit_code == 0, result.output
    assert client.get("/api/v1/auth/me", headers={"X-API-Key": key}).status_code == 401
    bad = runner.invoke(cli, ["users", "create", "x", "--grant", "c1=worker", "--database-url", database_url])
    assert bad.exit_code == 2


def test_migration_0002_keeps_0001_data(tmp_path, request):
    """A 0001 database with a confirmed and an unreviewed violation upgrades to head: the review keeps its
    key and the confirmed violation gets an open case. Done on a fresh SQLite file and PostgreSQL database."""
    urls = [f"sqlite:///{tmp_path / 'old.db'}"]
    import os
    if os.environ.get("COMPOUNDEYE_TEST_NO_PG") != "1":
        admin, user, template = request.getfixturevalue("pg_template")
        name = f"{template}_mig"
        admin.execute(f'CREATE DATABASE "{name}"')
        request.addfinalizer(lambda: admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        urls.append(f"postgresql+psycopg://{user}@127.0.0.1:5432/{name}")
    for url in urls:
        upgrade(url, "0001")
        engine = make_engine(url)
        with engine.begin() as conn:
            t = "2026-03-01 00:00:00+00"
            conn.execute(text(f"INSERT INTO compounds VALUES ('c1', '', '{t}')"))
            conn.execute(text(f"INSERT INTO cameras VALUES ('cam1', 'c1', '', '{t}')"))
            conn.execute(text(f"INSERT INTO api_keys VALUES ('k1', 'n', 'h', 'reviewer', '[\"c1\"]', '{t}', NULL)"))
            for vid, state in (("a" * 32, "confirmed"), ("b" * 32, "unreviewed")):
                conn.execute(text(f"INSERT INTO violations VALUES ('{vid}', 'fire_lane', 'c1', 'cam1', 'lane1', '{t}', "
                                  f"'{t}', NULL, 0.9, 'm', 'live', '[]', '{state}', '{t}')"))
            conn.execute(text(f"INSERT INTO reviews (violation_id, verdict, reviewer_key_id, decided_at) "
                              f"VALUES ('{'a' * 32}', 'confirm', 'k1', '{t}')"))
        engine.dispose()
        upgrade(url)
        engine = make_engine(url)
        from sqlalchemy.orm import Session
        with Session(engine) as session:
            cases = session.scalars(select(Case)).all()
            assert [(c.violation_id, c.state) for c in cases] == [("a" * 32, "open")]
            assert session.get(Violation, "a" * 32).case_id == cases[0].id
            assert session.get(Violation, "b" * 32).case_id is None
            assert session.get(Violation, "a" * 32).review.reviewer_key_id == "k1"
        engine.dispose()
