"""Check a clip before fine-tuning on it, in seconds: duration, frame rate, resolution, faces, face size,
lighting, motion, speech and AV sync, each with what to fix. Prints the report; exit status 1 when the
clip is refused (it cannot make an identity), 0 otherwise."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "check a clip for fine-tuning in seconds (faces, lighting, speech, AV sync); exit 1 if refused"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("clip", type=Path, help="video of one person talking to the camera")
    p.add_argument("--json", type=Path, help="also write the full report (every number) as JSON")


def run(args: argparse.Namespace) -> int:
    from emotalk.dataset.clip_check import check_clip

    report = check_clip(args.clip)
    print(report.markdown())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=1))
        print(f"wrote {args.json}")
    return 0 if report.ok else 1
