"""Lip-sync benchmark: the sync tables of BENCHMARKS.md, on real clips and on renders.

The same as `python -m emotalk bench sync ...`; the code is emotalk/cli/bench/sync.py (see --help).
Needs the package importable: `bash scripts/setup.sh` installs it into .venv (editable).
"""

from __future__ import annotations

import sys

from emotalk.cli.bench.sync import main

if __name__ == "__main__":
    sys.exit(main())
