"""Re-scan of stored footage (issue 10): naming, bad input, modes, resume, compare, the command."""
from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from service.cli import app
from vision.config import load_site_config
from vision.detector import OnnxDetector
from vision.rescan import RescanJob, compare_reports, results_of
from vision.rescan.executors import LocalExecutor
from vision.rescan.naming import NamingError, NamingPattern
from vision.sources import FileSource
from vision.worker import CameraPipeline

from test_rescan_fixtures import (BAD, CAM_A_START, MODEL, SIDECAR_CLIP, TRAFFIC_CLIP, VIOLATION_CLIP,  # noqa: F401
                                  clips, copy_state, footage, local_run, make_spec, site_path)

SHANGHAI = ZoneInfo("Asia/Shanghai")


# --- naming ---------------------------------------------------------------------------------------

def test_pattern_gives_camera_and_local_start_time():
    ident = NamingPattern("{camera}/%Y%m%d/%H%M%S.mp4").parse("gate-1/20250614/140300.mp4", SHANGHAI)
    assert ident.camera_id == "gate-1"
    assert ident.start_time_s == 1749880980.0  # 2025-06-14 14:03:00 +08:00


def test_pattern_with_offset_and_wildcard():
    pattern = NamingPattern("nvr_{camera}_%Y-%m-%dT%H.%M.%S%z_*.mkv")
    ident = pattern.parse("nvr_lobby_2025-06-14T06.03.00Z_ch01.mkv", SHANGHAI)
    assert (ident.camera_id, ident.start_time_s) == ("lobby", 1749880980.0)


def test_sidecar_wins_and_fills_in():
    pattern = NamingPattern("{camera}/%Y%m%d/%H%M%S.mp4")
    ident = pattern.parse("gate-1/20250614/140300.mp4", SHANGHAI, {"start_time": "2025-06-14T14:03:10"})
    assert (ident.camera_id, ident.start_time_s, ident.source) == ("gate-1", 1749880990.0, "name+sidecar")
    ident = pattern.parse("whatever.mp4", SHANGHAI, {"camera_id": "c2", "start_time": "2025-06-14T06:03:00+00:00"})
    assert (ident.camera_id, ident.start_time_s) == ("c2", 1749880980.0)


@pytest.mark.parametrize("name, why", [("gate-1/2025-06-14/140300.mp4", "does not match"),
                                       ("gate-1/20251314/140300.mp4", "not a valid date")])
def test_wrong_names_are_refused_with_the_reason(name, why):
    with pytest.raises(NamingError, match=why):
        NamingPattern("{camera}/%Y%m%d/%H%M%S.mp4").parse(name, SHANGHAI)


# --- compare --------------------------------------------------------------------------------------

def _violation(vid: str, start: str, zone: str = "fire-lane") -> dict:
    return {"id": vid, "camera_id": "cam-a", "rule": "fire_lane", "zone_id": zone, "start_time": start,
            "last_seen_time": start, "confidence": 0.8, "model_version": "m", "file": "f.mp4"}


def test_compare_lists_what_only_one_run_found():
    old = {"job": {"mode": "sampled"}, "violations": [
        _violation("a", "2025-06-14T06:00:00+00:00"), _violation("b", "2025-06-14T07:00:00+00:00"),
        _violation("c", "2025-06-14T08:00:00+00:00")]}
    new = {"job": {"mode": "sampled"}, "violations": [
        _violation("a", "2025-06-14T06:00:00+00:00"), _violation("b2", "2025-06-14T07:00:04+00:00"),
        _violation("d", "2025-06-14T09:00:00+00:00"), _violation("e", "2025-06-14T08:00:01+00:00", zone="other")]}
    diff = compare_reports(new, old)
    assert diff["matched"] == 1
    assert diff["matched_by_time"] == [{"this": "b2", "other": "b", "start_gap_s": 4.0}]
    assert sorted(v["id"] for v in diff["only_in_this"]) == ["d", "e"]
    assert [v["id"] for v in diff["only_in_other"]] == ["c"]


# --- a whole job ----------------------------------------------------------------------------------

