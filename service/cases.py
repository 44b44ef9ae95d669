"""Rectification cases (限期整改 → 复查 → 销号): open on confirmation, assign, rectify, re-inspect, close.

States and who moves them (every move is audited; anything else is :class:`Conflict`, HTTP 409):

    open / reopened / overdue --assign--> (same state, assignee + deadline set)     supervisor, admin
    open / reopened / overdue --rectify--> rectified   (needs a deadline)           reviewer+
    open / reopened / rectified / overdue --reinspect--> reinspected | overdue | open   worker, supervisor, admin
    reinspected --close--> closed                                                     supervisor, admin
    rectified / reinspected / overdue / closed --reopen--> reopened                   supervisor, admin

A new case starts assigned when the grid (:mod:`service.grid`) names someone for its zone: the most specific
entry (zone > floor > building > compound), with the deadline of its scoring item; otherwise unassigned.

Re-inspection is allowed once the case is rectified or its deadline has passed. "Scene clear" means the
worker ran the case's rule over fresh frames of the same camera and zone and the rule is not active
(its end condition holds: no object of the rule stands in the zone). Clear → ``reinspected`` (the
system proposes closing; a supervisor closes). Not clear → ``overdue`` when the deadline has passed,
else back to ``open``.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import audit, grid
from service.errors import Conflict, InvalidEvent, StorageError
from service.ingest import jpeg_problem
from service.models import OPEN_CASE_STATES, Case, CaseInspection, Violation, utcnow
from service.scorecard import ScoringTable, load_scoring
from service.storage import ObjectStore, check_key

ASSIGNABLE = ("open", "reopened", "overdue")
RECTIFIABLE = ("open", "reopened", "overdue")
REINSPECTABLE = ("open", "reopened", "rectified", "overdue")
CLOSABLE = ("reinspected",)
REOPENABLE = ("rectified", "reinspected", "overdue", "closed")
MAX_SNAPSHOT_BYTES = 20 * 1024 * 1024
GRID_ACTOR = ("system", "grid (网格自动派单)")


def case_state(case: Case) -> dict:
    """The fields of ``case`` the audit log records before and after a change."""
    return {"state": case.state, "assignee": case.assignee, "assigned_by": case.assigned_by, "deadline": case.deadline,
            "rectification_note": case.rectification_note, "closed_at": case.closed_at}


def violations_with_open_cases():
    """A SELECT of the ids of violations whose case is not closed (their evidence must be retained)."""
    return (select(Violation.id).join(Case, Violation.case_id == Case.id)
            .where(Case.state.in_(OPEN_CASE_STATES)))


def open_or_join(session: Session, violation: Violation, actor, scoring: ScoringTable | None = None) -> Case:
    """Attach a just-confirmed ``violation`` to the open case of its spot (compound, camera, zone, rule)
    or open a new one. Added to the session with its audit entries; not committed.

    A new case is assigned to the person the grid names for its zone (:mod:`service.grid`, most specific
    entry), with the deadline ``scoring`` (default: configs/scoring.yaml) sets for its rule, and an
    ``auto_assign`` audit entry by the system saying which entry matched and who confirmed. Without a
    matching entry the case stays unassigned; its ``open`` entry records ``grid: null``."""
    case = session.scalar(
        select(Case).where(Case.compound_id == violation.compound_id, Case.camera_id == violation.camera_id,
                           Case.zone_id == violation.zone_id, Case.rule == violation.rule,
                           Case.state.in_(OPEN_CASE_STATES))
        .order_by(Case.id.desc()).limit(1))
    if case is not None:
        violation.case_id = case.id
        audit.record(session, actor, "case", case.id, "join", None, {"violation_id": violation.id},
                     compound_id=case.compound_id)
        return case
    now = utcnow()
    case = Case(violation_id=violation.id, compound_id=violation.compound_id, camera_id=violation.camera_id,
                zone_id=violation.zone_id, rule=violation.rule, state="open", created_at=now, updated_at=now)
    session.add(case)
    session.flush()
    violation.case_id = case.id
    responsible = grid.responsible_for(session, case.compound_id, case.camera_id, case.zone_id)
    audit.record(session, actor, "case", case.id, "open", None,
                 {**case_state(case), "violation_id": violation.id,
                  "grid": responsible.level if responsible else None}, compound_id=case.compound_id)
    if responsible is not None:
        _assign_from_grid(session, case, responsible, scoring or load_scoring(), actor, now)
    return case


def _assign_from_grid(session: Session, case: Case, responsible: grid.Responsible, scoring: ScoringTable,
                      confirmed_by, now: dt.datetime) -> None:
    item = scoring.item_for(case.rule)
    before = case_state(case)
    case.assignee, case.assigned_by = responsible.entry.assignee, "grid"
    case.deadline = item.deadline(now, scoring.zone) if item is not None else None
    place = responsible.place
    audit.record(session, GRID_ACTOR, "case", case.id, "auto_assign", before, {
        **case_state(case), "grid_entry_id": responsible.entry.id, "matched": responsible.level,
        "building": place.building, "floor": place.floor, "camera_id": place.camera_id, "zone_id": place.zone_id,
        "deadline_rule": f"{item.id}: {item.deadline_rule}" if item is not None else None,
        "confirmed_by": getattr(confirmed_by, "actor", None)}, compound_id=case.compound_id)


def _move(session: Session, case: Case, actor, action: str, allowed: tuple[str, ...], **changes) -> Case:
    """Check ``case.state in allowed``, apply ``changes``, audit and commit. :class:`Conflict` otherwise."""
    if case.state not in allowed:
        raise Conflict(f"case {case.id} is {case.state}; {action} needs one of: {', '.join(allowed)}")
    before = case_state(case)
    for name, value in changes.items():
        setattr(case, name, value)
    case.updated_at = utcnow()
    audit.record(session, actor, "case", case.id, action, before, case_state(case), compound_id=case.compound_id)
    session.commit()
    return case


def assign(session: Session, case: Case, actor, assignee: str, deadline: dt.datetime) -> Case:
    """Give the case an assignee and a deadline (限期整改), replacing what the grid set."""
    return _move(session, case, actor, "assign", ASSIGNABLE, assignee=assignee, deadline=deadline,
                 assigned_by="manual")


def rectify(session: Session, case: Case, actor, note: str) -> Case:
    """Mark the case rectified with a note; it needs a deadline (an assigned case)."""
    if case.deadline is None and case.state in RECTIFIABLE:
        raise Conflict(f"case {case.id} has no assignee and deadline yet; assign it first")
    return _move(session, case, actor, "rectify", RECTIFIABLE, state="rectified", rectification_note=note,
                 rectified_at=utcnow())


def close(session: Session, case: Case, actor) -> Case:
    """Close (销号) a case whose re-inspection found the scene clear."""
    return _move(session, case, actor, "close", CLOSABLE, state="closed", closed_at=utcnow())


def reopen(session: Session, case: Case, actor, deadline: dt.datetime | None = None) -> Case:
    """Reopen the case, optionally with a new deadline."""
    changes = {"state": "reopened", "closed_at": None}
    if deadline is not None:
        changes["deadline"] = deadline
    return _move(session, case, actor, "reopen", REOPENABLE, **changes)


def is_due(case: Case, now: dt.datetime) -> bool:
    """A case may be re-inspected when it is rectified, or not closed and past its deadline."""
    if case.state == "rectified":
        return True
    return case.state in REINSPECTABLE and case.deadline is not None and case.deadline <= now


def due_cases_query(compounds: frozenset[str] | None, now: dt.datetime):
    """SELECT of the cases due for re-inspection in ``compounds`` (None: all), oldest deadline first."""
    query = select(Case).where(
        (Case.state == "rectified") | (Case.state.in_(("open", "reopened", "overdue")) & (Case.deadline <= now)))
    if compounds is not None:
        query = query.where(Case.compound_id.in_(sorted(compounds)))
    return query.order_by(Case.deadline, Case.id)


def _check_jpeg(data: bytes) -> None:
    if not data.startswith(b"\xff\xd8") or len(data) > MAX_SNAPSHOT_BYTES:
        raise InvalidEvent("snapshot must be a JPEG of at most 20 MiB")
    if problem := jpeg_problem(data):  # header checked before decoding: no 30000x30000 allocation
        raise InvalidEvent(f"snapshot {problem}")


def _read(store: ObjectStore, key: str) -> bytes:
    return b"".join(store.open_range(key))


def reinspect(session: Session, store: ObjectStore, case: Case, actor, frame_time: dt.datetime, rule_active: bool,
              snapshot: bytes, now: dt.datetime | None = None) -> CaseInspection:
    """Record a re-inspection (复查) of ``case`` from a fresh ``snapshot`` of its camera taken at
    ``frame_time``, with the worker's verdict ``rule_active`` (the case's rule still active in the zone).

    Stores the before snapshot (the opening violation's, copied once so it outlives evidence retention)
    and the after snapshot under ``cases/<compound>/<case id>/``, moves the case (see module doc),
    audits and commits. :class:`Conflict` when the case is not due; :class:`InvalidEvent` for a bad JPEG."""
    now = now or utcnow()
    if case.state not in REINSPECTABLE or not is_due(case, now):
        raise Conflict(f"case {case.id} is {case.state} with deadline "
                       f"{case.deadline.isoformat() if case.deadline else 'unset'}: not due for re-inspection")
    _check_jpeg(snapshot)
    prefix = f"cases/{case.compound_id}/{case.id}"
    number = len(case.inspections) + 1
    written: list[str] = []
    try:
        before_key, before_sha = next(((i.before_key, i.before_sha256) for i in case.inspections if i.before_key),
                                      (None, None))
        opener = session.get(Violation, case.violation_id)
        opener_snapshot = opener.evidence_of("snapshot") if opener is not None else None
        if before_key is None and opener_snapshot is not None:
            before_key = check_key(f"{prefix}/before.jpg")
            before_sha, _ = store.put(before_key, _read(store, opener_snapshot.key), "image/jpeg")
            written.append(before_key)
        after_key = check_key(f"{prefix}/inspection-{number}-after.jpg")
        after_sha, after_size = store.put(after_key, snapshot, "image/jpeg")
        written.append(after_key)
        scene_clear = not rule_active
        if scene_clear:
            outcome, state = "propose_close", "reinspected"
        elif case.deadline is not None and case.deadline <= now:
            outcome, state = "overdue", "overdue"
        else:
            outcome, state = "not_clear", "open"
        before = case_state(case)
        inspection = CaseInspection(case_id=case.id, inspected_at=now, frame_time=frame_time,
                                    scene_clear=scene_clear, outcome=outcome, before_key=before_key,
                                    before_sha256=before_sha, after_key=after_key, after_sha256=after_sha,
                                    after_size=after_size, inspected_by=actor.actor)
        case.inspections.append(inspection)
        case.state, case.reinspected_at, case.updated_at = state, now, now
        audit.record(session, actor, "case", case.id, "reinspect", before,
                     {**case_state(case), "scene_clear": scene_clear, "outcome": outcome, "after_key": after_key},
                     compound_id=case.compound_id)
        session.commit()
        return inspection
    except BaseException:
        session.rollback()
        for key in written:
            try:
                store.delete(key)
            except StorageError:
                pass
        raise
