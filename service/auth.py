"""Who is calling and what they may do.

Two kinds of principal go through one dependency (``service.deps.current_principal``):

- an API key (header ``X-API-Key``): workers, and any role for scripts and the monitoring page;
  one role over the key's compound scope;
- a user's bearer token (``Authorization: Bearer``, from ``POST /api/v1/auth/token``): a role per
  compound from the user's grants.

Access is decided per compound: :meth:`Principal.require` answers 404 when the caller has no role at
all in the compound (a foreign compound's rows are neither listed nor readable, and their existence is
not revealed), and 403 when the caller's role there may not do the action.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fastapi import HTTPException, Request, status
from sqlalchemy.orm import Session

from service.keys import ALL_COMPOUNDS, authenticate
from service.models import ROLES

CHALLENGE = {"WWW-Authenticate": "ApiKey"}
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer, ApiKey'}

READERS = frozenset({"viewer", "reviewer", "supervisor", "admin"})
# action -> the roles allowed to do it (in the compound the action touches)
PERMISSIONS: dict[str, frozenset[str]] = {
    "events.post": frozenset({"worker", "admin"}),
    "events.read": READERS | {"worker"},
    "review": frozenset({"reviewer", "supervisor", "admin"}),
    "cases.read": READERS | {"worker"},
    "cases.rectify": frozenset({"reviewer", "supervisor", "admin"}),
    "cases.manage": frozenset({"supervisor", "admin"}),
    "cases.reinspect": frozenset({"worker", "supervisor", "admin"}),
    "scorecard.read": READERS,
    "reports.read": READERS,  # monthly reports (issue 12): the scorecard's readers
    "feedback.export": frozenset({"supervisor", "admin"}),
    "audit.read": frozenset({"supervisor", "admin"}),
    "users.manage": frozenset({"admin"}),
    # re-scans of stored footage (issue 10): operators start and cancel them, readers follow them
    "rescans.run": frozenset({"supervisor", "admin"}),
    "rescans.read": READERS,
    # grid responsibility (issue 12): anyone scoped to the compound reads who answers for what
    "grid.read": READERS | {"worker"},
    "grid.manage": frozenset({"supervisor", "admin"}),
}


@dataclass(frozen=True)
class Principal:
    """The caller: ``kind`` ("key" or "user"), ``id`` (key id or user id as text), a display ``name``,
    and ``roles``: compound id (or ``"*"`` for every compound) → role."""

    kind: str
    id: str
    name: str
    roles: Mapping[str, str] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        """How the audit log and claims name the caller: ``key:<id>`` or ``user:<id>``."""
        return f"{self.kind}:{self.id}"

    @property
    def key_id(self) -> str | None:
        return self.id if self.kind == "key" else None

    @property
    def user_id(self) -> int | None:
        return int(self.id) if self.kind == "user" else None

    @property
    def compounds(self) -> frozenset[str] | None:
        """The compounds the caller has any role in; None means every compound."""
        return None if ALL_COMPOUNDS in self.roles else frozenset(self.roles)

    def role_in(self, compound_id: str) -> str | None:
        """The caller's role in ``compound_id`` (a grant for the compound beats a ``"*"`` grant), or None."""
        return self.roles.get(compound_id) or self.roles.get(ALL_COMPOUNDS)

    def can(self, action: str, compound_id: str) -> bool:
        return self.role_in(compound_id) in PERMISSIONS[action]

    def compounds_for(self, action: str) -> frozenset[str] | None:
        """The compounds where the caller may do ``action`` (None: every compound)."""
        if self.roles.get(ALL_COMPOUNDS) in PERMISSIONS[action]:
            return None
        return frozenset(c for c, r in self.roles.items() if c != ALL_COMPOUNDS and r in PERMISSIONS[action])

    def require(self, action: str, compound_id: str, what: str | None = None) -> str:
        """The caller's role in ``compound_id`` if it may do ``action`` there. Raises 404 (naming
        ``what``, default the compound) when the caller has no role in the compound, 403 when the role
        may not do the action."""
        role = self.role_in(compound_id)
        if role is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {what or f'compound {compound_id!r}'}")
        if role not in PERMISSIONS[action]:
            allowed = " or ".join(r for r in ROLES if r in PERMISSIONS[action])
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"a {role} cannot do this ({action}); it needs {allowed}")
        return role

    def require_compound(self, compound_id: str) -> None:
        """404 unless the caller has some role in ``compound_id`` (kept for older callers)."""
        if self.role_in(compound_id) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no compound {compound_id!r}")

    def require_any(self, action: str) -> None:
        """403 unless the caller may do ``action`` in at least one compound."""
        allowed = self.compounds_for(action)
        if allowed is not None and not allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"{self.name!r} may not do {action} anywhere")


def principal_for(session: Session, api_key: str | None) -> Principal:
    """The principal of an active API key; 401 with ``WWW-Authenticate: ApiKey`` when the key is
    missing, malformed, unknown or revoked."""
    if not api_key:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                            "not authenticated: send X-API-Key or Authorization: Bearer", headers=CHALLENGE)
    key = authenticate(session, api_key)
    if key is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key", headers=CHALLENGE)
    return Principal(kind="key", id=key.id, name=key.name, roles={c: key.role for c in key.compounds})


def principal_for_token(session: Session, token: str) -> Principal:
    """The principal of an unexpired, unrevoked bearer token of an active user; 401 otherwise."""
    from service.users import user_for_token
    user = user_for_token(session, token)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid, expired or revoked token",
                            headers=BEARER_CHALLENGE)
    return Principal(kind="user", id=str(user.id), name=user.username,
                     roles={g.compound_id: g.role for g in user.grants})


def authenticate_key(request: Request, api_key: str | None) -> Principal:
    """:func:`principal_for` with a session of its own, for endpoints that take the key elsewhere than
    the header (an ``<img>`` cannot send headers)."""
    with request.app.state.sessions() as session:
        return principal_for(session, api_key)
