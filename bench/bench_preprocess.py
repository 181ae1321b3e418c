"""Time `preprocess`, or run its parts (prepare / parse / finish) on different machines.

The same as `python -m emotalk bench preprocess ...`; the code is emotalk/cli/bench/preprocess.py
(see --help).
Needs the package importable: `bash scripts/setup.sh` installs it into .venv (editable).
"""

from __future__ import annotations

import sys

from emotalk.cli.bench.preprocess import main

if __name__ == "__main__":
    sys.exit(main())
