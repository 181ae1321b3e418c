"""Time the app's fine-tune path stage by stage, then render with the new identity.

The same as `python -m emotalk bench finetune ...`; the code is emotalk/cli/bench/finetune.py (see --help).
Needs the package importable: `bash scripts/setup.sh` installs it into .venv (editable).
"""

from __future__ import annotations

import sys

from emotalk.cli.bench.finetune import main

if __name__ == "__main__":
    sys.exit(main())
