"""The scorecard: deductions of the residential-compound assessment (``configs/scoring.yaml``) computed
per compound per period from confirmed violations, the ledger (台账) as CSV / XLSX, and a trend chart.

Periods are read in the site's time zone (Asia/Shanghai): ``2026-03`` (month), ``2026-W10`` (ISO
week), ``2026-03-01`` (day) or ``2026`` (year). A violation belongs to the period its start falls in.
One deduction is one *case* (:mod:`service.cases`): confirmed violations that joined the same case
(the same spot, not yet closed) count once per period; a confirmed violation without a case counts itself.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import case, distinct, func, select
from sqlalchemy.orm import Session

from service.models import Case, Review, User, Violation
from vision.config import RuleName
from vision.errors import ConfigError

DEFAULT_SCORING = Path(__file__).resolve().parent.parent / "configs" / "scoring.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScoringItem(_Strict):
    """One deduction item. Its rectification deadline (整改期限) is given one of two ways:
    ``deadline_hours`` after the confirmation, or ``deadline_days``: by the end (local midnight, in the
    table's time zone) of the N-th day after the local day of the confirmation."""

    id: str
    name: str
    rule: RuleName
    points_each: Annotated[float, Field(gt=0, le=100)]
    unit: Literal["case", "bin", "spot"]
    deadline_hours: Annotated[float, Field(gt=0, le=24 * 90)] | None = None
    deadline_days: Annotated[int, Field(ge=1, le=90)] | None = None

    @model_validator(mode="after")
    def _one_deadline(self) -> "ScoringItem":
        if (self.deadline_hours is None) == (self.deadline_days is None):
            raise ValueError(f"item {self.id!r}: give its rectification deadline as deadline_hours or deadline_days "
                             "(exactly one)")
        return self

    def deadline(self, confirmed_at: dt.datetime, zone: ZoneInfo) -> dt.datetime:
        """The rectification deadline of a case of this item confirmed at ``confirmed_at`` (aware), in UTC."""
        if self.deadline_hours is not None:
            return (confirmed_at + dt.timedelta(hours=self.deadline_hours)).astimezone(dt.timezone.utc)
        last_day = confirmed_at.astimezone(zone).date() + dt.timedelta(days=self.deadline_days)
        return dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(0), tzinfo=zone).astimezone(dt.timezone.utc)

    @property
    def deadline_rule(self) -> str:
        """How the deadline is set, for the audit log: ``"24 h"`` or ``"3 days (site time zone)"``."""
        if self.deadline_hours is not None:
            return f"{self.deadline_hours:g} h"
        return f"end of day {self.deadline_days} (site time zone)"


class ScoringSection(_Strict):
    id: str
    name: str
    points: Annotated[float, Field(gt=0, le=100)]
    items: Annotated[tuple[ScoringItem, ...], Field(min_length=1)]


