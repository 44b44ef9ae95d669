"""Smoke test of ``python -m service.load_bench`` (issue 11): a tiny run on SQLite — 50 posts with real
evidence and 4 reviewers listing and deciding at the same time, against uvicorn in its own process. The
figures themselves come from the full run (RELIABILITY.md, *Load*)."""
from __future__ import annotations

from service.load_bench import bench


def test_load_bench_smoke_on_sqlite():
    result = bench("sqlite", events=50, posters=4, readers=4, server_workers=1)
    assert result["errors"] == 0, result["requests"]
    assert result["stored_exactly_once"], result
    assert result["requests"]["post"]["count"] == 50
    assert result["requests"]["review"]["count"] > 0 and result["requests"]["list"]["count"] > 0
    assert result["events_per_s"] > 0 and result["requests"]["post"]["p99_ms"] >= result["requests"]["post"]["p50_ms"]


def test_load_bench_batches_on_sqlite():
    """53 events in batches of 10 from 2 posters: 6 batch requests (the last ones short), each event stored once."""
    result = bench("sqlite", events=53, posters=2, readers=2, server_workers=1, batch=10)
    assert result["errors"] == 0, result["requests"]
    assert result["stored_exactly_once"], result
    assert result["events_by_status"] == {"201": 53}
    assert result["requests"]["batch"]["count"] == 6 and "post" not in result["requests"]


def test_load_bench_readers_can_pause_between_rounds():
    """Readers that pause 0.2 s between rounds send fewer requests than the posts take to finish would
    allow without pause, and still list, read the queue and decide."""
    result = bench("sqlite", events=40, posters=2, readers=2, server_workers=1, batch=10, reader_pause=0.2)
    assert result["errors"] == 0 and result["stored_exactly_once"], result
    assert result["reader_pause_s"] == 0.2
    rounds = result["requests"]["list"]["count"]
    assert rounds >= 2 and result["requests"]["queue"]["count"] == rounds
    # each reader: one round, then at least 0.2 s before the next
    assert rounds <= 2 * (result["posting_s"] / 0.2 + 2)


def test_load_bench_on_postgresql_reports_autovacuum_analyzes_and_times_reads():
    """On PostgreSQL the bench says whether the server runs autovacuum, runs its own ANALYZE when asked,
    and after the load times one-at-a-time reads of both listings, before and after an ANALYZE."""
    result = bench("postgresql", events=60, posters=2, readers=2, server_workers=1, batch=10,
                   analyze_every=0.05, read_after=5)
    assert result["errors"] == 0 and result["stored_exactly_once"], result
    postgres = result["postgresql"]
    assert postgres["autovacuum"] in ("on", "off") and postgres["analyze_every_s"] == 0.05
    assert postgres["analyze_runs"] >= 1
    for reads in (result["reads_after_load"], result["reads_after_analyze"]):
        assert set(reads) == {"list", "queue"}
        assert all(0 < kind["p50_ms"] <= kind["p95_ms"] for kind in reads.values())


def test_store_bench_times_the_store_step_alone(tmp_path):
    """``--store-only``: groups of checked events stored in-process; CPU per event, each event stored."""
    from service.load_bench import main, store_bench
    result = store_bench(3, batch=5, folder=str(tmp_path))
    assert result["batches"] == 3 and result["batch"] == 5 and result["store_folder"] == str(tmp_path)
    figures = result["store_cpu_ms_per_event"]
    assert 0 < figures["min"] <= figures["median"]
    assert list(tmp_path.iterdir()) == []   # its temporary folder is removed
    assert main(["--store-only", "2", "--batch", "3", "--store-dir", str(tmp_path), "--json"]) == 0


def test_flush_bench_times_both_flushes_beside_a_writer(tmp_path, capsys):
    """``--flush-only``: one syncfs and an fsync per file both timed, in alternating rounds, with a writer
    process filling the same folder; every staged file is published, and nothing is left behind."""
    from service.load_bench import FsyncEachStore, flush_bench, main
    result = flush_bench(0.3, batch=4, folder=str(tmp_path), writer_mb_s=2, rounds=2)
    assert result["files_per_batch"] == 12 and result["writer_mb_per_s"] == 2
    figures = result["flush_ms_per_batch"]
    assert set(figures) == {"syncfs", "fsync_each"}
    for mode in figures.values():
        assert mode["count"] >= 2 and 0 < mode["p50_ms"] <= mode["p99_ms"] <= mode["max_ms"]
    assert list(tmp_path.iterdir()) == []   # the store folders and the writer's file are removed

    # the comparison store stages, flushes (an fsync per file) and publishes like the service's
    store = FsyncEachStore(tmp_path / "each")
    staged = store.stage_many([("c1/cam1/2026-12-07/00000001/a.json", b"{}", "application/json"),
                               ("c1/cam1/2026-12-07/00000001/b.json", b"[]", "application/json")])
    for obj in staged:
        obj.publish()
    assert b"".join(store.open_range("c1/cam1/2026-12-07/00000001/b.json")) == b"[]"

    assert main(["--flush-only", "0.2", "--batch", "3", "--store-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["fsync_each", "syncfs"]
