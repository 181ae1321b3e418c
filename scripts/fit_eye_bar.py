"""The real-actor bar of the eye measures: how far MEAD actors' eyes narrow or widen, and how much eye
detail they keep, at each emotion against their own neutral clip (the same measures as the audio-driven
table's eye columns, `evaluation.eye_metrics`), so an emotional render's eyes can be judged against people.

    .venv/bin/python scripts/fit_eye_bar.py [--data ../shared/data] [--step 2]
                                            [--out emotalk/models/eye_bar_mead.json]

For each frontal MEAD actor (M030, W009, W011) and emotion clip (level 3), every `--step`-th frame is
tracked with MediaPipe (one video track per clip); the clip's eye opening is the mean lid gap over eye
width, its eye sharpness the median eye-box Laplacian variance. Per actor each is divided by the neutral
clip's; per category the bar is the mean over actors (and the lowest). Writes only the small table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from emotalk.evaluation.emotion import mead_actor_clips
from emotalk.evaluation.eye_metrics import eye_opening, eye_sharpness
from emotalk.folders import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "emotalk" / "models" / "eye_bar_mead.json"
ORDER = ("happy", "surprised", "fear", "angry", "disgusted", "sad", "contempt")


def clip_eyes(path: Path, step: int) -> tuple[float, float]:
    """(eye opening, eye sharpness) of every step-th frame of a clip."""
    from emotalk.evaluation.render_tracking import track_frames
    from emotalk.media import read_frames

    frames = read_frames(path, fps=25.0)[::step]
    lmk, _ = track_frames(frames, video=True, fps=25.0 / step)
    found = np.isfinite(lmk[:, 0, 0])
    return eye_opening(lmk, found), eye_sharpness(frames, lmk, found)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data folder")
    ap.add_argument("--step", type=int, default=2, help="measure every this many frames")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON table to write")
    args = ap.parse_args(argv)
    clips = mead_actor_clips(args.data)
    if not clips:
        print(f"no MEAD actor with a neutral clip in {args.data / 'emotion' / 'mead_video'}", file=sys.stderr)
        return 1
    t0 = time.time()
    per_actor: dict[str, dict[str, list[float]]] = {}
    for actor, cats in clips.items():
        open0, sharp0 = clip_eyes(cats["neutral"], args.step)
        row = {}
        for cat in ORDER:
            if cat in cats:
                o, s = clip_eyes(cats[cat], args.step)
                row[cat] = [round(o / open0, 4), round(s / sharp0, 4)]
        per_actor[actor] = row
        print(f"{actor}: " + ", ".join(f"{c} {v[0]:.2f}/{v[1]:.2f}" for c, v in row.items()), file=sys.stderr)
    bar = {}
    for c in ORDER:
        v = np.array([r[c] for r in per_actor.values() if c in r], np.float64)  # [actors, 2]
        if len(v):
            bar[c] = {"opening_ratio": round(float(v[:, 0].mean()), 4),
                      "opening_ratio_min": round(float(v[:, 0].min()), 4),
                      "sharpness_ratio": round(float(v[:, 1].mean()), 4),
                      "sharpness_ratio_min": round(float(v[:, 1].min()), 4), "actors": len(v)}
    doc = {
        "what": "eye opening (lid gap / eye width, mean over frames) and eye-box sharpness (median Laplacian "
                "variance) of each emotion clip divided by the same actor's neutral clip's",
        "data": "MEAD frontal clips (research use), actors " + ", ".join(per_actor) + "; emotions level 3",
        "frame_step": args.step,
        "categories": bar,
        "per_actor": per_actor,
        "script": "scripts/fit_eye_bar.py",
    }
    atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out} in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
