"""Compounds and cameras: registered by id on a camera's first event, or from the site file."""
from __future__ import annotations

import weakref

from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from service.errors import InvalidEvent
from service.grid import register_site_grid
from service.models import Camera, Compound
from vision.config import SiteConfig


def _insert_ignore(session: Session, model: type, **values) -> None:
    """INSERT … ON CONFLICT (id) DO NOTHING, so concurrent first events for a new camera both succeed."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        if session.get(model, values["id"]) is None:
            session.add(model(**values))
            session.flush()
        return
    session.execute(insert(model).values(**values).on_conflict_do_nothing(index_elements=["id"]))


# camera id -> compound id of the camera rows found committed, per database. Cameras are never deleted
# and never change compound, so an owner once read stays true; it saves a query on every event.
_OWNERS: weakref.WeakKeyDictionary[Engine, dict[str, str]] = weakref.WeakKeyDictionary()


def register_camera(session: Session, compound_id: str, camera_id: str) -> None:
    """Make sure the compound and the camera rows exist (inside the caller's transaction).

    Raises :class:`InvalidEvent` when the camera is already registered to another compound: access is
    checked by compound, so a camera cannot move silently."""
    owners = _OWNERS.setdefault(session.get_bind(), {})
    owner = owners.get(camera_id)
    if owner is None:
        owner_of = select(Camera.compound_id).where(Camera.id == camera_id)
        owner = session.connection().scalar(owner_of)  # Core: the ORM's execute path costs as much again
        if owner is not None:  # committed before this transaction began (a row of ours would roll back)
            owners[camera_id] = owner
        else:  # a camera's first event: two inserts (its compound exists whenever it does)
            _insert_ignore(session, Compound, id=compound_id)
            _insert_ignore(session, Camera, id=camera_id, compound_id=compound_id)
            owner = session.connection().scalar(owner_of)
    if owner != compound_id:
        raise InvalidEvent(f"camera {camera_id!r} belongs to compound {owner!r}, not {compound_id!r}")


def register_site(session: Session, site: SiteConfig) -> None:
    """Register every compound and camera of a site file with its name, and commit. A compound's
    property company and district follow the file: removed there, they are cleared here."""
    for compound in site.compounds:
        values = {"name": compound.name, "company": compound.company, "district": compound.district}
        _insert_ignore(session, Compound, id=compound.id, **values)
        session.execute(update(Compound).where(Compound.id == compound.id).values(**values))
        for camera in compound.cameras:
            _insert_ignore(session, Camera, id=camera.id, compound_id=compound.id, name=camera.name)
            session.execute(update(Camera).where(Camera.id == camera.id).values(name=camera.name))
    register_site_grid(session, site)
    session.commit()


def compounds_of(session: Session, *, company: str | None = None, district: str | None = None) -> list[str]:
    """The ids of the compounds of ``company`` and/or ``district`` (exact names, as in the site file), or
    of every compound when neither is given; sorted."""
    query = select(Compound.id).order_by(Compound.id)
    if company is not None:
        query = query.where(Compound.company == company)
    if district is not None:
        query = query.where(Compound.district == district)
    return list(session.scalars(query))
