"""The same job on a local process pool and on a Dask LocalCluster (127.0.0.1) gives the same results
as in-process; S3 footage is read by the workers straight from a real S3 server (SeaweedFS)."""
from __future__ import annotations

import io

from vision.rescan import RescanJob, results_of
from vision.rescan.executors import DaskExecutor, LocalExecutor
from vision.rescan.s3 import S3Footage

from test_rescan_fixtures import (BAD, SIDECAR_CLIP, TRAFFIC_CLIP, VIOLATION_CLIP, clips, footage,  # noqa: F401
                                  local_run, make_spec, site_path)


def test_process_pool_gives_the_same_results(tmp_path, footage, site_path, local_run):
    expected, _ = local_run
    report = RescanJob(make_spec(str(footage), site_path, tmp_path / "pool"), LocalExecutor(2)).run()
    assert report["run"]["processes"] == 2
    assert results_of(report) == results_of(expected)


def test_dask_local_cluster_gives_the_same_results(tmp_path, footage, site_path, local_run):
    expected, _ = local_run
    seen = []
    job = RescanJob(make_spec(str(footage), site_path, tmp_path / "dask"), DaskExecutor(processes=2),
                    on_progress=lambda p: seen.append(dict(p.current)))
    report = job.run()
    assert report["run"]["executor"] == "dask"
    assert results_of(report) == results_of(expected)
    assert any(seen), "per-file progress from the Dask workers never arrived"
    evidence = tmp_path / "dask" / "evidence" / expected["violations"][0]["id"]
    assert (evidence / "clip.mp4").stat().st_size > 1000


def test_s3_prefix_is_scanned_by_dask_workers_like_the_folder(tmp_path, weed, footage, site_path, local_run):
    expected, _ = local_run
    s3 = S3Footage(weed.endpoint, weed.access_key, weed.secret_key)
    bucket = "rescan-footage"
    if not s3.client.bucket_exists(bucket):
        s3.client.make_bucket(bucket)
    names = [VIOLATION_CLIP, TRAFFIC_CLIP, SIDECAR_CLIP, "export/recording-17.json", *BAD]
    for name in names:
        data = (footage / name).read_bytes()
        s3.client.put_object(bucket, f"nvr/site1/{name}", io.BytesIO(data), len(data))
    job = RescanJob(make_spec(f"s3://{bucket}/nvr/site1", site_path, tmp_path / "s3"), DaskExecutor(processes=1),
                    s3=s3)
    report = job.run()
    prefix = f"s3://{bucket}/nvr/site1/"

    def strip(v):   # the same file, wherever it lives: location and the path in a reason left out
        out = {k: val for k, val in v.items() if k != "location"}
        if out.get("reason"):
            out["reason"] = out["reason"].replace(prefix, "").replace(str(footage) + "/", "")
        return out
    assert [strip(f) for f in report["files"]] == [strip(f) for f in expected["files"]]
    assert report["violations"] == expected["violations"]
    assert {b["name"]: strip(b)["reason"] for b in report["bad_files"]} == {
        b["name"]: strip(b)["reason"] for b in expected["bad_files"]}
    assert all("compoundeye-rescan-" not in b["reason"] for b in report["bad_files"])   # no temp copy named
    assert all(f["location"].startswith(f"s3://{bucket}/nvr/site1/") for f in report["files"])
