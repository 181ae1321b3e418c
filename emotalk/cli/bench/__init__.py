"""Benchmarks. With no sub-command: the GPU benchmark (e2e) in one JSON: render FPS (batch 1 and 64),
end-to-end latency (text -> speech -> audio code -> frames -> mp4, stand-ins flagged where a stage cannot
run on the host), training time (--train, with --dataset) and preprocessing time (--preprocess CLIP),
with the machine, GPU, torch version, git commit and date. On a machine without CUDA it runs what it can
at a small size and the JSON says "no GPU".

Sub-commands run one benchmark with its own arguments (see `python -m emotalk bench NAME --help`):
model: training, held-out metrics and render FPS (GPU host); speech: audio-code and TTS timings;
preprocess: dataset building stages and timings; sync: lip-sync tables on real clips or renders;
e2e: the GPU benchmark with its own options; emotion-audio: emotion, mouth and sync of audio-driven renders
(drives | render | measure). Each is a module of this package; bench/bench_NAME.py runs the same.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

HELP = ("run the GPU benchmark (render FPS, latency, training, preprocessing), or one benchmark: "
        "model | speech | preprocess | sync | e2e | emotion-audio | latency | finetune | single-stream")
SCRIPTS = ("model", "speech", "preprocess", "sync", "e2e", "latency",
           "finetune")  # modules of cli.bench with main(argv)
# sub-commands whose module name differs (also with main(argv))
NAMED = {"emotion-audio": "emotion_audio", "single-stream": "single_stream"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("which", nargs="?", choices=SCRIPTS + tuple(NAMED),
                   help="one benchmark (its arguments follow); none: the GPU benchmark")
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
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for that benchmark (try --help)")


def run(args: argparse.Namespace) -> int:
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
        from emotalk.cli.bench import e2e

        identity = args.identity or e2e.DEFAULT_IDENTITY
        e2e.run_bench(args.out or e2e.DEFAULT_OUT, identity if identity.exists() else None,
                      args.dataset, args.train, args.preprocess, args.device, args.size, args.seconds,
                      log=lambda m: print(m, file=sys.stderr, flush=True))
        return 0
    bench = importlib.import_module(f"emotalk.cli.bench.{NAMED.get(args.which, args.which)}")
    try:
        return int(bench.main(list(args.args)) or 0)
    except SystemExit as e:  # argparse inside the benchmark: --help, or bad arguments
        return int(e.code or 0) if not isinstance(e.code, str) else 1
