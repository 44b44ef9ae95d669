"""Short-lived evidence URLs a browser can use without headers (``<video src=…>``, ``<img src=…>``).

For an S3 store the URL is a presigned GET of the object itself. For the local store it is an API URL
carrying an expiry and an HMAC-SHA256 signature over ``violation_id/kind/expires``, keyed with
``Settings.evidence_url_secret`` (``COMPOUNDEYE_EVIDENCE_URL_SECRET``), or with a random secret made
once per process when that is unset.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time

from service.settings import Settings

_lock = threading.Lock()


def link_secret(state) -> bytes:
    """The HMAC key of this app (``state`` is ``app.state``): the configured secret, or one generated
    the first time it is needed and kept for the life of the process."""
    settings: Settings = state.settings
    if settings.evidence_url_secret is not None and settings.evidence_url_secret.get_secret_value():
        return settings.evidence_url_secret.get_secret_value().encode()
    with _lock:
        if getattr(state, "evidence_url_secret", None) is None:
            state.evidence_url_secret = secrets.token_bytes(32)
        return state.evidence_url_secret


def signature(secret: bytes, violation_id: str, kind: str, expires: int) -> str:
    """URL-safe base64 HMAC-SHA256 of ``violation_id/kind/expires`` (no padding)."""
    mac = hmac.new(secret, f"{violation_id}/{kind}/{int(expires)}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def check(secret: bytes, violation_id: str, kind: str, expires: int, sig: str, now: float | None = None) -> str | None:
    """None when ``sig`` is the signature of these values and ``expires`` (Unix seconds) has not passed;
    otherwise the reason ("expired" or "bad signature")."""
    # bytes, not str: compare_digest refuses a str with non-ASCII characters (a forged sig can have them)
    if not hmac.compare_digest(signature(secret, violation_id, kind, expires).encode(), (sig or "").encode()):
        return "bad signature"
    if (time.time() if now is None else now) > expires:
        return "expired"
    return None
