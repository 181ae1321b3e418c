"""The phone strip in docs/: one typed sentence (Piper) said by a shipped identity, consecutive mouth crops
with the lips from the audio driver alone (top row) and phone-aware lips (bottom row, what users get), the
phone under each frame and the lip code's gap (z) of both rows. Renders only.

    .venv/bin/python scripts/phone_strip.py [--identity obama] [--text "..."] [--frames 13]
        [--out docs/phone_lips_obama.png]

The window starts a few frames before the sentence's first p, b or m, so a closure and the vowels around it
are on show.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]  # the checkout: default paths only
TEXT = "My mom baked a big apple pie, and we ate it by the open window."
CROP = (140, 96)  # (w, h) of one mouth crop
BILABIAL = ("P", "B", "M")


def phone_at(phones, t: float) -> str:
    """The phone (stress digits dropped) sounding at t seconds, "" in silence."""
    for p in phones:
        if p.start <= t < p.end:
            return "" if p.phone.upper() in ("SIL", "SP") else p.phone.rstrip("012")
    return ""


def window_start(phones, n_frames: int, fps: float, n: int) -> int:
    """First frame of an n-frame window beginning 3 frames before the first bilabial (0 without one)."""
    first = next((p for p in phones if p.phone.rstrip("012").upper() in BILABIAL), None)
    if first is None:
        return 0
    return int(np.clip(round(first.start * fps) - 3, 0, max(n_frames - n, 0)))


def main() -> int:
    import cv2

    from emotalk import pipeline
    from emotalk.evaluation.mouth_metrics import mouth_crop
    from emotalk.evaluation.render_tracking import track_frames
    from emotalk.identity.checkpoint import load_identity
    from emotalk.identity.store import resolve_identity
    from emotalk.lips import LIP_NAMES
    from emotalk.render.frames import render_frames
    from emotalk.render.speech_lips import lip_track, speech_phones
    from emotalk.speech.features import compute_audio_code
    from emotalk.speech.normalize import load_speech

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--identity", default="obama")
    ap.add_argument("--text", default=TEXT)
    ap.add_argument("--frames", type=int, default=13)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "phone_lips_obama.png")
    a = ap.parse_args()

    ident = load_identity(resolve_identity(a.identity))
    wav = load_speech(pipeline.speak(a.text).wav)
    n = int(round(len(wav) / 16000 * ident.fps))
    code = compute_audio_code(wav, 16000, n_frames=n, fps=ident.fps)
    notes: list[str] = []
    phones = speech_phones(wav, text=a.text, notes=notes)
    if not phones:
        print(f"no phone timings for the sentence: {'; '.join(notes)}", file=sys.stderr)
        return 1
    start = window_start(phones, n, ident.fps, a.frames)
    idx = np.arange(start, min(start + a.frames, n))
    g = LIP_NAMES.index("gap")
    rows, gaps = [], []
    for source in ("audio", "auto"):
        lips = lip_track(ident, wav, code, phones, source=source)
        frames = np.concatenate(list(render_frames(ident, code, lips=lips, size=a.size)))
        lmk, _ = track_frames(frames[idx], video=False)
        crops = [mouth_crop(frames[i], lmk[k], CROP, grey=False) if np.isfinite(lmk[k, 0, 0])
                 else np.zeros((CROP[1], CROP[0], 3), np.uint8) for k, i in enumerate(idx)]
        framed = [np.pad(c, ((1, 1), (1, 1), (0, 0)), constant_values=255) for c in crops]
        rows.append(np.concatenate(framed, 1))
        gaps.append(lips[idx, g])
    w = CROP[0] + 2
    text = np.full((40, w * len(idx), 3), 255, np.uint8)
    for k, i in enumerate(idx):
        ph = phone_at(phones, (i + 0.5) / ident.fps)
        cv2.putText(text, f"{i} {ph}", (k * w + 3, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
        cv2.putText(text, f"{gaps[0][k]:+.1f}/{gaps[1][k]:+.1f}", (k * w + 3, 33), cv2.FONT_HERSHEY_SIMPLEX,
                    0.42, (200, 0, 0), 1, cv2.LINE_AA)
    sheet = np.concatenate([rows[0], rows[1], text], 0)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out), np.ascontiguousarray(sheet[..., ::-1]))
    print(f"{a.out}: frames {idx[0]}-{idx[-1]} of {n}; top: audio driver, bottom: phone-aware lips; "
          "under each frame: frame, phone, lip-code gap (z) driver / phone-aware")
    return 0


if __name__ == "__main__":
    sys.exit(main())
