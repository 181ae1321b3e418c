"""Emotion as (valence, arousal): category coordinates, emotion tracks over time, and the expression model.

The expression model maps any point of the valence-arousal disc to an *expression change* against the
same person's neutral face, in a face-normalised space: 3-D landmark offsets in a head-aligned frame
(x along the eye line, y down the face, unit = outer-eye-corner distance) and blendshape deltas. It is
fitted from labelled MEAD clips (`scripts/fit_expression_model.py`) and used by the lip-aligned face
generator (`emotalk.face.generator`). What opens or shapes the mouth for speech is left out: those
belong to the audio, and an emotion must never fight lip-sync.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotalk.errors import InputError

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# categories

CATEGORIES: dict[str, tuple[float, float]] = {
    "neutral": (0.0, 0.0),
    "happy": (0.8, 0.5),
    "surprised": (0.2, 0.85),
    "fear": (-0.6, 0.75),
    "angry": (-0.65, 0.65),
    "disgusted": (-0.7, 0.35),
    "contempt": (-0.55, 0.3),
    "sad": (-0.7, -0.45),
    "calm": (0.5, -0.5),  # a picker preset: no fer class, no MEAD clip
}
# fer's 7 output classes in its order, as our category names
FER_CLASSES: tuple[str, ...] = ("angry", "disgusted", "fear", "happy", "sad", "surprised", "neutral")
FER_VA = np.array([CATEGORIES[c] for c in FER_CLASSES], np.float32)  # [7,2]


def category_va(name: str) -> tuple[float, float]:
    """(valence, arousal) of a category name (case-insensitive)."""
    key = name.strip().lower()
    if key not in CATEGORIES:
        raise InputError(f"Unknown emotion '{name}'. Use one of: {', '.join(CATEGORIES)}, "
                         "or give valence and arousal numbers.")
    return CATEGORIES[key]


def clamp_to_disc(v: float, a: float) -> tuple[float, float, str | None]:
    """Put (v, a) onto the unit disc: returns (v, a, notice); notice is None when nothing changed.

    NaN or infinite values raise InputError (there is no sensible emotion to fall back to).
    """
    if not (math.isfinite(v) and math.isfinite(a)):
        raise InputError(f"Valence and arousal must be finite numbers, got ({v}, {a}).")
    r = math.hypot(v, a)
    if r <= 1.0:
        return float(v), float(a), None
    cv, ca = v / r, a / r
    return cv, ca, (f"(valence, arousal) = ({v:.3g}, {a:.3g}) lies outside the unit disc; "
                    f"using ({cv:.3f}, {ca:.3f}) on its edge.")


# ----------------------------------------------------------------------------------------------
# emotion tracks


@dataclass
class EmotionTrack:
    """Keyframed emotion over time; between keyframes an ease-in/ease-out (smoothstep) blend.

    Smoothstep along the straight segment between two keyframes: velocity is continuous (zero at each
    keyframe, so a held emotion starts and stops gently), there is no overshoot, and every sample stays on
    the chord between two disc points, hence inside the disc. Before the first keyframe and after the last
    the nearest keyframe is held. One keyframe = a constant emotion.
    """

    times: np.ndarray  # [K] float64 seconds, strictly increasing, >= 0
    va: np.ndarray  # [K,2] float32 (valence, arousal), inside the unit disc
    notices: list[str] = field(default_factory=list)  # what was changed on the way in (clamping)

    @classmethod
    def constant(cls, valence: float, arousal: float) -> EmotionTrack:
        """A single emotion for the whole clip."""
        return cls.from_keyframes([(0.0, valence, arousal)])

    @classmethod
    def from_keyframes(cls, keyframes: list[tuple[float, float, float]],
                       duration: float | None = None) -> EmotionTrack:
        """Keyframes (time_s, valence, arousal); `duration` (s) of the speech, when known, bounds times."""
        if len(keyframes) == 0:
            raise InputError("An emotion track needs at least one keyframe (time, valence, arousal).")
        arr = np.array(keyframes, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise InputError("Each emotion keyframe must be (time, valence, arousal).")
        if not np.isfinite(arr).all():
            raise InputError("Emotion keyframes contain NaN or infinite values; give finite numbers.")
        t = arr[:, 0]
        if (t < 0).any():
            raise InputError(f"Emotion keyframe times must be >= 0 s, got {t[t < 0][0]:g}.")
        d = np.diff(t)
        if (d == 0).any():
            raise InputError(f"Two emotion keyframes share the time {t[1:][d == 0][0]:g} s; "
                             "give each keyframe its own time.")
        if (d < 0).any():
            raise InputError("Emotion keyframes must be sorted by time (earliest first).")
        track = cls(t, np.zeros((len(t), 2), np.float32))
        for k, (_, v, a) in enumerate(arr):
            cv, ca, note = clamp_to_disc(float(v), float(a))
            track.va[k] = (cv, ca)
            if note:
                track.notices.append(f"keyframe at {t[k]:g} s: {note}")
                log.warning("emotion keyframe at %g s: %s", t[k], note)
        if duration is not None:
            track.check_duration(duration)
        return track

    @classmethod
    def from_file(cls, path: str | Path, duration: float | None = None) -> EmotionTrack:
        """Read keyframes from JSON or CSV (see `parse_track_text` for the formats)."""
        p = Path(path)
        if not p.is_file():
            raise InputError(f"Emotion track file not found: {p}")
        return cls.from_keyframes(parse_track_text(p.read_text(encoding="utf-8"), p.suffix), duration)

    def check_duration(self, duration: float) -> None:
        """Raise InputError when a keyframe lies after the end of the speech (`duration` seconds)."""
        late = self.times[self.times > duration + 1e-6]
        if len(late):
            raise InputError(f"Emotion keyframe at {late[0]:g} s lies after the end of the speech "
                             f"({duration:.2f} s); move it inside the speech.")

    def at(self, t: np.ndarray) -> np.ndarray:
        """(valence, arousal) at times t [T] (s) -> [T,2] float32."""
        t = np.asarray(t, np.float64)
        if len(self.times) == 1:
            return np.broadcast_to(self.va[0], (len(t), 2)).astype(np.float32).copy()
        k = np.clip(np.searchsorted(self.times, t, side="right") - 1, 0, len(self.times) - 2)  # [T]
        t0, t1 = self.times[k], self.times[k + 1]
        u = np.clip((t - t0) / (t1 - t0), 0.0, 1.0)
        s = (u * u * (3.0 - 2.0 * u))[:, None]
        return ((1.0 - s) * self.va[k] + s * self.va[k + 1]).astype(np.float32)

    def sample(self, n_frames: int, fps: float) -> np.ndarray:
        """Per-frame (valence, arousal) [n_frames,2] for a clip of n_frames at fps."""
        if n_frames < 0 or not (fps > 0):
            raise InputError(f"Cannot sample an emotion track for {n_frames} frames at {fps} fps.")
        self.check_duration(n_frames / fps)
        return self.at(np.arange(n_frames) / fps)


def parse_track_text(text: str, suffix: str = ".json") -> list[tuple[float, float, float]]:
    """Keyframes from a file's text.

    JSON: a list of keyframes, or {"keyframes": [...]}; a keyframe is [time, valence, arousal] or
    {"time": s, "valence": v, "arousal": a} or {"time": s, "emotion": "happy", "intensity": 0..1}.
    CSV: rows `time,valence,arousal` (a header row with those names is optional).
    """
    if suffix.lower() == ".csv":
        rows = [r for r in csv.reader(text.splitlines()) if r and not r[0].lstrip().startswith("#")]
        if rows and not _is_number(rows[0][0]):
            head = [h.strip().lower() for h in rows[0]]
            try:
                cols = [head.index("time"), head.index("valence"), head.index("arousal")]
            except ValueError:
                raise InputError("Emotion track CSV header must name the columns time, valence, arousal."
                                 ) from None
            rows = [[r[c] for c in cols] for r in rows[1:]]
        out = []
        for i, r in enumerate(rows):
            if len(r) < 3:
                raise InputError(f"Emotion track CSV row {i + 1} needs time, valence, arousal.")
            try:
                out.append((float(r[0]), float(r[1]), float(r[2])))
            except ValueError:
                raise InputError(f"Emotion track CSV row {i + 1} has a value that is not a number: {r}"
                                 ) from None
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"Emotion track file is not valid JSON ({e}).") from None
    if isinstance(data, dict):
        data = data.get("keyframes")
    if not isinstance(data, list):
        raise InputError('Emotion track JSON must be a list of keyframes or {"keyframes": [...]}.')
    return [_keyframe(k, i) for i, k in enumerate(data)]


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _keyframe(k: object, i: int) -> tuple[float, float, float]:
    try:
        if isinstance(k, (list, tuple)) and len(k) == 3:
            return float(k[0]), float(k[1]), float(k[2])
        if isinstance(k, dict):
            if "emotion" in k:
                v, a = category_va(str(k["emotion"]))
                s = float(k.get("intensity", 1.0))
                return float(k["time"]), v * s, a * s
            return float(k["time"]), float(k["valence"]), float(k["arousal"])
    except (KeyError, TypeError, ValueError):
        pass
    raise InputError(f"Emotion keyframe {i + 1} ({k!r}) is not [time, valence, arousal] or "
                     '{"time", "valence", "arousal"} or {"time", "emotion", "intensity"}.')


# ----------------------------------------------------------------------------------------------
# face-normalised space

# landmarks that move with the skull (same set as the tracker's head-pose template)
RIGID_IDX = np.array([10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 33, 133, 362, 263, 127, 356, 162, 389,
                      21, 251, 109, 338, 67, 297, 108, 337, 69, 299, 116, 345, 98, 327, 129, 358])
EYE_OUTER = (33, 263)  # outer eye corners (subject's right, left): the unit of length
FACE_TOP, CHIN = 10, 152
# inner-lip (upper, lower) pairs, corner to corner: their vertical gap is the mouth opening (speech)
INNER_LIP_PAIRS = np.array([(191, 95), (80, 88), (81, 178), (82, 87), (13, 14), (312, 317), (311, 402),
                            (310, 318), (415, 324)])
LIP_MID = (13, 14)  # inner upper / lower lip, middle
MOUTH_CORNERS = (61, 291)

# Blendshapes an emotion may change: mouth corners (smile, frown, stretch, press, dimple) and the upper
# face (brows, eyes, cheeks, nose sneer). Jaw, mouth opening / rounding / rolling and gaze are left out.
EXPRESSION_BLENDSHAPES: tuple[str, ...] = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthPressLeft", "mouthPressRight", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "noseSneerLeft", "noseSneerRight",
)


def head_frame(ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Head-aligned frame of a face [478,3] (px): rotation rows R [3,3], origin [3], unit length (px).

    x along the outer eye corners, y from forehead to chin (made orthogonal), z = x × y; origin at the
    rigid points' centroid; unit = outer-eye-corner distance. Maps p -> (p - origin) @ R.T / unit.
    """
    x = ref[EYE_OUTER[1]] - ref[EYE_OUTER[0]]
    unit = float(np.linalg.norm(x))
    x = x / unit
    down = ref[CHIN] - ref[FACE_TOP]
    y = down - x * (down @ x)
    y = y / np.linalg.norm(y)
    R = np.stack([x, y, np.cross(x, y)])
    return R, ref[RIGID_IDX].mean(0), unit


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising |s R src + t - dst|² over point sets [N,3] (Umeyama)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    s = float((S * np.diag(D)).sum() / (a**2).sum() * len(src))
    return s, R, md - s * R @ ms


