"""Re-inspection of rectification cases by the worker that watches their camera (复查).

The API lists the cases due for a re-inspection (``GET /api/v1/cases/due``: rectified, or past their
deadline and not closed). For each due case whose camera this worker runs, :class:`Reinspector`
takes the camera's latest frame, draws the case's zone on it, asks the live rule of that zone whether
anything still stands there (:meth:`DwellRule.occupied`), and posts the fresh snapshot with
``{"frame_time", "rule_active"}`` to ``POST /api/v1/cases/{id}/reinspect``. The API attaches the
before/after snapshots and proposes closing the case (scene clear) or flags it overdue.

A case is re-inspected at most once per ``min_gap_s``, and only from a frame newer than
``max_frame_age_s`` (a camera that is down cannot vouch that a scene is clear).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from typing import TYPE_CHECKING

import cv2
import httpx

from vision.zones import draw_zone

if TYPE_CHECKING:
    from vision.worker import CameraPipeline

log = logging.getLogger(__name__)


class Reinspector:
    """Polls the API for due cases and re-inspects those of ``pipelines`` (camera id → pipeline)."""

    def __init__(self, pipelines: dict[str, "CameraPipeline"], api_url: str, api_key: str, *,
                 interval_s: float = 60.0, min_gap_s: float = 900.0, max_frame_age_s: float = 30.0,
                 timeout_s: float = 30.0, client: httpx.Client | None = None):
        self.pipelines = pipelines
        self.interval_s, self.min_gap_s, self.max_frame_age_s = interval_s, min_gap_s, max_frame_age_s
        self._client = client or httpx.Client(base_url=api_url.rstrip("/"), timeout=timeout_s)
        self._headers = {"X-API-Key": api_key}
        self._last: dict[int, float] = {}   # case id -> monotonic time of its last re-inspection here
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.inspected = 0

    def run_once(self, now_mono: float | None = None) -> int:
        """One poll: re-inspect every due case this worker can see now. Returns how many were posted."""
        now_mono = time.monotonic() if now_mono is None else now_mono
        resp = self._client.get("/api/v1/cases/due", headers=self._headers)
        resp.raise_for_status()
        posted = 0
        for case in resp.json()["items"]:
            pipeline = self.pipelines.get(case["camera_id"])
            if pipeline is None or now_mono - self._last.get(case["id"], -1e18) < self.min_gap_s:
                continue
            if self.inspect(case, pipeline):
                self._last[case["id"]] = now_mono
                posted += 1
        if len(self._last) > 10_000:  # bounded: forget the oldest
            for key in sorted(self._last, key=self._last.get)[:5_000]:
                del self._last[key]
        return posted

    def inspect(self, case: dict, pipeline: "CameraPipeline") -> bool:
        frame = pipeline.last_frame
        if frame is None or time.time() - pipeline.last_frame_wall_s > self.max_frame_age_s:
            log.info("case %s: camera %s has no fresh frame; re-inspection postponed", case["id"], case["camera_id"])
            return False
        rules = [r for r in pipeline.rules if r.name == case["rule"] and r.zone.id == case["zone_id"]]
        zone = pipeline.zones.get(case["zone_id"])
        if not rules or zone is None:
            log.warning("case %s: camera %s has no %s rule in zone %s; cannot re-inspect", case["id"],
                        case["camera_id"], case["rule"], case["zone_id"])
            return False
        active = any(r.occupied(frame.time_s) for r in rules)
        image = draw_zone(frame.image.copy(), zone, (0, 0, 255) if active else (0, 200, 0))
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        if not ok:
            return False
        report = {"frame_time": dt.datetime.fromtimestamp(frame.time_s, dt.timezone.utc).isoformat(),
                  "rule_active": active}
        resp = self._client.post(f"/api/v1/cases/{case['id']}/reinspect", data={"report": json.dumps(report)},
                                 files={"snapshot": ("after.jpg", jpeg.tobytes(), "image/jpeg")},
                                 headers=self._headers)
        if resp.status_code == 409:  # someone moved the case meanwhile; it is no longer ours to inspect
            log.info("case %s: not re-inspected (%s)", case["id"], resp.text[:200])
            return False
        resp.raise_for_status()
        self.inspected += 1
        log.info("case %s: re-inspected, scene %s", case["id"], "still occupied" if active else "clear")
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except httpx.HTTPError as exc:
                log.warning("re-inspection poll failed: %s", exc)
            except Exception:  # never let the re-inspector take the worker down
                log.exception("re-inspection poll failed")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="reinspector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self._client.close()
