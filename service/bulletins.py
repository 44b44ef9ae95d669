"""Bulletins (通报): the compounds of a district (or of a property company, or every compound the caller
may read) ranked by their score for a period — a month, or from one date to another in the site's zone
— with the scoring items that cost each compound points. HTML and PDF (WeasyPrint) in Chinese, XLSX
(openpyxl) for the office that collects them.

Decisions (also in docs/reports.md):

- The score is the scorecard's (:func:`service.scorecard.card_from_counts`): one deduction per case per
  period, a section loses at most its points. A period from/to runs from the first day's local midnight
  to the midnight after the last day (both days included), at most 366 days.
- **No data**: a compound with no violation found in the period (whatever the review state) has no
  score. It is not ranked and is listed after the ranked ones as 无数据, never as a full score.
- **Ties**: compounds with the same score share a rank (competition ranking: 1, 2, 2, 4) and are marked
  并列; within a tie they are listed by compound id. No second criterion is invented: the assessment
  ranks by score alone. Scores are compared rounded to 1e-6 (points may be fractional).
- An item's points are its count × the points each; when a section's items add up to more than the
  section's points, the compound's deduction is capped (the row says 封顶) and its score is the capped one.
"""
from __future__ import annotations

import datetime as dt
import io
import re

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service import reports, scorecard
from service.company_report import bar_chart_size, compound_label
from service.models import Compound, Violation, utcnow

MAX_DAYS = 366
SCOPE_KINDS_ZH = {"district": "区/街道", "company": "物业公司", "all": "全部小区"}


def custom_period(date_from: str, date_to: str, table: scorecard.ScoringTable) -> scorecard.Period:
    """The period from ``date_from`` to ``date_to`` (``YYYY-MM-DD``, both included) in the table's zone.
    ValueError for a malformed date, ``from`` after ``to``, more than 366 days, or a year outside 1971..9998."""
    days = []
    for what, text in (("from", date_from), ("to", date_to)):
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text or ""):
            raise ValueError(f"invalid {what} date {text!r}: expected YYYY-MM-DD")
        try:
            day = dt.date.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"invalid {what} date {text!r}: {exc}") from None
        if not 1971 <= day.year <= 9998:
            raise ValueError(f"invalid {what} date {text!r}: the year must be within 1971..9998")
        days.append(day)
    first, last = days
    if first > last:
        raise ValueError(f"from {date_from} is after to {date_to}")
    if (last - first).days + 1 > MAX_DAYS:
        raise ValueError(f"from {date_from} to {date_to} is {(last - first).days + 1} days; at most {MAX_DAYS}")
    midnight = dt.time(0, tzinfo=table.zone)
    return scorecard.Period(name=f"{first.isoformat()}~{last.isoformat()}",
                            start=dt.datetime.combine(first, midnight),
                            end=dt.datetime.combine(last + dt.timedelta(days=1), midnight))


def bulletin_period(table: scorecard.ScoringTable, month: str | None = None, date_from: str | None = None,
                    date_to: str | None = None) -> scorecard.Period:
    """A month (``YYYY-MM``) or a from/to pair, exactly one of them; ValueError otherwise."""
    if month is not None and (date_from is not None or date_to is not None):
        raise ValueError("give either a month or from and to, not both")
    if month is not None:
        return reports.month_period(month, table)
    if date_from is None or date_to is None:
        raise ValueError("give a month (YYYY-MM), or both from and to (YYYY-MM-DD)")
    return custom_period(date_from, date_to, table)


def _same(a: float, b: float) -> bool:
    return round(a, 6) == round(b, 6)


def rank(entries: list[dict]) -> list[dict]:
    """``entries`` (each with ``compound_id`` and ``score``, None for no data) in bulletin order, each given
    ``rank`` (None without data) and ``tie`` (shares its rank): by score, highest first, ties share the
    rank and are listed by compound id; those without data last, by compound id."""
    scored = sorted((e for e in entries if e["score"] is not None), key=lambda e: (-round(e["score"], 6), e["compound_id"]))
    for i, entry in enumerate(scored):
        entry["rank"] = i + 1 if i == 0 or not _same(scored[i - 1]["score"], entry["score"]) else scored[i - 1]["rank"]
    for entry in scored:
        entry["tie"] = sum(_same(other["score"], entry["score"]) for other in scored) > 1
    unscored = sorted((e for e in entries if e["score"] is None), key=lambda e: e["compound_id"])
    for entry in unscored:
        entry["rank"], entry["tie"] = None, False
    return scored + unscored