def normalise_faces(lmk: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Landmarks [T,478,3] (px) -> the head frame of `ref` [478,3]: pose removed through the rigid points.

    Each frame is similarity-aligned onto `ref` by the rigid points (removing head motion and scale),
    then expressed in ref's head frame (unit = ref's outer-eye-corner distance).
    """
    R, o, unit = head_frame(ref.astype(np.float64))
    out = np.empty(lmk.shape, np.float32)
    for i, x in enumerate(lmk.astype(np.float64)):
        s, Ri, t = similarity(x[RIGID_IDX], ref[RIGID_IDX].astype(np.float64))
        out[i] = ((s * x @ Ri.T + t) - o) @ R.T / unit
    return out


def lip_gap(norm: np.ndarray) -> np.ndarray:
    """Inner-lip vertical opening [...] (mean over the inner pairs) of normalised landmarks [...,478,3]."""
    return (norm[..., INNER_LIP_PAIRS[:, 1], 1] - norm[..., INNER_LIP_PAIRS[:, 0], 1]).mean(-1)


def jaw_drop(norm: np.ndarray) -> np.ndarray:
    """Chin height below the rigid points' centre [...] of normalised landmarks [...,478,3] (jaw opening)."""
    return norm[..., CHIN, 1] - norm[..., RIGID_IDX, 1].mean(-1)


