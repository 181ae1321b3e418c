"""Expression texture: the shading an emotion adds to a face (wrinkles, folds, furrows), as ratio images.

A landmark warp moves brows, lids and mouth corners but cannot add a nasolabial fold, a brow furrow or
nose wrinkles. Following expression ratio images (Liu, Shan & Zhang 2001), every labelled MEAD frame is
brought into a fixed canonical face space by a piecewise-affine warp from its own landmarks onto a
canonical landmark template (geometry removed, appearance left), and per actor an emotion's ratio image
is R = (I_emotion + eps) / (I_neutral + eps) of the two mean canonical images (at the same mouth opening:
see `actor_log_ratios`). Ratios are kept as logs, averaged over actors (a geometric mean), smoothed,
clipped and faded out of the inner mouth and the eyes (speech and gaze, not emotion).

Over the valence-arousal disc the log ratio is interpolated exactly as the expression model interpolates
its landmark offsets (`ExpressionModel.vector`): zero (no change) at neutral, linear in radius. To apply,
the canonical log ratio is mapped onto a face by a thin-plate spline through its landmarks and
multiplied into the image inside a soft weight that is exactly zero in the inner mouth.
Fitted by `scripts/fit_expression_texture.py` -> `emotalk/models/expression_texture.npz`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotalk.emotion import CATEGORIES
from emotalk.errors import InputError
from emotalk.face.expression import ExpressionModel
from emotalk.face.landmarks import EYE_RINGS, FACE_OVAL, INNER_LIP_RING, N_MESH, face_height_px
from emotalk.face.thin_plate import tps_eval, tps_fit

DEFAULT_TEXTURE_PATH = Path(__file__).resolve().parents[1] / "models" / "expression_texture.npz"

# ----------------------------------------------------------------------------------------------
# canonical face space


def canonical_points(neutral_shape: np.ndarray, size: int, margin: float = 1.06) -> np.ndarray:
    """Canonical template [478,2] float32 px in a size×size image from a frontal neutral face [478,2+].

    The mesh's bounding box (times `margin`) is centred and scaled to fit the square.
    """
    p = np.asarray(neutral_shape, np.float64)[:, :2]
    lo, hi = p[:N_MESH].min(0), p[:N_MESH].max(0)
    span = float((hi - lo).max()) * margin
    return ((p - 0.5 * (lo + hi)) / span * size + 0.5 * size).astype(np.float32)


@dataclass
class CanonicalWarp:
    """Piecewise-affine map of a face onto the canonical template (Delaunay triangles of the template).

    For every canonical pixel inside the template's hull: its triangle and barycentric coordinates, so a
    frame with landmarks [478,2] is resampled at sum_k b_k · lmk[tri_k] (one cv2.remap per frame).
    """

    size: int  # canonical image side, px
    tri: np.ndarray  # [M,3] int32 triangles (landmark indices)
    pix_tri: np.ndarray  # [S,S] int32 triangle of each canonical pixel, -1 outside the hull
    bary: np.ndarray  # [S,S,3] float32 barycentric coordinates of each pixel in its triangle

    @classmethod
    def build(cls, canon: np.ndarray, size: int) -> CanonicalWarp:
        """From canonical landmarks [478,2] px (only the 468 mesh points are used)."""
        from scipy.spatial import Delaunay

        d = Delaunay(canon[:N_MESH].astype(np.float64))
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
        q = np.stack([xx.ravel(), yy.ravel()], 1)
        s = d.find_simplex(q)
        T = d.transform[np.maximum(s, 0)]  # [P,3,2]: affine to barycentrics
        b2 = np.einsum("pij,pj->pi", T[:, :2], q - T[:, 2])
        bary = np.concatenate([b2, 1.0 - b2.sum(1, keepdims=True)], 1)
        bary[s < 0] = 0.0
        return cls(size, d.simplices.astype(np.int32), s.reshape(size, size).astype(np.int32),
                   bary.reshape(size, size, 3).astype(np.float32))

    def inside(self) -> np.ndarray:
        """[S,S] bool: canonical pixels covered by the template's triangles."""
        return self.pix_tri >= 0

    def to_canonical(self, image: np.ndarray, lmk: np.ndarray) -> np.ndarray:
        """image [H,W,C] + its landmarks [478,2+] px -> canonical image [S,S,C] float32 (0 off the hull)."""
        import cv2

        t = self.tri[np.maximum(self.pix_tri, 0)]  # [S,S,3] landmark indices
        p = lmk[:, :2].astype(np.float32)[t]  # [S,S,3,2]
        src = (p * self.bary[..., None]).sum(2)  # [S,S,2]
        out = cv2.remap(image.astype(np.float32), src[..., 0], src[..., 1], cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
        if out.ndim == 2:
            out = out[..., None]
        out[~self.inside()] = 0.0
        return out


def polygon_mask(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    """[H,W] float32 1 inside the closed polygon pts [N,2] px, 0 outside."""
    import cv2

    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(pts * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return m.astype(np.float32)


def canonical_weight(canon: np.ndarray, size: int, feather: float = 0.025, mouth_grow: float = 0.02,
                     eye_grow: float = 0.0) -> np.ndarray:
    """Where an emotion's texture counts in canonical space [S,S] float32 in [0,1].

    1 inside the face oval (its edge feathered inwards), 0 in the inner mouth (grown by `mouth_grow`,
    fraction of S: speaking lips) and in the eyes (gaze and lid position, already the warp's job).
    """
    import cv2

    sh = (size, size)
    sig = max(feather * size, 0.5)

    def soft_out(m: np.ndarray, grow: float) -> np.ndarray:  # 1 inside m (grown), fading outwards
        g = int(round(grow * size))
        if g:
            m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * g + 1, 2 * g + 1)))
        return np.maximum(m, np.clip(cv2.GaussianBlur(m, (0, 0), sig) * 2.0, 0, 1))

    oval = polygon_mask(sh, canon[FACE_OVAL])
    e = int(round(2 * sig))
    inner = cv2.erode(oval, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * e + 1, 2 * e + 1)))
    w = cv2.GaussianBlur(inner, (0, 0), sig)
    w *= 1.0 - soft_out(polygon_mask(sh, canon[INNER_LIP_RING]), mouth_grow)
    for ring in EYE_RINGS:
        w *= 1.0 - soft_out(polygon_mask(sh, canon[ring]), eye_grow)
    return np.clip(w, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# fitting


def actor_log_ratios(images: np.ndarray, emotions: list[str], speech: np.ndarray | None = None,
                     eps: float = 8.0) -> dict[str, np.ndarray]:
    """One actor's log ratio image per emotion against neutral.

    images [N,S,S,C] canonical frames (0..255), emotions [N] the label of each frame (one must be
    "neutral"), speech [N,R] optional speech regressors (inner-lip gap, jaw drop). Every pixel value is
    regressed on the emotion (one-hot) and the centred speech regressors, so each emotion's mean image
    c_e is taken at the same mouth opening; returns {emotion: log((c_e + eps) / (c_neutral + eps))}
    [S,S,C] float32 for every emotion but neutral.
    """
    N = len(images)
    if len(emotions) != N:
        raise InputError(f"{N} images but {len(emotions)} emotion labels.")
    cats = sorted(set(emotions))
    if "neutral" not in cats:
        raise InputError("An actor's frames must include neutral ones.")
    lab = np.array([cats.index(e) for e in emotions])
    X = np.eye(len(cats))[lab]  # [N,K]
    if speech is not None and len(speech):
        g = np.asarray(speech, np.float64).reshape(N, -1)
        X = np.concatenate([X, g - g.mean(0)], 1)
    Y = images.reshape(N, -1).astype(np.float32)
    coef = (np.linalg.pinv(X).astype(np.float32) @ Y)  # [K+R,P]
    base = np.maximum(coef[cats.index("neutral")], 0.0) + eps
    shape = images.shape[1:]
    return {e: np.log((np.maximum(coef[k], 0.0) + eps) / base).reshape(shape).astype(np.float32)
            for k, e in enumerate(cats) if e != "neutral"}


def combine_actors(per_actor: list[dict[str, np.ndarray]], weight: np.ndarray, smooth: float = 1.0,
                   limit: float = 0.4, zero_mean: bool = True, median: bool = True) -> dict[str, np.ndarray]:
    """Mean log ratio over actors (geometric mean of the ratios), smoothed, clipped, weighted.

    per_actor: [{emotion: [S,S,C]}]; weight [S,S] canonical weight (`canonical_weight`); smooth: Gaussian
    sigma in canonical px; limit: |log ratio| bound (0.4: ratios within 0.67..1.49); zero_mean: remove
    each actor's weighted mean per channel first (a clip's exposure and white balance, not the emotion);
    median: with 3 or more actors take the per-pixel median instead of the mean (one actor's hair fringe
    or a shadow does not become a blotch). Returns {emotion: [S,S,C] float32}.
    """
    import cv2

    def centred(x: np.ndarray) -> np.ndarray:
        if not zero_mean:
            return x
        w = weight[..., None]
        return x - (x * w).sum((0, 1)) / max(float(weight.sum()), 1e-6)

    out = {}
    for e in sorted({k for d in per_actor for k in d}):
        logs = [centred(d[e]) for d in per_actor if e in d]
        pick = np.median if median and len(logs) >= 3 else np.mean
        m = pick(logs, 0).astype(np.float32)
        if smooth > 0:
            m = cv2.GaussianBlur(m, (0, 0), smooth)
            if m.ndim == 2:
                m = m[..., None]
        out[e] = (np.clip(m, -limit, limit) * weight[..., None]).astype(np.float32)
    return out


# ----------------------------------------------------------------------------------------------
# the disc map


@dataclass
class ExpressionTexture:
    """Log ratio image over the valence-arousal disc, in canonical face space.

    The disc interpolation is the expression model's (`ExpressionModel.vector`, polar, exact at every
    measured category, zero at neutral, linear in radius), applied to flattened log ratio images.
    """

    canon: np.ndarray  # [478,2] float32 canonical landmark template, px
    size: int  # canonical image side S, px
    categories: list[str]  # measured categories
    log_ratio: np.ndarray  # [K,S,S,C] float32 measured log ratio per category (C = 3: RGB)
    info: dict = field(default_factory=dict)  # provenance: clips, actors, settings
    _disc: ExpressionModel | None = field(default=None, repr=False)

    def __post_init__(self):
        flat = {c: self.log_ratio[k].reshape(-1) for k, c in enumerate(self.categories)}
        self._disc = ExpressionModel.fit(flat, [], np.zeros((478, 3), np.float32))

    def at(self, valence: float, arousal: float, factors: Mapping[str, float] | None = None) -> np.ndarray:
        """Log ratio image [S,S,C] float32 at (v, a) (clamped onto the disc), each category's ratio scaled
        by `factors` ({name: f}, missing: 1); all zero at neutral."""
        return self._disc.vector(valence, arousal, factors).reshape(self.log_ratio.shape[1:])

    def save(self, path: str | Path) -> Path:
        """Small .npz: log ratios rounded to 1/512 and stored as float16 (compresses well)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        q = (np.round(self.log_ratio * 512.0) / 512.0).astype(np.float16)
        np.savez_compressed(p, canon=self.canon.astype(np.float32), size=np.int32(self.size),
                            categories=np.array(self.categories), log_ratio=q,
                            info=np.array(json.dumps(self.info)))
        return p

    @classmethod
    def load(cls, path: str | Path | None = None) -> ExpressionTexture:
        """The committed texture (default) or a given .npz."""
        p = Path(path) if path is not None else DEFAULT_TEXTURE_PATH
        if not p.is_file():
            raise InputError(f"Expression texture not found: {p}. Re-create it with "
                             "'python scripts/fit_expression_texture.py'.")
        z = np.load(p, allow_pickle=False)
        cats = [str(s) for s in z["categories"]]
        unknown = [c for c in cats if c not in CATEGORIES]
        if unknown:
            raise InputError(f"Expression texture {p} has unknown categories {unknown}.")
        return cls(z["canon"].astype(np.float32), int(z["size"]), cats, z["log_ratio"].astype(np.float32),
                   json.loads(str(z["info"])))

    # applying -------------------------------------------------------------------------------

    def to_image(self, log_ratio: np.ndarray, lmk: np.ndarray, shape: tuple[int, int],
                 grid_step: int = 4) -> np.ndarray:
        """Canonical log ratio [S,S,C] -> the face with landmarks lmk [478,2+] in an image [H,W,C] float32.

        Backward map by a thin-plate spline from the face's mesh points to the template's (evaluated every
        grid_step px over the face's box, bilinearly upsampled); 0 outside the template.
        """
        import cv2

        H, W = shape
        C = log_ratio.shape[-1]
        out = np.zeros((H, W, C), np.float32)
        src = lmk[:N_MESH, :2].astype(np.float64)
        lo = np.floor(src.min(0) - 2).astype(int).clip(0, [W - 1, H - 1])
        hi = np.ceil(src.max(0) + 2).astype(int).clip(0, [W - 1, H - 1])
        if (hi <= lo).any():
            return out
        sub = np.arange(0, N_MESH, 2)  # every other mesh point: smooth and quick
        w, aff, sc = tps_fit(src[sub], self.canon[sub].astype(np.float64), 1e-4)
        g = max(1, grid_step)
        gx = np.arange(lo[0], hi[0] + g + 1, g, dtype=np.float64)
        gy = np.arange(lo[1], hi[1] + g + 1, g, dtype=np.float64)
        pts = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
        cmap = tps_eval(src[sub], w, aff, sc, pts).reshape(len(gy), len(gx), 2).astype(np.float32)
        xx, yy = np.meshgrid(np.arange(hi[0] + 1 - lo[0], dtype=np.float32) / g,
                             np.arange(hi[1] + 1 - lo[1], dtype=np.float32) / g)
        full = cv2.remap(cmap, xx, yy, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
        patch = cv2.remap(log_ratio.astype(np.float32), full[..., 0], full[..., 1], cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        out[lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = patch.reshape(patch.shape[0], patch.shape[1], C)
        return out

    def highpass(self, log_ratio: np.ndarray, sigma: float) -> np.ndarray:
        """log_ratio [S,S,C] minus its broad part: a blur of width sigma × S, normalised by where the map is
        non-zero (so the face's edge is not pulled to 0). Keeps folds, furrows and wrinkles; drops the broad
        shading that a MEAD actor's light and skin put into a ratio (on a new face it reads as patches)."""
        import cv2

        if sigma <= 0:
            return log_ratio
        s = sigma * self.size
        w = (np.abs(log_ratio).sum(-1) > 0).astype(np.float32)  # [S,S] where the map is defined
        den = cv2.GaussianBlur(w, (0, 0), s)[..., None]
        num = cv2.GaussianBlur(log_ratio * w[..., None], (0, 0), s).reshape(log_ratio.shape)
        broad = num / np.maximum(den, 1e-3)
        return ((log_ratio - broad) * w[..., None]).astype(np.float32)

    def apply(self, image: np.ndarray, lmk: np.ndarray, weight: np.ndarray, valence: float,
              arousal: float, strength: float = 1.0, colour: float = 1.0, mouth_feather: float = 0.03,
              grid_step: int = 4, highpass: float = 0.0, factors: Mapping[str, float] | None = None
              ) -> np.ndarray:
        """Multiply the emotion's ratio image into a face: image [H,W,3] uint8 -> [H,W,3] uint8.

        lmk [478,2+] px: the face's landmarks in `image` (after any warp); weight [H,W] float32 in [0,1]:
        where the texture may act (e.g. the generator's soft face mask; 0 = pixel kept exactly).
        strength scales the log ratio; colour scales its chroma part (per-channel deviation from the
        channel mean: 0 = luminance only). The inner mouth (inner-lip polygon) is kept exactly, and the
        weight rises from 0 at its edge over mouth_feather × face height. highpass: see `highpass` (0: off).
        factors: per-category strength factors on top of `strength` (see `at`).
        """
        import cv2

        H, W = image.shape[:2]
        lr = self.at(valence, arousal, factors)
        if strength == 0.0 or not np.any(lr):
            return image.copy()
        lr = self.highpass(lr, highpass)
        lum = lr.mean(-1, keepdims=True)
        lr = strength * (lum + colour * (lr - lum))
        field_ = self.to_image(lr, lmk, (H, W), grid_step)  # [H,W,3]
        mouth = polygon_mask((H, W), lmk[INNER_LIP_RING, :2].astype(np.float64)).astype(np.uint8)
        face_h = float(face_height_px(lmk))
        dist = cv2.distanceTransform(1 - mouth, cv2.DIST_L2, 3)  # px to the inner mouth (0 inside)
        keep = np.clip(dist / max(mouth_feather * face_h, 1.0), 0.0, 1.0)
        wt = np.clip(weight, 0.0, 1.0) * keep  # [H,W]
        gain = np.exp(field_ * wt[..., None])
        out = np.clip(image.astype(np.float32) * gain + 0.5, 0, 255).astype(np.uint8)
        still = wt <= 0.0
        out[still] = image[still]
        return out
