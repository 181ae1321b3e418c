"""Mouth measures of rendered video: sharpness of the lip region, opening against a reference render,
speech / pause masks, the mouth at rest in pauses, the open-vowel opening.

Definitions (used by the audio-driven tables):
- **lip box**: the box around the tracked lip landmarks (outer + inner contours) with `margin` of the
  lips' width added on each side, widened or heightened about its centre to a 2:1 box (so resampling
  to CROP_SIZE never distorts it).
- **mouth sharpness**: variance of the Laplacian (3x3) of the grey lip box resampled to CROP_SIZE, per
  frame; the render's value is the median over frames with a face.
- **mouth opening**: inner-lip gap over the outer-eye distance (`face.landmarks.mouth_opening`).
- **rest level**: the render's own REST_PERCENTILE-th percentile of the opening (over all frames) plus
  REST_TOLERANCE of its (95th - 5th percentile) range. A pause is "at rest" when the opening reaches the
  rest level within `within_s` of the pause start and stays at or under it for at least `hold` of the
  rest of the pause.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emotalk.face.landmarks import MOUTH_LANDMARKS

CROP_SIZE = (64, 32)  # (width, height) the lip box is resampled to before the Laplacian
LIP_MARGIN = 0.25  # lip box margin on each side, in lip widths
REST_PERCENTILE = 10.0  # the rest level's base: this percentile of the render's opening
REST_TOLERANCE = 0.15  # plus this fraction of the opening's 5-95 percentile range
MIN_PAUSE_S = 0.4  # pauses at least this long are checked for rest
REST_WITHIN_S = 0.2  # the mouth must be at rest this soon after a pause starts
REST_HOLD = 0.8  # ... and stay at rest for this fraction of the rest of the pause
OPEN_VOWEL_PERCENTILE = 95.0  # the open-vowel opening reported (percentile over open-vowel frames)


def lip_box(
    lmk: np.ndarray, margin: float = LIP_MARGIN, aspect: float = 2.0
) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) px of the 2:1 box around the lips of one face's landmarks [478,2+]."""
    pts = np.asarray(lmk)[list(MOUTH_LANDMARKS), :2]
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    w = (x1 - x0) * (1 + 2 * margin)
    h = max((y1 - y0) + 2 * margin * (x1 - x0), 1.0)
    w, h = max(w, aspect * h), max(h, w / aspect)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def mouth_crop(
    frame: np.ndarray, lmk: np.ndarray, size: tuple[int, int] = CROP_SIZE, grey: bool = True
) -> np.ndarray:
    """The lip box of frame [H,W,3] uint8 resampled to size (w, h): grey [h,w] float32, or RGB uint8."""
    import cv2

    x0, y0, x1, y1 = lip_box(lmk)
    sx, sy = size[0] / (x1 - x0), size[1] / (y1 - y0)
    M = np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy]], np.float32)
    img = np.ascontiguousarray(frame[..., :3])
    interp = cv2.INTER_AREA if sx < 1 else cv2.INTER_LINEAR
    out = cv2.warpAffine(img, M, size, flags=interp, borderMode=cv2.BORDER_REPLICATE)
    if not grey:
        return out
    return cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(np.float32)


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 3x3 Laplacian of a grey image [h,w] (values 0..255)."""
    import cv2

    return float(cv2.Laplacian(np.asarray(grey, np.float32), cv2.CV_32F, ksize=1).var())


def mouth_sharpness(
    frames: np.ndarray, lmk: np.ndarray, found: np.ndarray | None = None, per_contrast: bool = False
) -> float:
    """Median over frames with a face of the lip-box Laplacian variance; frames [T,H,W,3], lmk [T,478,2+].

    per_contrast: each frame's value divided by the grey variance of its lip box (the detail measure: a
    darker lip line or shading raises the Laplacian's variance too, but not this ratio; blur lowers both)."""
    ok = np.isfinite(lmk[:, 0, 0]) if found is None else np.asarray(found, bool)
    vals = []
    for f, lm, k in zip(frames, lmk, ok):
        if k:
            g = mouth_crop(f, lm)
            vals.append(
                laplacian_variance(g) / max(float(g.var()), 1e-6) if per_contrast else laplacian_variance(g)
            )
    return float(np.median(vals)) if vals else float("nan")


def opening_ratio(
    emo: np.ndarray, neutral: np.ndarray, mask: np.ndarray | None = None
) -> tuple[float, float]:
    """(ratio of mean openings, mean |difference|) of two opening tracks [T] over the frames in mask
    (speech frames; all when None). Tracks of different lengths are compared over the common frames."""
    n = min(len(emo), len(neutral))
    e, r = np.asarray(emo[:n], np.float64), np.asarray(neutral[:n], np.float64)
    m = np.isfinite(e) & np.isfinite(r)
    if mask is not None:
        m &= np.asarray(mask[:n], bool)
    if not m.any():
        return float("nan"), float("nan")
    return float(e[m].mean() / max(r[m].mean(), 1e-9)), float(np.abs(e[m] - r[m]).mean())


# --- speech and pauses -------------------------------------------------------------------------------


