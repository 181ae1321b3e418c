"""Benchmarks. With no sub-command: the GPU benchmark (bench/bench_e2e.py) in one JSON: render FPS
(batch 1 and 64), end-to-end latency (text -> speech -> audio code -> frames -> mp4, stand-ins flagged
where a stage cannot run on the host), training time (--train, with --dataset) and preprocessing time
(--preprocess CLIP), with the machine, GPU, torch version, git commit and date. On a machine without
CUDA it runs what it can at a small size and the JSON says "no GPU".

Sub-commands run one of the other scripts in bench/ with its own arguments (see each script's --help):
model: training, held-out metrics and render FPS (GPU host); speech: audio-code and TTS timings;
preprocess: dataset building stages and timings; sync: lip-sync tables on real clips or renders.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("run the GPU benchmark (render FPS, latency, training, preprocessing), or one script: "
        "model | speech | preprocess | sync")
SCRIPTS = ("model", "speech", "preprocess", "sync")
BENCH = Path(__file__).resolve().parents[2] / "bench"


def _script(name: str) -> Path:
    from emotalk.errors import InputError

    script = BENCH / f"bench_{name}.py"
    if not script.is_file():
        raise InputError(f"{script} is missing: the benchmarks come with the source checkout (git clone).")
    return script


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("which", nargs="?", choices=SCRIPTS,
                   help="one benchmark script (its arguments follow); none: the GPU benchmark")
    p.add_argument("--out", type=Path, default=None, help="GPU benchmark: folder for bench.json (out/bench)")
    p.add_argument("--identity", type=Path, default=None,
                   help="GPU benchmark: identity for render FPS and latency (checkpoints/obama)")
    p.add_argument("--dataset", type=Path, default=None,
                   help="GPU benchmark: dataset (speech / audio-code stand-ins; training with --train)")
    p.add_argument("--train", action="store_true", help="GPU benchmark: also time training (fast preset)")
    p.add_argument("--preprocess", type=Path, default=None, metavar="CLIP",
                   help="GPU benchmark: also time preprocessing of CLIP")
    p.add_argument("--device", default="auto", help="GPU benchmark: auto | cuda | cpu")
    p.add_argument("--size", type=int, default=None, help="GPU benchmark: render side (identity's)")
    p.add_argument("--seconds", type=float, default=None, help="GPU benchmark: speech length end to end")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for that script (try --help)")


def run(args: argparse.Namespace) -> int:
    import runpy
    import sys

    from emotalk.errors import InputError

    if args.which is None:
        if args.args:
            raise InputError(f"Unknown arguments {' '.join(args.args)}; "
                             f"sub-commands are {', '.join(SCRIPTS)}.")
        for name in ("identity", "dataset"):  # a missing --preprocess clip is reported in the JSON
            p = getattr(args, name)
            if p is not None and not p.exists():
                raise InputError(f"--{name} {p} does not exist.")
        if args.size is not None and (args.size < 16 or args.size % 2):
            raise InputError(f"--size must be an even number of pixels >= 16, got {args.size}.")
        if args.train and args.dataset is None:
            raise InputError("--train needs --dataset DIR (the dataset to train on).")
        mod = runpy.run_path(str(_script("e2e")))
        root = BENCH.parent
        identity = args.identity or root / "checkpoints" / "obama"
        mod["run_bench"](args.out or root / "out" / "bench", identity if identity.exists() else None,
                         args.dataset, args.train, args.preprocess, args.device, args.size, args.seconds,
                         log=lambda m: print(m, file=sys.stderr, flush=True))
        return 0
    script = _script(args.which)
    sys.argv = [str(script), *args.args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    return 0
