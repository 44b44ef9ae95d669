"""Ledger documents (台账): the previous month's reports kept in the object store, and the scheduler that
makes them on the 1st of each month.

For a month, :func:`generate_month` makes whatever is missing of:

- ``monthly_compound`` (PDF): the monthly report of every compound of the month;
- ``monthly_company`` (PDF): the report of every property company over its compounds;
- ``bulletin_district`` (PDF and XLSX): the bulletin of every district.

"The compounds of the month" are those registered before the month ended or with a violation found in
it (footage re-scanned later counts), so a compound added in December gets no November report.

Each document is rendered, written to the store under a content-addressed key
(``ledger/<month>/<kind>/<scope>-<sha256[:16]>.<format>``) and recorded in ``ledger_documents`` (one row
per kind, scope, period and format: a unique constraint). A document whose row exists is not rendered
again — a restart, a second process or the command run by hand adds nothing; when two processes
render the same document at once, the second insert fails on the constraint and its object is deleted.
Each document is committed on its own, so an interrupted run keeps what it finished.

:class:`LedgerScheduler` runs in the API process (``serve``, ``demo``): at start-up and then every
``poll_s`` it works out the month due — the previous month, once the site's clock (the scoring table's
zone) has passed ``hour`` o'clock on the 1st — and, once per month and process, generates it. Start-up
therefore catches up a missed 1st. Only the latest month is caught up; older ones are made with
``compoundeye report ledger --month``. The clock is injected, so tests step it without sleeping.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import threading
from collections import defaultdict
from collections.abc import Callable

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service import bulletins, company_report, reports, scorecard
from service.errors import IntegrityFailed, StorageError
from service.models import Compound, LedgerDocument, Violation, utcnow
from service.storage import ObjectStore, check_key

log = logging.getLogger(__name__)

KIND_FORMATS = {"monthly_compound": ("pdf",), "monthly_company": ("pdf",), "bulletin_district": ("pdf", "xlsx")}
CONTENT_TYPES = {"pdf": "application/pdf", "html": "text/html; charset=utf-8",
                 "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
_SAFE_SCOPE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
COMPOUNDS_PER_BATCH = 10


def ledger_key(kind: str, scope: str, period: str, fmt: str, sha256: str) -> str:
    """The object key of a document. A company or district name (Chinese) becomes a hash of itself."""
    slug = scope if _SAFE_SCOPE.fullmatch(scope) else "n" + hashlib.sha256(scope.encode()).hexdigest()[:16]
    return check_key(f"ledger/{period}/{kind}/{slug}-{sha256[:16]}.{fmt}")


def document_public(row: LedgerDocument) -> dict:
    return {"id": row.id, "kind": row.kind, "scope": row.scope, "period": row.period, "format": row.format,
            "sha256": row.sha256, "size": row.size, "content_type": row.content_type, "compounds": row.compounds,
            "created_at": row.created_at.isoformat(), "created_by": row.created_by}


def read_document(store: ObjectStore, row: LedgerDocument) -> bytes:
    """The document's bytes, checked against the recorded size and sha256 (:class:`IntegrityFailed`)."""
    data = b"".join(store.open_range(row.key))
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != row.size or digest != row.sha256:
        raise IntegrityFailed(row.key, f"{len(data)} bytes with sha256 {digest}, recorded {row.size} / {row.sha256}")
    return data


def month_compounds(session: Session, period: scorecard.Period) -> list[Compound]:
    """The compounds of a period: registered before it ended, or with a violation found in it."""
    found = select(Violation.compound_id).where(Violation.start_time >= period.start,
                                                Violation.start_time < period.end).distinct()
    return list(session.scalars(select(Compound).where(or_(Compound.created_at < period.end, Compound.id.in_(found)))
                                .order_by(Compound.id)))


def _store_document(sessions: sessionmaker, store: ObjectStore, kind: str, scope: str, period: str, fmt: str,
                    compound_ids: list[str], data: bytes, created_by: str, now: dt.datetime) -> dict | None:
    """Write one document and its row; None when another run recorded it first."""
    sha = hashlib.sha256(data).hexdigest()
    key = ledger_key(kind, scope, period, fmt, sha)
    store.put(key, data, CONTENT_TYPES[fmt])
    with sessions() as session:
        row = LedgerDocument(kind=kind, scope=scope, period=period, format=fmt, key=key, sha256=sha, size=len(data),
                             content_type=CONTENT_TYPES[fmt], compounds=sorted(compound_ids), created_at=now,
                             created_by=created_by)
        session.add(row)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            winner = session.scalar(select(LedgerDocument.key).where(
                LedgerDocument.kind == kind, LedgerDocument.scope == scope, LedgerDocument.period == period,
                LedgerDocument.format == fmt))
            if winner != key:
                store.delete(key)
            return None
        log.info("ledger: %s %s %s %s (%d bytes) by %s", kind, scope, period, fmt, len(data), created_by)
        return document_public(row)


