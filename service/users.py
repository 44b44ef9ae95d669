"""People: accounts with argon2-hashed passwords, role grants per compound, and login tokens.

A token is an opaque random string (``cet_…``) of which only the sha256 is stored with its expiry,
so it can be revoked (logout, user disabled) and needs no signing secret in the configuration.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from service.keys import ALL_COMPOUNDS
from service.models import USER_ROLES, AccessToken, RoleGrant, User, utcnow

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_COMPOUND = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_TOKEN = re.compile(r"cet_[A-Za-z0-9_-]{43}")
MIN_PASSWORD_LENGTH = 8
# Spend the same argon2 time on an unknown username as on a wrong password (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash("not a real password")


def hash_password(password: str) -> str:
    """The argon2id hash of ``password`` (salt and parameters included)."""
    return _hasher.hash(password)


def check_grant(compound_id: str, role: str) -> None:
    """Raise ``ValueError`` unless ``role`` is a user role and ``compound_id`` an id (or ``"*"`` for admin)."""
    if role not in USER_ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(USER_ROLES)}")
    if compound_id == ALL_COMPOUNDS and role != "admin":
        raise ValueError("only an admin may be granted every compound ('*')")
    if compound_id != ALL_COMPOUNDS and not _COMPOUND.fullmatch(compound_id):
        raise ValueError(f"invalid compound id {compound_id!r}")


def create_user(session: Session, username: str, password: str, grants: dict[str, str],
                display_name: str = "") -> User:
    """Add a user with ``grants`` (compound id or ``"*"`` → role) to the session (not committed).

    Raises ``ValueError`` for a bad username, a short password, a bad grant or a taken username."""
    if not _USERNAME.fullmatch(username):
        raise ValueError(f"invalid username {username!r}: lower-case letters, digits, . _ -")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    for compound_id, role in grants.items():
        check_grant(compound_id, role)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise ValueError(f"user {username!r} exists")
    user = User(username=username, display_name=display_name, password_hash=hash_password(password),
                is_active=True, created_at=utcnow(),
                grants=[RoleGrant(compound_id=c, role=r) for c, r in sorted(grants.items())])
    session.add(user)
    session.flush()
    return user


def verify_login(session: Session, username: str, password: str) -> User | None:
    """The active user whose password matches, or None. A stale hash is upgraded in place (not committed)."""
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.is_active:
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, user: User, ttl: dt.timedelta) -> tuple[str, dt.datetime]:
    """A new bearer token for ``user`` valid for ``ttl``: (plaintext, expires_at). Added, not committed."""
    token = f"cet_{secrets.token_urlsafe(32)}"
    expires_at = utcnow() + ttl
    session.add(AccessToken(token_hash=_token_hash(token), user_id=user.id, created_at=utcnow(),
                            expires_at=expires_at))
    return token, expires_at


def user_for_token(session: Session, token: str | None) -> User | None:
    """The active user of an unexpired, unrevoked token, or None."""
    if not token or not _TOKEN.fullmatch(token):
        return None
    row = session.get(AccessToken, _token_hash(token))
    if row is None or row.revoked_at is not None or row.expires_at <= utcnow():
        return None
    user = session.get(User, row.user_id)
    return user if user is not None and user.is_active else None


def revoke_token(session: Session, token: str) -> None:
    """Mark the token revoked (not committed); unknown tokens are ignored."""
    if _TOKEN.fullmatch(token or ""):
        row = session.get(AccessToken, _token_hash(token))
        if row is not None and row.revoked_at is None:
            row.revoked_at = utcnow()


def user_public(user: User) -> dict:
    """What the API and the audit log show of a user (never the hash)."""
    return {"id": user.id, "username": user.username, "display_name": user.display_name,
            "is_active": user.is_active, "grants": {g.compound_id: g.role for g in user.grants}}
