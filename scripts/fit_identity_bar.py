"""The real-actor bar of identity similarity: how close MEAD actors' emotional faces stay to their own
neutral face for a face-recognition model (dlib's 128-D ResNet descriptor, `face.identity_embedding`).

    .venv/bin/python scripts/fit_identity_bar.py [--data ../shared/data] [--frames 12]
                                                 [--out emotalk/models/identity_similarity_mead.json]

For each frontal MEAD actor (M030, W009, W011) and emotion clip (level 3), `--frames` frames spread over
the clip are tracked with MediaPipe, aligned and embedded; the clip's similarity is the mean cosine over
every (emotional frame, neutral frame) pair with the same actor's neutral clip. "neutral" is the neutral
clip against itself (every pair of distinct frames): what talking alone costs. Per category the bar is
the mean over actors. Writes only the small table (no frames, no images of the actors).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from emotalk.evaluation.emotion import mead_actor_clips
from emotalk.face.identity_embedding import IdentityEmbedder, mean_similarity, sample_indices
from emotalk.folders import atomic_write_text

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "emotalk" / "models" / "identity_similarity_mead.json"
ORDER = ("neutral", "happy", "surprised", "fear", "angry", "disgusted", "sad", "contempt")


def clip_embeddings(path: Path, k: int, embedder: IdentityEmbedder) -> np.ndarray:
    """Descriptors [k',128] of k frames spread over the clip (frames where no face is found left out)."""
    from emotalk.evaluation.render_tracking import track_frames
    from emotalk.media import read_frames

    frames = read_frames(path, fps=25.0)
    frames = frames[sample_indices(len(frames), k)]
    lmk, found = track_frames(frames, video=False)
    lmk[~found] = np.nan
    e = embedder.embed(frames, landmarks=lmk)
    return e[np.isfinite(e).all(1)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data folder")
    ap.add_argument("--frames", type=int, default=12, help="frames sampled per clip")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON table to write")
    args = ap.parse_args(argv)
    clips = mead_actor_clips(args.data)
    if not clips:
        print(f"no MEAD actor with a neutral clip in {args.data / 'emotion' / 'mead_video'}", file=sys.stderr)
        return 1
    t0 = time.time()
    emb = IdentityEmbedder()
    per_actor: dict[str, dict[str, float]] = {}
    for actor, cats in clips.items():
        neu = clip_embeddings(cats["neutral"], args.frames, emb)
        row = {"neutral": mean_similarity(neu, neu, skip_same=True)}
        for cat, p in cats.items():
            if cat != "neutral":
                row[cat] = mean_similarity(clip_embeddings(p, args.frames, emb), neu)
        per_actor[actor] = {c: round(row[c], 4) for c in ORDER if c in row}
        print(f"{actor}: " + ", ".join(f"{c} {v:.3f}" for c, v in per_actor[actor].items()), file=sys.stderr)
    bar = {}
    for c in ORDER:
        v = [r[c] for r in per_actor.values() if c in r and np.isfinite(r[c])]
        if v:
            bar[c] = {"mean": round(float(np.mean(v)), 4), "min": round(float(np.min(v)), 4),
                      "actors": len(v)}
    doc = {
        "what": "mean cosine similarity of dlib ResNet face descriptors, emotional frames vs the same "
                "actor's neutral frames (every pair); neutral = neutral clip vs itself (distinct frames)",
        "model": "dlib_face_recognition_resnet_model_v1 + shape_predictor_5_face_landmarks "
                 "(asset dlib-face-recognition), box from MediaPipe landmarks",
        "data": "MEAD frontal clips (research use), actors " + ", ".join(per_actor) + "; emotions level 3",
        "frames_per_clip": args.frames,
        "categories": bar,
        "per_actor": per_actor,
        "script": "scripts/fit_identity_bar.py",
    }
    atomic_write_text(args.out, json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out} in {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
