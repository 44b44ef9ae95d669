"""MQTT outputs against the real Mosquitto broker on 127.0.0.1:1883: topics per compound, camera and
rule; camera health retained per kind; a camera going offline reaches MQTT from a running worker."""
from __future__ import annotations

import json
import queue
import secrets
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import yaml

from rtsp_server import RtspServer, make_clip
from vision.config import load_site_config
from vision.mqtt_out import MqttPublisher, health_topic, violation_topic
from vision.worker import Worker

ROOT = Path(__file__).resolve().parents[1]
BROKER = ("127.0.0.1", 1883)


class Subscriber:
    """A real MQTT client collecting messages under ``prefix/#``."""

    def __init__(self, prefix: str):
        self.messages: queue.Queue = queue.Queue()
        self.seen: list[tuple[str, str, bool]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{secrets.token_hex(4)}")
        self.client.on_message = lambda _c, _u, msg: self.messages.put((msg.topic, msg.payload.decode(), msg.retain))
        subscribed = queue.Queue()
        self.client.on_subscribe = lambda *_: subscribed.put(True)
        self.client.on_connect = lambda client, *_: client.subscribe(f"{prefix}/#", qos=1)
        try:
            self.client.connect(*BROKER, keepalive=30)
        except OSError as exc:
            pytest.fail(f"Mosquitto on {BROKER} is not reachable: {exc}")
        self.client.loop_start()
        subscribed.get(timeout=10)

    def wait_for(self, predicate, timeout_s: float = 15.0):
        """The first message (received so far or within ``timeout_s``) matching ``predicate``."""
        deadline = time.monotonic() + timeout_s
        while True:
            for item in self.seen:
                if predicate(*item):
                    return item
            if time.monotonic() > deadline:
                raise AssertionError(f"no matching MQTT message within {timeout_s} s; saw {self.seen}")
            try:
                self.seen.append(self.messages.get(timeout=0.2))
            except queue.Empty:
                pass

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def prefix():
    return f"ce-test-{secrets.token_hex(4)}"


def test_topics_are_per_compound_camera_and_rule(prefix):
    assert violation_topic("ce", "c1", "gate-cam", "fire_lane") == "ce/c1/gate-cam/fire_lane"
    assert health_topic("ce", "c1", "cam+#/x", "offline") == "ce/c1/cam___x/health/offline"
    sub = Subscriber(prefix)
    pub = MqttPublisher(f"mqtt://{BROKER[0]}:{BROKER[1]}", prefix, worker_id="w1")
    try:
        assert pub.connected.wait(10)
        sub.wait_for(lambda topic, payload, _r: topic == f"{prefix}/worker/w1/status" and payload == "online")
        pub.publish_violation("c1", "gate-cam", "fire_lane", {"id": "v1", "state": "started"})
        topic, payload, _ = sub.wait_for(lambda t, *_: t.endswith("/fire_lane"))
        assert topic == f"{prefix}/c1/gate-cam/fire_lane" and json.loads(payload) == {"id": "v1", "state": "started"}
        pub.publish_health("c1", "gate-cam", "covered", {"state": "started"})
        sub.wait_for(lambda t, *_: t == f"{prefix}/c1/gate-cam/health/covered")
    finally:
        pub.close()
        sub.close()
    # health is retained: a dashboard that connects later still learns the camera's state
    late = Subscriber(prefix)
    try:
        topic, payload, retained = late.wait_for(lambda t, *_: t.endswith("/health/covered"))
        assert retained and json.loads(payload)["state"] == "started"
        late.wait_for(lambda t, p, r: t == f"{prefix}/worker/w1/status" and p == "offline" and r)
    finally:
        for topic in (f"{prefix}/c1/gate-cam/health/covered", f"{prefix}/worker/w1/status"):
            late.client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)  # clear retained
        late.close()


def test_worker_publishes_camera_offline_to_mqtt(prefix, tmp_path):
    clip = make_clip(tmp_path / "cam.mp4", seconds=4)
    sub = Subscriber(prefix)
    with RtspServer({"/lobby": clip}) as rtsp:
        site = {"detector": {"model": str(ROOT / "models" / "car-v1.onnx"), "threads": 1},
                "outbox_dir": str(tmp_path / "outbox"), "api": {"url": "http://127.0.0.1:9"},
                "live": {"read_timeout_s": 3, "reconnect_max_s": 2, "mqtt_url": "mqtt://127.0.0.1:1883", "mqtt_topic_prefix": prefix},
                "compounds": [{"id": "c7", "cameras": [{"id": "lobby", "source": rtsp.url("/lobby"),
                                                        "sample_fps": 2}]}]}
        path = tmp_path / "site.yaml"
        path.write_text(yaml.safe_dump(site))
        worker = Worker(load_site_config(path), path, api_key="unused", api_url="http://127.0.0.1:9")
        worker.start()
        try:
            cam = worker.live.cameras["lobby"]
            deadline = time.monotonic() + 30
            while cam.pipeline.inferences < 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert cam.pipeline.inferences >= 1
            rtsp.stop()
            topic, payload, _ = sub.wait_for(lambda t, *_: t == f"{prefix}/c7/lobby/health/offline", 10)
            body = json.loads(payload)
            assert body["state"] == "started" and body["camera_id"] == "lobby" and body["compound_id"] == "c7"
            rtsp.start()
            _, payload, _ = sub.wait_for(lambda t, p, _r: t.endswith("/health/offline") and '"ended"' in p, 60)
            assert json.loads(payload)["id"] == body["id"]
        finally:
            worker.stop()
            sub.client.publish(f"{prefix}/c7/lobby/health/offline", b"", qos=1, retain=True).wait_for_publish(5)
            sub.close()
