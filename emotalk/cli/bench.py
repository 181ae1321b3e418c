"""Run one of the benchmark scripts in bench/ with its own arguments (see each script's --help).

model: training, held-out metrics and render FPS (GPU host); speech: audio-code and TTS timings;
preprocess: dataset building stages and timings; sync: lip-sync tables on real clips or renders.
Results are written where each script's --out says (JSON and markdown tables).
"""

from __future__ import annotations

import argparse

HELP = "run a benchmark: model | speech | preprocess | sync (arguments go to bench/bench_*.py)"
SCRIPTS = ("model", "speech", "preprocess", "sync")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("which", choices=SCRIPTS, help="which benchmark")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for that script (try --help)")


def run(args: argparse.Namespace) -> int:
    import runpy
    import sys
    from pathlib import Path

    from emotalk.errors import InputError

    script = Path(__file__).resolve().parents[2] / "bench" / f"bench_{args.which}.py"
    if not script.is_file():
        raise InputError(f"{script} is missing: the benchmarks come with the source checkout (git clone).")
    sys.argv = [str(script), *args.args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0
