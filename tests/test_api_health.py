"""Health check, OpenAPI, and the schema the migrations build."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi.testclient import TestClient

from service.app import create_app
from service.db import alembic_config, make_engine
from service.models import Base
from service.settings import Settings


def test_healthz_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_healthz_503_when_database_unreachable(database_url, tmp_path):
    if database_url.startswith("sqlite"):
        (tmp_path / "a_folder.db").mkdir()  # a folder cannot be opened as a database file
        unreachable = f"sqlite:///{tmp_path / 'a_folder.db'}"
    else:
        unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1
    app = create_app(Settings(database_url=unreachable, storage_url=f"file://{tmp_path / 'ev'}",
                              migrate_on_startup=False))
    with TestClient(app) as client:
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "unreachable"}


def test_openapi_docs_are_served(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/v1/events", "/api/v1/events/{violation_id}", "/api/v1/events/{violation_id}/evidence/{kind}",
            "/api/v1/events/{violation_id}/review"} <= set(paths)


def test_migrations_build_exactly_the_models(app, database_url):
    """The app migrated the database at start; what Alembic built is what the models describe."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
            # features add migrations side by side from the same parent: the database is at every head
            heads = set(ScriptDirectory.from_config(alembic_config(database_url)).get_heads())
            assert set(MigrationContext.configure(conn).get_current_heads()) == heads
    finally:
        engine.dispose()
