"""``compoundeye report monthly|company|bulletin|ledger``: the monthly report of a compound or a property company,
a bulletin ranking compounds, and the ledger documents of a month, from the database
the service uses (``COMPOUNDEYE_DATABASE_URL`` or ``--database-url``)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import typer

report_app = typer.Typer(help="Reports for supervisors: monthly reports of compounds and companies, bulletins, "
                         "ledger documents.", no_args_is_help=True)


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
    from service import reports
    from service.db import session_factory
    from service.storage import store_from_url

    if fmt not in ("html", "pdf", "json"):
        _fail("--format must be html, pdf or json")
    if not re.fullmatch(r"\d{4}-\d{2}", month):
        _fail(f"--month {month!r}: expected YYYY-MM")
    settings, table, engine = _open(database_url, storage_url)
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


def _open(database_url: Optional[str], storage_url: Optional[str]):
    """Settings, scoring table and engine of the service (overridden by the options); exit 2 on a bad table."""
    from service import scorecard
    from service.db import make_engine
    from service.settings import Settings
    from vision.errors import ConfigError

    overrides = {k: v for k, v in (("database_url", database_url), ("storage_url", storage_url)) if v}
    settings = Settings(**overrides)
    try:
        table = scorecard.load_scoring(str(settings.scoring_config or scorecard.DEFAULT_SCORING))
    except ConfigError as exc:
        typer.echo(f"invalid scoring table:\n{exc}", err=True)
        raise typer.Exit(2)
    return settings, table, make_engine(settings.database_url)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


@report_app.command("company")
def company(month: str = typer.Option(..., help="YYYY-MM in the site's time zone, e.g. 2026-11"),
            company_name: str = typer.Option(..., "--company", help="property company, as in the site file"),
            fmt: str = typer.Option("html", "--format", help="html, pdf or json"),
            out: Path = typer.Option(..., help="file to write"),
            database_url: Optional[str] = typer.Option(None, help="SQLAlchemy URL (default: the service's)")) -> None:
    """Write the monthly report of a property company: totals, a table of its compounds (score and change,
    found/confirmed/rejected, cases opened / closed on time / overdue), charts, each compound's report."""
    from service import catalog, company_report, reports
    from service.db import session_factory

    if fmt not in ("html", "pdf", "json"):
        _fail("--format must be html, pdf or json")
    _, table, engine = _open(database_url, None)
    try:
        with session_factory(engine)() as session:
            ids = catalog.compounds_of(session, company=company_name)
            if not ids:
                _fail(f"no compound of company {company_name!r} (set company: in the site file)")
            try:
                report = company_report.company_report(session, table, company_name, ids, month)
            except ValueError as exc:
                _fail(str(exc))
    finally:
        engine.dispose()
    if fmt == "json":
        out.write_text(json.dumps(report, ensure_ascii=False, indent=2), encoding="utf-8")
    else:
        html = company_report.render_html(report)
        out.write_text(html, encoding="utf-8") if fmt == "html" else out.write_bytes(reports.render_pdf(html))
    t = report["totals"]
    typer.echo(f"{out}: {company_name} {month} — {t['compounds']} compounds ({t['compounds_with_data']} with data), "
               f"{t['found']} found, {t['confirmed']} confirmed, {t['rejected']} rejected")


@report_app.command("bulletin")
def bulletin(district: Optional[str] = typer.Option(None, help="rank the compounds of this district"),
             company_name: Optional[str] = typer.Option(None, "--company", help="... or of this property company"),
             month: Optional[str] = typer.Option(None, help="YYYY-MM (or --from and --to)"),
             date_from: Optional[str] = typer.Option(None, "--from", help="first day, YYYY-MM-DD"),
             date_to: Optional[str] = typer.Option(None, "--to", help="last day (included), YYYY-MM-DD"),
             fmt: str = typer.Option("pdf", "--format", help="pdf, xlsx, html or json"),
             out: Path = typer.Option(..., help="file to write"),
             database_url: Optional[str] = typer.Option(None, help="SQLAlchemy URL (default: the service's)")) -> None:
    """Write a bulletin (通报): the compounds of a district (or a company, or all) ranked by score for a
    month or from/to dates, with the items that cost points. Equal scores share a rank (并列); compounds
    without any violation found in the period are listed last as 无数据, not ranked."""
    from service import bulletins, catalog, reports
    from service.db import session_factory

    if fmt not in ("pdf", "xlsx", "html", "json"):
        _fail("--format must be pdf, xlsx, html or json")
    if district is not None and company_name is not None:
        _fail("give --district or --company, not both")
    _, table, engine = _open(database_url, None)
    try:
        period = bulletins.bulletin_period(table, month, date_from, date_to)
    except ValueError as exc:
        engine.dispose()
        _fail(str(exc))
    try:
        with session_factory(engine)() as session:
            ids = catalog.compounds_of(session, company=company_name, district=district)
            if not ids and (district or company_name):
                _fail(f"no compound of {'district' if district else 'company'} {district or company_name!r}")
            kind, name = ("district", district) if district else (("company", company_name) if company_name
                                                                     else ("all", ""))
            data = bulletins.bulletin(session, table, ids, period, scope_kind=kind, scope_name=name)
    finally:
        engine.dispose()
    if fmt == "json":
        out.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
    elif fmt == "xlsx":
        out.write_bytes(bulletins.render_xlsx(data, table))
    else:
        html = bulletins.render_html(data)
        out.write_text(html, encoding="utf-8") if fmt == "html" else out.write_bytes(reports.render_pdf(html))
    typer.echo(f"{out}: {bulletins.title(data)} — {data['ranked']} ranked, {data['compounds'] - data['ranked']} without data")
    for entry in data["ranking"]:
        score = "无数据 no data" if entry["score"] is None else f"{entry['score']:g}"
        typer.echo(f"  {entry['rank'] or '—':>3}{' =' if entry['tie'] else '  '} {entry['compound_id']:<20} {score}")


@report_app.command("ledger")
def ledger_generate(month: str = typer.Option(..., help="YYYY-MM: make that month's missing ledger documents"),
                    database_url: Optional[str] = typer.Option(None, help="SQLAlchemy URL (default: the service's)"),
                    storage_url: Optional[str] = typer.Option(None, help="object store (default: the service's)"),
                    by: str = typer.Option("cli", help="recorded as created_by")) -> None:
    """Make the ledger documents (台账) of a month that do not exist yet, as the service's scheduler does on
    the 1st: each compound's and each property company's monthly report (PDF), each district's bulletin
    (PDF and XLSX). Documents already kept are not made again."""
    from service import ledger
    from service.db import session_factory
    from service.storage import store_from_url

    settings, table, engine = _open(database_url, storage_url)
    try:
        made = ledger.generate_month(session_factory(engine), store_from_url(settings), table, month, created_by=by)
    except ValueError as exc:
        _fail(str(exc))
    finally:
        engine.dispose()
    for row in made:
        typer.echo(f"  {row['kind']:<18} {row['scope']:<24} {row['format']:<5} {row['size']:>9} bytes  {row['sha256'][:12]}")
    typer.echo(f"{month}: {len(made)} ledger documents made")
