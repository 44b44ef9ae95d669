"""Free loopback ports for the servers that tests start, chosen *below* the kernel's ephemeral range.

A port that ``bind(("127.0.0.1", 0))`` hands out lies in the ephemeral range (32768–60999 here), the
same range the kernel gives outgoing connections. For a server that a test stops and starts again on
the same port (RTSP camera going away, PostgreSQL restarted, S3 store down, API down), that is a trap:
while the server is down, a client that keeps reconnecting to ``127.0.0.1:PORT`` can get PORT itself
as its local port and connect to itself (TCP simultaneous open), and any other outgoing connection of
the machine may take the port, so the restarted server cannot listen again. A CI run failed that way
(an RTSP client saw ``Operation not permitted``, then ``Connection refused`` for 120 s). Ports below
the ephemeral range are never handed out to outgoing connections.
"""
from __future__ import annotations

import random
import socket
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 20000


def _ephemeral_start() -> int:
    try:
        return int(_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n: int, rng: random.Random | None = None) -> list[int]:
    """``n`` distinct ports on 127.0.0.1 that are free now and outside the ephemeral range."""
    rng = rng or random.SystemRandom()
    top = _ephemeral_start() - 1
    low = _LOWEST if top - _LOWEST >= 1000 else 1024
    ports: list[int] = []
    for _ in range(2000):
        port = rng.randint(low, top)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError(f"no {n} free loopback ports in {low}-{top}")


def free_port() -> int:
    """One free loopback port outside the ephemeral range (see the module's docstring)."""
    return free_ports(1)[0]
