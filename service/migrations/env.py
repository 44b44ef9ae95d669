"""Alembic environment: the database URL comes from ``config.attributes['database_url']`` (set by
:func:`service.db.alembic_config`) or, for the ``alembic`` command line, from ``sqlalchemy.url`` or
``COMPOUNDEYE_DATABASE_URL``. Logging is left to the host application."""
from __future__ import annotations

import os

from alembic import context

from service.db import make_engine
from service.models import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    return (config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
            or os.environ.get("COMPOUNDEYE_DATABASE_URL") or "sqlite:///var/compoundeye.db")


def run_migrations_offline() -> None:
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_database_url())
    try:
        with engine.connect() as connection:
            # render_as_batch: SQLite cannot ALTER most things, batch mode rebuilds the table instead.
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                              compare_type=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
