"""Checking every stored evidence object against the sha256 recorded at upload (``evidence verify``)."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.errors import IntegrityFailed, ObjectNotFound, StorageError
from service.models import EvidenceObject
from service.storage import ObjectStore, verify_object

log = logging.getLogger(__name__)


@dataclass
class VerifyReport:
    """``checked`` objects; ``problems`` maps each bad key to what is wrong (mismatch, missing, unreadable)."""

    checked: int = 0
    bytes: int = 0
    problems: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {"checked": self.checked, "bytes": self.bytes, "ok": self.ok, "problems": self.problems}


def verify_all(session: Session, store: ObjectStore, actor=("cli", "evidence verify")) -> VerifyReport:
    """Read every object in ``evidence_objects`` and compare size and sha256. Each mismatch or missing
    object is logged and gets an audit entry (``evidence``/``integrity_failed``); store errors are
    reported per object and the check goes on."""
    from service import audit
    report = VerifyReport()
    rows = session.execute(select(EvidenceObject).order_by(EvidenceObject.violation_id, EvidenceObject.kind)).scalars()
    failures = []
    for obj in rows:
        report.checked += 1
        try:
            verify_object(store, obj.key, obj.sha256, obj.size)
            report.bytes += obj.size
            continue
        except IntegrityFailed as exc:
            problem = f"integrity check failed: {exc.reason}"
        except ObjectNotFound:
            problem = "missing from the store"
        except StorageError as exc:
            report.problems[obj.key] = f"unreadable: {exc.reason}"
            continue
        report.problems[obj.key] = problem
        failures.append((obj, problem))
    for obj, problem in failures:
        log.error("evidence %s: %s", obj.key, problem)
        audit.record(session, actor, "evidence", f"{obj.violation_id}:{obj.kind}", "integrity_failed",
                     {"key": obj.key, "sha256": obj.sha256, "size": obj.size}, {"reason": problem},
                     compound_id=obj.violation.compound_id)
    session.commit()
    return report
