"""``/compounds/{compound_id}/grid``: grid responsibility (网格化) — who answers for the whole compound, a
building, a floor or a zone. Anyone with a role in the compound reads it; supervisors and admins add,
change and remove entries. Entries from the site file are listed but changed only in the file.
See :mod:`service.grid` for how a confirmed violation's case finds its person."""
from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Response, status
from pydantic import BaseModel, ConfigDict, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from service import grid
from service.auth import Principal
from service.deps import CurrentPrincipal, SessionDep
from service.models import Camera, GridEntry, GridPlace
from service.schemas import Identifier
from vision.config import Assignee, PlaceLabel

router = APIRouter(prefix="/compounds/{compound_id}/grid", tags=["grid"])
CompoundPath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
ERRORS = {401: {"description": "missing, unknown or revoked API key or token"},
          403: {"description": "the caller's role in the compound may not change the grid (supervisor, admin)"},
          404: {"description": "no such entry, or the compound is foreign to the caller"}}
WRITE_ERRORS = {**ERRORS, 409: {"description": "another entry holds the area, or the entry comes from the site file"},
                422: {"description": "invalid entry: floor without building, half a zone, unknown camera, zone, "
                                     "building or floor; nothing stored"}}


class GridEntryIn(BaseModel):
    """An area and its responsible person. Leave every area key out for the whole compound; give
    ``building`` (and ``floor``) for a building (floor), or ``camera_id`` + ``zone_id`` for one zone."""

    model_config = ConfigDict(extra="forbid")
    assignee: Assignee
    building: PlaceLabel | None = None
    floor: PlaceLabel | None = None
    camera_id: Identifier | None = None
    zone_id: Identifier | None = None

    @model_validator(mode="after")
    def _one_area(self) -> "GridEntryIn":
        if problem := self.area.problem():
            raise ValueError(problem)
        return self

    @property
    def area(self) -> grid.Area:
        return grid.Area(self.building, self.floor, self.camera_id, self.zone_id)


class GridEntryPublic(BaseModel):
    id: int
    compound_id: str
    level: Literal["compound", "building", "floor", "zone"]
    building: str | None
    floor: str | None
    camera_id: str | None
    zone_id: str | None
    assignee: str
    source: Literal["site", "api"]
    created_at: dt.datetime
    updated_at: dt.datetime


class PlacePublic(BaseModel):
    """Where a camera (``zone_id`` null) or one of its zones is, from the site file."""

    camera_id: str
    zone_id: str | None
    building: str | None
    floor: str | None


class GridList(BaseModel):
    items: list[GridEntryPublic]
    total: int
    places: list[PlacePublic]


class Resolution(BaseModel):
    """Who a confirmed violation in this zone would be assigned to (``entry`` null: nobody)."""

    camera_id: str
    zone_id: str
    building: str | None
    floor: str | None
    entry: GridEntryPublic | None


def entry_public(entry: GridEntry) -> GridEntryPublic:
    area = grid.area_of(entry)
    return GridEntryPublic(id=entry.id, compound_id=entry.compound_id, level=area.level, building=area.building,
                           floor=area.floor, camera_id=area.camera_id, zone_id=area.zone_id, assignee=entry.assignee,
                           source=entry.source, created_at=entry.created_at, updated_at=entry.updated_at)


def _load(session: Session, principal: Principal, compound_id: str, entry_id: int) -> GridEntry:
    principal.require("grid.manage", compound_id)
    entry = session.get(GridEntry, entry_id)
    if entry is None or entry.compound_id != compound_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no grid entry {entry_id} in compound {compound_id!r}")
    return entry


