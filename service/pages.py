"""The monitoring page and the live camera endpoints it uses."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, StreamingResponse

from service.live import LiveHub

STATIC = Path(__file__).parent / "static"
router = APIRouter()


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")


def _hub(request: Request) -> LiveHub:
    return request.app.state.live_hub


def _check_key(request: Request, key: str | None) -> None:
    """The live image is an <img> the browser loads itself, so it cannot send the X-API-Key header:
    accept the key as a query parameter here (only here), checked like any other key."""
    from service.auth import authenticate_key
    authenticate_key(request, key or request.headers.get("x-api-key"))


@router.get("/api/v1/cameras/live", tags=["live"])
def live_cameras(request: Request) -> list[dict]:
    """Cameras with a live view and the frame time of their latest image."""
    _check_key(request, None)
    return _hub(request).cameras()


@router.get("/api/v1/cameras/{camera_id}/live.mjpg", tags=["live"])
def live_mjpeg(camera_id: str, request: Request, key: str | None = None) -> StreamingResponse:
    """The camera's latest annotated frames as an MJPEG stream (a few frames per second)."""
    _check_key(request, key)
    hub = _hub(request)
    if camera_id not in {c["id"] for c in hub.cameras()}:
        raise HTTPException(404, f"no live view for camera {camera_id!r}")
    return StreamingResponse(hub.mjpeg(camera_id), media_type="multipart/x-mixed-replace; boundary=frame")
