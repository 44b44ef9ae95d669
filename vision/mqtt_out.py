"""Live outputs to MQTT (``paho-mqtt``) for integrations: a building's alarm panel, Home Assistant,
a property's own dashboard.

Topics (``prefix`` is ``live.mqtt_topic_prefix``, default ``compoundeye``)::

    {prefix}/{compound}/{camera}/{rule}            violations: {"id", "state": "started"|"ended", …}
    {prefix}/{compound}/{camera}/health/{kind}     camera health, retained: the latest state of each kind
    {prefix}/worker/{worker_id}/status             "online" (retained), "offline" as the last will

Violations are published QoS 1 (at least once; the ``id`` makes them idempotent). The client
reconnects by itself (paho's loop thread with back-off); while the broker is away, messages wait in
paho's bounded in-flight queue and the worker carries on. Credentials in the URL come from the
environment (``mqtt://${MQTT_USER}:${MQTT_PASS}@host:1883``) and are masked in logs.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from vision.rtsp import mask_url

log = logging.getLogger(__name__)
_TOPIC_UNSAFE = re.compile(r"[+#/\s]")


def topic_part(value: str) -> str:
    """A topic level from an id: MQTT wildcards and separators replaced."""
    return _TOPIC_UNSAFE.sub("_", value) or "_"


def violation_topic(prefix: str, compound_id: str, camera_id: str, rule: str) -> str:
    return "/".join((prefix, topic_part(compound_id), topic_part(camera_id), topic_part(rule)))


def health_topic(prefix: str, compound_id: str, camera_id: str, kind: str) -> str:
    return "/".join((prefix, topic_part(compound_id), topic_part(camera_id), "health", topic_part(kind)))


class MqttPublisher:
    """A connected MQTT client for one worker. ``publish_*`` never block on the network."""

    def __init__(self, url: str, prefix: str = "compoundeye", worker_id: str = "worker", qos: int = 1,
                 max_queued: int = 10_000):
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"not an mqtt:// URL: {mask_url(url)}")
        self.masked_url = mask_url(url)
        self.prefix, self.qos = prefix, qos
        self.status_topic = f"{prefix}/worker/{topic_part(worker_id)}/status"
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"compoundeye-{worker_id}",
                                  clean_session=True)
        if parts.username:
            self.client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        if parts.scheme == "mqtts":
            self.client.tls_set()
        self.client.max_queued_messages_set(max_queued)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.will_set(self.status_topic, "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.connect_async(parts.hostname, parts.port or (8883 if parts.scheme == "mqtts" else 1883),
                                  keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client, _userdata, _flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT %s refused the connection: %s", self.masked_url, reason_code)
            return
        self.connected.set()
        client.publish(self.status_topic, "online", qos=1, retain=True)
        log.info("MQTT connected to %s", self.masked_url)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self.connected.clear()
        if reason_code != 0:
            log.warning("MQTT %s disconnected (%s); reconnecting", self.masked_url, reason_code)

    def publish(self, topic: str, payload: dict, retain: bool = False) -> None:
        info = self.client.publish(topic, json.dumps(payload, ensure_ascii=False), qos=self.qos, retain=retain)
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.warning("MQTT publish to %s failed: %s", topic, mqtt.error_string(info.rc))

    def publish_violation(self, compound_id: str, camera_id: str, rule: str, payload: dict) -> None:
        self.publish(violation_topic(self.prefix, compound_id, camera_id, rule), payload)

    def publish_health(self, compound_id: str, camera_id: str, kind: str, payload: dict) -> None:
        self.publish(health_topic(self.prefix, compound_id, camera_id, kind), payload, retain=True)

    def close(self, timeout_s: float = 2.0) -> None:
        """Say offline, flush what is in flight (up to ``timeout_s``) and disconnect."""
        if self.connected.is_set():
            self.client.publish(self.status_topic, "offline", qos=1, retain=True).wait_for_publish(timeout_s)
        self.client.disconnect()
        self.client.loop_stop()
