"""Time `preprocess`, or run its parts on different machines.

    python -m emotalk bench preprocess time CLIP [--size 512]          one full run, JSON timings
    python -m emotalk bench preprocess prepare WORK CLIP... [--size]   stages 1-4 (tracking, pose, crop, AV)
    python -m emotalk bench preprocess parse WORK [--workers N] [--tar F]  face parsing (CUDA when
                                                           present; OpenCV decodes where ffmpeg is absent)
    python -m emotalk bench preprocess finish WORK OUTROOT [--debug-dir D]  plate, body frames, files
    (time, prepare and finish take --cpu-workers N: threads for per-frame work; 0 = one per core)
    (or python bench/bench_preprocess.py ...)

WORK holds one work folder per clip (named after the clip). The machine's load matters: each JSON line
carries the load average.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path


def _settings(size: int, min_seconds: float, cpu_workers: int = 0):
    from emotalk.training.settings import PREPROCESS_PRESETS as PRESETS

    return dataclasses.replace(PRESETS["default"], size=size, min_seconds=min_seconds,
                               cpu_workers=cpu_workers)


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def cmd_time(a) -> None:
    import torch

    from emotalk.dataset.build import preprocess

    out = a.out or os.path.join(tempfile.mkdtemp(prefix="bench-pre-"), "ds")
    load0 = _load()
    t0 = time.time()
    ds = preprocess(a.clip, out, _settings(a.size, a.min_seconds, a.cpu_workers))
    wall = time.time() - t0
    print(json.dumps({
        "clip": os.path.basename(a.clip), "size": a.size, "frames": ds.n_frames, "wall_s": round(wall, 1),
        "frames_per_s": round(ds.n_frames / wall, 2), "stages_s": ds.meta["timings_s"],
        "dataset_mb": round(sum(ds.meta["bytes"].values()) / 1e6, 2), "quality": ds.meta["quality"],
        "av": {k: ds.meta["audio"][k] for k in ("av_offset_frames", "av_confidence", "shift_applied_frames")},
        "cpus": os.cpu_count(), "cpu_workers": (ds.meta.get("finish") or {}).get("cpu_workers"),
        "torch_threads": torch.get_num_threads(), "load_avg_start": load0,
        "load_avg_end": _load(), "cuda": torch.cuda.is_available(),
    }))


def cmd_prepare(a) -> None:
    from emotalk.dataset.prepare import prepare

    for clip in a.clips:
        name = Path(clip).stem
        work = Path(a.work) / name
        if (work / "state.json").is_file():
            continue
        t0 = time.time()
        prepare(clip, work, _settings(a.size, a.min_seconds, a.cpu_workers))
        dt = round(time.time() - t0, 1)
        print(json.dumps({"clip": name, "prepare_s": dt, "load": _load()}), flush=True)


def cmd_parse(a) -> None:
    import torch

    from emotalk.dataset.parse import parse
    from emotalk.training.settings import PREPROCESS_PRESETS as PRESETS

    done = []
    t_all = time.time()
    for work in sorted(p for p in Path(a.work).iterdir() if (p / "state.json").is_file()):
        if (work / "parsing.npz").is_file():
            continue
        state = json.loads((work / "state.json").read_text())
        t0 = time.time()
        parse(work, PRESETS["default"], workers=a.workers)  # decodes frames.mp4 (OpenCV where no ffmpeg)
        dt = time.time() - t0
        print(json.dumps({"clip": work.name, "frames": state["T"], "parse_s": round(dt, 2),
                          "frames_per_s": round(state["T"] / dt, 1), "cuda": torch.cuda.is_available(),
                          "load": _load()}), flush=True)
        done.append(work)
    print(json.dumps({"parse_total_s": round(time.time() - t_all, 1), "clips": len(done)}), flush=True)
    if a.tar:
        with tarfile.open(a.tar, "w") as tf:
            for work in done:
                for f in ("parsing.npz", "state.json"):
                    tf.add(work / f, arcname=f"{work.name}/{f}")


def cmd_finish(a) -> None:
    from emotalk.dataset.finish import finish
    from emotalk.training.settings import PREPROCESS_PRESETS as PRESETS

    for work in sorted(p for p in Path(a.work).iterdir() if (p / "parsing.npz").is_file()):
        t0 = time.time()
        s = dataclasses.replace(PRESETS["default"], debug_dir=a.debug_dir, cpu_workers=a.cpu_workers)
        dst = Path(a.out_root) / work.name
        keep = Path(tempfile.mkdtemp(prefix=f".{work.name}.", dir=Path(a.out_root)))
        shutil.rmtree(keep)
        shutil.copytree(work, keep)  # finish consumes its work folder; keep WORK intact for reruns
        ds = finish(keep, dst, s)
        t = ds.meta["timings_s"]
        print(json.dumps({"clip": work.name, "finish_s": round(time.time() - t0, 1), "frames": ds.n_frames,
                          "stages_s": {k: t.get(k) for k in ("plate", "body", "write")},
                          "cpu_workers": ds.meta["finish"]["cpu_workers"],
                          "mb": round(sum(ds.meta["bytes"].values()) / 1e6, 2), "load": _load()}), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emotalk bench preprocess", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("time")
    p.add_argument("clip")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--out", default=None)
    p.add_argument("--min-seconds", type=float, default=4.0)
    p = sub.add_parser("prepare")
    p.add_argument("work")
    p.add_argument("clips", nargs="+")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--min-seconds", type=float, default=4.0)
    p = sub.add_parser("parse")
    p.add_argument("work")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--tar", default=None)
    p = sub.add_parser("finish")
    p.add_argument("work")
    p.add_argument("out_root")
    p.add_argument("--debug-dir", default=None)
    for name in ("time", "prepare", "finish"):
        sub.choices[name].add_argument("--cpu-workers", type=int, default=0,
                                       help="threads for per-frame work (0: one per core; 1: serial)")
    a = ap.parse_args(argv)
    {"time": cmd_time, "prepare": cmd_prepare, "parse": cmd_parse, "finish": cmd_finish}[a.cmd](a)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
