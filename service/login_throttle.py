"""Login throttling: failed logins are counted per user name and per client address in a moving
window (the ``limits`` library; in memory by default, ``redis://…`` when several API processes must
share the counts). While either count is at its limit, logins for that name or from that address
are answered 429 with ``Retry-After`` — even with the right password, so guessing gains nothing."""
from __future__ import annotations

import math
import time

from limits import parse, storage, strategies


class LoginThrottle:
    def __init__(self, per_user: str = "5/5minute", per_address: str = "30/5minute", storage_uri: str = "memory://"):
        self._limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(storage_uri))
        self._per_user, self._per_address = parse(per_user), parse(per_address)

    def _checks(self, username: str, address: str):
        return ((self._per_user, ("login-user", username.strip().lower())),
                (self._per_address, ("login-address", address)))

    def retry_after_s(self, username: str, address: str) -> int | None:
        """Seconds to wait when the name or address has used up its failures; None when free to try."""
        waits = []
        for item, keys in self._checks(username, address):
            if not self._limiter.test(item, *keys):
                reset = self._limiter.get_window_stats(item, *keys).reset_time
                waits.append(max(1, math.ceil(reset - time.time())))
        return max(waits) if waits else None

    def failed(self, username: str, address: str) -> None:
        for item, keys in self._checks(username, address):
            self._limiter.hit(item, *keys)

    def succeeded(self, username: str) -> None:
        """A good login clears the name's failures (not the address's: one shared address may be
        guessing at many names)."""
        self._limiter.clear(self._per_user, "login-user", username.strip().lower())
