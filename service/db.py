"""Database engine, sessions and migrations.

SQLite (the embedded default) runs with WAL, foreign keys and a busy timeout; PostgreSQL is reached
through psycopg 3. The schema changes only through Alembic: :func:`upgrade` runs the packaged
migrations and works from an installed package, not only from the repository root.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_S = 30


def normalize_url(database_url: str) -> URL:
    """The URL as SQLAlchemy should see it: ``postgresql://`` and ``postgres://`` mean psycopg 3."""
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def make_engine(database_url: str) -> Engine:
    """An engine for ``database_url``. For a SQLite file its folder is created; every SQLite
    connection gets WAL, foreign keys and a busy timeout so concurrent writers wait instead of failing."""
    url = normalize_url(database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 3})


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine``; objects stay readable after commit (``expire_on_commit=False``)."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(database_url: str) -> Config:
    """An Alembic config built in code: the packaged ``migrations`` folder and ``database_url``.

    The URL travels in ``config.attributes`` rather than the ini options, so a ``%`` in a password
    is not taken for ini interpolation."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "heads") -> None:
    """Migrate the database at ``database_url`` to ``revision`` (default: every head, so that features
    developed side by side may each add a migration branching from the same parent)."""
    command.upgrade(alembic_config(database_url), revision)


def ping(engine: Engine) -> None:
    """Run ``SELECT 1``; raises ``sqlalchemy.exc.OperationalError`` (or similar) when unreachable."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def statistics_warning(engine: Engine) -> str | None:
    """On PostgreSQL with ``autovacuum`` off, why listings will slow down as the tables grow (a sentence
    for the log); else None (also when the server cannot be asked now).

    The planner chooses between an index and a scan of the whole table from the statistics that ANALYZE
    gathers, which autovacuum keeps fresh. Without them a table filled since the service started is
    planned as if it held a few rows: at 20,000 violations a page of the review queue took 27–33 ms
    instead of 14–15 ms, and the gap grows with the table."""
    if engine.dialect.name != "postgresql":
        return None
    try:
        with engine.connect() as conn:
            setting = conn.execute(text("SHOW autovacuum")).scalar()
    except Exception:  # noqa: BLE001 - unreachable now: the health check reports that, not this
        return None
    if setting != "off":
        return None
    return ("PostgreSQL has autovacuum off: the planner's statistics go stale as violations arrive and "
            "listings slow down with the table; turn autovacuum on, or run ANALYZE on this database regularly "
            "(e.g. hourly from cron)")
