"""``compoundeye report monthly``: the monthly report of a compound as HTML, PDF or JSON, from the database
the service uses (``COMPOUNDEYE_DATABASE_URL`` or ``--database-url``)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import typer

report_app = typer.Typer(help="Reports for supervisors (monthly report).", no_args_is_help=True)


@report_app.command("monthly")
def monthly(month: str = typer.Option(..., help="YYYY-MM in the site's time zone, e.g. 2026-11"),
            compound: str = typer.Option(..., help="compound id"),
            fmt: str = typer.Option("html", "--format", help="html, pdf or json"),
            out: Path = typer.Option(..., help="file to write"),
            database_url: Optional[str] = typer.Option(None, help="SQLAlchemy URL (default: the service's)"),
            storage_url: Optional[str] = typer.Option(None, help="evidence store for the snapshots "
                                                                  "(default: the service's)")) -> None:
    """Write the monthly report: violations found, confirmed, rejected (false-alarm rate), cases opened,
    closed on time, overdue, the scorecard and its change from the previous month, the worst spots, and
    each open case with its before/after snapshots."""
    from service import reports, scorecard
    from service.db import make_engine, session_factory
    from service.settings import Settings
    from service.storage import store_from_url
    from vision.errors import ConfigError

    if fmt not in ("html", "pdf", "json"):
        typer.echo("error: --format must be html, pdf or json", err=True)
        raise typer.Exit(2)
    if not re.fullmatch(r"\d{4}-\d{2}", month):
        typer.echo(f"error: --month {month!r}: expected YYYY-MM", err=True)
        raise typer.Exit(2)
    overrides = {k: v for k, v in (("database_url", database_url), ("storage_url", storage_url)) if v}
    settings = Settings(**overrides)
    try:
        table = scorecard.load_scoring(str(settings.scoring_config or scorecard.DEFAULT_SCORING))
    except ConfigError as exc:
        typer.echo(f"invalid scoring table:\n{exc}", err=True)
        raise typer.Exit(2)
    engine = make_engine(settings.database_url)
    try:
        with session_factory(engine)() as session:
            try:
                report = reports.monthly_report(session, table, compound, month,
                                                store=None if fmt == "json" else store_from_url(settings))
            except ValueError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2)
    finally:
        engine.dispose()
    if fmt == "json":
        for item in report["open_cases"]:
            item.pop("before_image"), item.pop("after_image")
        out.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    else:
        html = reports.render_html(report)
        if fmt == "html":
            out.write_text(html, encoding="utf-8")
        else:
            out.write_bytes(reports.render_pdf(html))
    figures = report["violations"]
    typer.echo(f"{out}: {compound} {month} — " + (
        f"{figures['found']} found, {figures['confirmed']} confirmed, {figures['rejected']} rejected, "
        f"score {report['scorecard']['score']:g}/{report['scorecard']['points']:g}" if report["has_data"] else "no data"))
