"""API keys for workers, reviewers and admins.

A key reads ``ce_<key id>_<secret>``; the database keeps only the sha256 of the whole key (a
high-entropy random key needs no slow password hash), and the id lets us find the row without
comparing secrets in SQL. Comparison uses :func:`hmac.compare_digest`.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

from sqlalchemy.orm import Session

from service.models import ROLES, ApiKey, utcnow

ALL_COMPOUNDS = "*"
_KEY = re.compile(r"ce_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_COMPOUND = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def hash_key(plaintext: str) -> str:
    """sha256 hex of the whole key."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_key(session: Session, name: str, role: str, compounds: Iterable[str] | str) -> str:
    """Create and commit a key; return the plaintext key (it is shown once and cannot be recovered).

    ``role`` is worker, reviewer or admin; ``compounds`` the compound ids the key may touch, or
    ``"*"`` for all. Raises ``ValueError`` for an unknown role, an empty scope or a bad compound id."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    scope = [ALL_COMPOUNDS] if compounds == ALL_COMPOUNDS else sorted(set(compounds))
    if not scope:
        raise ValueError("a key needs at least one compound (or '*')")
    bad = [c for c in scope if c != ALL_COMPOUNDS and not _COMPOUND.fullmatch(c)]
    if bad or (ALL_COMPOUNDS in scope and len(scope) > 1):
        raise ValueError(f"invalid compound scope {scope!r}")
    key_id = secrets.token_hex(8)
    plaintext = f"ce_{key_id}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(id=key_id, name=name, key_hash=hash_key(plaintext), role=role, compounds=scope))
    session.commit()
    return plaintext


def revoke_key(session: Session, key_id: str) -> ApiKey:
    """Mark the key revoked (it stops working at once) and commit; revoking twice keeps the first
    time. Raises ``LookupError`` when there is no such key."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise LookupError(f"no API key with id {key_id!r}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.commit()
    return key


def key_id_of(plaintext: str) -> str | None:
    """The id part of a well-formed key, or None."""
    match = _KEY.fullmatch(plaintext or "")
    return match.group(1) if match else None


def authenticate(session: Session, plaintext: str | None) -> ApiKey | None:
    """The active key row for ``plaintext``, or None when it is missing, malformed, unknown or revoked."""
    key_id = key_id_of(plaintext or "")
    if key_id is None:
        return None
    key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        return None
    return key if hmac.compare_digest(key.key_hash, hash_key(plaintext)) else None
