"""`compoundeye demo`: the whole system in one process on embedded defaults.

SQLite and a local evidence folder under ``var/demo``, the API and monitoring page on 127.0.0.1, and a
worker replaying the sample footage as live cameras (looping, at real speed).
"""
from __future__ import annotations

import logging
import shutil
import threading
import time
from pathlib import Path

import uvicorn

from service.app import create_app
from service.db import make_engine, session_factory
from service.keys import create_key
from service.settings import Settings
from vision.config import SiteConfig
from vision.worker import Worker

log = logging.getLogger("compoundeye.demo")


def run_demo(site: SiteConfig, config_path: Path, *, port: int, state_dir: Path, fresh: bool,
             duration_s: float = 0) -> int:
    """Run until Ctrl-C (or ``duration_s``). Returns the exit code."""
    if fresh and state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(database_url=f"sqlite:///{state_dir / 'compoundeye.db'}",
                        storage_url=f"file://{state_dir / 'evidence'}")
    app = create_app(settings)
    engine = make_engine(settings.database_url)
    with session_factory(engine)() as session:
        worker_key = create_key(session, name="demo-worker", role="worker", compounds=["*"])
        reviewer_key = create_key(session, name="demo-reviewer", role="reviewer", compounds=["*"])
        session.commit()
    engine.dispose()

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    server_thread = threading.Thread(target=server.run, name="api", daemon=True)
    server_thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not server_thread.is_alive() or time.monotonic() > deadline:
            log.error("the API did not start on 127.0.0.1:%d (port in use?)", port)
            return 1
        time.sleep(0.1)

    site = site.model_copy(update={"outbox_dir": str(state_dir / "outbox")})
    hub = app.state.live_hub
    for _, camera in site.cameras():
        hub.register(camera)
    worker = Worker(site, config_path, api_key=worker_key, api_url=f"http://127.0.0.1:{port}",
                    realtime=True, on_frame=hub.publish)
    worker.start()
    url = f"http://127.0.0.1:{port}/#key={reviewer_key}"
    print(f"\nCompoundEye demo is running.\n  monitoring page: {url}\n  API docs:        "
          f"http://127.0.0.1:{port}/docs\n  reviewer key:    {reviewer_key}\n  worker key:      {worker_key}\n"
          f"  state:           {state_dir}\nPress Ctrl-C to stop.\n", flush=True)
    try:
        start = time.monotonic()
        while duration_s <= 0 or time.monotonic() - start < duration_s:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        worker.stop()
        server.should_exit = True
        server_thread.join(timeout=10)
    return 0
