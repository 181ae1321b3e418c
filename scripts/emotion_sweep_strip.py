"""The emotion-sweep frame strip in docs/: a shipped identity speaking one example while a keyframe track
sweeps the valence-arousal disc (neutral -> happy -> surprised -> angry -> sad -> calm -> neutral);
N frames taken evenly and labelled with their (v, a).

    .venv/bin/python scripts/emotion_sweep_strip.py [--identity obama] [--audio examples/news.wav]
        [--size 256] [--frames 8] [--out docs/emotion_sweep_obama.png] [--video out/emotion_sweep.mp4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]  # the checkout: default paths only

SWEEP = ("neutral", "happy", "surprised", "angry", "sad", "calm", "neutral")


def main() -> int:
    import cv2
    from emotion_grid import label  # this folder's docs helper (the script's own folder is on sys.path)

    from emotalk import media
    from emotalk.emotion import CATEGORIES, EmotionTrack
    from emotalk.identity.checkpoint import load_identity
    from emotalk.identity.store import resolve_identity
    from emotalk.render.frames import render_frames
    from emotalk.speech.features import compute_audio_code
    from emotalk.speech.normalize import load_speech

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--identity", default="obama")
    ap.add_argument("--audio", type=Path, default=ROOT / "examples" / "news.wav")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "emotion_sweep_obama.png")
    ap.add_argument("--video", type=Path, default=None, help="also write the whole sweep as an mp4")
    a = ap.parse_args()

    ident = load_identity(resolve_identity(a.identity))
    wav = load_speech(a.audio)
    n = int(round(len(wav) / 16000 * ident.fps))
    dur = n / ident.fps
    keys = [(dur * i / (len(SWEEP) - 1), *CATEGORIES[c]) for i, c in enumerate(SWEEP)]
    keys[-1] = (dur - 1e-3, *keys[-1][1:])
    emo = EmotionTrack.from_keyframes(keys, duration=dur).at(np.arange(n) / ident.fps)
    code = compute_audio_code(wav, 16000, n_frames=n, fps=ident.fps)
    frames = np.concatenate(list(render_frames(ident, code, emotion=emo, size=a.size)))
    if a.video:
        media.write_video(a.video, frames, ident.fps, audio=wav)
    pick = np.linspace(0, n - 1, a.frames + 2).round().astype(int)[1:-1]
    tiles = [label(frames[i][..., ::-1], f"t={i / ident.fps:.1f}s v={emo[i][0]:+.2f} a={emo[i][1]:+.2f}")
             for i in pick]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out), np.concatenate(tiles, 1))
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
