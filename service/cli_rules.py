"""`compoundeye evaluate-rules`: event-level precision, recall and time-to-alert of the rules on
labelled clips and image sequences (see :mod:`vision.evaluate_rules`)."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import List, Optional

import typer

ROOT = Path(__file__).resolve().parents[1]


def evaluate_rules(
        paths: Optional[List[Path]] = typer.Argument(None, help="clips (x.mp4 with x.json), image folders (with "
                                                              "sequence.json) or folders of clips; default "
                                                              "samples/footage"),
        config: Path = typer.Option(ROOT / "configs" / "demo.yaml", help="site file: its cameras' zones and "
                                    "rule parameters are used for clips they watch, its `rules:` for the others"),
        camera: Optional[str] = typer.Option(None, help="apply this site camera's zones and parameters to every "
                                             "input (e.g. a clean clip of the scene it watches)"),
        model: Optional[Path] = typer.Option(None, help="use this ONNX model instead of the site's detector.model"),
        extra_model: Optional[List[Path]] = typer.Option(None, help="extra model merged in (repeatable; replaces "
                                                         "the site's extra_models)"),
        extra_card: Optional[List[Path]] = typer.Option(None, help="model card for each --extra-model, in order"),
        as_json: bool = typer.Option(False, "--json", help="print the full report as JSON"),
        verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Run the rules over labelled footage and report, per rule, precision, recall and time to alert
    (raise time − (labelled start + dwell)). Exit code 1 if an input cannot be evaluated."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from vision.config import ExtraModel, load_site_config
    from vision.detector import build_detector
    from vision.errors import CompoundEyeError, ConfigError
    from vision.evaluate_rules import evaluate_media, find_inputs, format_table, np_default, summarise

    try:
        site = load_site_config(config)
    except ConfigError as exc:
        typer.echo(f"invalid configuration:\n{exc}", err=True)
        raise typer.Exit(2)
    update = {}
    if model is not None:
        update["model"] = str(model.resolve())
    if extra_model:
        cards = list(extra_card or [])
        update["extra_models"] = tuple(
            ExtraModel(model=str(m.resolve()), card=str(cards[i].resolve()) if i < len(cards) else None)
            for i, m in enumerate(extra_model))
    if update:
        site = site.model_copy(update={"detector": site.detector.model_copy(update=update)})
    inputs = find_inputs(list(paths or [ROOT / "samples" / "footage"]))
    if not inputs:
        typer.echo("no labelled clips or sequences found", err=True)
        raise typer.Exit(1)
    try:
        detector = build_detector(site, config)
        results = [evaluate_media(site, config, p, detector, camera_id=camera) for p in inputs]
    except CompoundEyeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    summary = summarise(results)
    summary["model_version"] = detector.model_version
    summary["config"] = str(config)
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False, indent=1, default=np_default))
    else:
        typer.echo(f"model {detector.model_version}, rules from {config}\n")
        typer.echo(format_table(summary))
