"""Fit the expression texture (valence, arousal) -> ratio image from the shared MEAD clips.

    .venv/bin/python scripts/fit_expression_texture.py [--data ../shared/data] [--cache /tmp/mead_tracks]
        [--out emotalk/models/expression_texture.npz] [--size 128] [--preview /tmp/texture.png]

The same frontal MEAD clips as the expression model (M030, W009, W011; 7 emotions + neutral). Every
tracked frame is warped onto the canonical template (the expression model's neutral face, frontal) by
its own landmarks, so only appearance is left; per actor each emotion's ratio image against neutral is
measured at the same mouth opening (`emotalk.face.expression_texture.actor_log_ratios`), the logs are
averaged over actors, smoothed, clipped and faded out of the inner mouth and eyes. Writes only the small
statistics file (no frames, no images of the actors); the optional preview draws the log ratios alone.
The cache is shared with `fit_expression_model.py` (per-clip MediaPipe tracks).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from fit_expression_model import CLIP_RE, mead_clips, track_clip  # the sibling script (run from this folder)

from emotalk.face.expression import ExpressionModel, jaw_drop, lip_gap, normalise_faces
from emotalk.face.expression_texture import (
    DEFAULT_TEXTURE_PATH,
    CanonicalWarp,
    ExpressionTexture,
    actor_log_ratios,
    canonical_points,
    canonical_weight,
    combine_actors,
)


def clip_frames(path: Path, cache: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Tracked frames [T,H,W,3] uint8 and their landmarks [T,478,3] of a clip (untracked frames dropped).

    Tracks are read from / written to the cache in `fit_expression_model.py`'s format.
    """
    from emotalk.media import read_frames

    frames = read_frames(path, fps=25.0)
    hit = cache / f"{path.stem}.npz" if cache else None
    if hit is not None and not hit.is_file():
        track_clip(path, cache)  # tracks and writes the cache
    if hit is not None and hit.is_file():
        z = np.load(hit)
        lmk, found = z["lmk"], z["found"]
    else:
        from emotalk.face.tracking import track_video

        tr = track_video(frames, len(frames))
        lmk, found = tr.lmk, tr.found
    n = min(len(frames), len(found))
    ok = found[:n]
    return frames[:n][ok], lmk[:n][ok]


def preview(tex: ExpressionTexture, path: Path) -> None:
    """The log ratios alone (grey = 1, bright = lighter, dark = darker), one tile per category."""
    import cv2

    tiles = []
    for k, c in enumerate(tex.categories):
        lum = tex.log_ratio[k].mean(-1)
        im = np.clip(128 + lum / 0.3 * 127, 0, 255).astype(np.uint8)
        im = cv2.resize(im, (192, 192), interpolation=cv2.INTER_CUBIC)
        cv2.putText(im, c, (5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1, cv2.LINE_AA)
        tiles.append(im)
    cv2.imwrite(str(path), np.concatenate(tiles, 1))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=None, help="folder for per-clip tracks")
    ap.add_argument("--out", type=Path, default=DEFAULT_TEXTURE_PATH)
    ap.add_argument("--size", type=int, default=128, help="canonical image side, px")
    ap.add_argument("--smooth", type=float, default=1.0, help="Gaussian sigma of the log ratio, canonical px")
    ap.add_argument("--limit", type=float, default=0.4, help="|log ratio| bound")
    ap.add_argument("--keep-mean", action="store_true", help="keep each clip's overall brightness change")
    ap.add_argument("--mean", action="store_true", help="mean over actors (default: per-pixel median)")
    ap.add_argument("--feather", type=float, default=0.035, help="face-oval edge width, fraction of size")
    ap.add_argument("--step", type=int, default=1, help="use every step-th frame")
    ap.add_argument("--preview", type=Path, default=None, help="also draw the log ratios (PNG)")
    args = ap.parse_args()

    paths = mead_clips(args.data)
    model = ExpressionModel.load()
    canon = canonical_points(model.neutral_shape, args.size)
    warp = CanonicalWarp.build(canon, args.size)
    weight = canonical_weight(canon, args.size, feather=args.feather)
    t0 = time.time()
    actors = sorted({CLIP_RE.match(p.name).group(1) for p in paths})
    per_actor, frames_used = [], {}
    for actor in actors:
        clips = [(m.group(2), p) for p in paths if (m := CLIP_RE.match(p.name)).group(1) == actor]
        if "neutral" not in [e for e, _ in clips]:
            continue
        neu_lmk = None
        imgs, labels, lmks = [], [], []
        for emo, p in clips:
            frames, lmk = clip_frames(p, args.cache)
            frames, lmk = frames[:: args.step], lmk[:: args.step]
            imgs += [warp.to_canonical(f, l) for f, l in zip(frames, lmk)]
            labels += [emo] * len(frames)
            lmks.append(lmk)
            if emo == "neutral":
                neu_lmk = lmk
            frames_used[f"{actor}_{emo}"] = len(frames)
            print(f"{p.name}: {len(frames)} frames", flush=True)
        L = np.concatenate(lmks)
        n = normalise_faces(L, np.median(neu_lmk, 0))
        speech = np.stack([lip_gap(n), jaw_drop(n)], 1)
        per_actor.append(actor_log_ratios(np.stack(imgs), labels, speech))
        del imgs
    changes = combine_actors(per_actor, weight, args.smooth, args.limit, zero_mean=not args.keep_mean,
                             median=not args.mean)
    cats = list(changes)
    info = {"actors": actors, "frames": frames_used, "clips": [p.name for p in paths], "size": args.size,
            "smooth": args.smooth, "limit": args.limit, "feather": args.feather,
            "zero_mean": not args.keep_mean, "median": not args.mean, "step": args.step,
            "method": "per-actor ratio of mean canonical images at equal mouth opening, median of logs"}
    tex = ExpressionTexture(canon, args.size, cats, np.stack([changes[c] for c in cats]), info)
    tex.save(args.out)
    stats = {c: round(float(np.abs(changes[c].mean(-1)).mean()), 4) for c in cats}
    print("mean |log ratio| (luminance) per category:", json.dumps(stats))
    if args.preview:
        preview(tex, args.preview)
        print(f"wrote {args.preview}")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.1f} kB) in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