def bulletin(session: Session, table: scorecard.ScoringTable, compound_ids: list[str], period: scorecard.Period, *,
             scope_kind: str, scope_name: str, as_of: dt.datetime | None = None) -> dict:
    """The bulletin of ``compound_ids`` for ``period``: ``ranking`` (:func:`rank` order; per compound the
    score, points, deduction, violations found and confirmed, and ``deductions``: the items that cost
    points with count and points) and ``items`` (per scoring item, totals over the compounds)."""
    as_of = as_of or utcnow()
    ids = sorted(set(compound_ids))
    info = {row.id: row for row in session.execute(
        select(Compound.id, Compound.name, Compound.company, Compound.district).where(Compound.id.in_(ids)))}
    counts = scorecard.deduction_counts(session, ids, period)
    found = scorecard.violations_found(session, ids, period)
    confirmed = {c: 0 for c in ids} | dict(session.execute(
        select(Violation.compound_id, func.count())
        .where(Violation.compound_id.in_(ids), Violation.review_state == "confirmed",
               Violation.start_time >= period.start, Violation.start_time < period.end)
        .group_by(Violation.compound_id)).all())
    entries = []
    for c in ids:
        card = scorecard.card_from_counts(table, c, period, counts[c], found[c])
        deductions = [{"item_id": item["id"], "name": item["name"], "rule": item["rule"], "section": section["name"],
                       "count": item["count"], "points_each": item["points_each"], "points": item["deducted"]}
                      for section in card["sections"] for item in section["items"] if item["count"]]
        row = info.get(c)
        entries.append({
            "compound_id": c, "compound_name": row.name if row else "", "company": (row.company if row else None) or "",
            "district": (row.district if row else None) or "", "has_data": card["has_data"],
            "score": card["score"] if card["has_data"] else None, "points": card["points"],
            "deducted": card["deducted"] if card["has_data"] else None,
            "capped": any(s["deducted_uncapped"] > s["points"] for s in card["sections"]),
            "found": found[c], "confirmed": int(confirmed.get(c, 0)), "deductions": deductions})
    ranking = rank(entries)
    items = []
    for section in table.sections:
        for item in section.items:
            hits = [(e, d) for e in ranking for d in e["deductions"] if d["item_id"] == item.id]
            items.append({"item_id": item.id, "name": item.name, "rule": item.rule, "section": section.name,
                          "points_each": item.points_each, "count": sum(d["count"] for _, d in hits),
                          "points": sum(d["points"] for _, d in hits), "compounds": len(hits)})
    zone = table.zone
    return {"scope_kind": scope_kind, "scope_kind_zh": SCOPE_KINDS_ZH[scope_kind], "scope": scope_name,
            "period": period.name, "timezone": table.timezone,
            "first_day": period.start.astimezone(zone).date().isoformat(),
            "last_day": (period.end.astimezone(zone) - dt.timedelta(days=1)).date().isoformat(),
            "as_of": as_of.isoformat(), "as_of_local": as_of.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
            "points": sum(s.points for s in table.sections), "ranking": ranking, "items": items,
            "compounds": len(ranking), "ranked": sum(e["rank"] is not None for e in ranking)}


# --- rendering -----------------------------------------------------------------------------------------

