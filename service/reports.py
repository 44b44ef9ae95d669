"""The monthly report of a compound (每月5日前报送上月情况): violations found, confirmed and rejected
(false-alarm rate), rectification cases opened, closed on time, closed late and overdue, the scorecard
and its change from the previous month, the worst spots, and every open case with its before/after
snapshots. Rendered as HTML (Jinja2, ``service/templates/monthly_report.html``) and PDF (WeasyPrint).

Figures come from SQL aggregates grouped by compound, so one call serves one compound or a company's
fifty (:func:`monthly_reports`) with a fixed number of queries whatever the number of violations.

Decisions (also in docs/architecture.md):

- The month is read in the scoring table's time zone (``timezone`` of ``configs/scoring.yaml``), as the
  scorecard does, so the report's scorecard is the scorecard API's.
- A violation belongs to the month its start falls in; a case belongs to the month of the violation that
  opened it (so a month's cases and its deductions agree, also for footage re-scanned later).
- A case is *closed on time* when closed no later than its deadline, *closed late* otherwise; *overdue*
  as the cases page says it (state overdue, or open/reopened past its deadline) at ``as_of`` — the time
  the report is made, printed on it.
- A month without any violation found (whatever its review state) is "no data": no score, no change.
"""
from __future__ import annotations

import base64
import datetime as dt
import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from service import scorecard
from service.errors import StorageError
from service.models import Camera, Case, Compound, EvidenceObject, Review, Violation, utcnow
from service.storage import ObjectStore

TEMPLATES = Path(__file__).resolve().parent / "templates"
REJECT_REASONS_ZH = {"false_alarm": "误报", "not_a_violation": "不构成违规", "duplicate": "重复",
                     "already_handled": "已处理", None: "未注明"}
CASE_STATES_ZH = {"open": "待整改", "rectified": "已整改", "reinspected": "已复查待销号", "closed": "已销号",
                  "overdue": "逾期", "reopened": "重新整改"}
WORST_SPOTS = 5
THUMB_WIDTH = 240


def previous_month(month: str) -> str:
    """The month before ``month`` (``YYYY-MM``)."""
    return scorecard.previous_months(month, 2)[0]


def month_period(month: str, table: scorecard.ScoringTable) -> scorecard.Period:
    """The bounds of ``month`` (``YYYY-MM``) in the table's zone; ValueError for anything else, or a year
    outside 1971..9998 (a report's trend reaches months back; UTC bounds must stay in range)."""
    if not re.fullmatch(r"\d{4}-\d{2}", month):
        raise ValueError(f"invalid month {month!r}: expected YYYY-MM")
    if not 1971 <= int(month[:4]) <= 9998:
        raise ValueError(f"invalid month {month!r}: the year must be within 1971..9998")
    return scorecard.parse_period(month, table.zone)


def _overdue(as_of: dt.datetime):
    """SQL: the case is overdue at ``as_of`` (the cases page's rule)."""
    return or_(Case.state == "overdue",
               and_(Case.state.in_(("open", "reopened")), Case.deadline.is_not(None), Case.deadline <= as_of))


def _count_if(condition):
    return func.sum(case((condition, 1), else_=0))


def _violation_figures(session: Session, ids: list[str], period: scorecard.Period) -> dict[str, dict]:
    in_period = (Violation.compound_id.in_(ids), Violation.start_time >= period.start,
                 Violation.start_time < period.end)
    figures = {c: {"found": 0, "confirmed": 0, "rejected": 0, "unreviewed": 0, "rejected_by_reason": {},
                   "by_rule": {}} for c in ids}
    for compound_id, rule, state, count in session.execute(
            select(Violation.compound_id, Violation.rule, Violation.review_state, func.count())
            .where(*in_period).group_by(Violation.compound_id, Violation.rule, Violation.review_state)):
        f = figures[compound_id]
        f["found"] += count
        f[state] += count
        per_rule = f["by_rule"].setdefault(rule, {"found": 0, "confirmed": 0, "rejected": 0, "unreviewed": 0})
        per_rule["found"] += count
        per_rule[state] += count
    for compound_id, reason, count in session.execute(
            select(Violation.compound_id, Review.reason, func.count())
            .join(Review, Review.violation_id == Violation.id)
            .where(*in_period, Review.verdict == "reject").group_by(Violation.compound_id, Review.reason)):
        figures[compound_id]["rejected_by_reason"][reason or "unspecified"] = count
    for f in figures.values():
        reviewed = f["confirmed"] + f["rejected"]
        f["false_alarm_rate"] = f["rejected"] / reviewed if reviewed else None
    return figures


