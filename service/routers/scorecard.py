"""``/compounds/{id}/scorecard``, ``/ledger.{csv,xlsx}`` and ``/trend.{svg,png}``: the compound's score per
period from confirmed violations, its ledger (台账) and its trend. Viewers and up of the compound."""
from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response
from sqlalchemy.orm import Session

from service import scorecard
from service.deps import CurrentPrincipal, SessionDep, SettingsDep

router = APIRouter(prefix="/compounds/{compound_id}", tags=["scorecard"])
ERRORS = {401: {"description": "missing, unknown or revoked API key or token"},
          403: {"description": "a worker key cannot read scorecards"},
          404: {"description": "the compound is foreign to the caller"},
          422: {"description": "invalid period"}}
# the site configuration's id pattern: also keeps the id safe in the ledger's Content-Disposition file name
CompoundPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
PeriodQuery = Annotated[str | None, Query(description="YYYY-MM (default: this month), YYYY-Www, YYYY-MM-DD or YYYY, "
                                                      "in the site's time zone")]


def _table(settings) -> scorecard.ScoringTable:
    return scorecard.load_scoring(str(settings.scoring_config or scorecard.DEFAULT_SCORING))


def _card(session: Session, table, compound_id: str, period: str | None) -> dict:
    try:
        return scorecard.compute(session, table, compound_id, period or scorecard.current_month(table.zone))
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None


@router.get("/scorecard", responses=ERRORS)
def get_scorecard(compound_id: CompoundPath, principal: CurrentPrincipal, session: SessionDep, settings: SettingsDep,
                  period: PeriodQuery = None) -> dict:
    """Points, deductions and score per section and item, with the violations and cases counted."""
    principal.require("scorecard.read", compound_id)
    return _card(session, _table(settings), compound_id, period)


@router.get("/ledger.{fmt}", responses={**ERRORS, 200: {"content": {"text/csv": {}, "application/vnd.openxmlformats-"
                                                                     "officedocument.spreadsheetml.sheet": {}}}})
def get_ledger(compound_id: CompoundPath, fmt: Literal["csv", "xlsx"], principal: CurrentPrincipal, session: SessionDep,
               settings: SettingsDep, period: PeriodQuery = None) -> Response:
    """The ledger of the period's reviewed violations with cases and points, as CSV or XLSX."""
    principal.require("scorecard.read", compound_id)
    table = _table(settings)
    card = _card(session, table, compound_id, period)
    rows = scorecard.ledger_rows(session, table, compound_id, card["period"])
    filename = f"ledger-{compound_id}-{card['period']}.{fmt}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if fmt == "csv":
        return Response(scorecard.ledger_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)
    return Response(scorecard.ledger_xlsx(rows, card), headers=headers,
                    media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


@router.get("/trend.{fmt}", responses={**ERRORS, 200: {"content": {"image/svg+xml": {}, "image/png": {}}}})
def get_trend(compound_id: CompoundPath, fmt: Literal["svg", "png"], principal: CurrentPrincipal, session: SessionDep,
              settings: SettingsDep, months: Annotated[int, Query(ge=1, le=36)] = 6,
              until: Annotated[str | None, Query(pattern=r"^\d{4}-\d{2}$", description="last month, YYYY-MM")] = None,
              ) -> Response:
    """The score per month for the ``months`` months ending with ``until`` (default: this month)."""
    principal.require("scorecard.read", compound_id)
    table = _table(settings)
    names = scorecard.previous_months(until or scorecard.current_month(table.zone), months)
    cards = [_card(session, table, compound_id, name) for name in names]
    # a month without any violation found is a gap ("no data"), not a full score
    image = scorecard.trend_chart([(c["period"], c["score"] if c["has_data"] else None, c["points"]) for c in cards],
                                  compound_id, fmt)
    return Response(image, media_type="image/svg+xml" if fmt == "svg" else "image/png")
