"""Re-scans through the API (issue 10): started on an S3 prefix of a real S3 server (SeaweedFS), run by the
real app under uvicorn on loopback, followed (``GET /rescans/{id}`` and the live feed), cancelled, resumed
after the API process went away, refused for other sources and roles — on SQLite and PostgreSQL."""
from __future__ import annotations

import io
import socket
import subprocess
import time

import httpx
import pytest
from sqlalchemy import update

from service.models import RescanJob, utcnow
from service.rescans import SourceRefused, parse_s3_source
from service.settings import Settings
from vision.rescan.bench import bench_site_yaml
from vision.rescan.s3 import S3Footage

from browser_support import LiveServer
from test_pages_live import FeedReader
from test_rescan_fixtures import MODEL, TRAFFIC_CLIP, VIOLATION_CLIP, clips  # noqa: F401

BUCKET = "rescan-api"
TRUNCATED = "cam-a/20250614/110000.mp4"
MANY = 8  # traffic-only files of the prefix a job is cancelled or interrupted in
FINISHED = ("done", "partial", "failed", "cancelled")


@pytest.fixture(scope="session")
def footage_s3(weed, clips):
    """``nvr/c1``: the clip with a violation, one with traffic only, and a truncated file;
    ``nvr/many``: MANY traffic-only files (16 s each) of camera cam-b."""
    s3 = S3Footage(weed.endpoint, weed.access_key, weed.secret_key)
    if not s3.client.bucket_exists(BUCKET):
        s3.client.make_bucket(BUCKET)
    violation, traffic = clips["violation"].read_bytes(), clips["traffic"].read_bytes()
    objects = {f"nvr/c1/{VIOLATION_CLIP}": violation, f"nvr/c1/{TRAFFIC_CLIP}": traffic,
               f"nvr/c1/{TRUNCATED}": traffic[: len(traffic) * 2 // 5]}
    objects.update({f"nvr/many/cam-b/20250615/{8 + i:02d}0000.mp4": traffic for i in range(MANY)})
    for name, data in objects.items():
        s3.client.put_object(BUCKET, name, io.BytesIO(data), len(data))
    return s3


@pytest.fixture(scope="session")
def rescan_site(tmp_path_factory):
    """Compound c1 with cameras cam-a and cam-b (the fire-lane zone of the footage), compound c2 with cam-z."""
    c1 = bench_site_yaml(MODEL, ["cam-a", "cam-b"], sample_fps=2).replace("  - id: bench", "  - id: c1")
    c2 = bench_site_yaml(MODEL, ["cam-z"], sample_fps=2)
    path = tmp_path_factory.mktemp("rescan-api-site") / "site.yaml"
    path.write_text(c1 + c2[c2.index("  - id: bench"):].replace("  - id: bench", "  - id: c2"))
    return path


@pytest.fixture
def settings(database_url, tmp_path, weed, rescan_site, footage_s3) -> Settings:
    return Settings(database_url=database_url, storage_url=f"file://{tmp_path / 'evidence'}", max_upload_mb=20,
                    s3_endpoint=weed.endpoint, s3_access_key=weed.access_key, s3_secret_key=weed.secret_key,
                    site_config=rescan_site, rescan_state_dir=tmp_path / "rescan", migrate_on_startup=True)


@pytest.fixture
def server(settings):
    with LiveServer(settings) as live:
        yield live


def key(server, role: str, compounds=("c1",)) -> dict[str, str]:
    return {"X-API-Key": server.key(role, compounds)}


def wait_for(server, headers, rescan_id: int, done, timeout_s: float = 240.0, seen: list | None = None) -> dict:
    """Poll ``GET /rescans/{id}`` until ``done(job)``; every answer is appended to ``seen``."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = httpx.get(f"{server.url}/api/v1/rescans/{rescan_id}", headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        job = response.json()
        if seen is not None:
            seen.append(job)
        if done(job):
            return job
        assert time.monotonic() < deadline, f"re-scan job {rescan_id} still {job['status']}: {job}"
        time.sleep(0.3)


def start(server, headers, **body):
    return httpx.post(f"{server.url}/api/v1/rescans", json=body, headers=headers, timeout=30)


def events_of(server, headers) -> dict:
    response = httpx.get(f"{server.url}/api/v1/events", params={"compound_id": "c1"}, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_parse_s3_source_takes_only_bucket_and_prefix():
    assert parse_s3_source("s3://nvr-exports/c1/2025-06/") == ("nvr-exports", "c1/2025-06")
    assert parse_s3_source("s3://nvr-exports") == ("nvr-exports", "")
    for bad in ("/srv/nvr", "file:///etc", "nvr/c1", "s3://127.0.0.1:9000/b/p", "s3://nvr/../../etc",
                "s3://nvr/a//b", "s3://nvr/./a", "s3://Nvr/a", "s3://nvr/a\\b", "s3://nvr/a\nb", "s3://ab/x"):
        with pytest.raises(SourceRefused):
            parse_s3_source(bad)


def test_rescan_of_an_s3_prefix_stores_its_violation_once_and_is_followed_live(server):
    operator, viewer = key(server, "supervisor"), key(server, "viewer")
    feed = FeedReader(f"{server.url}/api/v1/feed/alerts", viewer)
    try:
        feed.wait_hello()
        response = start(server, operator, source=f"s3://{BUCKET}/nvr/c1/", compound_id="c1")
        assert response.status_code == 201, response.text
        job = response.json()
        assert (job["status"], job["compound_id"], job["source"]) == ("queued", "c1", f"s3://{BUCKET}/nvr/c1")
        seen: list[dict] = []
        job = wait_for(server, viewer, job["id"], lambda j: j["status"] in FINISHED, seen=seen)
        assert job["status"] == "partial", job  # the truncated file
        assert (job["files_total"], job["files_done"], job["files_bad"]) == (3, 2, 1)
        assert (job["violations_found"], job["violations_new"], job["violations_unstored"]) == (1, 1, 0)
        assert job["x_realtime"] and job["x_realtime"] > 0 and job["footage_done_s"] == pytest.approx(83.0, abs=1)
        assert job["started_at"] and job["finished_at"] and job["current_file"] is None
        running = [j for j in seen if j["status"] == "running"]
        assert running, "the job was never seen running"
        assert any(j["current_file"] and 0 <= j["current_fraction"] < 1 for j in running), running

        report = httpx.get(f"{server.url}/api/v1/rescans/{job['id']}/report", headers=viewer, timeout=10).json()
        assert [(b["name"], "truncated" in b["reason"]) for b in report["bad_files"]] == [(TRUNCATED, True)]
        [found] = report["violations"]
        assert (found["camera_id"], found["rule"], found["file"]) == ("cam-a", "fire_lane", VIOLATION_CLIP)
        assert report["stored"] == {"new": 1, "unstored": 0, "last_error": None}

        events = events_of(server, viewer)
        assert events["total"] == 1
        [event] = events["items"]
        assert (event["id"], event["source"], event["compound_id"]) == (found["id"], "rescan", "c1")
        assert set(event["evidence"]) == {"snapshot", "clip", "sidecar", "crop"}
        clip = httpx.get(f"{server.url}{event['evidence']['clip']['url']}", headers=viewer, timeout=10)
        assert clip.status_code == 200 and clip.content[4:8] == b"ftyp"

        # The live feed carried the job's progress and the new violation.
        def rescans():
            return [data for name, data, _ in feed.events if name == "rescan" and data["id"] == job["id"]]
        deadline = time.monotonic() + 10
        while not any(r["status"] == "partial" for r in rescans()) and time.monotonic() < deadline:
            time.sleep(0.2)
        statuses = [r["status"] for r in rescans()]
        assert statuses[0] == "queued" and "running" in statuses and statuses[-1] == "partial", statuses
        assert any(r["files_done"] == 1 for r in rescans())
        assert [v["id"] for v in feed.violations()] == [found["id"]]
    finally:
        feed.close()

    # The same job again, every file scanned again (fresh): it finds the same violation and adds nothing.
    again = start(server, operator, source=f"s3://{BUCKET}/nvr/c1", compound_id="c1", fresh=True).json()
    again = wait_for(server, operator, again["id"], lambda j: j["status"] in FINISHED)
    assert (again["status"], again["violations_found"], again["violations_new"]) == ("partial", 1, 0)
    second = httpx.get(f"{server.url}/api/v1/rescans/{again['id']}/report", headers=operator, timeout=10).json()
    assert second["run"]["files_scanned"] == 3 and second["run"]["files_resumed"] == 0
    assert second["violations"] == report["violations"]
    assert events_of(server, viewer)["total"] == 1
    listed = httpx.get(f"{server.url}/api/v1/rescans", headers=viewer, timeout=10).json()
    assert [j["id"] for j in listed["items"]] == [again["id"], job["id"]] and listed["total"] == 2


def test_queued_and_running_jobs_are_cancelled(server):
    operator = key(server, "admin")
    long_job = start(server, operator, source=f"s3://{BUCKET}/nvr/many", compound_id="c1").json()
    waiting = start(server, operator, source=f"s3://{BUCKET}/nvr/c1", compound_id="c1").json()
    wait_for(server, operator, long_job["id"], lambda j: j["status"] == "running" and j["files_done"] >= 1)
    # one job at a time: the second waits in the queue, and a queued job is cancelled at once
    queued = httpx.get(f"{server.url}/api/v1/rescans/{waiting['id']}", headers=operator, timeout=10).json()
    assert queued["status"] == "queued"
    response = httpx.post(f"{server.url}/api/v1/rescans/{waiting['id']}/cancel", headers=operator, timeout=10)
    assert response.status_code == 200 and response.json()["status"] == "cancelled"

    response = httpx.post(f"{server.url}/api/v1/rescans/{long_job['id']}/cancel", headers=operator, timeout=10)
    assert response.status_code == 202, response.text
    assert response.json()["cancel_requested"] is True
    job = wait_for(server, operator, long_job["id"], lambda j: j["status"] in FINISHED, timeout_s=60)
    assert job["status"] == "cancelled", job
    assert 1 <= job["files_done"] < MANY and job["files_total"] == MANY
    report = httpx.get(f"{server.url}/api/v1/rescans/{long_job['id']}/report", headers=operator, timeout=10).json()
    assert report["run"]["cancelled"] is True
    again = httpx.post(f"{server.url}/api/v1/rescans/{long_job['id']}/cancel", headers=operator, timeout=10)
    assert again.status_code == 409
    never = httpx.get(f"{server.url}/api/v1/rescans/{waiting['id']}", headers=operator, timeout=10).json()
    assert (never["status"], never["started_at"], never["files_total"]) == ("cancelled", None, 0)


def test_a_job_left_running_by_a_dead_api_process_resumes_from_its_checkpoint(settings):
    with LiveServer(settings) as first:
        operator = key(first, "supervisor")
        job = start(first, operator, source=f"s3://{BUCKET}/nvr/many", compound_id="c1").json()
        wait_for(first, operator, job["id"], lambda j: j["files_done"] >= 2)
    # An orderly shutdown puts the job back in the queue; make it look like the process died mid-run.
    with first.app.state.sessions() as session:
        row = session.get(RescanJob, job["id"])
        assert row.status == "queued" and "shutdown" in row.error
        done_before = row.files_done
        dead = subprocess.Popen(["true"])
        dead.wait()
        session.execute(update(RescanJob).where(RescanJob.id == job["id"]).values(
            status="running", runner=f"{socket.gethostname()}:{dead.pid}:gone", heartbeat_at=utcnow()))
        session.commit()
    with LiveServer(settings) as second:
        operator = key(second, "supervisor")
        resumed = wait_for(second, operator, job["id"], lambda j: j["status"] in FINISHED)
        assert resumed["status"] == "done", resumed
        assert resumed["files_done"] == MANY and resumed["files_skipped"] >= done_before >= 2
        assert "resumed from its checkpoint" in resumed["error"]
        report = httpx.get(f"{second.url}/api/v1/rescans/{job['id']}/report", headers=operator, timeout=10).json()
        assert report["run"]["files_resumed"] == resumed["files_skipped"]
        assert report["run"]["files_scanned"] == MANY - resumed["files_skipped"]
        assert report["totals"]["files_done"] == MANY


def test_other_sources_and_roles_are_refused(server):
    operator = key(server, "supervisor")
    for source in ("/srv/nvr/c1", "file:///etc/passwd", f"s3://{BUCKET}/../secrets", "s3://127.0.0.1:8333/x",
                   "http://example.com/x.mp4", "s3://no-such-bucket-here/nvr"):
        response = start(server, operator, source=source, compound_id="c1")
        assert response.status_code == 422, (source, response.text)
    source = f"s3://{BUCKET}/nvr/c1"
    for role in ("viewer", "reviewer", "worker"):
        response = start(server, key(server, role), source=source, compound_id="c1")
        assert response.status_code == 403, (role, response.text)
    assert start(server, operator, source=source, compound_id="c2").status_code == 404  # not the caller's
    assert start(server, key(server, "admin", ["*"]), source=source).status_code == 422  # two compounds: say which
    assert start(server, operator, source=source, mode="fast").status_code == 422
    listed = httpx.get(f"{server.url}/api/v1/rescans", headers=key(server, "admin", ["*"]), timeout=10).json()
    assert listed["total"] == 0
    assert httpx.get(f"{server.url}/api/v1/rescans/1", headers=operator, timeout=10).status_code == 404
    assert httpx.get(f"{server.url}/api/v1/rescans", timeout=10).status_code == 401


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_rescan_started_through_the_api_runs_on_a_dask_local_cluster_like_in_process(settings, footage_s3,
                                                                                     rescan_site, monkeypatch):
    """With the Dask executor and no scheduler address the API's runner starts a LocalCluster of two
    worker processes bound to 127.0.0.1; the job stores the same violation and reports the same
    files as an in-process run of the same prefix."""
    from vision.config import load_site_config
    from vision.rescan import JobSpec, RescanJob as ScanJob, results_of
    from vision.rescan.executors import DaskExecutor, LocalExecutor
    from vision.rescan.job import file_sha256

    addresses: list[str] = []
    make_client = DaskExecutor._client

    def spying_client(self):
        client, cluster = make_client(self)
        info = client.scheduler_info()
        addresses.extend([client.scheduler.address, *info["workers"]])
        return client, cluster
    monkeypatch.setattr(DaskExecutor, "_client", spying_client)

    source = f"s3://{BUCKET}/nvr/c1"
    with LiveServer(settings.model_copy(update={"rescan_executor": "dask", "rescan_processes": 2})) as server:
        operator = key(server, "supervisor")
        job = start(server, operator, source=source, compound_id="c1").json()
        job = wait_for(server, operator, job["id"], lambda j: j["status"] in FINISHED, timeout_s=600)
        assert job["status"] == "partial", job  # the truncated file
        assert (job["files_done"], job["files_bad"], job["violations_found"], job["violations_new"]) == (2, 1, 1, 1)
        report = httpx.get(f"{server.url}/api/v1/rescans/{job['id']}/report", headers=operator, timeout=10).json()
        assert (report["run"]["executor"], report["run"]["processes"]) == ("dask", 2)
        [event] = events_of(server, operator)["items"]
    assert len(addresses) == 3, addresses   # the scheduler and two workers
    assert all(a.startswith("tcp://127.0.0.1:") for a in addresses), addresses

    site = load_site_config(rescan_site)
    in_process = ScanJob(JobSpec(source, site, file_sha256(rescan_site), str(MODEL), "sampled", threads=1),
                         LocalExecutor(1), state_root=settings.rescan_state_dir / "in-process", s3=footage_s3).run()
    assert results_of(report) == results_of(in_process)
    assert event["id"] == in_process["violations"][0]["id"]