def test_job_lists_every_bad_file_with_its_reason_and_finds_the_violation(local_run, footage):
    report, state = local_run
    bad = {b["name"]: b["reason"] for b in report["bad_files"]}
    assert set(bad) == set(BAD)
    for name, why in BAD.items():
        assert why in bad[name], (name, bad[name])
    assert report["ignored"] == ["cam-b/README.txt"]
    done = {f["name"] for f in report["files"] if f["status"] == "done"}
    assert done == {VIOLATION_CLIP, TRAFFIC_CLIP, SIDECAR_CLIP}
    assert report["totals"]["files"] == 8 and report["totals"]["files_bad"] == 5
    # the car stops on the fire lane 36 s into the cam-a clip and stays to its end
    [v] = report["violations"]
    assert (v["camera_id"], v["rule"], v["zone_id"], v["source"], v["file"]) == (
        "cam-a", "fire_lane", "fire-lane", "rescan", VIOLATION_CLIP)
    import datetime as dt
    start = dt.datetime.fromisoformat(v["start_time"]).timestamp() - CAM_A_START
    assert 35.0 <= start <= 50.0
    evidence = state / "evidence" / v["id"]
    assert {p.name for p in evidence.iterdir()} == {"snapshot.jpg", "crop.jpg", "clip.mp4", "sidecar.json"}
    assert (evidence / "clip.mp4").read_bytes()[4:8] == b"ftyp"
    sidecar_file = next(f for f in report["files"] if f["name"] == SIDECAR_CLIP)
    assert (sidecar_file["camera_id"], sidecar_file["start_time_s"]) == ("cam-b", 1749877200.0)


def test_sampled_mode_gives_the_violations_of_the_live_pipeline(clips, site_path):
    """Drive CameraPipeline as the live worker does (FileSource at the clip frame rate, packets to the
    clip recorder) and compare with the re-scan of the same file."""
    site = load_site_config(site_path)
    compound, camera = site.cameras()[0]
    detector = OnnxDetector(str(MODEL), confidence=site.detector.confidence, iou=site.detector.iou, threads=1)
    pipeline = CameraPipeline(site, compound, camera, detector, Path(tempfile.mkdtemp()))
    live = []
    with FileSource(str(clips["violation"]), camera.id, sample_fps=max(camera.sample_fps, site.evidence.clip_fps),
                    start_time_s=CAM_A_START, packet_sink=pipeline.recorder.push_packet) as source:
        for frame in source:
            live += [event for event, _ in pipeline.process(frame)]
    live += [event for event, _ in pipeline.flush()]
    from vision.rescan.discover import discover
    from vision.rescan.scan import FileTask, ScanSettings, scan_file
    result = scan_file(FileTask(discover(str(clips["violation"])).files[0], compound.id, camera.id, CAM_A_START),
                       ScanSettings(site, str(MODEL), "sampled"))
    assert live and [e["id"] for e in live] == [v["id"] for v in result.violations]
    strip = lambda e: {k: v for k, v in e.items() if k not in ("source", "evidence")}  # noqa: E731
    assert [strip(e) for e in live] == [strip(v) for v in result.violations]


def test_adaptive_finds_what_sampled_finds_decoding_less(tmp_path, footage, site_path, local_run):
    sampled, _ = local_run
    job = RescanJob(make_spec(str(footage), site_path, tmp_path / "adaptive", mode="adaptive"), LocalExecutor(1))
    adaptive = job.run()
    assert [v["id"] for v in adaptive["violations"]] == [v["id"] for v in sampled["violations"]]
    assert [v["start_time"] for v in adaptive["violations"]] == [v["start_time"] for v in sampled["violations"]]
    files = {f["name"]: f for f in adaptive["files"]}
    assert files[VIOLATION_CLIP]["dense_s"] < files[VIOLATION_CLIP]["duration_s"] * 0.8
    assert files[TRAFFIC_CLIP]["dense_s"] == 0.0  # passing traffic only: nothing decoded densely
    assert {b["name"] for b in adaptive["bad_files"]} == set(BAD)


def test_keyframe_mode_decodes_only_keyframes(tmp_path, footage, site_path):
    job = RescanJob(make_spec(str(footage), site_path, tmp_path / "kf", mode="keyframes"), LocalExecutor(1))
    report = job.run()
    files = {f["name"]: f for f in report["files"]}
    # 67 s with a keyframe every 2 s
    assert files[VIOLATION_CLIP]["decoded_frames"] == 34
    assert {b["name"] for b in report["bad_files"]} == set(BAD)


