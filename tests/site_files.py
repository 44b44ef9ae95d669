"""A site file written for a config test, beside the model and footage files it names."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from vision.config import load_site_config
from vision.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    """``text`` (dedented) as ``tmp_path/site.yaml``, with the ``model.onnx`` and ``clip.mp4`` it may name."""
    (tmp_path / "model.onnx").write_bytes(b"x")
    (tmp_path / "clip.mp4").write_bytes(b"x")
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(tmp_path: Path, text: str) -> ConfigError:
    """The :class:`ConfigError` that loading the site file ``text`` raises (the test fails if none)."""
    with pytest.raises(ConfigError) as info:
        load_site_config(write(tmp_path, text))
    return info.value
