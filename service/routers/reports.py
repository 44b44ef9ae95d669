"""``/reports/monthly``: the monthly report of a compound (每月报送) as HTML, PDF or JSON. Viewers and up of
the compound (the same readers as the scorecard, whose figures it carries)."""
from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response

from service import reports, scorecard
from service.deps import CurrentPrincipal, SessionDep, SettingsDep, StoreDep

router = APIRouter(prefix="/reports", tags=["reports"])
ERRORS = {401: {"description": "missing, unknown or revoked API key or token"},
          403: {"description": "a worker key cannot read reports"},
          404: {"description": "the compound is foreign to the caller"},
          422: {"description": "invalid month or compound id"}}
MEDIA = {"html": "text/html; charset=utf-8", "pdf": "application/pdf", "json": "application/json"}


@router.get("/monthly", responses={**ERRORS, 200: {"content": {"text/html": {}, "application/pdf": {}}}})
def get_monthly_report(principal: CurrentPrincipal, session: SessionDep, settings: SettingsDep, store: StoreDep,
                       compound: Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")],
                       month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM, site time zone")],
                       format: Literal["html", "pdf", "json"] = "html") -> Response:
    """The report of ``compound`` for ``month``: violations, false-alarm rate, cases, scorecard and its change,
    worst spots, open cases with before/after snapshots (JSON: the figures, snapshots as object keys)."""
    principal.require("reports.read", compound)
    table = scorecard.load_scoring(str(settings.scoring_config or scorecard.DEFAULT_SCORING))
    try:
        report = reports.monthly_report(session, table, compound, month, store=None if format == "json" else store)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    if format == "json":
        for item in report["open_cases"]:
            item.pop("before_image"), item.pop("after_image")
        return Response(json.dumps(report, ensure_ascii=False), media_type=MEDIA["json"])
    html = reports.render_html(report)
    headers = {"Content-Disposition": f'inline; filename="report-{compound}-{month}.{format}"'}
    if format == "html":
        return Response(html, media_type=MEDIA["html"], headers=headers)
    return Response(reports.render_pdf(html), media_type=MEDIA["pdf"], headers=headers)
