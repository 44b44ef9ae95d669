"""``/reports``: reports for supervisors (issue 12), all for readers (``reports.read``: viewer and up, the
scorecard's readers) of the compounds concerned.

- ``/reports/monthly``: the monthly report of a compound (每月报送) as HTML, PDF or JSON;
- ``/reports/company``: the monthly report of a property company over its compounds the caller reads;
- ``/reports/bulletin``: a bulletin (通报) ranking the compounds of a district, of a company, or every
  compound the caller reads, for a month or from/to dates; HTML, PDF, XLSX or JSON;
- ``/reports/ledger``, ``/reports/ledger/{id}``: the ledger documents (台账) the scheduler keeps, listed and
  downloaded; a document is visible only to a caller who reads every compound it covers.

A company or district with no compound the caller has a role in is 404 (unknown or foreign, the same
answer); one whose compounds the caller has a role in but may not read reports in is 403.
"""
from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Path, Query, Response
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import bulletins, catalog, company_report, ledger, reports, scorecard
from service.auth import Principal
from service.deps import CurrentPrincipal, SessionDep, SettingsDep, StoreDep
from service.models import LEDGER_KINDS, LedgerDocument
from vision.config import ORG_NAME_PATTERN


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Start the ledger scheduler (``report_schedule``) and stop it at shutdown."""
    scheduler = ledger_scheduler(app) if app.state.settings.report_schedule else None
    if scheduler is not None:
        scheduler.start()
    try:
        yield
    finally:
        if scheduler is not None:
            await run_in_threadpool(scheduler.close)


def ledger_scheduler(app: FastAPI) -> ledger.LedgerScheduler:
    """The app's scheduler (made on first use); its clock is ``app.state.ledger_clock`` when a test sets one."""
    scheduler = getattr(app.state, "ledger_scheduler", None)
    if scheduler is None:
        settings = app.state.settings
        table = scorecard.load_scoring(str(settings.scoring_config or scorecard.DEFAULT_SCORING))
        clock = getattr(app.state, "ledger_clock", None)
        scheduler = app.state.ledger_scheduler = ledger.LedgerScheduler(
            app.state.sessions, app.state.store, table, hour=settings.report_schedule_hour,
            **({"clock": clock} if clock is not None else {}))
    return scheduler


router = APIRouter(prefix="/reports", tags=["reports"], lifespan=lifespan)
ERRORS = {401: {"description": "missing, unknown or revoked API key or token"},
          403: {"description": "the caller's role may not read reports there (a worker key)"},
          404: {"description": "the compound, company, district or document is unknown or foreign to the caller"},
          422: {"description": "invalid month, dates or names"}}
MEDIA = {"html": "text/html; charset=utf-8", "pdf": "application/pdf", "json": "application/json",
         "xlsx": ledger.CONTENT_TYPES["xlsx"]}
Month = Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM, site time zone")]
OrgQuery = Annotated[str, Query(min_length=1, max_length=100, pattern=ORG_NAME_PATTERN)]


def _table(settings) -> scorecard.ScoringTable:
    return scorecard.load_scoring(str(settings.scoring_config or scorecard.DEFAULT_SCORING))


def scoped_compounds(session: Session, principal: Principal, *, company: str | None = None,
                     district: str | None = None) -> list[str]:
    """The compounds of ``company`` / ``district`` (every compound when neither is given) where the caller
    may read reports. 404 when the caller has no role in any of them (or there is none), 403 when it has
    roles there but none that reads reports."""
    ids = catalog.compounds_of(session, company=company, district=district)
    readable = [c for c in ids if principal.can("reports.read", c)]
    if readable:
        return readable
    if company is None and district is None:
        principal.require_any("reports.read")
        return []
    what = f"company {company!r}" if company is not None else f"district {district!r}"
    if any(principal.role_in(c) is not None for c in ids):
        raise HTTPException(403, f"{principal.name!r} may not read the reports of {what}")
    raise HTTPException(404, f"no {what}")


def _file(body: bytes | str, fmt: str, name: str) -> Response:
    headers = {"Content-Disposition": f'inline; filename="{name}.{fmt}"'} if fmt != "json" else {}
    return Response(body, media_type=MEDIA[fmt], headers=headers)


@router.get("/monthly", responses={**ERRORS, 200: {"content": {"text/html": {}, "application/pdf": {}}}})
def get_monthly_report(principal: CurrentPrincipal, session: SessionDep, settings: SettingsDep, store: StoreDep,
                       compound: Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")],
                       month: Month, format: Literal["html", "pdf", "json"] = "html") -> Response:
    """The report of ``compound`` for ``month``: violations, false-alarm rate, cases, scorecard and its change,
    worst spots, open cases with before/after snapshots (JSON: the figures, snapshots as object keys)."""
    principal.require("reports.read", compound)
    try:
        report = reports.monthly_report(session, _table(settings), compound, month,
                                        store=None if format == "json" else store)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if format == "json":
        for item in report["open_cases"]:
            item.pop("before_image"), item.pop("after_image")
        return _file(json.dumps(report, ensure_ascii=False), "json", "")
    html = reports.render_html(report)
    return _file(html if format == "html" else reports.render_pdf(html), format, f"report-{compound}-{month}")


