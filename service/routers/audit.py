"""``GET /audit``: the append-only audit log, for supervisors and admins of the compounds concerned.
Entries without a compound (users, keys) are shown to admins of every compound only."""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from service.deps import CurrentPrincipal, SessionDep
from service.models import AuditEntry
from service.schemas import Identifier
from service.routers.common import bounded_total, scope_to_compounds

router = APIRouter(tags=["audit"])


class AuditPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: dt.datetime
    actor: str
    actor_name: str
    compound_id: str | None
    entity: str
    entity_id: str
    action: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class AuditList(BaseModel):
    items: list[AuditPublic]
    total: int
    total_capped: bool = Field(False, description="the count stopped at max(1000, offset + limit + 1): "
                               "``total`` is a lower bound (a page shows it as \"1000+\")")


@router.get("/audit", response_model=AuditList,
            responses={403: {"description": "not a supervisor or admin anywhere"},
                       404: {"description": "compound_id is foreign to the caller"}})
def list_audit(principal: CurrentPrincipal, session: SessionDep, compound_id: Identifier | None = None,
               entity: str | None = None, entity_id: str | None = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 100,
               offset: Annotated[int, Query(ge=0)] = 0) -> AuditList:
    """Entries oldest first, filtered by compound, entity (``violation``, ``case``, ``user``, ``api_key``) and id."""
    if compound_id is None:
        principal.require_any("audit.read")
    query = scope_to_compounds(select(AuditEntry), AuditEntry.compound_id, principal, "audit.read", compound_id)
    if entity is not None:
        query = query.where(AuditEntry.entity == entity)
    if entity_id is not None:
        query = query.where(AuditEntry.entity_id == entity_id)
    total, capped = bounded_total(session, query, offset, limit)
    rows = session.scalars(query.order_by(AuditEntry.id).limit(limit).offset(offset)).all()
    return AuditList(items=[AuditPublic.model_validate(r) for r in rows], total=total, total_capped=capped)
