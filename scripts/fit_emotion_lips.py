"""Fit the emotion lip offsets (emotalk/lips/emotion.py) from the shared MEAD clips.

    .venv/bin/python scripts/fit_emotion_lips.py [--data ../shared/data] [--cache /tmp/mead_tracks]
                                                 [--out emotalk/models/emotion_lips.json]

Tracks the frontal MEAD clips of actors M030, W009, W011 (7 emotions + neutral; the cache is shared with
scripts/fit_expression_model.py), computes the lip parameters of every frame (emotalk.lips.lip_params)
and measures each emotion's lip change against the same actor's neutral clip, in z-units of the actor's
speech spread (the within-clip std of the parameter, averaged over the actor's 8 clips; every clip is
speech, so this is the unit an identity's lip code uses; the neutral clip alone is calmer and smaller).
Gap and jaw: difference of clip medians (the actors speak; a median over the whole clip is their
typical opening). Width, round, press, lower: the difference at the same opening (a
per-actor regression on emotion + gap + jaw, as the expression model does), since a wider-open mouth is
also narrower and less pressed. Averaged over actors. Writes only the small table (numbers, no images).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from fit_expression_model import CLIP_RE, mead_clips, track_clip  # the sibling script (run from this folder)

from emotalk.lips import LIP_NAMES, lip_params
from emotalk.lips.emotion import DEFAULT_TABLE, LEFT_OUT, EmotionLipTable, applied_offsets

SPEECH = ("gap", "jaw")  # parameters measured as median differences; the rest at the same opening


def actor_changes(clips: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One actor's raw lip parameters {emotion: [T,M]} (neutral included) -> {emotion: change [M] in z-units
    of the actor's speech spread (the within-clip std, averaged over the actor's clips)}."""
    neu = clips["neutral"]
    std = np.maximum(np.mean([x.std(0) for x in clips.values()], 0), 1e-6)  # speech spread within a clip
    z = {e: (x - np.median(neu, 0)) / std for e, x in clips.items()}
    emos = list(z)
    si = [LIP_NAMES.index(s) for s in SPEECH]
    X = np.concatenate([np.eye(len(emos))[np.full(len(z[e]), k)] for k, e in enumerate(emos)])  # one-hot
    Y = np.concatenate([z[e] for e in emos])  # [N,M]
    g = Y[:, si]
    coef, *_ = np.linalg.lstsq(np.concatenate([X, g - g.mean(0)], 1), Y, rcond=None)
    out = {}
    for k, e in enumerate(emos):
        if e == "neutral":
            continue
        d = coef[k] - coef[emos.index("neutral")]  # at the same opening
        d[si] = np.median(z[e][:, si], 0)  # the clip's typical opening against neutral's median (0)
        out[e] = d
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=None, help="folder for per-clip tracks")
    ap.add_argument("--out", type=Path, default=DEFAULT_TABLE)
    args = ap.parse_args()
    paths = mead_clips(args.data)
    t0 = time.time()
    per_actor: dict[str, dict[str, np.ndarray]] = {}
    for p in paths:
        actor, emotion, _ = CLIP_RE.match(p.name).groups()
        lmk, bs, names = track_clip(p, args.cache)
        per_actor.setdefault(actor, {})[emotion] = lip_params(lmk, bs, names)
        print(f"{p.name}: {len(lmk)} frames", flush=True)
    measured: dict[str, list[np.ndarray]] = {}
    for clips in per_actor.values():
        if "neutral" not in clips:
            continue
        for e, d in actor_changes(clips).items():
            measured.setdefault(e, []).append(d)
    mean = {e: np.mean(v, 0) for e, v in measured.items()}
    spread = {e: np.std(v, 0) for e, v in measured.items()}
    table = EmotionLipTable.from_measured(mean, applied_offsets(mean, spread, len(per_actor)), {
        "actors": sorted(per_actor), "clips": [p.name for p in paths],
        "actor_spread": {e: [round(float(x), 3) for x in s] for e, s in spread.items()},
        "left_out": {e: [round(float(x), 3) for x in mean[e]] for e in LEFT_OUT if e in mean}})
    table.save(args.out)
    print(f"{'':10s} " + " ".join(f"{n:>14s}" for n in LIP_NAMES) + "   (measured ±actor sd -> applied)")
    for e in table.categories:
        m, s, a = mean[e], spread[e], table.applied[e]
        print(f"{e:10s} " + " ".join(f"{mi:+5.2f}±{si:4.2f}>{ai:+4.2f}" for mi, si, ai in zip(m, s, a)))
    print(f"wrote {args.out} in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
