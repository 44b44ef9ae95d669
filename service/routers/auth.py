"""Login and accounts: ``POST /auth/token`` (OAuth2 password flow), ``GET /auth/me``, ``POST /auth/logout``,
users and their grants (``/users``) and API keys (``/keys``), managed by admins of the compounds concerned."""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field
from sqlalchemy import select

from service import audit
from service.auth import Principal
from service.deps import CurrentPrincipal, SessionDep, SettingsDep, bearer_token
from service.keys import ALL_COMPOUNDS, create_key, revoke_key
from service.models import ApiKey, RoleGrant, User
from service.users import check_grant, create_user, issue_token, revoke_token, user_public, verify_login

router = APIRouter(tags=["accounts"])
ERRORS = {401: {"description": "missing, unknown or revoked API key or token"},
          403: {"description": "not an admin of every compound concerned"}}


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: dt.datetime
    expires_in: int


class Me(BaseModel):
    kind: Literal["key", "user"]
    id: str
    name: str
    roles: dict[str, str]


class UserCreate(BaseModel):
    username: str
    password: Annotated[str, Field(min_length=8, max_length=200)]
    display_name: str = ""
    grants: Annotated[dict[str, str], Field(min_length=1, description="compound id (or * for admins) -> role")]


class UserPublic(BaseModel):
    id: int
    username: str
    display_name: str
    is_active: bool
    grants: dict[str, str]


class GrantIn(BaseModel):
    role: Literal["viewer", "reviewer", "supervisor", "admin"]


class KeyCreate(BaseModel):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    role: Literal["worker", "viewer", "reviewer", "supervisor", "admin"]
    compounds: Annotated[list[str], Field(min_length=1)]


class KeyPublic(BaseModel):
    id: str
    name: str
    role: str
    compounds: list[str]
    created_at: dt.datetime
    revoked_at: dt.datetime | None
    key: str | None = None  # the plaintext, only in the answer to its creation


@router.post("/auth/token", response_model=Token, tags=["auth"],
             responses={401: {"description": "wrong username or password, or user disabled"},
                        429: {"description": "too many failed logins for this name or address"}})
def login(form: Annotated[OAuth2PasswordRequestForm, Depends()], session: SessionDep,
          settings: SettingsDep, request: Request) -> Token:
    """Exchange username and password for a bearer token that expires after ``token_ttl_minutes``.
    Failed logins are throttled per user name and per client address (429 with ``Retry-After``)."""
    throttle = request.app.state.login_throttle
    address = request.client.host if request.client else "unknown"
    wait = throttle.retry_after_s(form.username, address)
    if wait is not None:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "too many failed logins; try again later",
                            headers={"Retry-After": str(wait)})
    user = verify_login(session, form.username, form.password)
    if user is None:
        throttle.failed(form.username, address)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong username or password",
                            headers={"WWW-Authenticate": "Bearer"})
    throttle.succeeded(form.username)
    ttl = dt.timedelta(minutes=settings.token_ttl_minutes)
    token, expires_at = issue_token(session, user, ttl)
    session.commit()
    return Token(access_token=token, expires_at=expires_at, expires_in=int(ttl.total_seconds()))


@router.get("/auth/me", response_model=Me, tags=["auth"], responses=ERRORS)
def me(principal: CurrentPrincipal) -> Me:
    """Who the caller is and its role per compound (``*`` = every compound)."""
    return Me(kind=principal.kind, id=principal.id, name=principal.name, roles=dict(principal.roles))


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT, tags=["auth"], responses=ERRORS)
def logout(principal: CurrentPrincipal, session: SessionDep,
           token: Annotated[str | None, Depends(bearer_token)]) -> Response:
    """Revoke the bearer token used for this request (API keys are revoked with ``/keys/{id}/revoke``)."""
    if principal.kind == "user" and token:
        revoke_token(session, token)
        session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _require_admin_of(principal: Principal, compounds) -> None:
    """403 unless the caller is admin in each of ``compounds`` (``*`` needs a global admin)."""
    for compound_id in compounds:
        role = principal.roles.get(ALL_COMPOUNDS) if compound_id == ALL_COMPOUNDS else principal.role_in(compound_id)
        if role is None and compound_id != ALL_COMPOUNDS:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no compound {compound_id!r}")
        if role != "admin":
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"only an admin of {compound_id!r} may do this")


def _visible_user(principal: Principal, user: User) -> bool:
    admin_of = principal.compounds_for("users.manage")
    return admin_of is None or any(g.compound_id in admin_of for g in user.grants)


