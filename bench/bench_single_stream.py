"""Single-stream render speed: plain `TalkingGaussians.render` against the fast paths, in one JSON.

The same as `python -m emotalk.cli.bench.single_stream ...`; the code is emotalk/cli/bench/single_stream.py
(see --help). Needs the package importable: `bash scripts/setup.sh` installs it into .venv (editable).
"""

from __future__ import annotations

import sys

from emotalk.cli.bench.single_stream import main

if __name__ == "__main__":
    sys.exit(main())
