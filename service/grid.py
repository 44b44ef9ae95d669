"""Grid responsibility (网格化): every area of a compound has a named person, and a confirmed violation's
case goes to the person responsible for its zone.

An entry covers the whole compound, a building, a floor of a building, or one zone of one camera. The most
specific entry covering a violation's zone wins: **zone > floor > building > compound**. Which building and
floor a zone is in comes from the site file (``building`` / ``floor`` on cameras and zones, stored as
:class:`~service.models.GridPlace` rows at start-up); a zone the site file does not place is matched by zone
and whole-compound entries only.

Entries come from the site file (``grid:`` of a compound; ``source = "site"``, replaced at every start-up,
read-only through the API) or from the API (``source = "api"``). Every change is audited.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import audit
from service.errors import Conflict
from service.models import GridEntry, GridPlace, utcnow
from vision.config import SiteConfig

log = logging.getLogger(__name__)

#: specificity of each level: a higher one wins
LEVELS = {"compound": 0, "building": 1, "floor": 2, "zone": 3}
SITE_ACTOR = ("system", "site file")


@dataclass(frozen=True)
class Area:
    """The area an entry covers, with ``None`` for a column it leaves open."""

    building: str | None = None
    floor: str | None = None
    camera_id: str | None = None
    zone_id: str | None = None

    @property
    def level(self) -> str:
        if self.zone_id is not None:
            return "zone"
        return "floor" if self.floor is not None else ("building" if self.building is not None else "compound")

    def problem(self) -> str | None:
        """Why this is not an area one person can answer for, or None."""
        if self.floor is not None and self.building is None:
            return f"floor {self.floor!r} needs the building it is in"
        if (self.camera_id is None) != (self.zone_id is None):
            return "a zone entry names both camera_id and zone_id"
        if self.camera_id is not None and self.building is not None:
            return "an entry is either a zone (camera_id + zone_id) or a building/floor, not both"
        return None


@dataclass(frozen=True)
class Place:
    """Where a violation happened: its camera and zone, and the building and floor they are in (if known)."""

    camera_id: str
    zone_id: str
    building: str | None = None
    floor: str | None = None


def covers(area: Area, place: Place) -> bool:
    """Whether an entry for ``area`` answers for ``place``."""
    level = area.level
    if level == "zone":
        return (area.camera_id, area.zone_id) == (place.camera_id, place.zone_id)
    if level == "floor":
        return (area.building, area.floor) == (place.building, place.floor)
    if level == "building":
        return area.building == place.building
    return True


def most_specific(entries: Iterable[tuple[Area, object]], place: Place) -> tuple[Area, object] | None:
    """Of ``(area, value)`` pairs, the one whose area covers ``place`` most specifically (zone > floor >
    building > compound), or None when none covers it. Areas are unique, so there is no tie."""
    covering = [(area, value) for area, value in entries if covers(area, place)]
    return max(covering, key=lambda pair: LEVELS[pair[0].level], default=None)


def _none(value: str) -> str | None:
    return value or None


def area_of(entry: GridEntry) -> Area:
    return Area(_none(entry.building), _none(entry.floor), _none(entry.camera_id), _none(entry.zone_id))


def entry_state(entry: GridEntry) -> dict:
    """The fields of ``entry`` the audit log records."""
    area = area_of(entry)
    return {"level": area.level, "building": area.building, "floor": area.floor, "camera_id": area.camera_id,
            "zone_id": area.zone_id, "assignee": entry.assignee, "source": entry.source}


def place_of(session: Session, compound_id: str, camera_id: str, zone_id: str) -> Place:
    """The zone's building and floor from the site file: the zone's own row, else its camera's (only rows
    of ``compound_id``: another compound's camera has no place here)."""
    rows = {row.zone_id: row for row in session.scalars(
        select(GridPlace).where(GridPlace.compound_id == compound_id, GridPlace.camera_id == camera_id,
                                GridPlace.zone_id.in_((zone_id, ""))))}
    row = rows.get(zone_id) or rows.get("")
    if row is None:
        return Place(camera_id, zone_id)
    return Place(camera_id, zone_id, _none(row.building), _none(row.floor))


@dataclass(frozen=True)
class Responsible:
    """The grid entry that answers for a place, and at which level it matched."""

    entry: GridEntry
    place: Place

    @property
    def level(self) -> str:
        return area_of(self.entry).level


def responsible_for(session: Session, compound_id: str, camera_id: str, zone_id: str) -> Responsible | None:
    """Who answers for ``zone_id`` of ``camera_id`` in ``compound_id`` (None: no entry covers it)."""
    place = place_of(session, compound_id, camera_id, zone_id)
    entries = session.scalars(select(GridEntry).where(GridEntry.compound_id == compound_id)).all()
    best = most_specific(((area_of(e), e) for e in entries), place)
    return None if best is None else Responsible(best[1], place)


# --- changes through the API -------------------------------------------------------------------------

def _columns(area: Area) -> dict:
    return {"building": area.building or "", "floor": area.floor or "", "camera_id": area.camera_id or "",
            "zone_id": area.zone_id or ""}


