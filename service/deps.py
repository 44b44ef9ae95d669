"""FastAPI dependencies as typed aliases: ``SessionDep``, ``StoreDep``, ``SettingsDep`` and the caller,
``CurrentPrincipal`` — an API key (``X-API-Key``) or a user's bearer token (``Authorization: Bearer``),
both through one dependency. What the caller may do is checked per compound with
``Principal.require(action, compound_id)`` (404 foreign compound, 403 wrong role).

``CurrentKey``, ``WorkerKey`` and ``ReviewerKey`` are kept as names for older routers: all three are
the same principal now; the routers check the role per compound.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from service.auth import Principal, principal_for, principal_for_token
from service.settings import Settings
from service.storage import ObjectStore

log = logging.getLogger(__name__)


def get_session(request: Request) -> Iterator[Session]:
    """One session per request, closed (and rolled back if still open) afterwards.

    Closing runs after the response has started; if the database went away meanwhile the ROLLBACK
    fails, and that must not break a response already on its way (the connection is discarded and the
    transaction is gone with it anyway)."""
    session = request.app.state.sessions()
    try:
        yield session
    finally:
        try:
            session.close()
        except DBAPIError as exc:
            log.warning("closing a session on a lost database connection: %s", str(exc).splitlines()[0])


# ``async`` so that FastAPI calls them in the event loop: a plain ``def`` dependency costs a trip to the
# thread pool on every request, for an attribute lookup.
async def get_store(request: Request) -> ObjectStore:
    return request.app.state.store


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[ObjectStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="A key made with `compoundeye keys create`.")
bearer_token = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False,
                                    description="A user's token from `POST /api/v1/auth/token`.")


def current_principal(session: SessionDep,
                      api_key: Annotated[str | None, Security(api_key_header)],
                      token: Annotated[str | None, Security(bearer_token)]) -> Principal:
    """The caller: a bearer token when one is sent, else the API key. 401 when neither is valid."""
    if token:
        return principal_for_token(session, token)
    return principal_for(session, api_key)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
CurrentKey = WorkerKey = ReviewerKey = CurrentPrincipal