def ranking_chart(data: dict) -> bytes:
    """Horizontal bars of the ranked compounds' scores, first on top, as SVG (无数据 for the unranked)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    entries = data["ranking"]
    y = np.arange(len(entries))[::-1]
    with matplotlib.rc_context({"font.family": scorecard.CJK_FONTS, "svg.fonttype": "path"}):
        height, fontsize = bar_chart_size(len(entries))
        figure = Figure(figsize=(7, height), dpi=100)
        axes = figure.subplots()
        scores = [e["score"] if e["score"] is not None else 0.0 for e in entries]
        axes.barh(y, scores, height=0.6, color=["#1f6feb" if e["score"] is not None else "#d0d7de" for e in entries])
        for yi, entry in zip(y, entries):
            text = "无数据 no data" if entry["score"] is None else (
                f"{entry['score']:g}" + ("（并列）" if entry["tie"] else ""))
            axes.text((entry["score"] or 0) + 0.3, yi, text, va="center", fontsize=fontsize,
                      color="#888888" if entry["score"] is None else "#1f2328")
        axes.set_yticks(y, [(f"{e['rank']}. " if e["rank"] else "— ") + compound_label(e) for e in entries],
                        fontsize=fontsize)
        axes.set_xlim(0, data["points"] * 1.15 or 1)
        axes.axvline(data["points"], color="#999999", linewidth=0.8, linestyle="--")
        axes.set_xlabel(f"得分 score (满分 {data['points']:g})")
        axes.grid(True, axis="x", alpha=0.3)
        return reports.svg_bytes(figure)


def title(data: dict) -> str:
    scope = data["scope"] if data["scope_kind"] != "all" else "全部小区"
    return f"{scope} 小区考核通报（{data['period']}）"


def render_html(data: dict) -> str:
    """The bulletin as one self-contained HTML page in Chinese (the chart inline)."""
    chart = reports.svg_uri(ranking_chart(data)) if data["ranking"] else None
    return reports.render_template("bulletin.html", b=data, chart=chart, title=title(data))


XLSX_RANKING = ("排名 rank", "并列 tie", "小区编号 compound", "小区名称 name", "物业公司 company", "区/街道 district",
                "得分 score", "满分 points", "扣分 deducted", "封顶 capped", "发现 found", "确认 confirmed")


def render_xlsx(data: dict, table: scorecard.ScoringTable) -> bytes:
    """The bulletin as an XLSX workbook: sheet ``排名`` (title, notes, then one row per compound in bulletin
    order with, per scoring item, its count and points) and sheet ``扣分明细`` (one row per compound and
    item that cost points). A compound without data has an empty rank and 无数据 as its score."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    items = [item for s in table.sections for item in s.items]
    book = Workbook()
    sheet = book.active
    sheet.title = "排名"
    sheet.append([title(data)])
    sheet["A1"].font = Font(bold=True, size=14)
    sheet.append([f"报告期 {data['first_day']} 至 {data['last_day']}（{data['timezone']}）；生成时间 {data['as_of_local']}；"
                  f"得分相同者并列（同名次，按小区编号列出）；无数据的小区不排名、不评分（不视为满分）。"])
    sheet.append([])
    header = list(XLSX_RANKING) + [f"{item.name} {what}" for item in items for what in ("次数 count", "扣分 points")]
    sheet.append(header)
    for cell in sheet[4]:
        cell.font = Font(bold=True)
    for entry in data["ranking"]:
        by_item = {d["item_id"]: d for d in entry["deductions"]}
        has = entry["score"] is not None
        row = [entry["rank"] if has else None, "并列" if entry["tie"] else "", entry["compound_id"], entry["compound_name"],
               entry["company"], entry["district"], entry["score"] if has else "无数据", entry["points"],
               entry["deducted"] if has else None, "封顶" if entry["capped"] else "", entry["found"], entry["confirmed"]]
        for item in items:
            d = by_item.get(item.id)
            row += [d["count"] if d else 0, d["points"] if d else 0]
        sheet.append(row)
    sheet.freeze_panes = "D5"
    for column, width in zip("ABCDEF", (9, 7, 16, 18, 16, 16)):
        sheet.column_dimensions[column].width = width
    detail = book.create_sheet("扣分明细")
    detail.append(["排名 rank", "小区编号 compound", "小区名称 name", "项目 section", "扣分项 item", "次数 count",
                   "每次扣分 each", "扣分 points"])
    for entry in data["ranking"]:
        for d in entry["deductions"]:
            detail.append([entry["rank"], entry["compound_id"], entry["compound_name"], d["section"], d["name"],
                           d["count"], d["points_each"], d["points"]])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