def _load_user(session, principal: Principal, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or not _visible_user(principal, user):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {user_id}")
    return user


@router.post("/users", response_model=UserPublic, status_code=status.HTTP_201_CREATED, responses=ERRORS)
def post_user(body: UserCreate, principal: CurrentPrincipal, session: SessionDep) -> UserPublic:
    """Create a user with grants; the caller must be admin of every compound granted."""
    _require_admin_of(principal, body.grants)
    try:
        user = create_user(session, body.username, body.password, body.grants, body.display_name)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    audit.record(session, principal, "user", user.id, "create", None, user_public(user))
    session.commit()
    return UserPublic(**user_public(user))


@router.get("/users", response_model=list[UserPublic], responses=ERRORS)
def list_users(principal: CurrentPrincipal, session: SessionDep) -> list[UserPublic]:
    """Users with a grant in a compound the caller administers."""
    principal.require_any("users.manage")
    users = session.scalars(select(User).order_by(User.id)).all()
    return [UserPublic(**user_public(u)) for u in users if _visible_user(principal, u)]


@router.put("/users/{user_id}/grants/{compound_id}", response_model=UserPublic, responses=ERRORS)
def put_grant(user_id: int, compound_id: str, body: GrantIn, principal: CurrentPrincipal,
              session: SessionDep) -> UserPublic:
    """Give the user ``role`` in ``compound_id`` (replacing a role there)."""
    _require_admin_of(principal, [compound_id])
    try:
        check_grant(compound_id, body.role)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    user = session.get(User, user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {user_id}")
    before = user_public(user)
    grant = session.get(RoleGrant, (user_id, compound_id))
    if grant is None:
        user.grants.append(RoleGrant(compound_id=compound_id, role=body.role))
    else:
        grant.role = body.role
    session.flush()
    session.refresh(user)
    audit.record(session, principal, "user", user.id, "grant", before, user_public(user),
                 compound_id=None if compound_id == ALL_COMPOUNDS else compound_id)
    session.commit()
    return UserPublic(**user_public(user))


@router.delete("/users/{user_id}/grants/{compound_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
def delete_grant(user_id: int, compound_id: str, principal: CurrentPrincipal, session: SessionDep) -> Response:
    """Take away the user's role in ``compound_id``; their tokens lose it at once."""
    _require_admin_of(principal, [compound_id])
    user = _load_user(session, principal, user_id)
    grant = session.get(RoleGrant, (user_id, compound_id))
    if grant is not None:
        before = user_public(user)
        user.grants.remove(grant)
        session.flush()
        audit.record(session, principal, "user", user.id, "revoke_grant", before, user_public(user),
                     compound_id=None if compound_id == ALL_COMPOUNDS else compound_id)
        session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _key_public(key: ApiKey, plaintext: str | None = None) -> KeyPublic:
    return KeyPublic(id=key.id, name=key.name, role=key.role, compounds=list(key.compounds),
                     created_at=key.created_at, revoked_at=key.revoked_at, key=plaintext)


@router.post("/keys", response_model=KeyPublic, status_code=status.HTTP_201_CREATED, responses=ERRORS)
def post_key(body: KeyCreate, principal: CurrentPrincipal, session: SessionDep) -> KeyPublic:
    """Create an API key (shown once in ``key``); the caller must be admin of every compound in scope."""
    _require_admin_of(principal, body.compounds)
    try:
        plaintext = create_key(session, body.name, body.role,
                               ALL_COMPOUNDS if body.compounds == [ALL_COMPOUNDS] else body.compounds)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    key = session.get(ApiKey, plaintext.split("_")[1])
    audit.record(session, principal, "api_key", key.id, "create", None, _key_public(key).model_dump())
    session.commit()
    return _key_public(key, plaintext)


def _visible_key(principal: Principal, key: ApiKey) -> bool:
    admin_of = principal.compounds_for("users.manage")
    return admin_of is None or (ALL_COMPOUNDS not in key.compounds and set(key.compounds) <= admin_of)


@router.get("/keys", response_model=list[KeyPublic], responses=ERRORS)
def list_keys(principal: CurrentPrincipal, session: SessionDep) -> list[KeyPublic]:
    """Keys whose whole scope the caller administers (never the secret)."""
    principal.require_any("users.manage")
    return [_key_public(k) for k in session.scalars(select(ApiKey).order_by(ApiKey.created_at)).all()
            if _visible_key(principal, k)]


@router.post("/keys/{key_id}/revoke", response_model=KeyPublic, responses=ERRORS)
def post_revoke_key(key_id: str, principal: CurrentPrincipal, session: SessionDep) -> KeyPublic:
    """Revoke a key at once (idempotent)."""
    principal.require_any("users.manage")
    key = session.get(ApiKey, key_id)
    if key is None or not _visible_key(principal, key):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no API key {key_id!r}")
    before = _key_public(key).model_dump()
    revoke_key(session, key_id)
    audit.record(session, principal, "api_key", key.id, "revoke", before, _key_public(key).model_dump())
    session.commit()
    return _key_public(key)
