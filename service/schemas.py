"""API schemas, one per direction: what a worker sends (``ViolationCreate``), what a reviewer sees
(``ViolationPublic``), and the review decision. The ORM models are neither."""
from __future__ import annotations

import datetime as dt
import math
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from vision.config import RuleName

Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Confidence = Annotated[float, Field(ge=0.0, le=1.0)]
EvidenceKind = Literal["snapshot", "clip", "sidecar", "crop"]
RejectReason = Literal["false_alarm", "not_a_violation", "duplicate", "already_handled"]
ReviewState = Literal["unreviewed", "confirmed", "rejected"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BoxIn(Strict):
    """One box proving the violation. ``time`` is the frame time (ISO 8601 with zone, or epoch seconds)."""

    time: AwareDatetime
    xyxy: Annotated[list[float], Field(min_length=4, max_length=4)]
    class_name: Annotated[str, Field(min_length=1, max_length=64)]
    confidence: Confidence
    track_id: int

    @field_validator("xyxy")
    @classmethod
    def _box(cls, xyxy: list[float]) -> list[float]:
        if not all(math.isfinite(v) for v in xyxy) or xyxy[0] >= xyxy[2] or xyxy[1] >= xyxy[3]:
            raise ValueError("xyxy must be finite with x1 < x2 and y1 < y2")
        return xyxy


class EvidenceClaims(Strict):
    """The sha256 the worker computed for each uploaded file; the API checks every one."""

    snapshot_sha256: Sha256
    clip_sha256: Sha256
    sidecar_sha256: Sha256
    crop_sha256: Sha256 | None = None


class ViolationCreate(Strict):
    """What a worker posts (the ``event`` form field). ``id`` must equal
    ``vision.types.violation_id(camera_id, rule, zone_id, start_time as epoch seconds)``."""

    id: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    rule: RuleName
    compound_id: Identifier
    camera_id: Identifier
    zone_id: Identifier
    start_time: AwareDatetime
    last_seen_time: AwareDatetime
    end_time: AwareDatetime | None = None
    confidence: Confidence
    model_version: Annotated[str, Field(min_length=1, max_length=200)]
    source: Literal["live", "rescan"]
    boxes: Annotated[list[BoxIn], Field(max_length=1000)]
    evidence: EvidenceClaims

    @model_validator(mode="after")
    def _times_in_order(self) -> "ViolationCreate":
        if self.last_seen_time < self.start_time:
            raise ValueError("last_seen_time is before start_time")
        if self.end_time is not None and self.end_time < self.start_time:
            raise ValueError("end_time is before start_time")
        return self


class EvidencePublic(BaseModel):
    """Where a reviewer fetches one evidence object, and what it should hash to."""

    url: str
    sha256: str
    size: int
    content_type: str


class ReviewCreate(Strict):
    """A reviewer's decision. ``reason`` is required to reject and not allowed to confirm."""

    verdict: Literal["confirm", "reject"]
    reason: RejectReason | None = None
    note: Annotated[str, Field(max_length=2000)] | None = None

    @model_validator(mode="after")
    def _reason_goes_with_reject(self) -> "ReviewCreate":
        if self.verdict == "reject" and self.reason is None:
            raise ValueError("a reject needs a reason: false_alarm, not_a_violation, duplicate or already_handled")
        if self.verdict == "confirm" and self.reason is not None:
            raise ValueError("reason is only given with verdict 'reject'")
        return self


class ReviewPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    violation_id: str
    verdict: Literal["confirm", "reject"]
    reason: RejectReason | None
    note: str | None
    reviewer_key_id: str | None
    reviewer_user_id: int | None = None
    decided_at: dt.datetime


class EventResult(BaseModel):
    """What became of one event of a batch post (``POST /api/v1/events/batch``): ``status`` is the answer a
    single post of it would have had (201 stored, 200 already stored, 403/404 not the caller's compound,
    413, 415, 422 refused, 500/503 failed; ``detail`` says why). ``id`` is None when the event did not parse."""

    index: int
    id: str | None
    status: int
    detail: str | list | None = None


class ViolationPublic(BaseModel):
    """A violation as a reviewer sees it, with links to its evidence."""

    id: str
    rule: str
    compound_id: str
    camera_id: str
    zone_id: str
    start_time: dt.datetime
    last_seen_time: dt.datetime
    end_time: dt.datetime | None
    confidence: float
    model_version: str
    source: Literal["live", "rescan"]
    boxes: list[dict]
    review_state: ReviewState
    created_at: dt.datetime
    evidence: dict[EvidenceKind, EvidencePublic]
    review: ReviewPublic | None
    claimed_by: str | None = None
    claimed_until: dt.datetime | None = None
    case_id: int | None = None


class ViolationList(BaseModel):
    items: list[ViolationPublic]
    total: int
    total_capped: bool = Field(False, description="the count stopped at max(1000, offset + limit + 1): "
                               "``total`` is a lower bound (a page shows it as \"1000+\")")
    limit: int
    offset: int


class Health(BaseModel):
    status: Literal["ok", "error"]
    database: Literal["ok", "unreachable"]