def generate_month(sessions: sessionmaker, store: ObjectStore, table: scorecard.ScoringTable, month: str, *,
                   created_by: str, now: dt.datetime | None = None,
                   stop: threading.Event | None = None) -> list[dict]:
    """Make the missing ledger documents of ``month`` (see the module docstring); returns those made.
    ``now`` is the reports' "as of" time (default: now). ``stop`` ends the run between documents.
    ValueError for a bad month; StorageError when the store fails (what was finished stays)."""
    now = now or utcnow()
    period = reports.month_period(month, table)
    with sessions() as session:
        compounds = month_compounds(session, period)
        done = {(r.kind, r.scope, r.format) for r in session.execute(
            select(LedgerDocument.kind, LedgerDocument.scope, LedgerDocument.format)
            .where(LedgerDocument.period == month))}
    companies, districts = defaultdict(list), defaultdict(list)
    for compound in compounds:
        if compound.company:
            companies[compound.company].append(compound.id)
        if compound.district:
            districts[compound.district].append(compound.id)

    def missing(kind: str, scope: str) -> list[str]:
        return [fmt for fmt in KIND_FORMATS[kind] if (kind, scope, fmt) not in done]

    made: list[dict] = []

    def keep(kind: str, scope: str, fmt: str, ids: list[str], data: bytes) -> None:
        row = _store_document(sessions, store, kind, scope, month, fmt, ids, data, created_by, now)
        if row is not None:
            made.append(row)

    wanted = [c.id for c in compounds if missing("monthly_compound", c.id)]
    for first in range(0, len(wanted), COMPOUNDS_PER_BATCH):  # the open cases' photos of a batch are in memory
        batch = wanted[first:first + COMPOUNDS_PER_BATCH]
        with sessions() as session:
            per = reports.monthly_reports(session, table, batch, month, as_of=now, store=store)
        for compound_id in batch:
            if stop is not None and stop.is_set():
                return made
            keep("monthly_compound", compound_id, "pdf", [compound_id],
                 reports.render_pdf(reports.render_html(per[compound_id])))
    for company, ids in sorted(companies.items()):
        if stop is not None and stop.is_set():
            return made
        if missing("monthly_company", company):
            with sessions() as session:
                data = company_report.company_report(session, table, company, ids, month, as_of=now)
            keep("monthly_company", company, "pdf", ids, reports.render_pdf(company_report.render_html(data)))
    for district, ids in sorted(districts.items()):
        if stop is not None and stop.is_set():
            return made
        formats = missing("bulletin_district", district)
        if formats:
            with sessions() as session:
                data = bulletins.bulletin(session, table, ids, period, scope_kind="district", scope_name=district,
                                          as_of=now)
            for fmt in formats:
                body = (reports.render_pdf(bulletins.render_html(data)) if fmt == "pdf"
                        else bulletins.render_xlsx(data, table))
                keep("bulletin_district", district, fmt, ids, body)
    return made


def due_month(now: dt.datetime, zone, hour: int = 1) -> str:
    """The month whose documents are due at ``now``: the previous month once the local clock has passed
    ``hour`` o'clock on the 1st (late events of the month's last minutes have arrived by then)."""
    local = now.astimezone(zone) - dt.timedelta(hours=hour)
    return reports.previous_month(local.strftime("%Y-%m"))


class LedgerScheduler:
    """Generates the due month's ledger documents once per month in a thread of the API process (see the
    module docstring). ``clock`` returns the current UTC time; :meth:`run_once` is one step of the loop."""

    poll_s = 60.0

    def __init__(self, sessions: sessionmaker, store: ObjectStore, table: scorecard.ScoringTable, *,
                 clock: Callable[[], dt.datetime] = utcnow, hour: int = 1):
        self.sessions, self.store, self.table, self.clock, self.hour = sessions, store, table, clock, hour
        self.done_month: str | None = None
        self.passes = 0
        self.passed = threading.Condition()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> list[dict]:
        """Generate the due month's missing documents unless this scheduler already did; returns those made."""
        now = self.clock()
        month = due_month(now, self.table.zone, self.hour)
        made: list[dict] = []
        try:
            if month != self.done_month:
                made = generate_month(self.sessions, self.store, self.table, month, created_by="scheduler", now=now,
                                      stop=self._closing)
                if not self._closing.is_set():
                    self.done_month = month
        finally:
            with self.passed:
                self.passes += 1
                self.passed.notify_all()
        return made

    def wait_passes(self, count: int, timeout_s: float) -> bool:
        """Wait until :meth:`run_once` has ended ``count`` times (for tests and start-up checks)."""
        with self.passed:
            return self.passed.wait_for(lambda: self.passes >= count, timeout_s)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ledger-scheduler", daemon=True)
            self._thread.start()

    def close(self, timeout_s: float = 60.0) -> None:
        """Stop after the document being rendered (at most one)."""
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        while not self._closing.is_set():
            try:
                self.run_once()
            except (StorageError, OSError) as exc:
                log.error("ledger: cannot store the month's documents, retried in %.0f s: %s", self.poll_s, exc)
            except Exception:  # the database is away, or a report failed: try again at the next poll
                log.exception("ledger: generating the month's documents failed; retried in %.0f s", self.poll_s)
            self._closing.wait(self.poll_s)
