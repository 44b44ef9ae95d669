"""The re-scan bench's footage generator: frames at a higher rate than the source clip are blended
from the source frames around them, source frames pass through unchanged, and a rendered file has
the rate, keyframe interval and length asked for."""
from __future__ import annotations

import av
import numpy as np
import pytest

from vision.rescan.bench import SAMPLES, make_bench_footage, render_footage, resample
from vision.sources import probe


def _frames(n: int, rate: float) -> list[tuple[float, np.ndarray]]:
    return [(i / rate, np.full((2, 2, 3), 10 * i, np.uint8)) for i in range(n)]


def test_resample_blends_between_source_frames_and_keeps_them_on_their_times():
    out = list(resample(_frames(6, 10.0), 0.0, 0.5, 25.0))
    assert len(out) == 13   # t = 0, 0.04, …, 0.48: the times in [0, 0.5) at 25 fps
    # t = 0, 0.2, 0.4 fall on source frames 0, 2, 4
    assert [int(out[i][0, 0, 0]) for i in (0, 5, 10)] == [0, 20, 40]
    # t = 0.04: 40 % of the way from frame 0 (0) to frame 1 (10)
    assert int(out[1][0, 0, 0]) == 4
    # t = 0.12: between frame 1 (10) and frame 2 (20), 20 % of the way
    assert int(out[3][0, 0, 0]) == 12
    values = [int(o[0, 0, 0]) for o in out]
    assert values == sorted(values) and len(set(values)) == len(values)   # every frame differs


def test_resample_at_the_source_rate_is_the_source_and_holds_the_last_frame():
    src = _frames(4, 10.0)
    assert [int(o[0, 0, 0]) for o in resample(src, 0.0, 0.4, 10.0)] == [0, 10, 20, 30]
    # asked past the clip's last frame: the last frame is held
    assert [int(o[0, 0, 0]) for o in resample(src, 0.0, 0.6, 10.0)] == [0, 10, 20, 30, 30, 30]
    assert list(resample(iter([]), 0.0, 1.0, 25.0)) == []


def test_rendered_footage_has_the_rate_keyframes_and_length(tmp_path):
    path = render_footage(tmp_path / "a.mp4", [(SAMPLES / "gate_traffic.mp4", 0.0, 4.0)], 320, 180, fps=25)
    info = probe(path)
    assert info["fps"] == pytest.approx(25.0) and info["frames"] == 100
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        keys = [float(p.pts * stream.time_base) for p in container.demux(stream) if p.is_keyframe and p.pts is not None]
    assert keys == pytest.approx([0.0, 2.0])


def test_bench_footage_names_its_rate(tmp_path):
    root10, files10 = make_bench_footage(tmp_path, 0.1, 0.1, 160, 90, fps=10, log=lambda m: None)
    root25, files25 = make_bench_footage(tmp_path, 0.1, 0.1, 160, 90, fps=25, log=lambda m: None)
    assert root10 != root25
    assert probe(files10[0])["fps"] == pytest.approx(10.0) and probe(files25[0])["fps"] == pytest.approx(25.0)
    assert probe(files25[0])["frames"] == 150
