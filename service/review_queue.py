"""The review queue: unreviewed violations, claims, and decisions (single and bulk).

A reviewer *claims* a violation for ``CLAIM_TTL`` so two people do not look at the same one; a claim
by someone else that has not expired makes a claim or a decision 409. The first decision wins (a
unique review per violation); a second one gets 409 and changes nothing. A confirmation opens or joins
a rectification case (:func:`service.cases.open_or_join`) in the same transaction.
"""
from __future__ import annotations

import datetime as dt

from fastapi import HTTPException
from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import audit
from service.auth import Principal
from service.cases import open_or_join
from service.errors import AlreadyReviewed, Conflict
from service.models import Review, Violation, utcnow
from service.routers.common import load_violation, scope_to_compounds
from service.schemas import ReviewCreate
from service.scorecard import ScoringTable

CLAIM_TTL = dt.timedelta(minutes=15)


def _claimed_by_other(violation: Violation, principal: Principal, now: dt.datetime) -> bool:
    return (violation.claimed_by is not None and violation.claimed_by != principal.actor
            and violation.claimed_until is not None and violation.claimed_until > now)


def queue_query(principal: Principal, compound_id: str | None = None, camera_id: str | None = None,
                rule: str | None = None, since: dt.datetime | None = None, until: dt.datetime | None = None,
                include_claimed: bool = False, now: dt.datetime | None = None):
    """SELECT of the unreviewed violations the caller may review, oldest start first. Violations claimed
    by someone else (claim not expired) are left out unless ``include_claimed``."""
    now = now or utcnow()
    query = scope_to_compounds(select(Violation).where(Violation.review_state == "unreviewed"),
                               Violation.compound_id, principal, "review", compound_id)
    for column, value in ((Violation.camera_id, camera_id), (Violation.rule, rule)):
        if value is not None:
            query = query.where(column == value)
    if since is not None:
        query = query.where(Violation.start_time >= since)
    if until is not None:
        query = query.where(Violation.start_time < until)
    if not include_claimed:
        query = query.where(or_(Violation.claimed_by.is_(None), Violation.claimed_by == principal.actor,
                                Violation.claimed_until <= now))
    return query.order_by(Violation.start_time, Violation.id)


def claim(session: Session, principal: Principal, violation_id: str) -> Violation:
    """Claim the violation for ``CLAIM_TTL`` (a claim of one's own is extended) and commit.
    404/403 as for reading; :class:`AlreadyReviewed` or :class:`Conflict` (409) when decided or claimed."""
    violation = load_violation(session, principal, violation_id, action="review")
    now = utcnow()
    until = now + CLAIM_TTL
    # One conditional UPDATE so two concurrent claims cannot both win, on SQLite and PostgreSQL.
    result = session.execute(
        update(Violation)
        .where(Violation.id == violation_id, Violation.review_state == "unreviewed",
               or_(Violation.claimed_by.is_(None), Violation.claimed_by == principal.actor,
                   Violation.claimed_until <= now))
        .values(claimed_by=principal.actor, claimed_until=until)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        session.rollback()
        session.refresh(violation)
        if violation.review_state != "unreviewed":
            raise AlreadyReviewed(violation_id, violation.review_state)
        raise Conflict(f"violation {violation_id} is claimed by {violation.claimed_by} until "
                       f"{violation.claimed_until.isoformat()}")
    audit.record(session, principal, "violation", violation_id, "claim", None,
                 {"claimed_by": principal.actor, "claimed_until": until}, compound_id=violation.compound_id)
    session.commit()
    session.refresh(violation)
    return violation


def release(session: Session, principal: Principal, violation_id: str) -> None:
    """Give up one's own claim (no-op when there is none); a claim of someone else's is 409."""
    violation = load_violation(session, principal, violation_id, action="review")
    if violation.claimed_by is None:
        return
    if _claimed_by_other(violation, principal, utcnow()):
        raise Conflict(f"violation {violation_id} is claimed by {violation.claimed_by}, not by you")
    before = {"claimed_by": violation.claimed_by, "claimed_until": violation.claimed_until}
    violation.claimed_by, violation.claimed_until = None, None
    audit.record(session, principal, "violation", violation_id, "release", before, None,
                 compound_id=violation.compound_id)
    session.commit()


def decide(session: Session, principal: Principal, violation_id: str, decision: ReviewCreate,
           scoring: ScoringTable | None = None) -> Review:
    """Record ``decision`` on the violation, set its review state, open or join a case on confirm (assigned
    from the grid with the deadline ``scoring`` sets, see :func:`service.cases.open_or_join`), audit,
    commit. 409 when already decided or claimed by someone else; nothing is changed then."""
    violation = load_violation(session, principal, violation_id, action="review")
    if violation.review is not None:
        raise AlreadyReviewed(violation_id, violation.review.verdict)
    if _claimed_by_other(violation, principal, utcnow()):
        raise Conflict(f"violation {violation_id} is claimed by {violation.claimed_by} until "
                       f"{violation.claimed_until.isoformat()}")
    review = Review(violation_id=violation_id, verdict=decision.verdict, reason=decision.reason,
                    note=decision.note, reviewer_key_id=principal.key_id, reviewer_user_id=principal.user_id,
                    decided_at=utcnow())
    session.add(review)
    before = {"review_state": violation.review_state}
    violation.review_state = "confirmed" if decision.verdict == "confirm" else "rejected"
    violation.claimed_by, violation.claimed_until = None, None
    try:
        session.flush()
        audit.record(session, principal, "violation", violation_id, "review", before,
                     {"review_state": violation.review_state, "verdict": decision.verdict,
                      "reason": decision.reason, "note": decision.note}, compound_id=violation.compound_id)
        if decision.verdict == "confirm":
            open_or_join(session, violation, principal, scoring)
        session.commit()
    except IntegrityError:
        # A concurrent decision won the unique violation_id; ours is discarded, theirs stands.
        session.rollback()
        verdict = session.scalar(select(Review.verdict).where(Review.violation_id == violation_id))
        if verdict is None:
            raise
        raise AlreadyReviewed(violation_id, verdict) from None
    return review


def decide_many(session: Session, principal: Principal, violation_ids: list[str],
                decision: ReviewCreate, scoring: ScoringTable | None = None) -> list[dict]:
    """:func:`decide` for each id in its own transaction (e.g. rejecting a burst of duplicates).
    Returns one ``{"violation_id", "status", "detail"}`` per id: 201 decided, or the error status."""
    results = []
    for violation_id in dict.fromkeys(violation_ids):
        try:
            decide(session, principal, violation_id, decision, scoring)
            results.append({"violation_id": violation_id, "status": 201, "detail": decision.verdict})
        except HTTPException as exc:
            session.rollback()
            results.append({"violation_id": violation_id, "status": exc.status_code, "detail": exc.detail})
        except (AlreadyReviewed, Conflict) as exc:
            session.rollback()
            results.append({"violation_id": violation_id, "status": 409, "detail": str(exc)})
    return results
