"""Site configuration: valid files load; every kind of mistake is named with file, line, key and reason."""
import subprocess
import sys
from pathlib import Path

import pytest

from vision.config import Schedule, ScheduleWindow, load_site_config
from vision.errors import ConfigError
from site_files import problems, write

GOOD = """\
version: 1
timezone: Asia/Shanghai
detector:
  model: model.onnx
compounds:
  - id: sunrise
    cameras:
      - id: gate
        source: clip.mp4
        zones:
          - id: lane
            kind: fire_lane
            polygon: [[0.1, 0.5], [0.9, 0.5], [0.9, 0.9], [0.1, 0.9]]
            rules: [fire_lane]
            overrides:
              fire_lane: {dwell_s: 30}
"""


def test_good_file_loads_and_applies_zone_overrides(tmp_path):
    site = load_site_config(write(tmp_path, GOOD))
    zone = site.compounds[0].cameras[0].zones[0]
    assert site.rule_params("fire_lane", zone).dwell_s == 30
    assert site.rules.fire_lane.dwell_s == 120  # the rule default (2 min) is untouched
    with pytest.raises(Exception):
        site.timezone = "UTC"  # frozen


def test_unknown_key_is_named_with_line(tmp_path):
    err = problems(tmp_path, GOOD.replace("        source: clip.mp4", "        source: clip.mp4\n        fps: 5"))
    assert err.path.endswith("site.yaml")
    [(key, reason)] = err.problems
    assert "compounds[0].cameras[0].fps" in key and "line 10" in key
    assert reason == "unknown key (camera gate)"


def test_bad_polygons(tmp_path):
    bowtie = "[[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]"
    err = problems(tmp_path, GOOD.replace("[[0.1, 0.5], [0.9, 0.5], [0.9, 0.9], [0.1, 0.9]]", bowtie))
    assert "zones[0].polygon" in err.problems[0][0] and "Self-intersection" in err.problems[0][1]
    err = problems(tmp_path, GOOD.replace("[0.9, 0.9], [0.1, 0.9]]", "[1.5, 0.9]]"))
    assert "outside 0..1" in err.problems[0][1]
    err = problems(tmp_path, GOOD.replace("[[0.1, 0.5], [0.9, 0.5], [0.9, 0.9], [0.1, 0.9]]", "[[0.1, 0.5], [0.9, 0.5]]"))
    assert "at least 3 points" in err.problems[0][1]


def test_out_of_range_and_bad_override(tmp_path):
    err = problems(tmp_path, GOOD.replace("{dwell_s: 30}", "{dwell_s: -5, speed: 3}"))
    text = str(err)
    assert "overrides.fire_lane" in text and "greater than 0" in text and "unknown" in text
    err = problems(tmp_path, GOOD.replace("timezone: Asia/Shanghai", "timezone: Mars/Olympus"))
    assert "timezone" in err.problems[0][0] and "unknown time zone" in err.problems[0][1]


def test_missing_files_are_named(tmp_path):
    path = write(tmp_path, GOOD)
    (tmp_path / "clip.mp4").unlink()
    (tmp_path / "model.onnx").unlink()
    with pytest.raises(ConfigError) as info:
        load_site_config(path)
    text = str(info.value)
    assert "detector.model: file not found" in text and "compounds[0].cameras[0].source: file not found" in text


def test_secrets_written_in_urls_are_refused_and_not_quoted(tmp_path):
    """Camera passwords and MQTT credentials come from the environment (${VAR}); a site file that spells
    one out is refused, naming the line and the field, without repeating the secret."""
    literal = GOOD.replace("source: clip.mp4", "source: rtsp://admin:Hunter2-cam@192.0.2.10:554/ch1\n"
                           "        main_source: rtsp://192.0.2.10/ch0?user=admin&password=Hunter2-main")
    literal += "live:\n  mqtt_url: mqtt://bus:Hunter2-mqtt@127.0.0.1:1883\n"
    text = str(problems(tmp_path, literal))
    assert "line 9: compounds[0].cameras[0].source: password written in the URL" in text
    assert "line 10: compounds[0].cameras[0].main_source: query parameter 'password' written in the URL" in text
    assert "line 19: live.mqtt_url: password written in the URL" in text
    assert "Hunter2" not in text
    from_env = GOOD.replace("source: clip.mp4", "source: rtsp://${CAM_USER}:${CAM_PASS}@192.0.2.10:554/ch1\n"
                            "        main_source: rtsp://admin@192.0.2.10/ch0?user=admin&password=${CAM_PASS}")
    from_env += "live:\n  mqtt_url: mqtt://bus:${MQTT_PASS}@127.0.0.1:1883\n"
    site = load_site_config(write(tmp_path, from_env))
    assert site.compounds[0].cameras[0].source.startswith("rtsp://${CAM_USER}:${CAM_PASS}@")


def test_committed_site_files_load():
    """The example and demo site files keep to the rules above (their secrets are ${VAR} references)."""
    configs = Path(__file__).resolve().parent.parent / "configs"
    for name in ("site.example.yaml", "demo.yaml"):
        load_site_config(configs / name)


def test_duplicate_ids_and_bad_yaml(tmp_path):
    dup = GOOD + GOOD[GOOD.index("  - id: sunrise"):]
    assert "duplicate compound ids" in str(problems(tmp_path, dup))
    assert "not valid YAML" in str(problems(tmp_path, "detector: [unclosed\n"))


def test_schedule_windows_in_site_time_zone():
    from zoneinfo import ZoneInfo
    tz = ZoneInfo("Asia/Shanghai")
    night = Schedule(windows=(ScheduleWindow(start="22:00", end="06:00"),))
    # 2026-11-23 23:30 Shanghai == 15:30 UTC
    import datetime as dt
    t = dt.datetime(2026, 11, 23, 23, 30, tzinfo=tz).timestamp()
    assert night.armed(t, tz)
    assert night.armed(t + 6 * 3600, tz)          # 05:30 next morning, still armed
    assert not night.armed(t + 8 * 3600, tz)      # 07:30
    weekdays = Schedule(windows=(ScheduleWindow(days=("mon",), start="08:00", end="09:00"),))
    monday_0830 = dt.datetime(2026, 11, 23, 8, 30, tzinfo=tz).timestamp()
    assert weekdays.armed(monday_0830, tz) and not weekdays.armed(monday_0830 + 86400, tz)
    with pytest.raises(Exception):
        ScheduleWindow(start="25:00")


def test_cli_config_check_exit_codes(tmp_path):
    good = write(tmp_path, GOOD)
    ok = subprocess.run([sys.executable, "-m", "service.cli", "config", "check", str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("kind: fire_lane", "kind: firelane"))
    res = subprocess.run([sys.executable, "-m", "service.cli", "config", "check", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2
    assert str(bad) in res.stderr and "compounds[0].cameras[0].zones[0].kind" in res.stderr


def test_example_configs_are_valid():
    root = Path(__file__).resolve().parents[1]
    for name in ("site.example.yaml", "demo.yaml"):
        path = root / "configs" / name
        if name == "demo.yaml" or (root / "models" / "car-v1.onnx").exists():
            load_site_config(path)
