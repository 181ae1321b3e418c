"""Emotion as (valence, arousal): category coordinates, emotion tracks over time, and the expression model.

The expression model maps any point of the valence-arousal disc to an *expression change* against the
same person's neutral face, in a face-normalised space: 3-D landmark offsets in a head-aligned frame
(x along the eye line, y down the face, unit = outer-eye-corner distance) and blendshape deltas. It is
fitted from labelled MEAD clips (`scripts/fit_expression_model.py`) and used by the lip-aligned face
generator (`emotalk.face.generator`). What opens or shapes the mouth for speech is left out: those
belong to the audio, and an emotion must never fight lip-sync.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotalk.emotion import CATEGORIES, clamp_to_disc
from emotalk.errors import InputError
from emotalk.face.landmarks import CHIN, INNER_LIP_PAIRS, NOSE_TIP, OUTER_LIP_RING, STABLE_IDX, head_frame
from emotalk.face.rotations import umeyama

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------
# face-normalised space

# Blendshapes an emotion may change: mouth corners (smile, frown, stretch, press, dimple) and the upper
# face (brows, eyes, cheeks, nose sneer). Jaw, mouth opening / rounding / rolling and gaze are left out.
EXPRESSION_BLENDSHAPES: tuple[str, ...] = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthPressLeft", "mouthPressRight", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "noseSneerLeft", "noseSneerRight",
)


REST_PREFIX = "rest_"  # factors key "rest_happy": the identity's resting expression, removed away from it


def rest_offsets(factors: Mapping[str, float] | None) -> dict[str, float]:
    """{category: f} of the "rest_<category>" keys of a factors dict (see `ExpressionModel.weights`)."""
    return {k[len(REST_PREFIX):]: float(v) for k, v in (factors or {}).items()
            if k.startswith(REST_PREFIX) and float(v) != 0.0}


def normalise_faces(lmk: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Landmarks [T,478,3] (px) -> the head frame of `ref` [478,3]: pose removed through the rigid points.

    Each frame is similarity-aligned onto `ref` by the rigid points (removing head motion and scale),
    then expressed in ref's head frame (unit = ref's outer-eye-corner distance).
    """
    R, o, unit = head_frame(ref.astype(np.float64))
    out = np.empty(lmk.shape, np.float32)
    for i, x in enumerate(lmk.astype(np.float64)):
        s, Ri, t = umeyama(x[STABLE_IDX], ref[STABLE_IDX].astype(np.float64))
        out[i] = ((s * x @ Ri.T + t) - o) @ R.T / unit
    return out


def lip_gap(norm: np.ndarray) -> np.ndarray:
    """Inner-lip vertical opening [...] (mean over the inner pairs) of normalised landmarks [...,478,3]."""
    return (norm[..., INNER_LIP_PAIRS[:, 1], 1] - norm[..., INNER_LIP_PAIRS[:, 0], 1]).mean(-1)


def jaw_drop(norm: np.ndarray) -> np.ndarray:
    """Chin height below the rigid points' centre [...] of normalised landmarks [...,478,3] (jaw opening)."""
    return norm[..., CHIN, 1] - norm[..., STABLE_IDX, 1].mean(-1)


def keep_lip_gap(offsets: np.ndarray) -> np.ndarray:
    """Offsets [...,478,3] with each inner-lip pair moved together vertically: the opening is unchanged."""
    out = offsets.copy()
    up, lo = INNER_LIP_PAIRS[:, 0], INNER_LIP_PAIRS[:, 1]
    mean_y = 0.5 * (out[..., up, 1] + out[..., lo, 1])
    out[..., up, 1] = mean_y
    out[..., lo, 1] = mean_y
    return out


def lip_points(neutral: np.ndarray) -> np.ndarray:
    """Indices of the landmarks on the lips of a face [478,2+]: inside or on its outer lip contour."""
    import cv2

    ring = neutral[OUTER_LIP_RING, :2].astype(np.float32)
    inside = [i for i, p in enumerate(neutral[:, :2])
              if cv2.pointPolygonTest(ring, (float(p[0]), float(p[1])), False) >= 0]
    return np.union1d(np.asarray(inside, np.int64), OUTER_LIP_RING)