def _taken(session: Session, compound_id: str, area: Area, other_than: int | None = None) -> GridEntry | None:
    query = select(GridEntry).where(GridEntry.compound_id == compound_id,
                                    *(getattr(GridEntry, k) == v for k, v in _columns(area).items()))
    if other_than is not None:
        query = query.where(GridEntry.id != other_than)
    return session.scalar(query)


def _commit(session: Session, compound_id: str, area: Area) -> None:
    try:
        session.commit()
    except IntegrityError:
        # a concurrent request took the same area first (the unique constraint decides)
        session.rollback()
        raise Conflict(f"compound {compound_id} already has an entry for this {area.level}") from None


def _refuse_site_entry(entry: GridEntry) -> None:
    if entry.source == "site":
        raise Conflict(f"grid entry {entry.id} comes from the site file; change it there (it is replaced at start-up)")


def create_entry(session: Session, actor, compound_id: str, area: Area, assignee: str) -> GridEntry:
    """Add an entry (``source = "api"``), audited; :class:`Conflict` when the area already has one."""
    if (existing := _taken(session, compound_id, area)) is not None:
        raise Conflict(f"compound {compound_id} already has grid entry {existing.id} for this {area.level} "
                       f"({existing.assignee}); update that one")
    now = utcnow()
    entry = GridEntry(compound_id=compound_id, assignee=assignee, source="api", created_at=now, updated_at=now,
                      **_columns(area))
    session.add(entry)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"compound {compound_id} already has an entry for this {area.level}") from None
    audit.record(session, actor, "grid_entry", entry.id, "create", None, entry_state(entry), compound_id=compound_id)
    _commit(session, compound_id, area)
    return entry


def update_entry(session: Session, actor, entry: GridEntry, area: Area, assignee: str) -> GridEntry:
    """Replace an API entry's area and assignee, audited. :class:`Conflict` for a site-file entry or an area
    another entry holds."""
    _refuse_site_entry(entry)
    if (existing := _taken(session, entry.compound_id, area, other_than=entry.id)) is not None:
        raise Conflict(f"compound {entry.compound_id} already has grid entry {existing.id} for this {area.level}")
    before = entry_state(entry)
    for name, value in _columns(area).items():
        setattr(entry, name, value)
    entry.assignee, entry.updated_at = assignee, utcnow()
    audit.record(session, actor, "grid_entry", entry.id, "update", before, entry_state(entry),
                 compound_id=entry.compound_id)
    _commit(session, entry.compound_id, area)
    return entry


def delete_entry(session: Session, actor, entry: GridEntry) -> None:
    """Remove an API entry, audited. Cases already assigned keep their assignee."""
    _refuse_site_entry(entry)
    audit.record(session, actor, "grid_entry", entry.id, "delete", entry_state(entry), None,
                 compound_id=entry.compound_id)
    session.delete(entry)
    session.commit()


# --- the site file -----------------------------------------------------------------------------------

def register_site_grid(session: Session, site: SiteConfig) -> None:
    """Make the site file's places and grid entries the stored ones, for every compound in the file (not
    committed). Site entries that changed are updated, those gone deleted, new ones added — each audited as
    the site file's doing. An API entry holding an area the file now names gives way to the file (audited,
    logged): the file is what the operator deploys."""
    for compound in site.compounds:
        camera_ids = [cam.id for cam in compound.cameras]
        session.execute(delete(GridPlace).where(  # a camera moved from another compound takes its rows along
            (GridPlace.compound_id == compound.id) | GridPlace.camera_id.in_(camera_ids)))
        session.flush()
        for cam in compound.cameras:
            session.add(GridPlace(camera_id=cam.id, zone_id="", compound_id=compound.id,
                                  building=cam.building or "", floor=cam.floor or ""))
            for zone in cam.zones:
                building, floor = cam.place_of(zone)
                session.add(GridPlace(camera_id=cam.id, zone_id=zone.id, compound_id=compound.id,
                                      building=building or "", floor=floor or ""))
        stored = {area_of(e): e for e in session.scalars(select(GridEntry).where(GridEntry.compound_id == compound.id))}
        wanted = {Area(g.building, g.floor, g.camera, g.zone): g.assignee for g in compound.grid}
        now = utcnow()
        for area, entry in stored.items():
            if entry.source == "site" and area not in wanted:
                audit.record(session, SITE_ACTOR, "grid_entry", entry.id, "delete", entry_state(entry), None,
                             compound_id=compound.id)
                session.delete(entry)
        for area, assignee in wanted.items():
            entry = stored.get(area)
            if entry is not None and entry.source == "site" and entry.assignee == assignee:
                continue
            if entry is None:
                entry = GridEntry(compound_id=compound.id, source="site", assignee=assignee, created_at=now,
                                  updated_at=now, **_columns(area))
                session.add(entry)
                session.flush()
                audit.record(session, SITE_ACTOR, "grid_entry", entry.id, "create", None, entry_state(entry),
                             compound_id=compound.id)
                continue
            if entry.source == "api":
                log.warning("compound %s: the site file's grid entry for %s replaces API entry %s (%s)",
                            compound.id, area, entry.id, entry.assignee)
            before = entry_state(entry)
            entry.assignee, entry.source, entry.updated_at = assignee, "site", now
            audit.record(session, SITE_ACTOR, "grid_entry", entry.id, "update", before, entry_state(entry),
                         compound_id=compound.id)
        session.flush()

