"""``compoundeye users …`` and ``compoundeye keys …``: the first admin, people and their grants, and
API keys for workers (and scripts). Every change is written to the audit log with actor ``cli``."""
from __future__ import annotations

import getpass
import os
from typing import List, Optional

import typer

users_app = typer.Typer(help="People who log in, and their roles per compound.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys for workers (and scripts), hashed, scoped to compounds, revocable.",
                       no_args_is_help=True)
CLI_ACTOR = ("cli", "cli")


def _sessions(database_url: Optional[str]):
    from service.db import make_engine, session_factory, upgrade
    from service.settings import Settings
    settings = Settings(**({"database_url": database_url} if database_url else {}))
    upgrade(settings.database_url)
    return session_factory(make_engine(settings.database_url))


def _grants(grant: List[str]) -> dict[str, str]:
    """``compound=role`` pairs (``*=admin`` for every compound)."""
    grants = {}
    for item in grant:
        compound, sep, role = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r}: expected COMPOUND=ROLE, e.g. c1=reviewer or '*=admin'")
        grants[compound] = role
    return grants


@users_app.command("create")
def users_create(username: str = typer.Argument(..., help="login name (lower case)"),
                 grant: List[str] = typer.Option(..., help="COMPOUND=ROLE (repeat); '*=admin' for the first admin"),
                 display_name: str = typer.Option("", help="the name shown in the ledger"),
                 password_env: str = typer.Option("COMPOUNDEYE_NEW_PASSWORD",
                                                  help="environment variable holding the password (else prompt)"),
                 database_url: Optional[str] = typer.Option(None)) -> None:
    """Create a user. The password comes from the environment or a prompt, never the command line."""
    from service import audit
    from service.users import create_user, user_public
    password = os.environ.get(password_env) or getpass.getpass(f"password for {username}: ")
    with _sessions(database_url)() as session:
        try:
            user = create_user(session, username, password, _grants(grant), display_name)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        audit.record(session, CLI_ACTOR, "user", user.id, "create", None, user_public(user))
        session.commit()
        typer.echo(f"created user {user.username} (id {user.id}) with {user_public(user)['grants']}")


@users_app.command("list")
def users_list(database_url: Optional[str] = typer.Option(None)) -> None:
    """Users with their grants."""
    from sqlalchemy import select
    from service.models import User
    from service.users import user_public
    with _sessions(database_url)() as session:
        for user in session.scalars(select(User).order_by(User.id)):
            info = user_public(user)
            typer.echo(f"{info['id']}\t{info['username']}\t{'active' if info['is_active'] else 'disabled'}\t"
                       f"{info['grants']}")


@users_app.command("disable")
def users_disable(username: str, database_url: Optional[str] = typer.Option(None)) -> None:
    """Disable a user: login refused and every token stops working at once."""
    from sqlalchemy import select
    from service import audit
    from service.models import User
    from service.users import user_public
    with _sessions(database_url)() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            typer.echo(f"error: no user {username!r}", err=True)
            raise typer.Exit(2)
        before = user_public(user)
        user.is_active = False
        audit.record(session, CLI_ACTOR, "user", user.id, "disable", before, user_public(user))
        session.commit()
        typer.echo(f"disabled {username}")


@keys_app.command("create")
def keys_create(name: str = typer.Option(..., help="who or what uses the key"),
                role: str = typer.Option("worker", help="worker, viewer, reviewer, supervisor or admin"),
                compound: List[str] = typer.Option(["*"], help="compound ids in scope (repeat), * for all"),
                database_url: Optional[str] = typer.Option(None)) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from service import audit
    from service.keys import ALL_COMPOUNDS, create_key, key_id_of
    with _sessions(database_url)() as session:
        scope = ALL_COMPOUNDS if list(compound) == [ALL_COMPOUNDS] else list(compound)
        try:
            key = create_key(session, name=name, role=role, compounds=scope)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        audit.record(session, CLI_ACTOR, "api_key", key_id_of(key), "create", None,
                     {"name": name, "role": role, "compounds": list(compound)})
        session.commit()
    typer.echo(key)


@keys_app.command("list")
def keys_list(database_url: Optional[str] = typer.Option(None)) -> None:
    """Keys (id, name, role, scope, revoked or not); never the secret."""
    from sqlalchemy import select
    from service.models import ApiKey
    with _sessions(database_url)() as session:
        for key in session.scalars(select(ApiKey).order_by(ApiKey.created_at)):
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
            typer.echo(f"{key.id}\t{key.name}\t{key.role}\t{','.join(key.compounds)}\t{state}")


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="the 16-hex id (the part after ce_)"),
                database_url: Optional[str] = typer.Option(None)) -> None:
    """Revoke a key; it stops working at once."""
    from service import audit
    from service.keys import revoke_key
    with _sessions(database_url)() as session:
        try:
            key = revoke_key(session, key_id)
        except LookupError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        audit.record(session, CLI_ACTOR, "api_key", key.id, "revoke", None, {"revoked_at": key.revoked_at})
        session.commit()
    typer.echo(f"revoked {key_id}")