def keep_lip_thickness(offsets: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """Offsets [...,478,3] (after `keep_lip_gap`) with every lip landmark of the neutral face [478,3] between
    the outermost inner-lip pairs moving vertically as the pair at its x (interpolated): the lips move up
    or down as a block there, neither thinning nor thickening, so no lip edge moves into an opening that
    speech makes later (a smile's lower lip rose 2.2 units more at its outer edge than at its inner one and
    halved the rendered opening). The corners keep their own motion (a smile's lift)."""
    out = offsets.copy()
    px = neutral[INNER_LIP_PAIRS].mean(1)[:, 0]  # [P] x of each pair
    order = np.argsort(px)
    pts = lip_points(neutral)
    x = neutral[pts, 0]
    sel = np.setdiff1d(pts[(x >= px.min()) & (x <= px.max())], INNER_LIP_PAIRS)  # the pairs keep theirs
    pair_dy = out[..., INNER_LIP_PAIRS[order, 0], 1]  # [...,P] (each pair already moves as one)
    flat = pair_dy.reshape(-1, len(px))
    dy = np.stack([np.interp(neutral[sel, 0], px[order], f) for f in flat])  # [prod(...),S]
    out[..., sel, 1] = dy.reshape(*pair_dy.shape[:-1], len(sel))
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

    @property
    def upper_landmarks(self) -> np.ndarray:
        """[478] bool: the landmarks above the nose tip (brows, lids, upper cheeks), whose motion the
        generator limits (and the mouth warp leaves to the emotion field)."""
        return self.neutral_shape[:, 1] < self.neutral_shape[NOSE_TIP, 1]

    def factor_row(self, factors: Mapping[str, float] | None) -> np.ndarray:
        """Per-category factors {name: f} -> [K] in `categories` order (a missing category: 1)."""
        return np.array([float((factors or {}).get(c, 1.0)) for c in self.categories], np.float64)

    def weights(self, valence: float, arousal: float, factors: Mapping[str, float] | None = None
                ) -> np.ndarray:
        """Weights [K] of the rows of `per_radius` that make the change at (v, a) (clamped onto the disc):
        at most two non-zero, all zero at neutral. The map is linear in `per_radius`, so anything linear
        made from its rows (a warp of each category's change) blends with the same weights. factors
        scales each category's change ({name: f}, e.g. an identity's calibrated strengths); between two
        categories the factor blends with the change, so the map stays continuous. A factors key
        "rest_<category>" = f subtracts f × that category's change, in proportion to how far (v, a) is
        from neutral and from that category: a face that rests smiling loses the smile at angry."""
        w = self._weights(valence, arousal)
        if not factors:
            return w
        out = w * self.factor_row(factors)
        for c, f in rest_offsets(factors).items():  # the face's resting expression, taken out elsewhere
            if c in self.categories:
                k = self.categories.index(c)
                out[k] -= f * (w.sum() - w[k])
        return out

    def _weights(self, valence: float, arousal: float) -> np.ndarray:
        w = np.zeros(len(self.angles), np.float64)
        v, a, _ = clamp_to_disc(valence, arousal)
        r = math.hypot(v, a)
        if r == 0.0:
            return w
        th = math.atan2(a, v)
        ang = self.angles.astype(np.float64)
        j = int(np.searchsorted(ang, th, side="right"))  # next category counter-clockwise
        i = j - 1  # previous one (wraps to the last)
        j %= len(ang)
        span = (ang[j] - ang[i]) % (2 * math.pi) or 2 * math.pi
        u = ((th - ang[i]) % (2 * math.pi)) / span
        s = u * u * (3.0 - 2.0 * u)
        w[i] += r * (1.0 - s)
        w[j] += r * s
        return w

    def vector(self, valence: float, arousal: float, factors: Mapping[str, float] | None = None
               ) -> np.ndarray:
        """Raw output [D] at (v, a) (clamped onto the disc), each category scaled by `factors`."""
        w = self.weights(valence, arousal, factors)
        return (w @ self.per_radius.astype(np.float64)).astype(np.float32)

    def change(self, valence: float, arousal: float, factors: Mapping[str, float] | None = None
               ) -> ExpressionChange:
        """Expression change at (v, a): landmark offsets (lip opening kept) and blendshape deltas; each
        category's change scaled by `factors` ({name: f}, missing: 1)."""
        vec = self.vector(valence, arousal, factors)
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

