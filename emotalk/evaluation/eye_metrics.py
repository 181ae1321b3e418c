"""Eye measures of rendered video: does an emotion keep the eyes visible? A warp that slides skin over the
eyes, or squashes the iris into the lashes, reads as a squint to the recogniser while a person sees eyes
erased (german_anchor, seventeenth session); these put a number on it beside the mouth's.

- **eye box**: per eye, a 2:1 box centred between the eye's corners, as wide as its ring of landmarks
  plus `margin` of that width on each side (so a narrowed eye keeps the same box).
- **eye sharpness**: variance of the Laplacian (3x3) of each grey eye box resampled to CROP_SIZE, mean of
  the two eyes per frame; the render's value is the median over frames with a face.
- **eye opening**: lid gap over eye width (`face.generator.eye_openness`), mean of both eyes and of the
  frames with a face.

Real actors narrow their eyes and lose eye detail too (MEAD, `scripts/fit_eye_bar.py`: angry opening 0.75
of neutral, sharpness 0.75); erased eyes measured 0.27-0.35 of the neutral opening, below every actor, so
the opening against the actors' bar is the measure that tells them apart.
"""

from __future__ import annotations

import numpy as np

from emotalk.evaluation.mouth_metrics import laplacian_variance
from emotalk.face.landmarks import EYE_CORNERS, EYE_RINGS

CROP_SIZE = (48, 24)  # (width, height) each eye box is resampled to before the Laplacian
EYE_MARGIN = 0.25  # eye box margin on each side, in eye widths


def eye_boxes(lmk: np.ndarray, margin: float = EYE_MARGIN) -> list[tuple[float, float, float, float]]:
    """(x0, y0, x1, y1) px of each eye's 2:1 box (right, left) from one face's landmarks [478,2+]."""
    out = []
    for ring, corners in zip(EYE_RINGS, EYE_CORNERS):
        x = np.asarray(lmk)[ring, 0]
        w = max((x.max() - x.min()) * (1 + 2 * margin), 2.0)
        cx, cy = np.asarray(lmk)[corners, :2].mean(0)  # between the corners: still when the lids move
        out.append((cx - w / 2, cy - w / 4, cx + w / 2, cy + w / 4))
    return out


def eye_crops(frame: np.ndarray, lmk: np.ndarray, size: tuple[int, int] = CROP_SIZE) -> list[np.ndarray]:
    """Both eye boxes of frame [H,W,3] uint8 resampled to size (w, h), grey float32 [h,w] each."""
    import cv2

    img = np.ascontiguousarray(frame[..., :3])
    out = []
    for x0, y0, x1, y1 in eye_boxes(lmk):
        sx, sy = size[0] / (x1 - x0), size[1] / (y1 - y0)
        M = np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy]], np.float32)
        interp = cv2.INTER_AREA if sx < 1 else cv2.INTER_LINEAR
        crop = cv2.warpAffine(img, M, size, flags=interp, borderMode=cv2.BORDER_REPLICATE)
        out.append(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32))
    return out


def eye_sharpness(frames: np.ndarray, lmk: np.ndarray, found: np.ndarray | None = None) -> float:
    """Median over frames with a face of both eye boxes' mean Laplacian variance; frames [T,H,W,3], lmk
    [T,478,2+]."""
    ok = np.isfinite(lmk[:, 0, 0]) if found is None else np.asarray(found, bool)
    vals = [np.mean([laplacian_variance(g) for g in eye_crops(f, lm)])
            for f, lm, k in zip(frames, lmk, ok) if k]
    return float(np.median(vals)) if vals else float("nan")


def eye_opening(lmk: np.ndarray, found: np.ndarray | None = None) -> float:
    """Mean lid gap over eye width of both eyes over the frames with a face; lmk [T,478,2+]."""
    from emotalk.face.generator import eye_openness

    ok = np.isfinite(lmk[:, 0, 0]) if found is None else np.asarray(found, bool)
    vals = [float(eye_openness(lm).mean()) for lm, k in zip(lmk, ok) if k]
    return float(np.mean(vals)) if vals else float("nan")
