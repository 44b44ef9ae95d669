"""``/rescans``: re-scans of stored footage in S3, started, followed and cancelled through the API.

Operators (``rescans.run``: supervisor, admin) start a job for a compound on an ``s3://bucket/prefix``
of the service's S3 server and cancel it; readers of the compound follow its progress here and on the
live feed (``event: rescan``) and read its report. The job runs in the API process
(:mod:`service.rescans`); the violations it finds become events like a worker's.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update

from service import audit
from service.deps import CurrentPrincipal, SessionDep, SettingsDep
from service.models import RESCAN_FINISHED, RescanJob, utcnow
from service.rescans import RescanPublic, SourceRefused, parse_s3_source, rescan_public, rescan_runner, s3_footage
from service.routers.feed import publish_rescan
from service.schemas import Identifier
from service.routers.common import scope_to_compounds


@asynccontextmanager
async def lifespan(app: FastAPI):
    """Start the app's re-scan runner (it resumes jobs a stopped process left) and stop it at shutdown."""
    runner = rescan_runner(app)
    runner.start()
    try:
        yield
    finally:
        await run_in_threadpool(runner.close)


router = APIRouter(prefix="/rescans", tags=["rescans"], lifespan=lifespan)
RescanStatus = Literal["queued", "running", "done", "partial", "failed", "cancelled"]
ERRORS = {401: {"description": "missing, unknown or revoked API key or token"},
          403: {"description": "the caller's role in the compound may not do this"},
          404: {"description": "no such job, or its compound is foreign to the caller"}}


class RescanCreate(BaseModel):
    """A re-scan to start: ``source`` is ``s3://bucket/prefix`` on the service's S3 server; the files'
    camera and start time come from their names (``{camera}/YYYYMMDD/HHMMSS.mp4``) or sidecars, as for
    ``compoundeye rescan``. ``compound_id`` may be left out when the site file has one compound."""

    model_config = {"extra": "forbid"}

    source: Annotated[str, Field(min_length=6, max_length=1024)]
    compound_id: Identifier | None = None
    mode: Literal["sampled", "keyframes", "adaptive"] = "sampled"
    fps: Annotated[float | None, Field(gt=0, le=30)] = None
    fresh: bool = Field(False, description="forget the checkpoint of an earlier identical job: scan every file")


class RescanList(BaseModel):
    items: list[RescanPublic]
    total: int
    limit: int
    offset: int


def _load(session, principal, rescan_id: int, action: str) -> RescanJob:
    row = session.get(RescanJob, rescan_id)
    what = f"re-scan job {rescan_id}"
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {what}")
    principal.require(action, row.compound_id, what=what)
    return row


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RescanPublic,
             responses={**ERRORS, 409: {"description": "the service has no site file"},
                        422: {"description": "not an S3 prefix of the service's S3 server, no such bucket, or a "
                                             "compound the site file does not have"},
                        503: {"description": "the S3 server cannot be reached"}})
def start_rescan(body: RescanCreate, principal: CurrentPrincipal, session: SessionDep, settings: SettingsDep,
                 request: Request) -> RescanPublic:
    """Queue a re-scan of an S3 prefix; it starts when the jobs queued before it have finished."""
    site = request.app.state.site
    compound_id = body.compound_id
    if compound_id is None:
        if site is None or len(site.compounds) != 1:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "compound_id is needed: the site file "
                                "has several compounds" if site is not None else "compound_id is needed")
        compound_id = site.compounds[0].id
    principal.require("rescans.run", compound_id)
    try:
        bucket, prefix = parse_s3_source(body.source)
    except SourceRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    if site is None:
        raise HTTPException(status.HTTP_409_CONFLICT, "the service has no site file (COMPOUNDEYE_SITE_CONFIG): "
                            "re-scans need its cameras, zones and rules")
    if not any(c.id == compound_id for c in site.compounds):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"compound {compound_id!r} is not in the site file")
    try:
        exists = s3_footage(settings).client.bucket_exists(bucket)
    except Exception as exc:  # minio raises S3Error, urllib3 and OSError kinds: all mean "S3 not usable"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            f"the S3 server {settings.s3_endpoint} cannot be reached: {exc}") from exc
    if not exists:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"no bucket {bucket!r} on the service's S3 server {settings.s3_endpoint}")
    row = RescanJob(compound_id=compound_id, source=f"s3://{bucket}/{prefix}", mode=body.mode, fps=body.fps,
                    fresh=body.fresh, status="queued", created_by=principal.actor, created_by_name=principal.name,
                    created_at=utcnow())
    session.add(row)
    session.flush()
    audit.record(session, principal, "rescan_job", row.id, "create", compound_id=compound_id,
                 after={"source": row.source, "mode": row.mode, "fps": row.fps, "fresh": row.fresh})
    session.commit()
    public = rescan_public(row)
    publish_rescan(request.app, public)
    runner = rescan_runner(request.app)
    runner.start()
    runner.wake()
    return RescanPublic.model_validate(public)


