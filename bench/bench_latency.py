"""Streaming latency: time to the first playable segment and to the complete mp4 (cold and warm).

The same as `python -m emotalk bench latency ...`; the code is emotalk/cli/bench/latency.py (see --help).
Needs the package importable: `bash scripts/setup.sh` installs it into .venv (editable).
"""

from __future__ import annotations

import sys

from emotalk.cli.bench.latency import main

if __name__ == "__main__":
    sys.exit(main())
