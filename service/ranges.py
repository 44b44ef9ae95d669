"""HTTP byte ranges (RFC 9110 §14): one ``bytes=`` range per request."""
from __future__ import annotations

import re

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiable(Exception):
    """The range lies wholly outside the object (HTTP 416)."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive ``(start, end)`` that ``header`` asks of an object of ``size`` bytes.

    None means "serve the whole object": no header, a malformed one, another unit, or several ranges
    (all of which RFC 9110 lets a server ignore). Raises :class:`RangeNotSatisfiable` when the range
    starts at or past the end, or asks for the last 0 bytes.

    >>> parse_range("bytes=0-9", 100), parse_range("bytes=90-", 100), parse_range("bytes=-5", 100)
    ((0, 9), (90, 99), (95, 99))
    """
    match = _RANGE.fullmatch((header or "").strip())
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:  # suffix range: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - length), size - 1
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(header)
    return start, min(int(last), size - 1) if last else size - 1
