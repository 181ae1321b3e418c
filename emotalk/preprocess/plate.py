"""Background plate and head-removed body frames.

The plate is, per pixel, the median colour over the frames where that pixel is background (the person
mask grown a little so hair fringes and shadows stay out); pixels never seen are inpainted. A body frame
keeps the torso (neck, cloth, necklace), replaces the head by the plate, and continues the neck upwards
under the chin, so a rendered head laid over it shows no halo, no gap and no second chin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emotalk.face.parsing import BG, BODY_CLASSES, HEAD_CLASSES, NECK


@dataclass
class PlateSettings:
    """Background plate and body frames."""

    max_frames: int = 120  # frames sampled for the plate
    person_grow: float = 1 / 64  # person mask dilation for the plate, fraction of the side
    head_grow: float = 1 / 128  # head mask dilation over everything in body frames, fraction of the side
    fringe_grow: float = 1 / 40  # ...and over background only (flyaway hair, soft edges), fraction of side
    neck_extend: float = 0.10  # how far the neck continues up under the chin, fraction of the side
    neck_shade: float = 0.92  # brightness of the continued neck (it sits in the chin's shadow)


def _disk(r: int) -> np.ndarray:
    import cv2

    r = max(1, int(round(r)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))


def background_plate(frames: np.ndarray, labels: np.ndarray,
                     s: PlateSettings = PlateSettings()) -> tuple[np.ndarray, float]:
    """frames [N,S,S,3] uint8, labels [N,S,S] -> (plate [S,S,3] uint8, fraction of pixels inpainted)."""
    import cv2

    N, S = frames.shape[:2]
    k = _disk(s.person_grow * S)
    # per-pixel median over the frames where the pixel is background: person pixels get a sentinel
    # that sorts last, so the median of the n valid values sits at index (n - 1) // 2
    vals = frames.astype(np.uint16)
    for i in range(N):
        person = cv2.dilate((labels[i] != BG).astype(np.uint8), k) > 0
        vals[i][person] = 1000
    vals.sort(axis=0)
    n_valid = (vals[..., 0] < 1000).sum(0)  # [S,S]
    seen = n_valid > 0
    pick = np.maximum(n_valid - 1, 0) // 2
    plate = np.take_along_axis(vals, pick[None, :, :, None].repeat(3, -1), 0)[0]
    plate = np.where(seen[..., None], plate, 0).astype(np.uint8)
    hole = ~seen
    frac = float(hole.mean())
    if hole.any():
        plate = inpaint(plate, hole)
    return plate, frac


def inpaint(img: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Fill hole pixels [S,S] of img [S,S,3]: Telea inpainting at low resolution, smoothed, pasted back."""
    import cv2

    S = img.shape[0]
    n = min(S, 128)
    if hole.all():
        return np.full_like(img, 127)
    small = cv2.resize(img, (n, n), interpolation=cv2.INTER_AREA)
    m = cv2.resize(hole.astype(np.uint8), (n, n), interpolation=cv2.INTER_NEAREST)
    m = cv2.dilate(m, np.ones((3, 3), np.uint8))
    filled = cv2.inpaint(small, m, 5, cv2.INPAINT_TELEA)
    filled = cv2.GaussianBlur(filled, (0, 0), 1.0)
    big = cv2.resize(filled, (S, S), interpolation=cv2.INTER_CUBIC)
    out = img.copy()
    out[hole] = big[hole]
    return out


def body_frame(frame: np.ndarray, lab: np.ndarray, plate: np.ndarray,
               s: PlateSettings = PlateSettings()) -> np.ndarray:
    """Head-removed body frame [S,S,3]: torso kept, head replaced by the plate, neck continued upwards."""
    import cv2

    S = frame.shape[0]
    head0 = np.isin(lab, HEAD_CLASSES).astype(np.uint8)
    head = cv2.dilate(head0, _disk(s.head_grow * S)) > 0
    fringe = cv2.dilate(head0, _disk(s.fringe_grow * S)) > 0
    body = np.isin(lab, BODY_CLASSES) & ~head
    keep = body | ((lab == BG) & ~fringe)
    out = np.where(keep[..., None], frame, plate)
    neck = (lab == NECK) & body
    cols = np.flatnonzero(neck.any(0))
    if len(cols):
        top = np.argmax(neck[:, cols], axis=0)  # first neck row per column
        ext = int(round(s.neck_extend * S))
        src_rows = np.minimum(top + 2, S - 1)
        colour = frame[src_rows, cols].astype(np.float32) * s.neck_shade
        ys = np.arange(S)[:, None]
        # rows above the neck top, within reach, that were head (not background or cloth)
        fill = (ys < top[None]) & (ys >= top[None] - ext) & head[:, cols]
        yy, jj = np.nonzero(fill)
        out[yy, cols[jj]] = colour[jj].astype(np.uint8)
    return out
