"""The re-scan report (JSON) and the comparison of two reports.

The report lists every file (scanned, resumed from the checkpoint or bad, with the reason), every
violation (the event JSON the API takes, plus the file it came from) sorted by start time, camera
and id, and totals. Everything in ``files``, ``bad_files``, ``violations`` and ``totals`` depends
only on the footage and the settings — not on the executor, the number of processes or whether the
run was resumed — so two reports can be compared as they are; timings are under ``run``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

REPORT_VERSION = 1
# Two violations of the same camera, rule and zone whose start times are this close are the same
# one found by both runs (a new model may see an object settle a frame or two earlier or later).
MATCH_TOLERANCE_S = 10.0


def _file_entry(summary: dict) -> dict:
    keep = ("name", "location", "status", "reason", "camera_id", "start_time_s", "duration_s", "decoded_frames",
            "inferences", "dense_s", "fallback")
    entry = {k: summary.get(k) for k in keep}
    entry["violations"] = [v["id"] for v in summary.get("violations") or []]
    return entry


def build_report(spec, fingerprint: str, state_dir: Path, discovery, results: list[dict], run: dict) -> dict:
    """The report of a job from its file summaries (see the module docstring)."""
    results = sorted(results, key=lambda s: s["name"])
    violations = []
    for summary in results:
        for event in summary.get("violations") or []:
            violations.append({**event, "file": summary["name"]})
    violations.sort(key=lambda v: (v["start_time"], v["camera_id"], v["id"]))
    done = [s for s in results if s["status"] == "done"]
    bad = [s for s in results if s["status"] == "bad"]
    footage = sum(s.get("duration_s") or 0.0 for s in done)
    return {
        "version": REPORT_VERSION,
        "job": {"fingerprint": fingerprint, "source": spec.source, "mode": spec.mode, "fps": spec.fps,
                "pattern": spec.pattern, "camera": spec.camera_id, "model": spec.model_path,
                "site_sha256": spec.site_sha256, "state_dir": str(state_dir)},
        "totals": {"files": len(discovery.files), "files_done": len(done), "files_bad": len(bad),
                   "footage_s": round(footage, 3), "violations": len(violations),
                   "decoded_frames": sum(s.get("decoded_frames") or 0 for s in done),
                   "inferences": sum(s.get("inferences") or 0 for s in done)},
        "run": run,
        "files": [_file_entry(s) for s in results],
        "bad_files": [{"name": s["name"], "location": s["location"], "reason": s["reason"]} for s in bad],
        "ignored": list(discovery.ignored),
        "violations": violations,
    }


def results_of(report: dict) -> dict:
    """The part of a report that must be identical between executors and between a run and its
    resumed copy (everything but timings and the state folder)."""
    return {k: report[k] for k in ("totals", "files", "bad_files", "ignored", "violations")}


def _key(v: dict) -> tuple:
    return v["camera_id"], v["rule"], v["zone_id"]


def _start_s(v: dict) -> float:
    import datetime as dt
    return dt.datetime.fromisoformat(v["start_time"]).timestamp()


def compare_reports(this: dict, other: dict, tolerance_s: float = MATCH_TOLERANCE_S) -> dict:
    """Violations found by only one of two runs (e.g. before and after a model or rule change).

    Matched first by id (same camera, rule, zone and start), then by camera, rule and zone with start
    times within ``tolerance_s`` (closest first). Returns ``{"other_report", "matched",
    "matched_by_time", "only_in_this", "only_in_other"}`` (the unmatched lists hold compact entries)."""
    mine = {v["id"]: v for v in this["violations"]}
    theirs = {v["id"]: v for v in other["violations"]}
    same = set(mine) & set(theirs)
    left = [v for k, v in mine.items() if k not in same]
    right = [v for k, v in theirs.items() if k not in same]
    pairs = sorted(((abs(_start_s(a) - _start_s(b)), i, j) for i, a in enumerate(left) for j, b in enumerate(right)
                    if _key(a) == _key(b) and abs(_start_s(a) - _start_s(b)) <= tolerance_s))
    used_l, used_r, by_time = set(), set(), []
    for gap, i, j in pairs:
        if i in used_l or j in used_r:
            continue
        used_l.add(i)
        used_r.add(j)
        by_time.append({"this": left[i]["id"], "other": right[j]["id"], "start_gap_s": round(gap, 3)})

    def compact(v: dict) -> dict:
        return {k: v.get(k) for k in ("id", "camera_id", "rule", "zone_id", "start_time", "last_seen_time",
                                      "confidence", "model_version", "file")}

    return {"other_report": other.get("job", {}), "matched": len(same), "matched_by_time": by_time,
            "only_in_this": [compact(v) for i, v in enumerate(left) if i not in used_l],
            "only_in_other": [compact(v) for j, v in enumerate(right) if j not in used_r]}


def write_json(path: str | os.PathLike, value: dict) -> None:
    """Write JSON atomically (a temporary file renamed over the target)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
