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


def background_plate(frames: np.ndarray, labels: np.ndarray, s: PlateSettings = PlateSettings(),
                     workers: int = 1) -> tuple[np.ndarray, float]:
    """frames [N,S,S,3] uint8, labels [N,S,S] -> (plate [S,S,3] uint8, fraction of pixels inpainted).
    `workers` threads: the person masks frame by frame, the median in bands of rows (the same result)."""
    import cv2

    from emotalk.dataset.pool import ordered_map

    N, S = frames.shape[:2]
    k = _disk(s.person_grow * S)
    person = np.stack(list(ordered_map(lambda i: cv2.dilate((labels[i] != BG).astype(np.uint8), k) > 0,
                                       range(N), workers)))  # [N,S,S]
    plate = np.zeros((S, S, 3), np.uint8)
    seen = np.zeros((S, S), bool)

    def rows(ab: tuple[int, int]) -> None:
        # per-pixel median over the frames where the pixel is background: person pixels get a sentinel
        # that sorts last, so the median of the n valid values sits at index (n - 1) // 2
        a, b = ab
        vals = frames[:, a:b].transpose(1, 2, 3, 0).astype(np.uint16, order="C")  # [b-a,S,3,N]
        vals[np.broadcast_to(person[:, a:b].transpose(1, 2, 0)[:, :, None], vals.shape)] = 1000
        vals.sort(axis=-1)  # contiguous: ~3x faster than sorting along the first axis
        n_valid = (vals[:, :, 0] < 1000).sum(-1)  # [b-a,S]
        pick = np.maximum(n_valid - 1, 0) // 2
        med = np.take_along_axis(vals, pick[:, :, None, None].repeat(3, 2), -1)[..., 0]  # [b-a,S,3]
        seen[a:b] = n_valid > 0
        plate[a:b] = np.where(seen[a:b, :, None], med, 0)

    bands = min(S, max(8, 2 * workers))  # bands of rows: a smaller working set, and work for each thread
    edges = np.linspace(0, S, bands + 1).round().astype(int)
    for _ in ordered_map(rows, list(zip(edges[:-1].tolist(), edges[1:].tolist())), workers):
        pass
    hole = ~seen
    frac = float(hole.mean())
    if hole.any():
        plate = inpaint(plate, hole)
    return plate, frac


def inpaint(img: np.ndarray, hole: np.ndarray) -> np.ndarray:
    """Fill hole pixels [S,S] of img [S,S,3]: per row, linear between the nearest seen pixels left and
    right (backgrounds are mostly walls, windows, shelves: horizontal structure continues), then smoothed
    vertically inside the hole so rows do not streak."""
    import cv2

    if hole.all():
        return np.full_like(img, 127)
    S = img.shape[0]
    out = img.astype(np.float32)
    xs = np.arange(img.shape[1])
    last = None
    for y in range(S):
        h = hole[y]
        if not h.any():
            continue
        ok = np.flatnonzero(~h)
        if len(ok) == 0:  # a whole row unseen: take the nearest row filled so far (or later, below)
            if last is not None:
                out[y] = out[last]
            continue
        for c in range(3):
            out[y, h, c] = np.interp(xs[h], ok, out[y, ok, c])
        last = y
    for y in range(S - 1, -1, -1):  # rows above the first seen row
        if hole[y].all() and (y + 1 < S):
            out[y] = np.where(hole[y][:, None], out[y + 1], out[y])
    sm = cv2.GaussianBlur(out, (0, 0), sigmaX=1.0, sigmaY=max(2.0, S / 64))
    out[hole] = sm[hole]
    return out.clip(0, 255).astype(np.uint8)


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
    cols = np.flatnonzero(neck.sum(0) >= 3)
    if len(cols) >= 3:
        top = np.argmax(neck[:, cols], axis=0)  # first neck row per column
        ext = int(round(s.neck_extend * S))
        # colour per column: mean of a few rows just under the neck's top edge, smoothed across columns
        rows = np.minimum(top[None] + np.arange(2, 8)[:, None], S - 1)  # [6,C]
        colour = frame[rows, cols[None]].astype(np.float32).mean(0)  # [C,3]
        colour = cv2.GaussianBlur(colour[None], (0, 0), sigmaX=max(1.0, S / 100), sigmaY=0.1)[0]
        ys = np.arange(S)[:, None]
        # rows above the neck top, within reach, that were head (not background or cloth); darker upwards
        fill = (ys < top[None]) & (ys >= top[None] - ext) & head[:, cols]
        yy, jj = np.nonzero(fill)
        shade = s.neck_shade - (1 - s.neck_shade) * (top[jj] - yy) / max(ext, 1)
        out[yy, cols[jj]] = (colour[jj] * shade[:, None]).clip(0, 255).astype(np.uint8)
    return out
