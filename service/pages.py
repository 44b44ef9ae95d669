"""The web pages (login, monitoring wall, review, cases, scorecard) and the live endpoints they use.

Pages are static files in ``service/static`` (no build step, no file from the internet); they log in
with ``POST /api/v1/auth/token`` and keep the token in ``sessionStorage``, or take an API key from
``#key=…`` (the link ``compoundeye demo`` prints). Every call sends the credential as a header; only
``live.mjpg`` (an ``<img>`` cannot send headers) also takes ``?key=``.

A user sees only their compounds: the camera list and the wall stream are filtered by the caller's
roles like every API list (a camera's compound comes from the site file, or from the catalog row made
by its first event; a camera of no known compound is shown only to callers with every compound).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy import select

from service.auth import Principal, authenticate_key
from service.live import WALL_MEDIA_TYPE, LiveHub
from service.models import Camera as CameraRow, Compound
from service.routers.feed import principal_from_headers

STATIC = (Path(__file__).parent / "static").resolve()
PAGES = {"/": "index.html", "/login": "login.html", "/review": "review.html", "/cases": "cases.html",
         "/scorecard": "scorecard.html"}
router = APIRouter()


def _page(name: str):
    def page() -> FileResponse:
        return FileResponse(STATIC / name, media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})
    return page


for _path, _name in PAGES.items():
    router.add_api_route(_path, _page(_name), methods=["GET"], include_in_schema=False, name=f"page_{_name}")


@router.get("/static/{path:path}", include_in_schema=False)
def static_file(path: str) -> FileResponse:
    """A file of ``service/static`` (scripts, styles, vendored libraries); nothing outside it."""
    target = (STATIC / path).resolve()
    if not target.is_relative_to(STATIC) or not target.is_file():
        raise HTTPException(404, "no such file")
    return FileResponse(target, headers={"Cache-Control": "no-cache"})


def _hub(request: Request) -> LiveHub:
    return request.app.state.live_hub


def _visible_cameras(request: Request, principal: Principal) -> list[dict]:
    """The hub's cameras the caller may see, each with its compound (from the hub, else the catalog)."""
    cameras = _hub(request).cameras()
    missing = [c["id"] for c in cameras if c["compound_id"] is None]
    if missing:
        with request.app.state.sessions() as session:
            owners = dict(session.execute(select(CameraRow.id, CameraRow.compound_id)
                                          .where(CameraRow.id.in_(missing))).all())
        for camera in cameras:
            camera["compound_id"] = camera["compound_id"] or owners.get(camera["id"])
    readable = principal.compounds_for("events.read")
    if readable is None:
        return cameras
    return [c for c in cameras if c["compound_id"] in readable]


def _principal(request: Request, key: str | None = None) -> Principal:
    if key:
        return authenticate_key(request, key)
    return principal_from_headers(request)


@router.get("/api/v1/cameras/live", tags=["live"])
def live_cameras(request: Request) -> list[dict]:
    """Cameras with a live view in the caller's compounds: compound, name, zones, the frame time of the
    latest image and ``age_s`` (seconds since it arrived; None before the first)."""
    return _visible_cameras(request, _principal(request))


@router.get("/api/v1/cameras/{camera_id}/live.mjpg", tags=["live"])
def live_mjpeg(camera_id: str, request: Request, key: str | None = None) -> StreamingResponse:
    """The camera's latest annotated frames as an MJPEG stream (a few frames per second). For an
    ``<img>``, which cannot send headers, the API key may be given as ``?key=``."""
    principal = _principal(request, key)
    if camera_id not in {c["id"] for c in _visible_cameras(request, principal)}:
        raise HTTPException(404, f"no live view for camera {camera_id!r}")
    return StreamingResponse(_hub(request).mjpeg(camera_id), media_type="multipart/x-mixed-replace; boundary=frame")


@router.get("/api/v1/live/wall", tags=["live"], response_class=StreamingResponse,
            responses={200: {"content": {WALL_MEDIA_TYPE: {}}}})
def live_wall(request: Request, cameras: Annotated[str | None, Query(description="comma-separated camera ids "
                                                                               "(default: every visible one)")] = None,
              compound_id: str | None = None) -> StreamingResponse:
    """One stream for the whole wall: new frames of every requested camera and a status record each
    second (records: u32 header length, header JSON, u32 body length, JPEG body; see
    ``service.live.wall_part``). One connection instead of one per tile: browsers allow six per host."""
    principal = principal_from_headers(request)
    if compound_id is not None:
        principal.require("events.read", compound_id)
    wanted = None if not cameras else {c for c in cameras.split(",") if c}

    def camera_ids() -> list[str]:
        return [c["id"] for c in _visible_cameras(request, principal)
                if (wanted is None or c["id"] in wanted) and (compound_id is None or c["compound_id"] == compound_id)]

    return StreamingResponse(_hub(request).wall_stream(camera_ids), media_type=WALL_MEDIA_TYPE,
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@router.get("/api/v1/compounds", tags=["live"])
def list_compounds(request: Request) -> list[dict]:
    """The compounds the caller has a role in, with their names, cameras and the caller's role there."""
    principal = principal_from_headers(request)
    with request.app.state.sessions() as session:
        compounds = session.scalars(select(Compound).order_by(Compound.id)).all()
        cameras = session.execute(select(CameraRow.id, CameraRow.name, CameraRow.compound_id)
                                  .order_by(CameraRow.id)).all()
    out = []
    for compound in compounds:
        role = principal.role_in(compound.id)
        if role is None:
            continue
        out.append({"id": compound.id, "name": compound.name or compound.id, "role": role,
                    "cameras": [{"id": c.id, "name": c.name or c.id} for c in cameras if c.compound_id == compound.id]})
    return out


@router.get("/api/v1/ui/config", tags=["live"])
def ui_config(request: Request) -> dict:
    """What the pages need before login: the site's time zone (default Asia/Shanghai) and languages."""
    site = getattr(request.app.state, "site", None)
    return {"timezone": site.timezone if site is not None else "Asia/Shanghai",
            "languages": ["zh-CN", "en"], "default_language": "zh-CN"}
