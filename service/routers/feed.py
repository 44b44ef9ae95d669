"""``GET /feed/alerts``: the live alert feed as Server-Sent Events.

Every violation the event API stores for the first time is published here (:func:`publish_violation`,
called by ``POST /events``) and sent at once to each open feed whose caller may read its compound,
filtered by ``compound_id`` and ``rule`` when given. An event is ``event: violation`` with the
``ViolationPublic`` JSON as data and a sequence number as id; a feed that reconnects with
``Last-Event-ID`` first gets the alerts it missed (the last 200 are kept). FastAPI's own SSE response
adds a keep-alive comment every 15 s so proxies do not cut an idle feed.

Re-scan jobs of the caller's compounds (readers of ``rescans.read``) come as ``event: rescan`` with the
job's progress (:func:`publish_rescan`): at each change of state (kept for ``Last-Event-ID``), and at
each finished file and about once a second while it runs (not kept: they would push the alerts out).

The feed lives in the API process: with several API processes each feed sees the violations posted to
its own process (integrations use MQTT).
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from service.auth import Principal, principal_for, principal_for_token
from service.live import AlertHub
from service.schemas import Identifier, ViolationPublic

router = APIRouter(prefix="/feed", tags=["live"])


def alert_hub(app: FastAPI) -> AlertHub:
    """The app's alert hub (made on first use, so the app factory needs no line for it)."""
    hub = getattr(app.state, "alert_hub", None)
    if hub is None:
        hub = app.state.alert_hub = AlertHub()
    return hub


def publish_violation(request: Request, violation: ViolationPublic) -> ViolationPublic:
    """Send a newly stored (committed) violation to the open alert feeds and return it. Never blocks on,
    and never fails for, a viewer."""
    alert_hub(request.app).publish(violation.model_dump(mode="json"))
    return violation


def publish_rescan(app: FastAPI, progress: dict, replay: bool = True) -> None:
    """Send a re-scan job's progress (a JSON-able dict with ``compound_id``) to the open feeds as
    ``event: rescan``; ``replay=False`` for the frequent in-file updates."""
    alert_hub(app).publish({"feed_event": "rescan", "compound_id": progress["compound_id"], "data": progress},
                           replay=replay)


def _event(seq: int, alert: dict) -> ServerSentEvent:
    if alert.get("feed_event") == "rescan":
        return ServerSentEvent(event="rescan", id=str(seq), data=alert["data"])
    return ServerSentEvent(event="violation", id=str(seq), data=alert)


def principal_from_headers(request: Request) -> Principal:
    """The caller from ``Authorization: Bearer`` or ``X-API-Key`` with a session of its own, closed before
    a long stream starts: a session held open for an hour-long stream would pin a database connection
    (and on SQLite a read transaction) per viewer. 401 as for any endpoint."""
    authorization = request.headers.get("authorization", "")
    with request.app.state.sessions() as session:
        if authorization.lower().startswith("bearer "):
            return principal_for_token(session, authorization[7:].strip())
        return principal_for(session, request.headers.get("x-api-key"))


def feed_reader(request: Request, compound_id: Identifier | None = None) -> Principal:
    """The caller, checked before the stream starts (a 401/404 after the 200 would be a broken stream)."""
    principal = principal_from_headers(request)
    if compound_id is not None:
        principal.require("events.read", compound_id)
    return principal


@router.get("/alerts", response_class=EventSourceResponse,
            responses={401: {"description": "missing, unknown or revoked API key or token"},
                       404: {"description": "compound_id names a compound the caller has no role in"}})
async def alerts(request: Request, principal: Annotated[Principal, Depends(feed_reader)],
                 compound_id: Identifier | None = None, rule: str | None = None,
                 last_event_id: str | None = Header(None)) -> AsyncIterator[ServerSentEvent]:
    """New violations in the caller's compounds as they arrive (``event: violation``) and re-scan
    progress (``event: rescan``), starting with a ``hello`` event carrying the current sequence number."""
    readable = principal.compounds_for("events.read")
    rescans = principal.compounds_for("rescans.read")

    def accept(alert: dict) -> bool:
        if alert.get("feed_event") == "rescan":
            return ((rescans is None or alert.get("compound_id") in rescans)
                    and (compound_id is None or alert.get("compound_id") == compound_id))
        return ((readable is None or alert.get("compound_id") in readable)
                and (compound_id is None or alert.get("compound_id") == compound_id)
                and (rule is None or alert.get("rule") == rule))

    hub = alert_hub(request.app)
    subscriber = hub.subscribe(accept)
    try:
        sent = 0
        yield ServerSentEvent(event="hello", data={"seq": hub.last_seq}, retry=2000)
        if last_event_id and last_event_id.isdigit():
            for seq, alert in hub.since(int(last_event_id), accept):
                sent = seq
                yield _event(seq, alert)
        while True:
            seq, alert = await subscriber.queue.get()
            if seq > sent:  # an alert both replayed and queued is sent once
                sent = seq
                yield _event(seq, alert)
    finally:
        hub.unsubscribe(subscriber)
