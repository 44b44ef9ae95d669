"""Which camera and what start time a stored file has: from a file naming pattern, or a JSON sidecar.

A naming pattern is the path of a file relative to the re-scan's root (a folder, the fixed part of
a glob, or an S3 prefix) with placeholders:

- ``{camera}`` — the camera id (one path segment, or part of one);
- ``%Y %m %d %H %M %S`` — year, month, day, hour, minute, second of the file's first frame, in the
  site's time zone (NVRs name files by local time) unless ``%z`` gives an offset (``+0800``);
- ``*`` — any characters within one path segment.

>>> p = NamingPattern("{camera}/%Y%m%d/%H%M%S.mp4")
>>> p.parse("gate-1/20250614/140300.mp4", tz=ZoneInfo("Asia/Shanghai"))  # doctest: +ELLIPSIS
FileIdentity(camera_id='gate-1', start_time_s=1749880980.0, source='name')

A sidecar ``<file>.json`` (next to the video; for ``a.mp4`` either ``a.json`` or ``a.mp4.json``) may
give ``camera_id`` and ``start_time`` (ISO 8601; without an offset it is read in the site's time
zone). What a sidecar gives wins over the name.
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from vision.errors import CompoundEyeError

DEFAULT_PATTERN = "{camera}/%Y%m%d/%H%M%S.*"

_FIELDS = {
    "%Y": r"(?P<Y>\d{4})", "%m": r"(?P<m>\d{2})", "%d": r"(?P<d>\d{2})",
    "%H": r"(?P<H>\d{2})", "%M": r"(?P<M>\d{2})", "%S": r"(?P<S>\d{2})", "%z": r"(?P<z>[+-]\d{4}|Z)",
}


class NamingError(CompoundEyeError):
    """A file whose camera or start time cannot be told (its name does not fit the pattern, and no
    sidecar says it). The message names the file."""


@dataclass(frozen=True)
class FileIdentity:
    """Camera id and start time (UTC epoch seconds of the first frame) of one stored file."""

    camera_id: str
    start_time_s: float
    source: str  # "name", "sidecar" or "name+sidecar": where the facts came from


class NamingPattern:
    """A compiled naming pattern (see the module docstring)."""

    def __init__(self, pattern: str):
        self.pattern = pattern
        regex, i = "", 0
        seen = set()
        while i < len(pattern):
            if pattern.startswith("{camera}", i):
                if "camera" in seen:
                    raise ValueError(f"naming pattern {pattern!r}: {{camera}} appears twice")
                regex += r"(?P<camera>[^/]+?)"
                seen.add("camera")
                i += len("{camera}")
            elif pattern[i] == "%" and pattern[i:i + 2] in _FIELDS:
                token = pattern[i:i + 2]
                if token in seen:
                    raise ValueError(f"naming pattern {pattern!r}: {token} appears twice")
                regex += _FIELDS[token]
                seen.add(token)
                i += 2
            elif pattern[i] == "*":
                regex += r"[^/]*"
                i += 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        self.fields = frozenset(seen)
        self._regex = re.compile(regex)

    def parse(self, relative_name: str, tz: ZoneInfo, sidecar: dict | None = None) -> FileIdentity:
        """Camera and start time of the file ``relative_name`` (``/``-separated, relative to the
        root). Raises :class:`NamingError` when neither the name nor the sidecar tell them."""
        camera_id, start_s, used = None, None, []
        m = self._regex.fullmatch(relative_name)
        if m:
            camera_id = m.groupdict().get("camera")
            if {"%Y", "%m", "%d"} <= self.fields:
                g = m.groupdict()
                try:
                    local = dt.datetime(int(g["Y"]), int(g["m"]), int(g["d"]), int(g.get("H") or 0),
                                        int(g.get("M") or 0), int(g.get("S") or 0))
                except ValueError as exc:
                    raise NamingError(f"{relative_name}: not a valid date/time in the name ({exc})") from exc
                zone = g.get("z")
                if zone:
                    offset = dt.timezone.utc if zone == "Z" else dt.timezone(
                        dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5])) * (1 if zone[0] == "+" else -1))
                    start_s = local.replace(tzinfo=offset).timestamp()
                else:
                    start_s = local.replace(tzinfo=tz).timestamp()
            used.append("name")
        if sidecar:
            if sidecar.get("camera_id"):
                camera_id = str(sidecar["camera_id"])
            if sidecar.get("start_time"):
                try:
                    when = dt.datetime.fromisoformat(str(sidecar["start_time"]))
                except ValueError as exc:
                    raise NamingError(f"{relative_name}: sidecar start_time {sidecar['start_time']!r} is not "
                                      "ISO 8601") from exc
                start_s = (when if when.tzinfo else when.replace(tzinfo=tz)).timestamp()
            used.append("sidecar")
        if camera_id is None or start_s is None:
            missing = " and ".join(w for w, v in (("camera", camera_id), ("start time", start_s)) if v is None)
            why = "does not match" if not m else "matches but gives no"
            raise NamingError(f"{relative_name}: no {missing}: the name {why} the naming pattern "
                              f"{self.pattern!r}" + (" " + missing if m else "") + " and no sidecar gives it")
        return FileIdentity(camera_id, float(start_s), "+".join(used))


def read_sidecar(data: bytes, name: str) -> dict:
    """Parse a sidecar's bytes; raises :class:`NamingError` naming the file when it is not a JSON object."""
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise NamingError(f"{name}: sidecar is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise NamingError(f"{name}: sidecar is not a JSON object")
    return value