@router.get("/company", responses={**ERRORS, 200: {"content": {"text/html": {}, "application/pdf": {}}}})
def get_company_report(principal: CurrentPrincipal, session: SessionDep, settings: SettingsDep,
                       company: OrgQuery, month: Month, format: Literal["html", "pdf", "json"] = "html") -> Response:
    """The monthly report of property company ``company`` over its compounds the caller reads: company
    totals, a table of the compounds (score and change, found/confirmed/rejected, cases opened / closed on
    time / overdue), charts, then each compound's report (at most 20 open cases each)."""
    ids = scoped_compounds(session, principal, company=company)
    try:
        report = company_report.company_report(session, _table(settings), company, ids, month)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if format == "json":
        return _file(json.dumps(report, ensure_ascii=False), "json", "")
    html = company_report.render_html(report)
    return _file(html if format == "html" else reports.render_pdf(html), format, f"company-report-{month}")


@router.get("/bulletin", responses={**ERRORS, 200: {"content": {"text/html": {}, "application/pdf": {},
                                                                 MEDIA["xlsx"]: {}}}})
def get_bulletin(principal: CurrentPrincipal, session: SessionDep, settings: SettingsDep,
                 district: OrgQuery | None = None, company: OrgQuery | None = None,
                 month: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")] = None,
                 date_from: Annotated[str | None, Query(alias="from", pattern=r"^\d{4}-\d{2}-\d{2}$",
                                                        description="first day, YYYY-MM-DD")] = None,
                 date_to: Annotated[str | None, Query(alias="to", pattern=r"^\d{4}-\d{2}-\d{2}$",
                                                      description="last day (included), YYYY-MM-DD")] = None,
                 format: Literal["html", "pdf", "xlsx", "json"] = "html") -> Response:
    """The compounds of ``district`` (or of ``company``, or every compound the caller reads) ranked by score
    for ``month`` or ``from``..``to``, with the scoring items that cost each one points. Equal scores share
    a rank (并列); a compound without any violation found in the period is not ranked (无数据)."""
    if district is not None and company is not None:
        raise HTTPException(422, "give district or company, not both")
    table = _table(settings)
    try:
        period = bulletins.bulletin_period(table, month, date_from, date_to)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    ids = scoped_compounds(session, principal, company=company, district=district)
    kind, name = ("district", district) if district is not None else (
        ("company", company) if company is not None else ("all", ""))
    data = bulletins.bulletin(session, table, ids, period, scope_kind=kind, scope_name=name)
    if format == "json":
        return _file(json.dumps(data, ensure_ascii=False), "json", "")
    if format == "xlsx":
        return _file(bulletins.render_xlsx(data, table), "xlsx", f"bulletin-{period.name}")
    html = bulletins.render_html(data)
    return _file(html if format == "html" else reports.render_pdf(html), format, f"bulletin-{period.name}")


def _visible(principal: Principal, row: LedgerDocument) -> bool:
    return bool(row.compounds) and all(principal.can("reports.read", c) for c in row.compounds)


@router.get("/ledger", responses=ERRORS)
def list_ledger(principal: CurrentPrincipal, session: SessionDep,
                kind: Literal[LEDGER_KINDS] | None = None,  # type: ignore[valid-type]
                period: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$")] = None,
                compound: Annotated[str | None, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")] = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 100,
                offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> dict:
    """The ledger documents the caller may read (every compound they cover), newest period first; with
    ``compound``, those covering it (404/403 when it is foreign / not readable)."""
    if compound is not None:
        principal.require("reports.read", compound)
    else:
        principal.require_any("reports.read")
    query = select(LedgerDocument).order_by(LedgerDocument.period.desc(), LedgerDocument.kind,
                                            LedgerDocument.scope, LedgerDocument.format)
    if kind is not None:
        query = query.where(LedgerDocument.kind == kind)
    if period is not None:
        query = query.where(LedgerDocument.period == period)
    # a few rows per compound and month: the JSON list of compounds is filtered here, the same on both databases
    rows = [r for r in session.scalars(query)
            if _visible(principal, r) and (compound is None or compound in r.compounds)]
    return {"total": len(rows), "items": [ledger.document_public(r) for r in rows[offset:offset + limit]]}


@router.get("/ledger/{document_id}", responses={**ERRORS, 200: {"content": {"application/pdf": {},
                                                                           MEDIA["xlsx"]: {}}}})
def get_ledger_document(principal: CurrentPrincipal, session: SessionDep, store: StoreDep,
                        document_id: Annotated[int, Path(ge=1, le=2**31 - 1)]) -> Response:
    """One ledger document's bytes, checked against its recorded sha256 (500 naming the key when not)."""
    row = session.get(LedgerDocument, document_id)
    if row is None or not any(principal.role_in(c) is not None for c in row.compounds or []):
        raise HTTPException(404, f"no ledger document {document_id}")
    if not _visible(principal, row):
        raise HTTPException(403, f"{principal.name!r} may not read every compound of ledger document {document_id}")
    data = ledger.read_document(store, row)
    headers = {"Content-Disposition": f'attachment; filename="{row.kind}-{row.period}-{row.id}.{row.format}"',
               "X-Content-SHA256": row.sha256}
    return Response(data, media_type=row.content_type, headers=headers)