def test_resumed_run_skips_finished_files_and_reports_the_same(tmp_path, footage, site_path, local_run):
    full, _ = local_run
    spec = make_spec(str(footage), site_path, tmp_path / "state")
    first = RescanJob(spec, LocalExecutor(1))
    scanned = []

    def stop_after_first(summary):
        if summary["status"] == "done":
            scanned.append(summary["name"])
            first.cancel()  # as if interrupted after one file

    first.on_file = stop_after_first
    first.run()
    assert first.exit_code == 4 and len(scanned) == 1
    second = RescanJob(spec, LocalExecutor(1))
    resumed = second.run()
    assert second.exit_code == 3
    # six files can be scanned (three good, zero-length, truncated, not video); one was finished
    assert resumed["run"]["files_resumed"] == 1
    assert resumed["run"]["files_scanned"] == 5
    assert results_of(resumed) == results_of(full)
    third = RescanJob(spec, LocalExecutor(1))
    again = third.run()
    assert again["run"]["files_scanned"] == 0 and results_of(again) == results_of(full)


def test_rescan_command_exit_code_report_and_compare(tmp_path, footage, site_path, local_run):
    full, state = local_run
    other = dict(full, violations=full["violations"] + [dict(full["violations"][0], id="x" * 32,
                                                                start_time="2025-06-14T01:00:00+00:00")])
    (tmp_path / "old.json").write_text(json.dumps(other))
    copy_state(state, tmp_path / "state")
    result = CliRunner().invoke(app, ["rescan", str(footage), "--config", str(site_path), "--state-dir",
                                      str(tmp_path / "state"), "--report", str(tmp_path / "r.json"),
                                      "--compare-with", str(tmp_path / "old.json"), "--no-progress"])
    assert result.exit_code == 3, result.output  # partial: bad files
    report = json.loads((tmp_path / "r.json").read_text())
    assert results_of(report) == results_of(full)
    assert report["compare"]["matched"] == 1
    assert [v["id"] for v in report["compare"]["only_in_other"]] == ["x" * 32]
    assert "5 bad" in result.output and "zero-length file" in result.output
    assert "only other run" in result.output


def test_rescan_command_refuses_a_state_folder_of_another_job(tmp_path, footage, site_path, local_run):
    _, state = local_run
    copy_state(state, tmp_path / "state")
    result = CliRunner().invoke(app, ["rescan", str(footage), "--config", str(site_path), "--mode", "keyframes",
                                      "--state-dir", str(tmp_path / "state"), "--no-progress"])
    assert result.exit_code == 2
    assert "belongs to another job" in result.output


# --- prefetched keyframe reads ------------------------------------------------------------------------

def _keyframe_read(path: str, prefetch: bool) -> tuple[list, list, set]:
    from vision.rescan.decode import keyframes
    packets, frames, sink_threads = [], [], set()

    def sink(packet) -> None:
        packets.append((packet.dts, round(packet.time_s, 6), packet.is_keyframe, len(packet.data)))
        sink_threads.add(threading.get_ident())

    for decoded in keyframes(path, 100.0, sink, None, threads=1, prefetch=prefetch):
        frames.append((decoded.pts_s, hashlib.sha256(decoded.image.tobytes()).hexdigest()))
    return packets, frames, sink_threads


@pytest.mark.parametrize("name", ["violation", "traffic"])
def test_prefetched_keyframes_are_those_of_a_plain_read_with_the_packets_in_the_callers_thread(clips, name):
    plain_packets, plain_frames, _ = _keyframe_read(str(clips[name]), prefetch=False)
    packets, frames, sink_threads = _keyframe_read(str(clips[name]), prefetch=True)
    assert frames == plain_frames and len(frames) > 5
    assert packets == plain_packets
    assert sink_threads == {threading.get_ident()}


def test_prefetched_keyframes_report_a_truncated_file_alike_and_stop_when_left(tmp_path, clips):
    from vision.errors import SourceError
    from vision.rescan.decode import keyframes
    data = clips["traffic"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 5])
    reasons = []
    for prefetch in (False, True):
        with pytest.raises(SourceError) as caught:
            list(keyframes(str(cut), threads=1, prefetch=prefetch))
        reasons.append(caught.value.reason)
    assert reasons[0] == reasons[1] and "truncated" in reasons[0]
    reading = keyframes(str(clips["violation"]), threads=1, prefetch=True)
    next(reading)
    reading.close()   # the caller leaves after one frame: the reading thread ends
    assert not [t for t in threading.enumerate() if t.name.startswith("keyframes:")]
