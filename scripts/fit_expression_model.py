"""Fit the expression model (valence, arousal) -> expression change from the shared MEAD clips.

    .venv/bin/python scripts/fit_expression_model.py [--data ../shared/data] [--cache /tmp/mead_tracks]
                                                     [--out emotalk/models/expression_model.npz]

Tracks the frontal MEAD clips of actors M030, W009, W011 (8 emotions each, neutral included) with the
project's MediaPipe tracker, measures each emotion's change against the actor's neutral
(`emotalk.face.emotion.measure_changes`) and fits the disc map. Writes only the small model file (no
frames, no images of the actors). The optional cache keeps per-clip tracks (landmarks, blendshapes) so
a re-fit with other settings takes seconds.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from emotalk.face.expression import DEFAULT_MODEL_PATH, ClipTrack, ExpressionModel, measure_changes

CLIP_RE = re.compile(r"^(M030|W009|W011)_front_([a-z]+)_level(\d)_001\.mp4$")


def mead_clips(data: Path) -> list[Path]:
    """The labelled MEAD clips (CLIP_RE) under DATA/emotion/mead_video; exits, saying so, if none."""
    folder = data / "emotion" / "mead_video"
    paths = sorted(p for p in folder.glob("*.mp4") if CLIP_RE.match(p.name))
    if not paths:
        raise SystemExit(f"no MEAD clips found in {folder}")
    return paths


def track_clip(path: Path, cache: Path | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """MediaPipe landmarks [T,478,3] px and blendshapes [T,52] of every tracked frame of a clip."""
    hit = cache / f"{path.stem}.npz" if cache else None
    if hit is not None and hit.is_file():
        z = np.load(hit)
        found = z["found"]
        return z["lmk"][found], z["bs"][found], [str(s) for s in z["names"]]
    from emotalk.face.tracking import track_video
    from emotalk.media import read_frames

    frames = read_frames(path, fps=25.0)
    tr = track_video(frames, len(frames))
    if hit is not None:
        hit.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(hit, lmk=tr.lmk, found=tr.found, bs=tr.blendshapes,
                            names=np.array(tr.blendshape_names))
    return tr.lmk[tr.found], tr.blendshapes[tr.found], tr.blendshape_names


def plot_map(model: ExpressionModel, path: Path, exaggerate: float = 4.0) -> None:
    """Landmark offsets (x, y: frontal view) as arrows at 9 disc points over the mean neutral face (dots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emotalk.emotion import CATEGORIES

    names = ["angry", "surprised", "happy", "fear", "neutral", "calm", "disgusted", "contempt", "sad"]
    base = model.neutral_shape[:468, :2]
    fig, axes = plt.subplots(3, 3, figsize=(10, 11))
    for ax, name in zip(axes.ravel(), names):
        v, a = CATEGORIES[name]
        off = model.change(v, a).offsets[:468, :2] * exaggerate
        ax.scatter(base[:, 0], base[:, 1], s=1.5, c="0.6")
        big = np.linalg.norm(off, axis=1) > 0.004 * exaggerate
        ax.quiver(base[big, 0], base[big, 1], off[big, 0], off[big, 1], angles="xy", scale_units="xy",
                  scale=1.0, width=0.004, color="tab:red")
        ax.set_title(f"{name}  (v={v:+.2f}, a={a:+.2f})", fontsize=10)
        ax.set_aspect("equal")
        ax.invert_yaxis()
        ax.axis("off")
    fig.suptitle(f"Expression model: landmark offsets ×{exaggerate:g} (unit: outer-eye distance), "
                 "mouth opening removed", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=None, help="folder for per-clip tracks")
    ap.add_argument("--out", type=Path, default=DEFAULT_MODEL_PATH)
    ap.add_argument("--plot", type=Path, default=None, help="also draw the map (landmark dots, no images)")
    args = ap.parse_args()

    paths = mead_clips(args.data)
    clips, names = [], None
    t0 = time.time()
    for p in paths:
        actor, emotion, _ = CLIP_RE.match(p.name).groups()
        lmk, bs, names = track_clip(p, args.cache)
        clips.append(ClipTrack(actor, emotion, lmk, bs))
        print(f"{p.name}: {len(lmk)} frames", flush=True)
    changes, neutral, info = measure_changes(clips, names)
    info["clips"] = [p.name for p in paths]
    model = ExpressionModel.fit(changes, names, neutral, info)
    model.save(args.out)
    norms = {c: round(float(np.linalg.norm(d[: ExpressionModel.n_lmk])), 3)
             for c, d in zip(model.categories, model.category_changes)}
    print("landmark-offset norm per category (eye-distance units):", json.dumps(norms))
    if args.plot:
        plot_map(model, args.plot)
        print(f"wrote {args.plot}")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.1f} kB) in {time.time() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
