"""Preprocess a talking-head clip into an identity dataset folder (tracking, head pose, crop, face
parsing, background plate, head-removed body frames, AV-sync-corrected audio). See docs/DATASET.md."""

from __future__ import annotations

import argparse

HELP = "turn a talking-head clip into an identity dataset"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("clip", help="video file with the person talking (with sound), 4 s to 10 min")
    p.add_argument("--out", required=True, help="dataset folder to create (replaced if it exists)")
    p.add_argument("--preset", default="default",
                   help="settings preset: default (512²), fast (256²), test (training/settings.py)")
    p.add_argument("--size", type=int, default=None, help="crop side in px (overrides the preset)")
    p.add_argument("--min-seconds", type=float, default=None, help="refuse shorter clips (preset: 4)")
    p.add_argument("--max-seconds", type=float, default=None, help="refuse longer clips (preset: 600)")
    p.add_argument("--debug-dir", default=None, help="write a parsing contact sheet (PNG) here")
    p.add_argument("--track-workers", type=int, default=None,
                   help="MediaPipe tracking processes (default: one per core but one)")


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import sys
    import time

    from emotalk.dataset.build import preprocess
    from emotalk.errors import InputError
    from emotalk.training.settings import PREPROCESS_PRESETS as PRESETS

    if args.preset not in PRESETS:
        raise InputError(f"Unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}.")
    over = {}
    if args.size is not None:
        over["size"] = args.size
    if args.min_seconds is not None:
        over["min_seconds"] = args.min_seconds
    if args.max_seconds is not None:
        over["max_seconds"] = args.max_seconds
    if args.debug_dir:
        over["debug_dir"] = args.debug_dir
    if args.track_workers is not None:
        over["track_workers"] = max(1, args.track_workers)
    settings = dataclasses.replace(PRESETS[args.preset], **over)
    t0 = time.time()
    last = [""]

    def progress(stage: str, frac: float) -> None:
        el = time.time() - t0
        eta = f"ETA {el / frac - el:4.0f}s" if frac > 0.02 else "ETA    ?"
        line = f"\r[{100 * frac:5.1f}%] {eta}  {stage[:60]:<60}"
        if line != last[0]:
            sys.stderr.write(line)
            sys.stderr.flush()
            last[0] = line

    try:
        ds = preprocess(args.clip, args.out, settings, progress)
    finally:
        if last[0]:
            sys.stderr.write("\n")  # end the progress line before any result or error
    q, a = ds.meta["quality"], ds.meta["audio"]
    mb = sum(ds.meta["bytes"].values()) / 1e6
    print(f"dataset: {ds.root}  ({ds.n_frames} frames at {ds.size}², {mb:.1f} MB, {time.time() - t0:.0f} s)")
    print(f"frames lost: {q['frames_lost']}  reprojection: {q['reproj_err_px_at512']:.2f} px @512  "
          f"jitter: {q['jitter_deg']:.2f} deg  AV offset: {a['av_offset_frames']:+d} frames "
          f"(confidence {a['av_confidence']:.2f}, applied {a['shift_applied_frames']:+d})")
    if a.get("warning"):
        print(f"warning: {a['warning']}")
    return 0