def speech_intervals_from_phones(phones: Sequence) -> list[tuple[float, float]]:
    """Merged (start, end) s of the non-pause phones (objects with .phone/.start/.end, or (p, s, e))."""
    iv = []
    for p in phones:
        name, s, e = (p.phone, p.start, p.end) if hasattr(p, "phone") else p
        if str(name).upper() != "SIL" and e > s:
            iv.append((float(s), float(e)))
    iv.sort()
    merged: list[list[float]] = []
    for s, e in iv:
        if merged and s <= merged[-1][1] + 1e-6:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def speech_intervals_from_wav(
    wav: np.ndarray, sr: int = 16000, threshold_db: float = -35.0, hop_s: float = 0.01, smooth_s: float = 0.05
) -> list[tuple[float, float]]:
    """(start, end) s where the speech is active: 10 ms RMS within `threshold_db` of the loudest 10 ms
    (the 99th percentile, robust to clicks), smoothed over `smooth_s`."""
    hop = int(hop_s * sr)
    n = len(wav) // hop
    if n < 1:
        return []
    rms = np.sqrt(np.mean(np.asarray(wav[: n * hop], np.float64).reshape(n, hop) ** 2, axis=1) + 1e-12)
    k = max(1, int(round(smooth_s / hop_s)))
    rms = np.convolve(rms, np.ones(k) / k, mode="same")
    db = 20 * np.log10(rms / max(np.percentile(rms, 99), 1e-9))
    active = db > threshold_db
    edges = np.flatnonzero(np.diff(np.r_[0, active.astype(np.int8), 0]))
    return [(a * hop_s, b * hop_s) for a, b in zip(edges[::2], edges[1::2])]


def speech_mask(intervals: Sequence[tuple[float, float]], n_frames: int, fps: float = 25.0) -> np.ndarray:
    """[T] bool: frames whose instant t/fps falls inside a speech interval."""
    t = np.arange(n_frames) / fps
    m = np.zeros(n_frames, bool)
    for s, e in intervals:
        m |= (t >= s) & (t < e)
    return m


def pauses(
    intervals: Sequence[tuple[float, float]], duration: float, min_s: float = MIN_PAUSE_S
) -> list[tuple[float, float]]:
    """Gaps of at least min_s between speech intervals, including before the first and after the last."""
    out, t = [], 0.0
    for s, e in sorted(intervals):
        if s - t >= min_s:
            out.append((t, s))
        t = max(t, e)
    if duration - t >= min_s:
        out.append((t, duration))
    return out


def rest_level(opening: np.ndarray) -> float:
    """The render's rest opening (see the module docstring)."""
    o = np.asarray(opening, np.float64)
    o = o[np.isfinite(o)]
    if not len(o):
        return float("nan")
    p5, p95 = np.percentile(o, [5, 95])
    return float(np.percentile(o, REST_PERCENTILE) + REST_TOLERANCE * (p95 - p5))


def rest_in_pauses(
    opening: np.ndarray,
    pause_list: Sequence[tuple[float, float]],
    fps: float = 25.0,
    within_s: float = REST_WITHIN_S,
    hold: float = REST_HOLD,
    level: float | None = None,
) -> dict:
    """Whether the mouth comes to rest in each pause: {"n", "at_rest", "fraction", "level", "pauses":
    [{start, end, reached_s (None: never), held}]}. opening [T] per frame."""
    o = np.asarray(opening, np.float64)
    lvl = rest_level(o) if level is None else float(level)
    rows = []
    for s, e in pause_list:
        a, b = int(np.ceil(s * fps - 1e-9)), min(len(o), int(np.ceil(e * fps - 1e-9)))
        if b - a < 1:
            continue
        seg = o[a:b]
        at = np.flatnonzero(np.nan_to_num(seg, nan=np.inf) <= lvl)
        reached = None if not len(at) else round(float((a + at[0]) / fps - s), 3)
        k = int(np.ceil(within_s * fps))
        rest = seg[k:]
        held = bool(not len(rest) or np.mean(np.nan_to_num(rest, nan=np.inf) <= lvl) >= hold)
        ok = reached is not None and reached <= within_s + 1e-9 and held
        rows.append({"start": round(s, 3), "end": round(e, 3), "reached_s": reached, "held": held, "ok": ok})
    n_ok = sum(r["ok"] for r in rows)
    return {
        "n": len(rows),
        "at_rest": n_ok,
        "fraction": n_ok / len(rows) if rows else float("nan"),
        "level": lvl,
        "pauses": rows,
    }


def open_vowel_opening(
    opening: np.ndarray, phones: Sequence, fps: float = 25.0, q: float = OPEN_VOWEL_PERCENTILE
) -> float:
    """The q-th percentile of the opening [T] over frames whose instant falls in an open vowel."""
    from emotalk.avsync.lipsync import OPEN_VOWELS

    t = np.arange(len(opening)) / fps
    m = np.zeros(len(opening), bool)
    for p in phones:
        if p.phone.upper() in OPEN_VOWELS:
            m |= (t >= p.start) & (t < p.end)
    vals = np.asarray(opening, np.float64)[m]
    vals = vals[np.isfinite(vals)]
    return float(np.percentile(vals, q)) if len(vals) else float("nan")

