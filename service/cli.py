"""The `compoundeye` command line. Each command imports what it needs when it runs, so `config check`
stays fast and serving or the worker never import torch or ultralytics."""
from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path
from typing import List, Optional

import typer

ROOT = Path(__file__).resolve().parents[1]
#: the project's 7-class detector as deployed: r3 weights at 384 px, static int8 (models/README.md)
DEFAULT_MODEL = ROOT / "models" / "compound-v1-int8.onnx"

app = typer.Typer(help="CompoundEye: camera analytics for residential compounds "
                       "(overflowing bins, corridor clutter, e-bikes indoors, cars on fire lanes).",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
config_app = typer.Typer(help="Site configuration files.", no_args_is_help=True)
bench_app = typer.Typer(help="Performance figures measured on this machine.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys for workers and reviewers.", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(bench_app, name="bench")
app.add_typer(__import__("service.cli_users", fromlist=["keys_app"]).keys_app, name="keys")
app.add_typer(__import__("service.cli_users", fromlist=["users_app"]).users_app, name="users")
app.add_typer(db_app, name="db")
bench_app.command("live")(__import__("service.cli_live", fromlist=["bench_live"]).bench_live)
app.add_typer(__import__("service.cli_evidence", fromlist=["evidence_app"]).evidence_app, name="evidence")
app.command("rescan")(__import__("service.cli_rescan", fromlist=["rescan"]).rescan)
bench_app.command("rescan")(__import__("service.cli_rescan", fromlist=["bench_rescan"]).bench_rescan)
app.add_typer(__import__("service.cli_models", fromlist=["models_app"]).models_app)  # train, export, evaluate
app.command("evaluate-rules")(__import__("service.cli_rules", fromlist=["evaluate_rules"]).evaluate_rules)
app.add_typer(__import__("service.cli_reports", fromlist=["report_app"]).report_app, name="report")


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _load_site(path: Path):
    from vision.config import load_site_config
    from vision.errors import ConfigError
    try:
        return load_site_config(path)
    except ConfigError as exc:
        typer.echo(f"invalid configuration:\n{exc}", err=True)
        raise typer.Exit(2)


@config_app.command("check")
def config_check(file: Path = typer.Argument(..., help="the site YAML file")) -> None:
    """Validate a site file: unknown keys, bad polygons, missing files and out-of-range values are
    reported with the file, line, key path and reason (exit code 2)."""
    site = _load_site(file)
    cams = site.cameras()
    zones = sum(len(cam.zones) for _, cam in cams)
    typer.echo(f"{file}: OK — {len(site.compounds)} compound(s), {len(cams)} camera(s), {zones} zone(s)")


@app.command()
def detect(paths: List[Path] = typer.Argument(..., help="image files or folders of images"),
           model: Path = typer.Option(DEFAULT_MODEL, help="ONNX model (its .card.yaml sits next to it)"),
           confidence: float = typer.Option(0.25, min=0.0, max=1.0, help="minimum confidence"),
           as_json: bool = typer.Option(False, "--json", help="one JSON line per image")) -> None:
    """Run the detector on images and print what it finds, one line per image."""
    from vision.bench import detect_images
    from vision.detector import OnnxDetector
    from vision.errors import ModelError
    try:
        detector = OnnxDetector(str(model), confidence=confidence)
    except ModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    failed = False
    for result in detect_images([str(p) for p in paths], detector):
        failed |= "error" in result
        if as_json:
            typer.echo(json.dumps(result, ensure_ascii=False))
        elif "error" in result:
            typer.echo(f"{result['image']}: ERROR {result['error']}")
        else:
            found = ", ".join(f"{d['class']} {d['confidence']:.2f}" for d in result["detections"]) or "nothing"
            typer.echo(f"{result['image']}: {found}")
    if failed:
        raise typer.Exit(1)


@bench_app.command("detector")
def bench_detector_cmd(model: Path = typer.Option(DEFAULT_MODEL, help="ONNX model to measure"),
                       runs: int = typer.Option(50, min=1, help="timed runs"),
                       threads: int = typer.Option(2, min=1, help="onnxruntime intra-op threads"),
                       compare: List[Path] = typer.Option([], help="another ONNX model (its card beside it) to time "
                                                                   "in the same run; repeatable (the teacher always is)"),
                       ops: bool = typer.Option(False, "--ops", help="also profile each model by operator type "
                                                                    "(onnxruntime's profiler): where its time goes"),
                       as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Milliseconds per frame of the model at its input size, measured with onnxruntime here, with the
    YOLOX teacher (when ../shared/weights has it) and any --compare models timed in the same run."""
    from vision.bench import bench_detector, teacher_beside
    from vision.errors import ModelError
    others = [(str(p), None) for p in compare] + teacher_beside(model)
    try:
        result = bench_detector(str(model), runs=runs, threads=threads, compare=others, ops=ops)
    except ModelError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(json.dumps(result, indent=None if as_json else 2, ensure_ascii=False))


@bench_app.command("ring")
def bench_ring_cmd(seconds: float = typer.Option(10.0, help="pre-roll the ring must hold"),
                   bitrate_kbps: int = typer.Option(4000, help="H.264 bitrate of the generated 1080p25 stream"),
                   as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Bytes per camera of the clip ring for a 1080p 25 fps main stream: compressed packets vs JPEG frames."""
    from vision.bench_ring import bench_ring
    result = bench_ring(pre_roll_s=seconds, bitrate_kbps=bitrate_kbps)
    typer.echo(json.dumps(result, indent=None if as_json else 2, ensure_ascii=False))


def _settings(database_url: Optional[str], storage_url: Optional[str]):
    from service.settings import Settings
    overrides = {k: v for k, v in (("database_url", database_url), ("storage_url", storage_url)) if v}
    return Settings(**overrides)


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="address to bind (loopback by default)"),
          port: int = typer.Option(8000, help="TCP port"),
          database_url: Optional[str] = typer.Option(None, help="SQLAlchemy URL (default: SQLite file in var/)"),
          storage_url: Optional[str] = typer.Option(None, help="file://folder or s3://bucket/prefix"),
          workers: int = typer.Option(1, min=1, help="API processes (uvicorn workers) sharing the port, one per "
                                                   "core to use; with more than one, the live alert feed is per "
                                                   "process and login throttling needs a redis:// "
                                                   "COMPOUNDEYE_RATE_LIMIT_STORAGE to count across them"),
          verbose: bool = typer.Option(False, "-v", "--verbose")) -> None:
    """Serve the review API, evidence and pages (runs database migrations first)."""
    import uvicorn
    from service.app import create_app
    _logging(verbose)
    settings = _settings(database_url, storage_url)
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
        return
    # Each worker process builds its app from the environment; the migrations run once, here, not in
    # every worker at the same time.
    if settings.migrate_on_startup:
        from service.db import upgrade
        upgrade(settings.database_url)
    os.environ.update({"COMPOUNDEYE_DATABASE_URL": settings.database_url,
                       "COMPOUNDEYE_STORAGE_URL": settings.storage_url, "COMPOUNDEYE_MIGRATE_ON_STARTUP": "false"})
    uvicorn.run("service.app:create_app", factory=True, host=host, port=port, workers=workers, log_level="info")


@app.command()
def worker(config: Path = typer.Argument(..., help="the site YAML file"),
           api_url: Optional[str] = typer.Option(None, help="review API base URL (default: from the site file)"),
           realtime: bool = typer.Option(True, help="pace file sources at their real speed"),
           shard: Optional[str] = typer.Option(None, help="i/n: run only shard i of n of the cameras (see docs/live.md)"),
           metrics_port: Optional[int] = typer.Option(None, help="serve Prometheus /metrics on 127.0.0.1:PORT"),
           verbose: bool = typer.Option(False, "-v", "--verbose")) -> None:
    """Watch the site's cameras and post violations to the review API. The worker key is read from the
    environment variable named in the site file (COMPOUNDEYE_API_KEY by default)."""
    from vision.worker import Worker
    _logging(verbose)
    site = _load_site(config)
    key = os.environ.get(site.api.api_key_env)
    if not key:
        typer.echo(f"error: set the worker key in the environment variable {site.api.api_key_env}", err=True)
        raise typer.Exit(2)
    from vision.stream_camera import apply_worker_options
    site = apply_worker_options(site, shard, metrics_port)
    w = Worker(site, config, api_key=key, api_url=api_url, realtime=realtime)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    w.start()
    try:
        while not w.wait(timeout_s=1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        w.stop()


@db_app.command("upgrade")
def db_upgrade(database_url: Optional[str] = typer.Option(None)) -> None:
    """Apply the database migrations."""
    from service.db import upgrade
    upgrade(_settings(database_url, None).database_url)
    typer.echo("database is up to date")


@app.command()
def demo(port: int = typer.Option(8000, help="TCP port on 127.0.0.1"),
         config: Path = typer.Option(ROOT / "configs" / "demo.yaml", help="site file with the sample footage"),
         state_dir: Path = typer.Option(ROOT / "var" / "demo", help="where the demo keeps its database and evidence"),
         fresh: bool = typer.Option(True, help="start from an empty database"),
         duration_s: float = typer.Option(0, help="stop after this many seconds (0: run until Ctrl-C)")) -> None:
    """Start the whole system on embedded defaults: SQLite, local evidence folder, the sample footage
    looping as live cameras. Opens the monitoring page at http://127.0.0.1:PORT/."""
    from service.demo import run_demo
    _logging(False)
    site = _load_site(config)
    raise typer.Exit(run_demo(site, config, port=port, state_dir=state_dir, fresh=fresh, duration_s=duration_s))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