def _case_figures(session: Session, ids: list[str], period: scorecard.Period, as_of: dt.datetime) -> dict[str, dict]:
    closed = Case.state == "closed"
    on_time = and_(closed, Case.deadline.is_not(None), Case.closed_at <= Case.deadline)
    figures = {c: {"opened": 0, "closed_on_time": 0, "closed_late": 0, "overdue": 0, "open_in_time": 0} for c in ids}
    for compound_id, opened, n_on_time, n_closed, n_overdue in session.execute(
            select(Case.compound_id, func.count(), _count_if(on_time), _count_if(closed), _count_if(_overdue(as_of)))
            .join(Violation, Violation.id == Case.violation_id)
            .where(Case.compound_id.in_(ids), Violation.start_time >= period.start, Violation.start_time < period.end)
            .group_by(Case.compound_id)):
        n_on_time, n_closed, n_overdue = int(n_on_time or 0), int(n_closed or 0), int(n_overdue or 0)
        figures[compound_id] = {"opened": opened, "closed_on_time": n_on_time, "closed_late": n_closed - n_on_time,
                                "overdue": n_overdue, "open_in_time": opened - n_closed - n_overdue}
    return figures


def _worst_spots(session: Session, ids: list[str], period: scorecard.Period) -> dict[str, list[dict]]:
    spots: dict[tuple, dict] = {}
    for compound_id, camera_id, camera_name, zone_id, rule, count in session.execute(
            select(Violation.compound_id, Violation.camera_id, Camera.name, Violation.zone_id, Violation.rule,
                   func.count())
            .outerjoin(Camera, Camera.id == Violation.camera_id)
            .where(Violation.compound_id.in_(ids), Violation.review_state == "confirmed",
                   Violation.start_time >= period.start, Violation.start_time < period.end)
            .group_by(Violation.compound_id, Violation.camera_id, Camera.name, Violation.zone_id, Violation.rule)):
        spot = spots.setdefault((compound_id, camera_id, zone_id), {
            "camera_id": camera_id, "camera_name": camera_name or "", "zone_id": zone_id, "confirmed": 0, "rules": {}})
        spot["confirmed"] += count
        spot["rules"][rule] = count
    out: dict[str, list[dict]] = {c: [] for c in ids}
    for (compound_id, _, _), spot in spots.items():
        out[compound_id].append(spot)
    for compound_id, listed in out.items():
        listed.sort(key=lambda s: (-s["confirmed"], s["camera_id"], s["zone_id"]))
        out[compound_id] = listed[:WORST_SPOTS]
    return out


def _daily(session: Session, ids: list[str], table: scorecard.ScoringTable,
           period: scorecard.Period) -> dict[str, list[dict]]:
    """Violations per local day and review state; days are cut at local midnights (computed here, so
    time zones with daylight saving are right on SQLite and PostgreSQL alike)."""
    days, day = [], period.start.astimezone(table.zone).date()
    while dt.datetime.combine(day, dt.time(0), tzinfo=table.zone) < period.end:
        days.append(day)
        day += dt.timedelta(days=1)
    ends = [dt.datetime.combine(d + dt.timedelta(days=1), dt.time(0), tzinfo=table.zone) for d in days]
    bucket = case(*[(Violation.start_time < end, i) for i, end in enumerate(ends)], else_=len(ends) - 1).label("day")
    out = {c: [{"date": d.isoformat(), "confirmed": 0, "rejected": 0, "unreviewed": 0} for d in days] for c in ids}
    # grouped by the output column's name: PostgreSQL would see the CASE's bound values twice otherwise
    for compound_id, index, state, count in session.execute(
            select(Violation.compound_id, bucket, Violation.review_state, func.count())
            .where(Violation.compound_id.in_(ids), Violation.start_time >= period.start,
                   Violation.start_time < period.end)
            .group_by(Violation.compound_id, "day", Violation.review_state)):
        out[compound_id][int(index)][state] += count
    return out


