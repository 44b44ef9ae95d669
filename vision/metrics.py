"""Prometheus metrics of a worker (``prometheus-client``), served on ``/metrics`` at 127.0.0.1.

Each :class:`WorkerMetrics` has its own registry, so several workers (or tests) in one process do not
collide. Names follow Prometheus conventions (``_total`` counters, ``_seconds`` histograms)::

    compoundeye_frames_decoded_total{camera}       frames the decoder produced
    compoundeye_frames_sampled_total{camera}       frames handed to the pipeline (sampling rate)
    compoundeye_inferences_total{camera}           frames the detector ran on
    compoundeye_motion_skipped_total{camera}       due frames not inferred because nothing moved
    compoundeye_queue_drops_total{camera,reason}   frames dropped: replaced (a newer frame came) or stale (too old)
    compoundeye_inference_latency_seconds          frame time → detections ready
    compoundeye_event_latency_seconds              frame time → violation/health event handed to delivery
    compoundeye_inference_batch_size               frames per detector run
    compoundeye_camera_online{camera}              1 connected, 0 not
    compoundeye_camera_health{camera,kind}         1 while a health condition (offline, frozen, …) lasts
    compoundeye_reconnects_total{camera}
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, start_http_server

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)


class WorkerMetrics:
    """The worker's counters, gauges and histograms, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.frames_decoded = Counter("compoundeye_frames_decoded", "frames decoded", ["camera"], registry=r)
        self.frames_sampled = Counter("compoundeye_frames_sampled", "frames sampled for the pipeline", ["camera"],
                                      registry=r)
        self.inferences = Counter("compoundeye_inferences", "frames the detector ran on", ["camera"], registry=r)
        self.motion_skipped = Counter("compoundeye_motion_skipped", "due frames skipped by the motion gate",
                                      ["camera"], registry=r)
        self.queue_drops = Counter("compoundeye_queue_drops", "frames dropped from the inference queue",
                                   ["camera", "reason"], registry=r)
        self.inference_latency = Histogram("compoundeye_inference_latency_seconds",
                                           "frame time to detections ready", buckets=LATENCY_BUCKETS, registry=r)
        self.event_latency = Histogram("compoundeye_event_latency_seconds",
                                       "frame time to event handed to delivery", ["kind"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("compoundeye_inference_batch_size", "frames per detector run",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.camera_online = Gauge("compoundeye_camera_online", "1 while the camera's stream is connected",
                                   ["camera"], registry=r)
        self.camera_health = Gauge("compoundeye_camera_health", "1 while the health condition lasts",
                                   ["camera", "kind"], registry=r)
        self.reconnects = Counter("compoundeye_reconnects", "stream reconnections", ["camera"], registry=r)
        self._server = None

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve ``/metrics`` on ``host:port`` (port 0: a free one) in a daemon thread; returns the port."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return server.server_address[1]

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def text(self) -> str:
        """The exposition text (what ``/metrics`` answers)."""
        return generate_latest(self.registry).decode()