def _check_known(session: Session, compound_id: str, area: grid.Area) -> None:
    """422 when the area names a camera, zone, building or floor the compound does not have: such an
    entry would never match a violation."""
    def refuse(detail: str):
        raise HTTPException(422, detail)
    places = session.scalars(select(GridPlace).where(GridPlace.compound_id == compound_id)).all()
    if area.camera_id is not None:
        owner = session.scalar(select(Camera.compound_id).where(Camera.id == area.camera_id))
        if owner != compound_id:
            refuse(f"camera_id: {area.camera_id!r} is not a camera of compound {compound_id}")
        zones = {p.zone_id for p in places if p.camera_id == area.camera_id and p.zone_id}
        if zones and area.zone_id not in zones:  # zones are known only for cameras of the site file
            refuse(f"zone_id: camera {area.camera_id} has no zone {area.zone_id!r} (known: {sorted(zones)})")
    if area.building is not None:
        buildings = sorted({p.building for p in places if p.building})
        if area.building not in buildings:
            refuse(f"building: no camera or zone of compound {compound_id} is in building {area.building!r} "
                   f"(known from the site file: {buildings or 'none'})")
        if area.floor is not None and not any((p.building, p.floor) == (area.building, area.floor) for p in places):
            refuse(f"floor: no camera or zone of compound {compound_id} is on floor {area.floor!r} "
                   f"of building {area.building!r}")


@router.get("", response_model=GridList, responses=ERRORS)
def list_grid(compound_id: CompoundPath, principal: CurrentPrincipal, session: SessionDep) -> GridList:
    """The compound's entries (whole compound first, then buildings, floors, zones) and the places of its
    cameras and zones."""
    principal.require("grid.read", compound_id)
    entries = session.scalars(select(GridEntry).where(GridEntry.compound_id == compound_id)).all()
    items = sorted((entry_public(e) for e in entries),
                   key=lambda e: (grid.LEVELS[e.level], e.building or "", e.floor or "", e.camera_id or "",
                                  e.zone_id or ""))
    places = session.scalars(select(GridPlace).where(GridPlace.compound_id == compound_id)
                             .order_by(GridPlace.camera_id, GridPlace.zone_id)).all()
    return GridList(items=items, total=len(items), places=[
        PlacePublic(camera_id=p.camera_id, zone_id=p.zone_id or None, building=p.building or None,
                    floor=p.floor or None) for p in places])


@router.get("/resolve", response_model=Resolution, responses=ERRORS)
def resolve(compound_id: CompoundPath, camera_id: Identifier, zone_id: Identifier, principal: CurrentPrincipal,
            session: SessionDep) -> Resolution:
    """Who a confirmed violation in ``zone_id`` of ``camera_id`` is assigned to, and by which entry."""
    principal.require("grid.read", compound_id)
    found = grid.responsible_for(session, compound_id, camera_id, zone_id)
    place = found.place if found else grid.place_of(session, compound_id, camera_id, zone_id)
    return Resolution(camera_id=camera_id, zone_id=zone_id, building=place.building, floor=place.floor,
                      entry=entry_public(found.entry) if found else None)


@router.post("", response_model=GridEntryPublic, status_code=status.HTTP_201_CREATED, responses=WRITE_ERRORS)
def create_entry(compound_id: CompoundPath, body: GridEntryIn, principal: CurrentPrincipal,
                 session: SessionDep) -> GridEntryPublic:
    """Add an entry for an area that has none."""
    principal.require("grid.manage", compound_id)
    _check_known(session, compound_id, body.area)
    return entry_public(grid.create_entry(session, principal, compound_id, body.area, body.assignee))


@router.put("/{entry_id}", response_model=GridEntryPublic, responses=WRITE_ERRORS)
def update_entry(compound_id: CompoundPath, entry_id: int, body: GridEntryIn, principal: CurrentPrincipal,
                 session: SessionDep) -> GridEntryPublic:
    """Replace an entry's area and person (cases already assigned keep theirs)."""
    entry = _load(session, principal, compound_id, entry_id)
    _check_known(session, compound_id, body.area)
    return entry_public(grid.update_entry(session, principal, entry, body.area, body.assignee))


@router.delete("/{entry_id}", status_code=status.HTTP_204_NO_CONTENT, responses=WRITE_ERRORS)
def delete_entry(compound_id: CompoundPath, entry_id: int, principal: CurrentPrincipal,
                 session: SessionDep) -> Response:
    """Remove an entry; its area falls back to the next less specific entry."""
    grid.delete_entry(session, principal, _load(session, principal, compound_id, entry_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)
