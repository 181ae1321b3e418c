"""The emotion grid in docs/: a shipped identity saying one typed sentence at every category, rendered through
the app's path (`pipeline.synthesize`: the sentence spoken once by Piper and given with its transcript, so
phone-aware lips), the same moments of the same audio in every column.
Renders only: no frame of the identity's clip is shown.

    .venv/bin/python scripts/emotion_grid.py [--identity obama] [--text "..."] [--size 384] [--rows 3]
        [--zoom 1.5] [--out docs/emotion_grid_obama.jpg] [--device cpu|cuda]

--zoom crops each frame to its central 1/zoom around the face's usual place (no upscaling: render at
--size, crop to size / zoom).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]  # the checkout: default paths only

COLUMNS = ("neutral", "happy", "surprised", "fear", "angry", "disgusted", "contempt", "sad", "calm")
TEXT = "We will build a better future, and we will do it together."


def pick_frames(n: int, rows: int) -> np.ndarray:
    """`rows` frame indices spread over the middle 70 % of an n-frame clip (its ends are lead-in and out)."""
    return np.linspace(0.15 * (n - 1), 0.85 * (n - 1), rows).round().astype(int)


def zoom_box(size: int, zoom: float, centre_y: float = 0.4) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of a size/zoom square around the horizontal centre and centre_y of a size² frame."""
    side = max(16, min(size, int(round(size / max(zoom, 1.0)))))
    x0 = (size - side) // 2
    y0 = int(np.clip(round(centre_y * size - side / 2), 0, size - side))
    return y0, y0 + side, x0, x0 + side


def label(tile: np.ndarray, text: str) -> np.ndarray:
    """The tile (BGR) with `text` on a black band at its top."""
    import cv2

    t = np.ascontiguousarray(tile)
    cv2.rectangle(t, (0, 0), (t.shape[1], 20), (0, 0, 0), -1)
    cv2.putText(t, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return t


def main() -> int:
    import cv2

    from emotalk.emotion import CATEGORIES
    from emotalk.media.decode import read_frames
    from emotalk.pipeline import speak, synthesize
    from emotalk.requests import RenderRequest

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--identity", default="obama")
    ap.add_argument("--text", default=TEXT)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--rows", type=int, default=3)
    ap.add_argument("--zoom", type=float, default=1.5)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "emotion_grid_obama.jpg")
    a = ap.parse_args()

    speech = speak(a.text).wav  # spoken once: every column says the same audio, frame for frame
    columns = []
    for name in COLUMNS:
        v, ar = CATEGORIES[name]
        res = synthesize(RenderRequest(identity=a.identity, audio=str(speech), transcript=a.text, valence=v,
                                       arousal=ar, size=a.size, watermark=False, device=a.device))
        frames = read_frames(res.video)
        rows = pick_frames(len(frames), a.rows)
        y0, y1, x0, x1 = zoom_box(frames.shape[1], a.zoom)
        tiles = [np.ascontiguousarray(frames[i, y0:y1, x0:x1, ::-1]) for i in rows]
        tiles[0] = label(tiles[0], name)
        columns.append(np.concatenate(tiles, 0))
        print(f"{name}: {len(frames)} frames, rows {rows.tolist()}", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out), np.concatenate(columns, 1))
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
