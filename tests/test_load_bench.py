"""Smoke test of ``python -m service.load_bench`` (issue 11): a tiny run on SQLite — 50 posts with real
evidence and 4 reviewers listing and deciding at the same time, against uvicorn in its own process. The
figures themselves come from the full run (RELIABILITY section in docs/reliability-delivery.md)."""
from __future__ import annotations

from service.load_bench import bench


def test_load_bench_smoke_on_sqlite():
    result = bench("sqlite", events=50, posters=4, readers=4, server_workers=1)
    assert result["errors"] == 0, result["requests"]
    assert result["stored_exactly_once"], result
    assert result["requests"]["post"]["count"] == 50
    assert result["requests"]["review"]["count"] > 0 and result["requests"]["list"]["count"] > 0
    assert result["events_per_s"] > 0 and result["requests"]["post"]["p99_ms"] >= result["requests"]["post"]["p50_ms"]
