"""Audio-driven emotion benchmark: drives | render | measure (issue 17's table, issue 16's drive table).

The same as `python -m emotalk bench emotion-audio ...`; the code is emotalk/cli/bench/emotion_audio.py
(see --help). Needs the package importable: `bash scripts/setup.sh` installs it into .venv (editable).
"""

from __future__ import annotations

import sys

from emotalk.cli.bench.emotion_audio import main

if __name__ == "__main__":
    sys.exit(main())
