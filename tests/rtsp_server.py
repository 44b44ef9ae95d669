"""A real RTSP server on loopback for tests and ``bench live``: GStreamer's RTSP server, run by the
system python (``/usr/bin/python3``, which has the ``gi`` bindings; the venv does not), serving
looping H.264 MP4 files, one mount per file.

From the venv::

    clip = make_clip(tmp_path / "a.mp4")               # 640×360, 15 fps, H.264, GOP 1 s
    with RtspServer({"/cam1": clip}) as server:       # picks a free port on 127.0.0.1
        url = server.url("/cam1")                      # rtsp://127.0.0.1:PORT/cam1
        server.stop(); server.start()                  # same port: a camera going away and back

As a script (what :class:`RtspServer` runs)::

    /usr/bin/python3 tests/rtsp_server.py PORT /cam1=/path/a.mp4 /cam2=/path/b.mp4 [--user U --password P]

It prints ``serving rtsp://127.0.0.1:PORT`` once listening. Looping follows ../shared/RECIPES.md §2:
segment seeks, re-seeking to 0 on ``segment-done``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

if str(Path(__file__).resolve().parent) not in sys.path:   # loaded by path from vision/bench_live.py
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from ports import free_port  # noqa: E402  (below the ephemeral range: the server restarts on its port)

SYSTEM_PYTHON = "/usr/bin/python3"


# --- the server (runs under /usr/bin/python3) ------------------------------------------------------

def serve(port: str, mounts: list[str], user: str | None = None, password: str | None = None) -> None:
    import gi
    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    segment = Gst.SeekFlags.SEGMENT

    def rewind(media, seek) -> bool:
        """Once prepared: a flushing segment seek to 0, so that the first pass ends in segment-done, not EOS.
        The flush resets the payloader's segment until the demuxer sends the new one; a client's PLAY that
        asked for the stream's rates in between hit an assertion in gst_rtsp_media_get_rates, which aborted
        the whole server (seen in test_leases and test_rtsp; reproduced in 12 rounds of four clients killed
        in a loop). So the seek is made under the media's lock, which PLAY takes, and the lock is kept
        until every stream has its segment again (at most 2 s)."""
        media.lock()
        try:
            seek(Gst.SeekFlags.FLUSH)
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline and not all(
                    media.get_stream(i).get_rates()[0] for i in range(media.n_streams())):
                time.sleep(0.005)
        finally:
            media.unlock()
        return False   # once (GLib.idle_add)

    class LoopingMp4(GstRtspServer.RTSPMediaFactory):
        def __init__(self, path: str):
            super().__init__()
            self.set_launch(f'( filesrc location="{path}" ! qtdemux name=d d.video_0 ! '
                            'h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )')
            self.connect("media-configure", self._configure)

        def _configure(self, _factory, media):
            pipeline = media.get_element().get_parent()
            demux = media.get_element().get_by_name("d")

            def seek(flags):
                return demux.seek(1.0, Gst.Format.TIME, flags | segment | Gst.SeekFlags.KEY_UNIT,
                                  Gst.SeekType.SET, 0, Gst.SeekType.NONE, -1)

            def upstream(_pad, info):  # give the server's own seeks the SEGMENT flag
                event = info.get_event()
                if event.type == Gst.EventType.SEEK and not event.parse_seek()[2] & segment:
                    seek(event.parse_seek()[2])
                    return Gst.PadProbeReturn.DROP
                return Gst.PadProbeReturn.OK

            demux.connect("pad-added", lambda _d, pad: pad.add_probe(Gst.PadProbeType.EVENT_UPSTREAM, upstream))
            bus = pipeline.get_bus()
            bus.enable_sync_message_emission()
            bus.connect("sync-message::segment-done",
                        lambda *_: GLib.idle_add(lambda: seek(Gst.SeekFlags.NONE) and False))
            media.connect("prepared", lambda m: GLib.idle_add(rewind, m, seek))

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    for mount in mounts:
        name, path = mount.split("=", 1)
        factory = LoopingMp4(path)
        if user:
            factory.add_role_from_structure(Gst.Structure.from_string(
                "user, media.factory.access=(boolean)true, media.factory.construct=(boolean)true")[0])
        server.get_mount_points().add_factory(name, factory)
    if user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password or ""), token)
        server.set_auth(auth)
    if not server.attach(None):      # 0: the port could not be bound (e.g. the old server not gone yet)
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        raise SystemExit(1)
    print(f"serving rtsp://127.0.0.1:{port}", flush=True)
    GLib.MainLoop().run()


# --- helpers for the venv side ---------------------------------------------------------------------

def make_clip(path: str | os.PathLike, seconds: float = 6.0, fps: int = 15, size: tuple[int, int] = (640, 360),
              gop: int | None = None, seed: int = 0, moving: bool = True) -> Path:
    """Write an H.264 MP4 of a textured scene with a moving box (unless ``moving=False``) and
    sensor-like noise (so that it is never a frozen image), ``size`` (w, h) at ``fps``, keyframe every
    ``gop`` frames (default 1 s)."""
    import av
    import cv2
    import numpy as np

    path = Path(path)
    rng = np.random.default_rng(seed)
    w, h = size
    background = np.full((h, w, 3), 90, np.uint8)
    for _ in range(40):  # texture: edges for focus and view checks
        x, y = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 30))
        cv2.rectangle(background, (x, y), (x + int(rng.integers(10, 80)), y + int(rng.integers(10, 60))),
                      tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    gop = gop or fps
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={
            "preset": "ultrafast", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0", "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for i in range(int(seconds * fps)):
            image = background.copy()
            x = int((i * 7) % (w - 60))
            if moving:
                cv2.rectangle(image, (x, h // 2), (x + 60, h // 2 + 40), (30, 200, 240), -1)
            noise = rng.integers(-6, 7, (h, w, 1), dtype=np.int16)
            image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


class RtspServer:
    """The GStreamer RTSP server in a child process on a free loopback port; ``stop()`` and
    ``start()`` again keep the port. Use as a context manager."""

    def __init__(self, mounts: dict[str, str | os.PathLike], port: int | None = None,
                 user: str | None = None, password: str | None = None, start_timeout_s: float = 60.0,
                 strict: bool = True):
        self.mounts = {name: str(path) for name, path in mounts.items()}
        self.port = port or free_port()
        self.user, self.password = user, password
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen | None = None
        self.stderr_lines: list[str] = []
        # An exit that stop() did not ask for restarts the server on its port (a camera rebooting), at most
        # MAX_RESTARTS times; ``crashes`` keeps each exit code with the stderr before it. With ``strict``
        # (tests), leaving the ``with`` block normally after a crash fails: the server once aborted under
        # clients (a race of our own rewind seek, fixed in ``rewind``), and a crash must not pass unseen.
        self.crashes: list[str] = []
        self.strict = strict
        self._wanted = False
        self._lock = threading.Lock()

    def url(self, mount: str, with_credentials: bool = True) -> str:
        auth = f"{self.user}:{self.password}@" if self.user and with_credentials else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}{mount}"

    MAX_RESTARTS = 3

    def start(self) -> "RtspServer":
        """Start the server; retried (the same port) for up to ``start_timeout_s`` when it cannot listen
        yet or starts slowly on a loaded machine. Raises RuntimeError with its stderr if it never does."""
        with self._lock:
            self._start_retrying()
            self._wanted = True
        return self

    def _start_retrying(self) -> "RtspServer":
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            try:
                return self._start_once(max(5.0, deadline - time.monotonic()))
            except RuntimeError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    def _start_once(self, timeout_s: float) -> "RtspServer":
        cmd = [SYSTEM_PYTHON, str(Path(__file__).resolve()), str(self.port),
               *[f"{name}={path}" for name, path in self.mounts.items()]]
        if self.user:
            cmd += ["--user", self.user, "--password", self.password or ""]
        # a clean environment: the venv's variables must not leak into the system python
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON"))}
        self.process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._drain_stderr, args=(self.process,), daemon=True).start()
        ready: list[str] = []
        reader = threading.Thread(target=lambda: ready.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout_s)
        if not ready or not ready[0].startswith("serving"):
            self._terminate()
            raise RuntimeError(f"RTSP server did not start: {''.join(self.stderr_lines)[-2000:]}")
        threading.Thread(target=self._supervise, args=(self.process,), daemon=True).start()
        return self

    def _supervise(self, process: subprocess.Popen) -> None:
        code = process.wait()
        with self._lock:
            if not self._wanted or self.process is not process or len(self.crashes) >= self.MAX_RESTARTS:
                return
            time.sleep(0.2)  # the stderr reader's last lines
            self.crashes.append(f"exit {code}: {''.join(self.stderr_lines)[-1500:]}")
            print(f"RTSP test server died ({self.crashes[-1]}); restarting it on port {self.port}",
                  file=sys.stderr, flush=True)
            try:
                self._start_retrying()
            except RuntimeError:
                self.process = None

    def _drain_stderr(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            self.stderr_lines.append(line)
            del self.stderr_lines[:-200]

    def stop(self) -> None:
        with self._lock:
            self._wanted = False
            self._terminate()

    def _terminate(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def __enter__(self) -> "RtspServer":
        return self.start()

    def __exit__(self, exc_type, *exc_info) -> None:
        self.stop()
        if self.strict and exc_type is None and self.crashes:
            raise AssertionError(f"the RTSP test server died {len(self.crashes)} time(s) under the test: {self.crashes}")


if __name__ == "__main__":
    args = sys.argv[1:]
    user = password = None
    if "--user" in args:
        i = args.index("--user")
        user = args[i + 1]
        del args[i:i + 2]
    if "--password" in args:
        i = args.index("--password")
        password = args[i + 1]
        del args[i:i + 2]
    serve(args[0], args[1:], user, password)
