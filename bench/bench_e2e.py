"""The GPU benchmark: render FPS, end-to-end latency, training and preprocessing time, in one JSON.

The same as `python -m emotalk bench e2e ...`; the code is emotalk/cli/bench/e2e.py (see --help).
Needs the package importable: `bash scripts/setup.sh` installs it into .venv (editable).
"""

from __future__ import annotations

import sys

from emotalk.cli.bench.e2e import main

if __name__ == "__main__":
    sys.exit(main())