class ScoringTable(_Strict):
    """The scoring table: sections, each with its points and deduction items (one item per rule)."""

    timezone: str = "Asia/Shanghai"
    sections: Annotated[tuple[ScoringSection, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _one_item_per_rule(self) -> "ScoringTable":
        rules = [item.rule for s in self.sections for item in s.items]
        if len(rules) != len(set(rules)):
            raise ValueError("each rule may appear in one item only")
        ZoneInfo(self.timezone)
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def item_for(self, rule: str) -> ScoringItem | None:
        """The deduction item of ``rule`` (None: the rule costs no points)."""
        return next((item for s in self.sections for item in s.items if item.rule == rule), None)


@lru_cache(maxsize=8)
def load_scoring(path: str | Path = DEFAULT_SCORING) -> ScoringTable:
    """Read and validate the scoring table; raises ``ConfigError`` naming the file and the problem."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return ScoringTable.model_validate(raw)
    except OSError as exc:
        raise ConfigError(str(path), [("(file)", f"cannot read: {exc}")]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), [("(file)", f"not valid YAML: {exc}")]) from exc
    except (ValidationError, ValueError) as exc:
        raise ConfigError(str(path), [("(file)", str(exc))]) from exc


def table_for(settings) -> ScoringTable:
    """The scoring table the service's ``settings`` name (``scoring_config``), default configs/scoring.yaml."""
    return load_scoring(str(settings.scoring_config or DEFAULT_SCORING))


class Period(BaseModel):
    """A named period and its bounds: local (site zone) start inclusive, end exclusive."""

    name: str
    start: dt.datetime
    end: dt.datetime


_MONTH, _WEEK = re.compile(r"(\d{4})-(\d{2})"), re.compile(r"(\d{4})-W(\d{2})")
_DAY, _YEAR = re.compile(r"(\d{4})-(\d{2})-(\d{2})"), re.compile(r"(\d{4})")


def parse_period(name: str, zone: ZoneInfo) -> Period:
    """``2026-03`` / ``2026-W10`` / ``2026-03-01`` / ``2026`` in ``zone``; ``ValueError`` otherwise."""
    try:
        if m := _DAY.fullmatch(name):
            start = dt.date(int(m[1]), int(m[2]), int(m[3]))
            end = start + dt.timedelta(days=1)
        elif m := _WEEK.fullmatch(name):
            start = dt.date.fromisocalendar(int(m[1]), int(m[2]), 1)
            end = start + dt.timedelta(days=7)
        elif m := _MONTH.fullmatch(name):
            start = dt.date(int(m[1]), int(m[2]), 1)
            end = dt.date(start.year + start.month // 12, start.month % 12 + 1, 1)
        elif m := _YEAR.fullmatch(name):
            start, end = dt.date(int(m[1]), 1, 1), dt.date(int(m[1]) + 1, 1, 1)
        else:
            raise ValueError("expected YYYY-MM, YYYY-Www, YYYY-MM-DD or YYYY")
    except ValueError as exc:
        raise ValueError(f"invalid period {name!r}: {exc}") from None
    midnight = dt.time(0, tzinfo=zone)
    return Period(name=name, start=dt.datetime.combine(start, midnight), end=dt.datetime.combine(end, midnight))


def current_month(zone: ZoneInfo, now: dt.datetime | None = None) -> str:
    """This month in the site's zone, e.g. ``2026-03``."""
    return (now or dt.datetime.now(dt.timezone.utc)).astimezone(zone).strftime("%Y-%m")


def previous_months(last: str, count: int) -> list[str]:
    """``count`` month names ending with ``last`` (``YYYY-MM``), oldest first."""
    year, month = map(int, last.split("-"))
    names = []
    for _ in range(count):
        names.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    return names[::-1]


def deduction_counts(session: Session, compound_ids: list[str], period: Period) -> dict[str, dict[str, int]]:
    """Per compound, per rule: the deductions the period's confirmed violations count — distinct cases plus
    confirmed violations without a case — in one SQL aggregate (``compound -> rule -> count``)."""
    caseless = func.sum(case((Violation.case_id.is_(None), 1), else_=0))
    rows = session.execute(
        select(Violation.compound_id, Violation.rule, func.count(distinct(Violation.case_id)), caseless)
        .where(Violation.compound_id.in_(compound_ids), Violation.review_state == "confirmed",
               Violation.start_time >= period.start, Violation.start_time < period.end)
        .group_by(Violation.compound_id, Violation.rule)).all()
    counts: dict[str, dict[str, int]] = {c: {} for c in compound_ids}
    for compound_id, rule, cases, without_case in rows:
        counts[compound_id][rule] = int(cases or 0) + int(without_case or 0)
    return counts


def violations_found(session: Session, compound_ids: list[str], period: Period) -> dict[str, int]:
    """Per compound, the violations found in the period whatever their review state (0: no data)."""
    rows = session.execute(
        select(Violation.compound_id, func.count())
        .where(Violation.compound_id.in_(compound_ids), Violation.start_time >= period.start,
               Violation.start_time < period.end)
        .group_by(Violation.compound_id)).all()
    return {c: 0 for c in compound_ids} | {c: int(n) for c, n in rows}


def card_from_counts(table: ScoringTable, compound_id: str, period: Period, counts: dict[str, int],
                     found: int) -> dict:
    """The scorecard from the deductions counted per rule (:func:`deduction_counts`): total, score, and
    per section and item the count and points deducted (capped at the section's points). ``found`` is
    the number of violations found in the period whatever their review state; with none, ``has_data`` is
    false: the month is "no data" (reports and the trend say so) although ``score`` stays the full points
    for API callers that read it as a number."""
    sections, total_points, total_deducted = [], 0.0, 0.0
    for section in table.sections:
        items, raw = [], 0.0
        for item in section.items:
            count = counts.get(item.rule, 0)
            deducted = count * item.points_each
            raw += deducted
            items.append({"id": item.id, "name": item.name, "rule": item.rule, "unit": item.unit,
                          "points_each": item.points_each, "count": count, "deducted": deducted})
        deducted = min(raw, section.points)
        total_points += section.points
        total_deducted += deducted
        sections.append({"id": section.id, "name": section.name, "points": section.points,
                         "deducted_uncapped": raw, "deducted": deducted, "score": section.points - deducted,
                         "items": items})
    has_data = found > 0
    return {"compound_id": compound_id, "period": period.name, "timezone": table.timezone,
            "start": period.start.isoformat(), "end": period.end.isoformat(),
            "violations_found": found, "has_data": has_data,
            "points": total_points, "deducted": total_deducted,
            "score": total_points - total_deducted, "sections": sections}


def compute(session: Session, table: ScoringTable, compound_id: str, period_name: str) -> dict:
    """The scorecard of ``compound_id`` for ``period_name`` (:func:`card_from_counts`), with per item the
    violations and cases counted."""
    period = parse_period(period_name, table.zone)
    card = card_from_counts(table, compound_id, period, deduction_counts(session, [compound_id], period)[compound_id],
                            violations_found(session, [compound_id], period)[compound_id])
    rows = session.execute(
        select(Violation.id, Violation.rule, Violation.case_id)
        .where(Violation.compound_id == compound_id, Violation.review_state == "confirmed",
               Violation.start_time >= period.start, Violation.start_time < period.end)
        .order_by(Violation.start_time, Violation.id)).all()
    for section in card["sections"]:
        for item in section["items"]:
            matching = [r for r in rows if r.rule == item["rule"]]
            item["violation_ids"] = [r.id for r in matching]
            item["case_ids"] = sorted({r.case_id for r in matching if r.case_id})
    return card


LEDGER_COLUMNS = ("violation_id", "start_time_local", "compound_id", "camera_id", "zone_id", "rule", "item",
                  "confidence", "verdict", "reason", "reviewer", "decided_at_local", "note", "case_id",
                  "case_state", "assignee", "deadline_local", "rectified_at_local", "closed_at_local",
                  "points_deducted")


def ledger_rows(session: Session, table: ScoringTable, compound_id: str, period_name: str) -> list[dict]:
    """One row per reviewed violation of the period (台账), oldest first, with its case and the points it
    cost (a case's points are on its first violation of the period; joined ones show 0)."""
    period = parse_period(period_name, table.zone)
    items = {item.rule: item for s in table.sections for item in s.items}
    rows = session.execute(
        select(Violation, Review, Case, User.username)
        .join(Review, Review.violation_id == Violation.id)
        .outerjoin(Case, Case.id == Violation.case_id)
        .outerjoin(User, User.id == Review.reviewer_user_id)
        .where(Violation.compound_id == compound_id, Violation.start_time >= period.start,
               Violation.start_time < period.end)
        .order_by(Violation.start_time, Violation.id)).all()

    def local(value: dt.datetime | None) -> str:
        return value.astimezone(table.zone).strftime("%Y-%m-%d %H:%M:%S") if value else ""

    seen, out = set(), []
    for violation, review, case_row, username in rows:
        item = items.get(violation.rule)
        counted = f"case:{case_row.id}" if case_row else f"violation:{violation.id}"
        points = 0.0
        if violation.review_state == "confirmed" and item is not None and counted not in seen:
            seen.add(counted)
            points = item.points_each
        out.append({
            "violation_id": violation.id, "start_time_local": local(violation.start_time),
            "compound_id": violation.compound_id, "camera_id": violation.camera_id, "zone_id": violation.zone_id,
            "rule": violation.rule, "item": item.name if item else "", "confidence": round(violation.confidence, 3),
            "verdict": review.verdict, "reason": review.reason or "",
            "reviewer": f"user:{username}" if username else f"key:{review.reviewer_key_id}",
            "decided_at_local": local(review.decided_at), "note": review.note or "",
            "case_id": case_row.id if case_row else "", "case_state": case_row.state if case_row else "",
            "assignee": (case_row.assignee or "") if case_row else "", "deadline_local": local(case_row.deadline) if case_row else "",
            "rectified_at_local": local(case_row.rectified_at) if case_row else "",
            "closed_at_local": local(case_row.closed_at) if case_row else "", "points_deducted": points})
    return out


def ledger_csv(rows: list[dict]) -> bytes:
    """The ledger as UTF-8 CSV with a BOM (so Excel shows the Chinese item names)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LEDGER_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def ledger_xlsx(rows: list[dict], scorecard: dict) -> bytes:
    """The ledger as an XLSX workbook: sheet ``ledger`` (the rows) and sheet ``scorecard`` (the breakdown)."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "ledger"
    sheet.append(list(LEDGER_COLUMNS))
    for row in rows:
        sheet.append([row[c] for c in LEDGER_COLUMNS])
    sheet.freeze_panes = "A2"
    summary = book.create_sheet("scorecard")
    summary.append(["compound", scorecard["compound_id"], "period", scorecard["period"]])
    summary.append(["section", "item", "count", "points_each", "deducted", "section points", "section score"])
    for section in scorecard["sections"]:
        for item in section["items"]:
            summary.append([section["name"], item["name"], item["count"], item["points_each"], item["deducted"],
                            section["points"], section["score"]])
    summary.append(["total", "", "", "", scorecard["deducted"], scorecard["points"], scorecard["score"]])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


CJK_FONTS = ["Noto Sans CJK SC", "Noto Sans CJK JP", "DejaVu Sans"]  # fonts-noto-cjk from Debian; falls back


def trend_chart(points: list[tuple[str, float | None, float]], compound_id: str, fmt: Literal["svg", "png"]) -> bytes:
    """A line chart of the score per period (``[(period, score or None, out_of)]``) as SVG or PNG bytes.
    A period without data (score None) is a gap in the line marked 无数据 / no data, never a full score."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"font.family": CJK_FONTS, "svg.fonttype": "path"}):
        figure = Figure(figsize=(7, 3.2), dpi=100)
        axes = figure.subplots()
        names = [p[0] for p in points]
        scores = [float("nan") if p[1] is None else p[1] for p in points]
        positions = list(range(len(points)))
        axes.plot(positions, scores, marker="o", color="#1f6feb")
        axes.set_xticks(positions, names)
        axes.set_xlim(-0.5, len(points) - 0.5)
        out_of = max((p[2] for p in points), default=0)
        axes.set_ylim(0, out_of or 1)
        axes.axhline(out_of, color="#999999", linewidth=0.8, linestyle="--")
        for x, point in enumerate(points):
            if point[1] is None:
                axes.annotate("无数据\nno data", (x, (out_of or 1) / 2), ha="center", va="center", fontsize=8,
                              color="#888888")
        axes.set_title(f"{compound_id}: 得分 score per period (out of {out_of:g})")
        axes.set_ylabel("score")
        axes.grid(True, alpha=0.3)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format=fmt)
    return buffer.getvalue()
