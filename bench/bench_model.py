"""Benchmark the Gaussian talking head on a GPU: training, held-out metrics, render FPS.

The same as `python -m emotalk bench model ...`; the code is emotalk/cli/bench/model.py (see --help).
Needs the package importable: `bash scripts/setup.sh` installs it into .venv (editable).
"""

from __future__ import annotations

import sys

from emotalk.cli.bench.model import main

if __name__ == "__main__":
    sys.exit(main())
