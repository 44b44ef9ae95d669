"""Evidence objects of a violation, for reviewers and for browsers.

- ``GET /api/v1/events/{id}/evidence/{kind}``: the object (API key), whole or by byte range.
- ``GET /api/v1/events/{id}/evidence/{kind}/link``: a short-lived URL a ``<video>``/``<img>`` element
  can load without headers: presigned S3 GET, or (local store) the signed URL below.
- ``GET /api/v1/events/{id}/evidence/{kind}/signed?expires=…&sig=…``: the object, no key needed, while
  the HMAC signature is valid and not expired.

Integrity: a whole read, and a range read starting at byte 0 (the first request of every player), is
checked against the sha256 recorded at upload before a byte is sent; other ranges check the size. A
link is only issued for an object that passes the check. A mismatch is HTTP 500 naming the object, a
log error and an audit entry (``evidence``/``integrity_failed``); the bytes are never served.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session

from service import evidence_links
from service.deps import CurrentKey, SessionDep, SettingsDep, StoreDep
from service.errors import IntegrityFailed
from service.ingest import EXTENSIONS
from service.models import EvidenceObject, Violation
from service.ranges import RangeNotSatisfiable, parse_range
from service.routers.common import load_violation
from service.schemas import EvidenceKind
from service.storage import ObjectStore, verify_object

log = logging.getLogger(__name__)
router = APIRouter(prefix="/events", tags=["evidence"])

READ_RESPONSES = {200: {"description": "the whole object (sha256 verified before sending)"},
                  206: {"description": "the requested byte range"},
                  404: {"description": "no such violation, or it has no evidence of this kind"},
                  416: {"description": "range not satisfiable"},
                  500: {"description": "the stored object failed its integrity check (not served)"}}


class EvidenceLink(BaseModel):
    """A URL a browser can fetch without headers until ``expires_at``."""

    url: str
    expires_at: dt.datetime
    sha256: str
    size: int
    content_type: str


def report_integrity_failure(session: Session, violation: Violation, obj: EvidenceObject,
                             exc: IntegrityFailed, actor=None) -> None:
    """Log the failure and append an audit entry (entity ``evidence``, id ``<violation>:<kind>``)."""
    log.error("evidence integrity check failed: %s: %s", obj.key, exc.reason)
    try:
        from service import audit
        session.rollback()
        audit.record(session, actor or audit.SYSTEM_ACTOR, "evidence", f"{violation.id}:{obj.kind}",
                     "integrity_failed", {"key": obj.key, "sha256": obj.sha256, "size": obj.size},
                     {"reason": exc.reason}, compound_id=violation.compound_id)
        session.commit()
    except Exception:  # the failure is reported to the caller either way
        log.exception("could not write the audit entry for %s", obj.key)
        session.rollback()


def _evidence(session: Session, violation: Violation, kind: str) -> EvidenceObject:
    obj = violation.evidence_of(kind)
    if obj is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"violation {violation.id} has no {kind}")
    return obj


def _checked(session: Session, store: ObjectStore, violation: Violation, obj: EvidenceObject,
             whole: bool, actor=None) -> None:
    """Size check always, sha256 when ``whole``; report and re-raise :class:`IntegrityFailed`."""
    try:
        if whole:
            verify_object(store, obj.key, obj.sha256, obj.size)
        else:
            size = store.size(obj.key)
            if size != obj.size:
                raise IntegrityFailed(obj.key, f"stored size is {size} bytes, recorded {obj.size}")
    except IntegrityFailed as exc:
        report_integrity_failure(session, violation, obj, exc, actor)
        raise


def _serve(session: Session, store: ObjectStore, violation: Violation, obj: EvidenceObject,
           range_: str | None, if_range: str | None, actor=None,
           cache_control: str = "private, max-age=3600") -> StreamingResponse:
    size = obj.size
    etag = f'"{obj.sha256}"'
    headers = {"Accept-Ranges": "bytes", "ETag": etag, "Cache-Control": cache_control,
               "Content-Disposition": f'inline; filename="{violation.id}-{obj.kind}.{EXTENSIONS[obj.kind]}"'}
    try:
        byte_range = parse_range(range_, size) if if_range in (None, etag) else None
    except RangeNotSatisfiable:
        _checked(session, store, violation, obj, whole=False, actor=actor)
        raise HTTPException(416, f"range {range_!r} is outside the {size} bytes of this {obj.kind}",
                            headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"}) from None
    _checked(session, store, violation, obj, whole=byte_range is None or byte_range[0] == 0, actor=actor)
    if byte_range is None:
        return StreamingResponse(store.open_range(obj.key), media_type=obj.content_type,
                                 headers={**headers, "Content-Length": str(size)})
    start, end = byte_range
    return StreamingResponse(store.open_range(obj.key, start, end), status_code=status.HTTP_206_PARTIAL_CONTENT,
                             media_type=obj.content_type,
                             headers={**headers, "Content-Range": f"bytes {start}-{end}/{size}",
                                      "Content-Length": str(end - start + 1)})


@router.get("/{violation_id}/evidence/{kind}", name="get_evidence", response_class=StreamingResponse,
            responses=READ_RESPONSES)
def get_evidence(
    violation_id: str, kind: EvidenceKind, key: CurrentKey, session: SessionDep, store: StoreDep,
    range_: Annotated[str | None, Header(alias="Range")] = None,
    if_range: Annotated[str | None, Header(alias="If-Range")] = None,
) -> StreamingResponse:
    """The object with its content type and ``Accept-Ranges: bytes``. A ``Range: bytes=a-b`` gives 206
    with ``Content-Range``; a whole read (or one from byte 0) is verified against the recorded sha256 first."""
    violation = load_violation(session, key, violation_id)
    return _serve(session, store, violation, _evidence(session, violation, kind), range_, if_range, actor=key)


@router.get("/{violation_id}/evidence/{kind}/link", response_model=EvidenceLink,
            responses={404: READ_RESPONSES[404], 500: READ_RESPONSES[500]})
def get_evidence_link(violation_id: str, kind: EvidenceKind, key: CurrentKey, session: SessionDep,
                      store: StoreDep, settings: SettingsDep, request: Request) -> EvidenceLink:
    """A URL for ``<video src>``/``<img src>`` valid for ``evidence_url_ttl_s`` (default 5 minutes):
    a presigned GET on an S3 store (the object is verified before the URL is issued), else a signed
    URL of this API (verified when fetched). Range requests work on both."""
    violation = load_violation(session, key, violation_id)
    obj = _evidence(session, violation, kind)
    ttl = dt.timedelta(seconds=settings.evidence_url_ttl_s)
    expires = int(time.time()) + settings.evidence_url_ttl_s
    url = store.presigned_url(obj.key, ttl)
    if url is not None:
        _checked(session, store, violation, obj, whole=True, actor=key)
    else:
        sig = evidence_links.signature(evidence_links.link_secret(request.app.state), violation.id, kind, expires)
        root = request.scope.get("root_path", "").rstrip("/")
        path = request.app.url_path_for("get_signed_evidence", violation_id=violation.id, kind=kind)
        url = f"{root}{path}?expires={expires}&sig={sig}"
    return EvidenceLink(url=url, expires_at=dt.datetime.fromtimestamp(expires, dt.timezone.utc),
                        sha256=obj.sha256, size=obj.size, content_type=obj.content_type)


@router.get("/{violation_id}/evidence/{kind}/signed", name="get_signed_evidence", response_class=StreamingResponse,
            responses={**READ_RESPONSES, 403: {"description": "signature wrong or expired"}})
def get_signed_evidence(
    violation_id: str, kind: EvidenceKind, session: SessionDep, store: StoreDep, request: Request,
    expires: Annotated[int, Query(description="Unix time the link stops working")],
    sig: Annotated[str, Query(max_length=100, description="HMAC-SHA256 signature from the /link endpoint")],
    range_: Annotated[str | None, Header(alias="Range")] = None,
    if_range: Annotated[str | None, Header(alias="If-Range")] = None,
) -> StreamingResponse:
    """The object, like ``get_evidence`` but authorised by the link's signature instead of a key."""
    problem = evidence_links.check(evidence_links.link_secret(request.app.state), violation_id, kind, expires, sig)
    if problem is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"evidence link {problem}; ask for a new one")
    violation = session.get(Violation, violation_id)
    if violation is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no violation with id {violation_id!r}")
    left = max(0, expires - int(time.time()))
    return _serve(session, store, violation, _evidence(session, violation, kind), range_, if_range,
                  cache_control=f"private, max-age={left}")