@router.get("", response_model=RescanList, responses=ERRORS)
def list_rescans(principal: CurrentPrincipal, session: SessionDep, compound_id: Identifier | None = None,
                 status_: Annotated[RescanStatus | None, Query(alias="status")] = None,
                 limit: Annotated[int, Query(ge=1, le=200)] = 50,
                 offset: Annotated[int, Query(ge=0)] = 0) -> RescanList:
    """Re-scan jobs of the caller's compounds, newest first."""
    query = scope_to_compounds(select(RescanJob), RescanJob.compound_id, principal, "rescans.read", compound_id)
    if status_ is not None:
        query = query.where(RescanJob.status == status_)
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    rows = session.scalars(query.order_by(RescanJob.id.desc()).limit(limit).offset(offset)).all()
    return RescanList(items=[RescanPublic.model_validate(r) for r in rows], total=total or 0, limit=limit,
                      offset=offset)


@router.get("/{rescan_id}", response_model=RescanPublic, responses=ERRORS)
def get_rescan(rescan_id: int, principal: CurrentPrincipal, session: SessionDep) -> RescanPublic:
    """One job with its progress: files total/done/bad, the current file and how far into it, × real
    time, ETA, violations found and events created."""
    return RescanPublic.model_validate(_load(session, principal, rescan_id, "rescans.read"))


@router.post("/{rescan_id}/cancel", response_model=RescanPublic,
             responses={**ERRORS, 200: {"description": "a queued job: cancelled now"},
                        202: {"description": "a running job: it stops within a few seconds and ends cancelled"},
                        409: {"description": "the job has already ended"}})
def cancel_rescan(rescan_id: int, principal: CurrentPrincipal, session: SessionDep, request: Request,
                  response: Response) -> RescanPublic:
    """Cancel a job. Files finished so far stay in its checkpoint: the same job started again resumes."""
    row = _load(session, principal, rescan_id, "rescans.run")
    before = {"status": row.status}
    if row.status == "queued":
        done = session.execute(update(RescanJob).where(RescanJob.id == rescan_id, RescanJob.status == "queued")
                               .values(status="cancelled", finished_at=utcnow(), cancel_requested=True)).rowcount
        if done:
            audit.record(session, principal, "rescan_job", rescan_id, "cancel", before=before,
                         after={"status": "cancelled"}, compound_id=row.compound_id)
            session.commit()
            session.refresh(row)
            publish_rescan(request.app, rescan_public(row))
            return RescanPublic.model_validate(row)
        session.rollback()
        session.refresh(row)  # the runner took it meanwhile: cancel it as a running job
    if row.status in RESCAN_FINISHED:
        raise HTTPException(status.HTTP_409_CONFLICT, f"re-scan job {rescan_id} has already ended ({row.status})")
    row.cancel_requested = True
    audit.record(session, principal, "rescan_job", rescan_id, "cancel", before=before,
                 after={"status": row.status, "cancel_requested": True}, compound_id=row.compound_id)
    session.commit()
    rescan_runner(request.app).cancel(rescan_id)
    response.status_code = status.HTTP_202_ACCEPTED
    return RescanPublic.model_validate(row)


@router.get("/{rescan_id}/report", responses={**ERRORS, 409: {"description": "the job has no report (yet)"}})
def get_report(rescan_id: int, principal: CurrentPrincipal, session: SessionDep) -> dict:
    """The job's JSON report (as ``compoundeye rescan --report`` writes it, plus ``stored``: events created
    and violations the store refused)."""
    row = _load(session, principal, rescan_id, "rescans.read")
    if row.report is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"re-scan job {rescan_id} has no report ({row.status})")
    return row.report