def _thumbnail(store: ObjectStore | None, key: str | None) -> str | None:
    """A small JPEG of the stored snapshot ``key`` as a data URI, or None when absent or unreadable."""
    if store is None or not key:
        return None
    try:
        data = b"".join(store.open_range(key))
    except (StorageError, OSError):
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return None
    height, width = image.shape[:2]
    if width > THUMB_WIDTH:
        image = cv2.resize(image, (THUMB_WIDTH, max(1, round(height * THUMB_WIDTH / width))),
                           interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode() if ok else None


def _open_cases(session: Session, ids: list[str], table: scorecard.ScoringTable, period: scorecard.Period,
                as_of: dt.datetime, store: ObjectStore | None, limit: int) -> tuple[dict[str, list[dict]], dict[str, int]]:
    """Cases not closed whose opening violation started before the month's end, oldest deadline first
    (at most ``limit`` per compound, with the total), each with its before and after snapshots."""
    still_open = and_(Case.compound_id.in_(ids), Case.state != "closed", Violation.start_time < period.end)
    totals = {c: 0 for c in ids} | dict(session.execute(
        select(Case.compound_id, func.count()).join(Violation, Violation.id == Case.violation_id)
        .where(still_open).group_by(Case.compound_id)).all())
    overdue = _overdue(as_of).label("overdue")
    ranked = (select(Case.id, Violation.start_time, overdue,
                     func.row_number().over(partition_by=Case.compound_id,
                                            order_by=(Case.deadline.is_(None), Case.deadline, Case.id)).label("rank"))
              .join(Violation, Violation.id == Case.violation_id).where(still_open).subquery())
    rows = session.execute(select(Case, ranked.c.start_time, ranked.c.overdue).join(ranked, ranked.c.id == Case.id)
                           .where(ranked.c.rank <= limit).order_by(Case.compound_id, ranked.c.rank)).all()
    snapshots = dict(session.execute(
        select(EvidenceObject.violation_id, EvidenceObject.key)
        .where(EvidenceObject.kind == "snapshot", EvidenceObject.violation_id.in_([r[0].violation_id for r in rows])))
        .all()) if rows else {}

    def local(value: dt.datetime | None) -> str:
        return value.astimezone(table.zone).strftime("%Y-%m-%d %H:%M") if value else ""

    out: dict[str, list[dict]] = {c: [] for c in ids}
    for item, opened_at, is_overdue in rows:
        before_key = next((i.before_key for i in item.inspections if i.before_key), None) or snapshots.get(
            item.violation_id)
        after_key = item.inspections[-1].after_key if item.inspections else None
        out[item.compound_id].append({
            "id": item.id, "camera_id": item.camera_id, "zone_id": item.zone_id, "rule": item.rule,
            "state": item.state, "state_zh": CASE_STATES_ZH.get(item.state, item.state),
            "assignee": item.assignee or "", "deadline_local": local(item.deadline), "overdue": bool(is_overdue),
            "opened_local": local(opened_at), "inspections": len(item.inspections),
            "before_key": before_key, "after_key": after_key,
            "before_image": _thumbnail(store, before_key), "after_image": _thumbnail(store, after_key)})
    return out, totals


def monthly_reports(session: Session, table: scorecard.ScoringTable, compound_ids: list[str], month: str, *,
                    as_of: dt.datetime | None = None, store: ObjectStore | None = None, trend_months: int = 6,
                    max_open_cases: int = 200) -> dict[str, dict]:
    """The monthly report of each of ``compound_ids`` for ``month`` (``YYYY-MM`` in the table's zone),
    as plain data (JSON-ready but for the snapshot data URIs). ``as_of`` (default now) decides which
    cases are overdue; ``store`` gives the open cases' snapshots (None: keys only). ValueError for a bad
    month."""
    period = month_period(month, table)
    as_of = as_of or utcnow()
    ids = sorted(set(compound_ids))
    names = dict(session.execute(select(Compound.id, Compound.name).where(Compound.id.in_(ids))).all())
    violations = _violation_figures(session, ids, period)
    cases = _case_figures(session, ids, period, as_of)
    spots = _worst_spots(session, ids, period)
    daily = _daily(session, ids, table, period)
    open_cases, open_totals = _open_cases(session, ids, table, period, as_of, store, max_open_cases)
    cards: dict[str, dict[str, dict]] = defaultdict(dict)
    for name in scorecard.previous_months(month, max(trend_months, 2)):
        named = scorecard.parse_period(name, table.zone)
        counts = scorecard.deduction_counts(session, ids, named)
        found = scorecard.violations_found(session, ids, named)
        for c in ids:
            cards[c][name] = scorecard.card_from_counts(table, c, named, counts[c], found[c])
    rule_names = {item.rule: item.name for s in table.sections for item in s.items}
    last_day = (period.end.astimezone(table.zone) - dt.timedelta(days=1)).date()
    reports = {}
    for c in ids:
        card, before = cards[c][month], cards[c][previous_month(month)]
        change = card["score"] - before["score"] if card["has_data"] and before["has_data"] else None
        reports[c] = {
            "compound_id": c, "compound_name": names.get(c, ""), "month": month, "timezone": table.timezone,
            "first_day": period.start.astimezone(table.zone).date().isoformat(), "last_day": last_day.isoformat(),
            "as_of": as_of.isoformat(), "as_of_local": as_of.astimezone(table.zone).strftime("%Y-%m-%d %H:%M"),
            "has_data": card["has_data"], "violations": violations[c], "cases": cases[c],
            "scorecard": card, "previous_scorecard": before, "score_change": change,
            "trend": [(n, cards[c][n]["score"] if cards[c][n]["has_data"] else None, cards[c][n]["points"])
                      for n in scorecard.previous_months(month, trend_months)],
            "worst_spots": spots[c], "daily": daily[c], "open_cases": open_cases[c],
            "open_cases_total": open_totals.get(c, 0), "rule_names": rule_names}
    return reports


def monthly_report(session: Session, table: scorecard.ScoringTable, compound_id: str, month: str, **options) -> dict:
    """:func:`monthly_reports` of one compound."""
    return monthly_reports(session, table, [compound_id], month, **options)[compound_id]


# --- rendering -----------------------------------------------------------------------------------------

def daily_chart(report: dict) -> bytes:
    """Stacked bars of the violations found per day (confirmed, rejected, unreviewed) as SVG bytes."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"font.family": scorecard.CJK_FONTS, "svg.fonttype": "path"}):
        figure = Figure(figsize=(7, 2.6), dpi=100)
        axes = figure.subplots()
        days = report["daily"]
        x = np.arange(len(days))
        bottom = np.zeros(len(days))
        for state, label, colour in (("confirmed", "确认 confirmed", "#d1242f"),
                                     ("rejected", "驳回 rejected", "#8c959f"),
                                     ("unreviewed", "待审核 unreviewed", "#e3b341")):
            values = np.array([d[state] for d in days], dtype=float)
            axes.bar(x, values, bottom=bottom, color=colour, label=label, width=0.8)
            bottom += values
        axes.set_xticks(x[::2], [d["date"][8:] for d in days][::2])
        axes.set_xlabel(f"{report['month']} 日期 day")
        axes.set_ylabel("违规 violations")
        axes.legend(loc="lower right", bbox_to_anchor=(1, 1), fontsize=8, frameon=False, ncols=3)
        axes.grid(True, axis="y", alpha=0.3)
        return svg_bytes(figure)


def svg_bytes(figure) -> bytes:
    """A laid-out matplotlib figure as SVG bytes (call inside the chart's rc_context: fonts are resolved here)."""
    import io

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg")
    return buffer.getvalue()


def svg_uri(svg: bytes) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg).decode()


def render_html(report: dict) -> str:
    """The report as one self-contained HTML page in Chinese (charts and snapshots inline)."""
    charts = {}
    if report["has_data"]:
        charts["daily"] = svg_uri(daily_chart(report))
    if any(point[1] is not None for point in report["trend"]):
        charts["trend"] = svg_uri(scorecard.trend_chart(report["trend"], report["compound_id"], "svg"))
    return render_template("monthly_report.html", r=report, charts=charts, reasons=REJECT_REASONS_ZH)


def render_template(name: str, **context) -> str:
    """Render ``service/templates/<name>`` (Jinja2, HTML autoescaped)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    return env.get_template(name).render(**context)


def render_pdf(html: str) -> bytes:
    """The HTML page as PDF bytes (WeasyPrint; the CJK text set in Noto Sans CJK from fonts-noto-cjk)."""
    from PIL import ImageFile

    # Importing WeasyPrint sets Pillow's process-wide LOAD_TRUNCATED_IMAGES, after which the ingest's
    # JPEG check (service.ingest.jpeg_problem) would accept snapshots cut short; put it back.
    truncated_before = ImageFile.LOAD_TRUNCATED_IMAGES
    from weasyprint import HTML
    ImageFile.LOAD_TRUNCATED_IMAGES = truncated_before

    return HTML(string=html, base_url=str(TEMPLATES)).write_pdf()
