"""``compoundeye rescan SRC`` and ``compoundeye bench rescan``: re-scan stored footage (issue 10).

The work is done by :mod:`vision.rescan`; this module parses options, draws the progress bars
(rich) and sets the exit code: 0 every file scanned, 3 partial (bad files are listed in the
report), 4 cancelled, 2 bad usage or configuration.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Optional

import typer

ROOT = Path(__file__).resolve().parents[1]


def _progress_ui(enabled: bool):
    """A rich progress display with one bar for the job and one per file in flight."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn
    console = Console(stderr=True)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                        TextColumn("{task.fields[info]}"), console=console, disable=not enabled,
                        refresh_per_second=4)
    return progress


class _Bars:
    def __init__(self, progress):
        self.progress = progress
        self.job = progress.add_task("job", total=1, info="discovering files…")
        self.files: dict[str, int] = {}
        self.lock = threading.Lock()

    def on_progress(self, p) -> None:
        with self.lock:
            xrt = f"{p.x_realtime:.1f}× real time" if p.x_realtime else "–× real time"
            eta = f"ETA {int(p.eta_s // 60)}:{int(p.eta_s % 60):02d}" if p.eta_s is not None else "ETA –"
            done = p.files_done + p.files_bad
            self.progress.update(self.job, total=max(p.bytes_total, 1), completed=p.bytes_done,
                                 description=f"files {done}/{p.files_total}",
                                 info=f"{xrt} · {eta} · {p.files_bad} bad · {p.violations} violations")
            for name, fraction in p.current.items():
                if name not in self.files:
                    self.files[name] = self.progress.add_task(f"  {name[-40:]}", total=1.0, info="")
                self.progress.update(self.files[name], completed=fraction)
            for name in [n for n in self.files if n not in p.current]:
                self.progress.remove_task(self.files.pop(name))


