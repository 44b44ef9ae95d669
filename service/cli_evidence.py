"""``compoundeye evidence verify`` and ``compoundeye evidence prune [--dry-run]``.

Both read the database and the store named by the ``COMPOUNDEYE_*`` settings (or the options), print a
summary (``--json`` for machines) and exit 1 when something is wrong.
"""
from __future__ import annotations

import json
from typing import Optional

import typer

evidence_app = typer.Typer(help="Evidence objects: integrity check and retention.", no_args_is_help=True)


def _open(database_url: Optional[str], storage_url: Optional[str]):
    """(settings, session, store) for the command; migrations are applied first."""
    from service.db import make_engine, session_factory, upgrade
    from service.settings import Settings
    from service.storage import store_from_url
    settings = Settings(**{k: v for k, v in (("database_url", database_url), ("storage_url", storage_url)) if v})
    upgrade(settings.database_url)
    session = session_factory(make_engine(settings.database_url))()
    return settings, session, store_from_url(settings)


@evidence_app.command("verify")
def verify(database_url: Optional[str] = typer.Option(None, help="SQLAlchemy URL (default: settings)"),
           storage_url: Optional[str] = typer.Option(None, help="file://folder or s3://bucket/prefix"),
           as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Read every stored evidence object and check its size and sha256 against the values recorded at
    upload. Mismatches and missing objects are listed, logged and audited; exit code 1 if any."""
    from service.errors import StorageError
    from service.integrity import verify_all
    try:
        _, session, store = _open(database_url, storage_url)
    except StorageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    with session:
        report = verify_all(session, store)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        for key, problem in report.problems.items():
            typer.echo(f"BAD {key}: {problem}")
        typer.echo(f"{report.checked} object(s) checked, {report.bytes} bytes verified, "
                   f"{len(report.problems)} problem(s)")
    if not report.ok:
        raise typer.Exit(1)


@evidence_app.command("prune")
def prune(dry_run: bool = typer.Option(False, "--dry-run", help="list what would be deleted, delete nothing"),
          database_url: Optional[str] = typer.Option(None, help="SQLAlchemy URL (default: settings)"),
          storage_url: Optional[str] = typer.Option(None, help="file://folder or s3://bucket/prefix"),
          as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Delete evidence past its retention (COMPOUNDEYE_RETENTION_{UNREVIEWED,REJECTED,CONFIRMED}_DAYS,
    default 30 / 7 / 365), never while the violation's rectification case is not closed."""
    from service.errors import StorageError
    from service.retention import RetentionPolicy, prune as run_prune
    try:
        settings, session, store = _open(database_url, storage_url)
    except StorageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    policy = RetentionPolicy.from_settings(settings)
    with session:
        report = run_prune(session, store, policy, dry_run=dry_run)
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
    else:
        verb = "would delete" if dry_run else "deleted"
        for violation_id in report.violations:
            typer.echo(f"{verb} evidence of {violation_id}")
        typer.echo(f"{verb} {report.objects} object(s), {report.bytes} bytes of {len(report.violations)} "
                   f"violation(s); kept {len(report.kept_for_open_case)} held by an open case "
                   f"(policy: {policy.days()})")
        for violation_id, error in report.failed.items():
            typer.echo(f"FAILED {violation_id}: {error}", err=True)
    if report.failed:
        raise typer.Exit(1)
