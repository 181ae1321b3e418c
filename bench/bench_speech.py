"""Speech benchmarks: audio-code speed, transcription and TTS timings (--gpudata: files for the GPU test).

The same as `python -m emotalk bench speech ...`; the code is emotalk/cli/bench/speech.py (see --help).
Needs the package importable: `bash scripts/setup.sh` installs it into .venv (editable).
"""

from __future__ import annotations

import sys

from emotalk.cli.bench.speech import main

if __name__ == "__main__":
    sys.exit(main())
