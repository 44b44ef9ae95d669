#!/usr/bin/env bash
# Sets up everything CompoundEye needs on a fresh Debian machine: Debian packages (when run as root),
# the virtual environment .venv and the Python packages. Safe to run again: it skips what is done.
#   scripts/setup.sh          runtime + test dependencies
#   scripts/setup.sh train    also the training extra in .venv-train (torch, ultralytics; ~6 GB)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libgl1 libglib2.0-0 fonts-dejavu-core fonts-noto-cjk chromium ffmpeg gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-tools libpango-1.0-0 libpangoft2-1.0-0 poppler-utils)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages (run as root to install): ${missing[*]}" >&2
  fi
fi

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3; do
    if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then PY=$c; break; fi
  done
fi
[ -n "$PY" ] || { echo "setup: Python 3.11 is required" >&2; exit 1; }

stamp_of() { cat pyproject.toml "$0" | sha256sum | cut -c1-16; }
if [ ! -x .venv/bin/python ]; then "$PY" -m venv .venv; fi
if [ "$(cat .venv/.stamp 2>/dev/null)" != "$(stamp_of)" ]; then
  echo "setup: installing Python packages into .venv"
  # setuptools too: the one python3.11 -m venv puts in is 65.5.0, with known advisories (CVE-2022-40897,
  # CVE-2024-6345, CVE-2025-47273; fixed by 78.1.1)
  .venv/bin/pip install -q --disable-pip-version-check -U pip "setuptools>=78.1.1" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c 'import vision, service, cv2, av, onnxruntime, fastapi' 
  stamp_of > .venv/.stamp
fi

if [ "${1:-}" = train ]; then
  if [ ! -x .venv-train/bin/python ]; then "$PY" -m venv .venv-train; fi
  .venv-train/bin/pip install -q --disable-pip-version-check -e '.[train]' 2>&1 | grep -v "^WARNING: Location" || true
  mkdir -p .yolo/Ultralytics
  for f in Arial.ttf Arial.Unicode.ttf; do
    [ -f .yolo/Ultralytics/$f ] || cp /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf .yolo/Ultralytics/$f
  done
fi
echo "setup: ready"