def keep_lip_gap(offsets: np.ndarray) -> np.ndarray:
    """Offsets [...,478,3] with each inner-lip pair moved together vertically: the opening is unchanged."""
    out = offsets.copy()
    up, lo = INNER_LIP_PAIRS[:, 0], INNER_LIP_PAIRS[:, 1]
    mean_y = 0.5 * (out[..., up, 1] + out[..., lo, 1])
    out[..., up, 1] = mean_y
    out[..., lo, 1] = mean_y
    return out


# ----------------------------------------------------------------------------------------------
# the expression model


@dataclass
class ExpressionChange:
    """An emotion's change against the neutral face, in the face-normalised space."""

    offsets: np.ndarray  # [478,3] float32 landmark offsets in the head frame (unit: outer-eye distance)
    blendshapes: np.ndarray  # [52] float32 blendshape deltas (zero for the speech-only ones)
    blendshape_names: list[str]  # the 52 MediaPipe names, in order


@dataclass
class ExpressionModel:
    """Expression change at any (v, a) = r · G(θ): polar interpolation between the measured categories.

    Each category k at angle θ_k, radius r_k gives a change per unit radius G_k = change_k / r_k. Around
    the circle, G blends the two angular neighbours with a smoothstep (C1, no overshoot: always a convex
    mix of two measured changes); along any ray the change grows linearly from neutral (zero) at the
    centre. The map reproduces every measured category exactly, including categories at nearly the same
    angle (contempt / disgusted: 2° apart; fear / angry: 6°), so it turns quickly between those. With no
    category in the positive-valence, low-arousal quarter, calm is a blend of the sad and happy changes.
    """

    angles: np.ndarray  # [K] float32 category angles atan2(a, v), radians, increasing in [-pi, pi)
    per_radius: np.ndarray  # [K,D] float32 change per unit radius at those angles
    blendshape_names: list[str]  # the 52 MediaPipe names (column order of the blendshape outputs)
    categories: list[str]  # category names in `angles` order
    category_changes: np.ndarray  # [K,D] float32 measured changes at those categories
    neutral_shape: np.ndarray  # [478,3] float32 mean neutral face of the fitting actors, normalised
    info: dict = field(default_factory=dict)  # provenance: clips, actors, frame counts

    n_lmk = 478 * 3

    @classmethod
    def fit(cls, changes: dict[str, np.ndarray], blendshape_names: list[str], neutral_shape: np.ndarray,
            info: dict | None = None) -> ExpressionModel:
        """Build from measured per-category changes {category: [D]} (D = 478*3 offsets + 52 blendshapes)."""
        cats = [c for c in changes if c != "neutral"]
        if len(cats) < 2:
            raise InputError("The expression model needs at least two measured emotions besides neutral.")
        va = np.array([CATEGORIES[c] for c in cats], np.float64)
        theta = np.arctan2(va[:, 1], va[:, 0])
        order = np.argsort(theta)
        meas = np.stack([changes[cats[i]] for i in order]).astype(np.float32)
        r = np.hypot(va[order, 0], va[order, 1])[:, None]
        return cls(theta[order].astype(np.float32), (meas / r).astype(np.float32), list(blendshape_names),
                   [cats[i] for i in order], meas, neutral_shape.astype(np.float32), dict(info or {}))

    def vector(self, valence: float, arousal: float) -> np.ndarray:
        """Raw output [D] at (v, a) (clamped onto the disc)."""
        v, a, _ = clamp_to_disc(valence, arousal)
        r = math.hypot(v, a)
        if r == 0.0:
            return np.zeros(self.per_radius.shape[1], np.float32)
        th = math.atan2(a, v)
        ang = self.angles.astype(np.float64)
        j = int(np.searchsorted(ang, th, side="right"))  # next category counter-clockwise
        i = j - 1  # previous one (wraps to the last)
        j %= len(ang)
        span = (ang[j] - ang[i]) % (2 * math.pi) or 2 * math.pi
        u = ((th - ang[i]) % (2 * math.pi)) / span
        s = u * u * (3.0 - 2.0 * u)
        return (r * ((1.0 - s) * self.per_radius[i] + s * self.per_radius[j])).astype(np.float32)

    def change(self, valence: float, arousal: float) -> ExpressionChange:
        """Expression change at (v, a): landmark offsets (lip opening kept) and blendshape deltas."""
        vec = self.vector(valence, arousal)
        off = keep_lip_gap(vec[: self.n_lmk].reshape(478, 3))
        bs = vec[self.n_lmk:].copy()
        keep = np.array([n in EXPRESSION_BLENDSHAPES for n in self.blendshape_names])
        bs[~keep] = 0.0
        return ExpressionChange(off.astype(np.float32), bs.astype(np.float32), list(self.blendshape_names))

    # io ---------------------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write a small .npz."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            p, angles=self.angles, per_radius=self.per_radius.astype(np.float32),
            blendshape_names=np.array(self.blendshape_names), categories=np.array(self.categories),
            category_changes=self.category_changes.astype(np.float32),
            neutral_shape=self.neutral_shape.astype(np.float32), info=np.array(json.dumps(self.info)))
        return p

    @classmethod
    def load(cls, path: str | Path | None = None) -> ExpressionModel:
        """Load the committed model (default) or a given .npz."""
        p = Path(path) if path is not None else DEFAULT_MODEL_PATH
        if not p.is_file():
            raise InputError(f"Expression model not found: {p}. Re-create it with "
                             "'python scripts/fit_expression_model.py'.")
        z = np.load(p, allow_pickle=False)
        return cls(z["angles"].astype(np.float32), z["per_radius"].astype(np.float32),
                   [str(s) for s in z["blendshape_names"]], [str(s) for s in z["categories"]],
                   z["category_changes"].astype(np.float32), z["neutral_shape"].astype(np.float32),
                   json.loads(str(z["info"])))


DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[1] / "models" / "expression_model.npz"


# ----------------------------------------------------------------------------------------------
# measuring category changes from tracked clips


@dataclass
class ClipTrack:
    """One tracked labelled clip."""

    actor: str  # actor id, e.g. "M030"
    emotion: str  # category name
    lmk: np.ndarray  # [T,478,3] float32 MediaPipe landmarks, px (z in x's scale)
    blendshapes: np.ndarray  # [T,52] float32


def measure_changes(clips: list[ClipTrack], blendshape_names: list[str]
                    ) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """Per-category change against the same actor's neutral, averaged over actors.

    Speech moves the mouth in every clip, and some emotions are spoken with a wider mouth. So per actor,
    every output value y (landmark coordinate or blendshape) is regressed over all that actor's frames
    on the emotion (one-hot) and two speech regressors, the inner-lip opening and the jaw drop:
    y = c_emotion + β·(gap, jaw), and the emotion's change is c_emotion - c_neutral, the difference at
    the same mouth opening and jaw position. That removes lip parting and jaw drop (and what moves with
    them) from the expression; `keep_lip_gap` then pins the inner-lip opening exactly.
    Returns ({category: [D]}, neutral shape [478,3] normalised, info).
    """
    actors = sorted({c.actor for c in clips if c.emotion == "neutral"})
    per_cat: dict[str, list[np.ndarray]] = {}
    neutral_shapes = []
    info: dict = {"actors": actors, "frames": {}}
    for actor in actors:
        mine = [c for c in clips if c.actor == actor]
        neu = next(c for c in mine if c.emotion == "neutral")
        ref = np.median(neu.lmk, 0)  # robust neutral reference for the alignment
        emos = [c.emotion for c in mine]
        ys, gs, onehot = [], [], []
        for k, c in enumerate(mine):
            n = normalise_faces(c.lmk, ref)  # [T,478,3]
            ys.append(np.concatenate([n.reshape(len(n), -1), c.blendshapes], 1))
            gs.append(np.stack([lip_gap(n), jaw_drop(n)], 1))
            oh = np.zeros((len(n), len(mine)))
            oh[:, k] = 1.0
            onehot.append(oh)
            info["frames"][f"{actor}_{c.emotion}"] = len(n)
        Y = np.concatenate(ys).astype(np.float64)  # [N,D]
        g = np.concatenate(gs)  # [N,2] speech regressors: lip opening, jaw drop
        X = np.concatenate([np.concatenate(onehot), g - g.mean(0)], 1)  # [N,K+2]
        coef, *_ = np.linalg.lstsq(X, Y, rcond=None)
        cneu = coef[emos.index("neutral")]
        neutral_shapes.append(cneu[:ExpressionModel.n_lmk].reshape(478, 3))
        for k, e in enumerate(emos):
            if e != "neutral":
                per_cat.setdefault(e, []).append(coef[k] - cneu)
    changes = {e: np.mean(v, 0).astype(np.float32) for e, v in per_cat.items()}
    info["actors_per_category"] = {e: len(v) for e, v in per_cat.items()}
    return changes, np.mean(neutral_shapes, 0).astype(np.float32), info