def rescan(source: str = typer.Argument(..., help="a folder, a glob ('nvr/**/*.mp4') or s3://bucket/prefix"),
           config: Path = typer.Option(..., "--config", "-c", help="the site YAML (cameras, zones, rules)"),
           mode: str = typer.Option("sampled", help="sampled | keyframes | adaptive"),
           fps: Optional[float] = typer.Option(None, help="sampling rate of sampled/adaptive (default: each "
                                                          "camera's sample_fps, as live)"),
           pattern: str = typer.Option("{camera}/%Y%m%d/%H%M%S.*", help="file naming pattern relative to SRC: "
                                       "{camera}, %Y %m %d %H %M %S %z, *; a sidecar <file>.json may give "
                                       "camera_id and start_time instead"),
           camera: Optional[str] = typer.Option(None, help="the camera of every file (overrides the name)"),
           model: Optional[Path] = typer.Option(None, help="ONNX model (default: the site file's)"),
           report: Optional[Path] = typer.Option(None, help="write the JSON report here"),
           executor: str = typer.Option("local", help="local | dask"),
           processes: int = typer.Option(1, min=1, help="worker processes (local pool, or LocalCluster workers)"),
           scheduler: Optional[str] = typer.Option(None, help="Dask scheduler address (tcp://host:8786); without "
                                                              "it --executor dask starts a LocalCluster on 127.0.0.1"),
           state_dir: Optional[Path] = typer.Option(None, help="checkpoint/evidence folder (default "
                                                               "var/rescan/<job fingerprint>)"),
           fresh: bool = typer.Option(False, help="forget the checkpoint and scan every file again"),
           post_to: Optional[str] = typer.Option(None, help="review API base URL: create the violations there "
                                                            "(idempotent); key from the site file's api_key_env"),
           compare_with: Optional[Path] = typer.Option(None, help="an earlier report: list violations found by "
                                                                  "only one of the two runs"),
           progress: bool = typer.Option(True, help="progress bars on stderr"),
           verbose: bool = typer.Option(False, "-v", "--verbose")) -> None:
    """Re-scan stored footage with the live rules and settings; resumable (re-run to resume)."""
    import logging
    from service.cli import _load_site, _logging
    from vision.config import resolve_path
    from vision.errors import CompoundEyeError
    from vision.rescan import MODES, JobSpec, RescanJob, compare_reports, post_violations
    from vision.rescan.executors import make_executor
    from vision.rescan.job import CheckpointMismatch, file_sha256
    from vision.rescan.report import write_json

    _logging(verbose)
    if not verbose:
        logging.getLogger("vision").setLevel(logging.WARNING)
    if mode not in MODES:
        typer.echo(f"error: --mode must be one of {', '.join(MODES)}", err=True)
        raise typer.Exit(2)
    site = _load_site(config)
    model_path = str(model or resolve_path(config, site.detector.model))
    api_key = None
    if post_to:
        api_key = os.environ.get(site.api.api_key_env)
        if not api_key:
            typer.echo(f"error: --post-to needs the worker key in {site.api.api_key_env}", err=True)
            raise typer.Exit(2)
    other = None
    if compare_with:
        try:
            other = json.loads(compare_with.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            typer.echo(f"error: cannot read --compare-with {compare_with}: {exc}", err=True)
            raise typer.Exit(2)
    try:
        runner = make_executor(executor, processes, scheduler)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    threads = max(1, site.detector.threads // processes) if executor == "local" else 1
    spec = JobSpec(source, site, file_sha256(config), model_path, mode, fps, pattern, camera, state_dir, threads)
    ui = _progress_ui(progress)
    with ui:
        bars = _Bars(ui)
        job = RescanJob(spec, runner, state_root=ROOT / "var" / "rescan", fresh=fresh, on_progress=bars.on_progress)
        outcome: dict = {}

        def work() -> None:
            try:
                outcome["report"] = job.run()
            except BaseException as exc:  # shown below, in the main thread
                outcome["error"] = exc

        thread = threading.Thread(target=work, name="rescan-job")
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.2)
        except KeyboardInterrupt:
            typer.echo("cancelling: files in flight are dropped and scanned again by the next run", err=True)
            job.cancel()
            thread.join()
    error = outcome.get("error")
    if isinstance(error, (CheckpointMismatch, CompoundEyeError)):
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2)
    if error is not None:
        raise error
    result = outcome["report"]
    if other is not None:
        result["compare"] = compare_reports(result, other)
    if post_to:
        result["post"] = post_violations(result, job.state_dir, post_to, api_key)
    if report:
        write_json(report, result)
    t, run = result["totals"], result["run"]
    typer.echo(f"{t['files_done']}/{t['files']} files scanned ({run['files_resumed']} from the checkpoint), "
               f"{t['files_bad']} bad, {t['violations']} violations; this run: {run['footage_scanned_s']:.0f} s "
               f"of footage in {run['elapsed_s']:.1f} s"
               + (f" = {run['x_realtime']}× real time" if run["x_realtime"] else ""))
    for bad in result["bad_files"]:
        typer.echo(f"  bad: {bad['name']}: {bad['reason']}")
    if "compare" in result:
        c = result["compare"]
        typer.echo(f"compare: {c['matched'] + len(c['matched_by_time'])} in both, {len(c['only_in_this'])} only "
                   f"in this run, {len(c['only_in_other'])} only in {compare_with}")
        for v in c["only_in_this"]:
            typer.echo(f"  only this run:  {v['start_time']} {v['camera_id']} {v['rule']} {v['zone_id']} {v['id']}")
        for v in c["only_in_other"]:
            typer.echo(f"  only other run: {v['start_time']} {v['camera_id']} {v['rule']} {v['zone_id']} {v['id']}")
    if "post" in result:
        p = result["post"]
        typer.echo(f"posted to {p['url']}: {p['delivered']} delivered, {p['pending']} pending, {p['parked']} refused")
    if report:
        typer.echo(f"report: {report}")
    raise typer.Exit(job.exit_code)


def bench_rescan(minutes: float = typer.Option(30.0, min=0.5, help="total footage to generate (several files)"),
                 file_minutes: float = typer.Option(5.0, min=0.5, help="length of each generated file"),
                 out_dir: Path = typer.Option(ROOT / "var" / "bench-rescan", help="footage and work folder"),
                 baseline: bool = typer.Option(True, help="run the ultralytics baseline in .venv-train when present"),
                 footage_fps: int = typer.Option(25, min=1, max=60,
                                                 help="frame rate of the generated footage (25: a PAL-region NVR's default)"),
                 as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """× real time of the re-scan modes (keyframes, sampled 1 fps, adaptive; 1 and 2 processes) on
    generated 1080p H.264 footage (keyframe every 2 s, moving and parked cars, 25 fps unless told),
    and of the ultralytics baseline with the same ONNX model and sampling."""
    from vision.rescan.bench import bench_rescan as run_bench
    result = run_bench(minutes=minutes, file_minutes=file_minutes, out_dir=out_dir, baseline=baseline,
                       footage_fps=footage_fps, log=lambda msg: typer.echo(msg, err=True))
    typer.echo(json.dumps(result, indent=None if as_json else 2, ensure_ascii=False))
