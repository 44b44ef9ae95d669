"""The monthly report of a property company (物业公司): the company's totals, a table of its compounds
(score and its change from the previous month, violations found / confirmed / rejected, cases opened /
closed on time / overdue), two charts, then each compound's own monthly report (:mod:`service.reports`).

The figures are :func:`service.reports.monthly_reports` for the company's compounds in one call (a fixed
number of queries for any number of compounds). Which compounds: those whose ``company`` (from the site
file) is the company *and* that the caller may read — a caller who sees part of a company gets a report
of that part, and the report lists the compounds it covers.

Totals: counts are sums over the compounds. ``average_score`` is the mean score of the compounds *with
data* (a month without any violation found has no score and is left out, never counted as full marks);
``average_change`` is the mean change of the compounds that have data in both months.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import reports, scorecard
from service.models import Compound, utcnow
from service.storage import ObjectStore

SUMMED = ("found", "confirmed", "rejected", "unreviewed", "cases_opened", "closed_on_time", "closed_late",
          "overdue", "open_in_time")
OPEN_CASES_PER_COMPOUND = 20  # a company's fifty compounds would otherwise list thousands of cases


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def company_report(session: Session, table: scorecard.ScoringTable, company: str, compound_ids: list[str],
                   month: str, *, as_of: dt.datetime | None = None, store: ObjectStore | None = None,
                   max_open_cases: int = OPEN_CASES_PER_COMPOUND) -> dict:
    """The report of ``company`` for ``month`` over ``compound_ids`` (the caller decides which: the company's
    compounds it may read). Plain data: ``compounds`` (one row per compound, by id), ``totals`` and
    ``reports`` (each compound's :func:`service.reports.monthly_reports` report). ValueError for a bad month."""
    as_of = as_of or utcnow()
    period = reports.month_period(month, table)
    ids = sorted(set(compound_ids))
    per = reports.monthly_reports(session, table, ids, month, as_of=as_of, store=store, max_open_cases=max_open_cases)
    districts = dict(session.execute(select(Compound.id, Compound.district).where(Compound.id.in_(ids))).all())
    rows = []
    for c in ids:
        r = per[c]
        v, k, card, before = r["violations"], r["cases"], r["scorecard"], r["previous_scorecard"]
        rows.append({
            "compound_id": c, "compound_name": r["compound_name"], "district": districts.get(c) or "",
            "has_data": r["has_data"], "score": card["score"] if r["has_data"] else None, "points": card["points"],
            "previous_score": before["score"] if before["has_data"] else None, "score_change": r["score_change"],
            "found": v["found"], "confirmed": v["confirmed"], "rejected": v["rejected"], "unreviewed": v["unreviewed"],
            "false_alarm_rate": v["false_alarm_rate"], "cases_opened": k["opened"],
            "closed_on_time": k["closed_on_time"], "closed_late": k["closed_late"], "overdue": k["overdue"],
            "open_in_time": k["open_in_time"]})
    totals = {name: sum(row[name] for row in rows) for name in SUMMED}
    reviewed = totals["confirmed"] + totals["rejected"]
    scored = [row["score"] for row in rows if row["score"] is not None]
    previous = [row["previous_score"] for row in rows if row["previous_score"] is not None]
    totals.update({
        "false_alarm_rate": totals["rejected"] / reviewed if reviewed else None,
        "compounds": len(rows), "compounds_with_data": len(scored),
        "average_score": _mean(scored), "previous_average_score": _mean(previous),
        "average_change": _mean([row["score_change"] for row in rows if row["score_change"] is not None])})
    return {"company": company, "month": month, "timezone": table.timezone,
            "first_day": period.start.astimezone(table.zone).date().isoformat(),
            "last_day": (period.end.astimezone(table.zone) - dt.timedelta(days=1)).date().isoformat(),
            "previous_month": reports.previous_month(month),
            "as_of": as_of.isoformat(), "as_of_local": as_of.astimezone(table.zone).strftime("%Y-%m-%d %H:%M"),
            "points": sum(s.points for s in table.sections), "compounds": rows, "totals": totals,
            "max_open_cases": max_open_cases, "reports": [per[c] for c in ids]}


# --- rendering -----------------------------------------------------------------------------------------

def bar_chart_size(bars: int) -> tuple[float, float]:
    """Height (inches) and label font size of a chart with one horizontal bar per compound: at most 9.6
    inches, so that fifty compounds still fit one A4 page (WeasyPrint clips what overflows a page)."""
    height = min(1.0 + 0.28 * max(bars, 1), 9.6)
    return height, 8.0 if bars <= 30 else max(5.0, 8.0 - (bars - 30) / 10)


def compound_label(row: dict) -> str:
    """A compound's name with its id, or the id alone."""
    return f"{row['compound_name']} ({row['compound_id']})" if row["compound_name"] else row["compound_id"]


def company_charts(report: dict) -> dict[str, bytes]:
    """Two SVG charts: ``scores`` (each compound's score, 无数据 where it has none) and ``violations``
    (each compound's violations, confirmed / rejected / unreviewed stacked)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    rows = report["compounds"]
    labels = [compound_label(row) for row in rows]
    y = np.arange(len(rows))[::-1]  # the first compound on top
    height, fontsize = bar_chart_size(len(rows))
    out = {}
    with matplotlib.rc_context({"font.family": scorecard.CJK_FONTS, "svg.fonttype": "path"}):
        figure = Figure(figsize=(7, height), dpi=100)
        axes = figure.subplots()
        scores = np.array([row["score"] if row["score"] is not None else 0.0 for row in rows], dtype=float)
        axes.barh(y, scores, color="#1f6feb", height=0.6)
        for yi, row in zip(y, rows):
            text = "无数据 no data" if row["score"] is None else f"{row['score']:g}"
            axes.text(0.3 if row["score"] is None else row["score"] + 0.3, yi, text, va="center", fontsize=fontsize,
                      color="#888888" if row["score"] is None else "#1f2328")
        axes.set_yticks(y, labels, fontsize=fontsize)
        axes.set_xlim(0, report["points"] * 1.12 or 1)
        axes.axvline(report["points"], color="#999999", linewidth=0.8, linestyle="--")
        axes.set_xlabel(f"得分 score (满分 {report['points']:g})")
        axes.grid(True, axis="x", alpha=0.3)
        out["scores"] = reports.svg_bytes(figure)

        figure = Figure(figsize=(7, height), dpi=100)
        axes = figure.subplots()
        left = np.zeros(len(rows))
        for state, label, colour in (("confirmed", "确认 confirmed", "#d1242f"), ("rejected", "驳回 rejected", "#8c959f"),
                                     ("unreviewed", "待审核 unreviewed", "#e3b341")):
            values = np.array([row[state] for row in rows], dtype=float)
            axes.barh(y, values, left=left, color=colour, label=label, height=0.6)
            left += values
        axes.set_yticks(y, labels, fontsize=fontsize)
        axes.set_xlabel("违规 violations")
        axes.legend(loc="lower right", bbox_to_anchor=(1, 1), fontsize=8, frameon=False, ncols=3)
        axes.grid(True, axis="x", alpha=0.3)
        out["violations"] = reports.svg_bytes(figure)
    return out


def render_html(report: dict) -> str:
    """The company report as one self-contained HTML page in Chinese (charts inline). The compounds'
    sections carry no charts of their own (the company's charts compare them) and list their open cases
    as a table without photos: the photos are in each compound's own report (rendering a thousand photo
    blocks for fifty compounds took minutes)."""
    charts = {name: reports.svg_uri(svg) for name, svg in company_charts(report).items()} if report["compounds"] else {}
    return reports.render_template("company_report.html", r=report, charts=charts, reasons=reports.REJECT_REASONS_ZH)
