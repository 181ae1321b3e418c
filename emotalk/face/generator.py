"""Lip-aligned emotional face generator: an identity frame + (valence, arousal) -> that face with the emotion.

The expression model (`emotalk.face.expression`) gives 3-D landmark offsets in a head-aligned frame. They are
mapped into the frame's image through a weak-perspective fit of the model's neutral face to the frame's
rigid landmarks (so a turned head gets turned offsets), and the image is moved by a dense, smooth warp:
a thin-plate spline through the moved landmarks (backward map), faded to zero outside the face by a
soft mask from the face parsing, so background, hair, ears, neck and torso stay still and nothing tears.
Each inner-lip upper/lower pair moves together vertically, so the mouth opening of the original frame -
the audio's business - is kept, and no brow is pulled down past its upper lid (a low brow would fold the
lid over the eye). A landmark warp can move brows, lids and mouth corners; it cannot add
wrinkles or shading: after the warp, the emotion's expression ratio image (`emotalk.face.expression_texture`,
measured on MEAD: brow furrows, nasolabial folds, nose wrinkles) is mapped onto the moved landmarks and
multiplied into the face inside the same soft mask, never in the inner mouth.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emotalk.emotion import clamp_to_disc
from emotalk.errors import InputError
from emotalk.face.expression import ExpressionModel
from emotalk.face.expression_texture import ExpressionTexture
from emotalk.face.landmarks import (
    BROW_LOWER,
    EYE_CORNERS,
    EYE_OUTER,
    FACE_OVAL,
    INNER_LIP_PAIRS,
    LID_PAIRS,
    N_MESH,
    STABLE_IDX,
    UPPER_LIDS,
    face_height_px,
)
from emotalk.face.thin_plate import tps_eval, tps_fit

# CelebAMask-HQ classes that move with the expression: skin, brows, eyes, glasses, nose, mouth, lips
FACE_CLASSES = (1, 2, 3, 4, 5, 6, 10, 11, 12, 13)


@dataclass
class GeneratorSettings:
    """How strongly and where the face is warped."""

    gain: float = 2.0  # multiplies the expression change (1 = as measured: MEAD level 3, averaged over
    # actors and speech, reads weakly; 2 reads clearly with few artefacts; 3 tears brows into the hair)
    max_offset: float = 0.07  # soft limit of an upper-face landmark's motion, in outer-eye distances
    # (tanh): keeps the largest brow / lid motions (contempt, surprise) from stretching skin and brows
    mask_feather: float = 0.06  # soft-mask edge width as a fraction of the face height (Gaussian sigma)
    mask_grow: float = 0.0  # grow (+) or shrink (-) the face mask before feathering, fraction of face height
    grid_step: int = 4  # the spline is evaluated every this many px, then bilinearly upsampled
    smoothing: float = 1e-3  # thin-plate regularisation (relative to the mean kernel value): no ringing
    border_anchors: int = 8  # zero-motion anchors per image side (keeps the spline from extrapolating)
    closed_eye: tuple[float, float] = (0.10, 0.20)  # eye opening / eye width: below the first the lids'
    # opening change is dropped (a blink frame: widening would stretch the closed lid), above the second
    # it is kept in full, linear in between
    lid_gap_range: tuple[float, float] = (0.75, 1.5)  # an eye's opening stays within these multiples of
    # the frame's own (squinting further squashes the iris and smears the lashes)
    brow_gap_min: float = 0.15  # each brow point keeps at least this share of its frame's gap above the
    # upper lid (the upper face's motion is scaled down until it does): a low brow pulled further down
    # crossed the lid and folded it over the eye (german_anchor at angry: gap -0.04 of its own on average);
    # 0 = off
    texture: float = 2.0  # strength of the expression ratio image (wrinkles, folds, shading) multiplied
    # into the warped face: scales its log (0 = warp only, 1 = as measured on MEAD, averaged over actors).
    # 3 (before 2026-11-28) put bright and dark patches on new faces: audio-driven reagan renders fell to
    # 0.90-0.93 identity similarity to his neutral render (real actors 0.95-0.98; BENCHMARKS.md, issue 17)
    texture_colour: float = 0.0  # share of the ratio image's colour (per-channel) part: 0 = luminance only
    texture_highpass: float = 0.05  # remove the ratio image's broad shading (a blur this wide, fraction of
    # the canonical face) before applying it, keeping folds and furrows: a MEAD actor's light and skin put
    # broad shading into the ratios, which reads as patches on another face; 0 = off
    texture_mouth_feather: float = 0.03  # the texture fades in from the inner-lip edge over this fraction
    # of the face height (the inner mouth itself is never changed)
    category_gain: dict[str, float] = field(default_factory=dict)  # per-category factor on `gain`
    # ({"happy": 1.8}; missing: 1), blended between categories as the change is: an identity's own
    # strengths, calibrated on its frames by the recogniser (emotalk.training.emotion_calibration)
    category_texture: dict[str, float] = field(default_factory=dict)  # per-category factor on `texture`


@dataclass
class GeneratedFace:
    """A generated emotional frame and its targets for the emotion branch."""

    image: np.ndarray  # [H,W,3] uint8 warped frame
    lmk: np.ndarray  # [478,2] float32 warped landmarks, px (the source landmarks moved by the offsets)
    offsets_px: np.ndarray  # [478,2] float32 landmark motion in the image, px
    blendshape_delta: np.ndarray  # [52] float32 target blendshape change (speech-mouth ones are zero)
    blendshape_names: list[str]  # the 52 names
    valence: float  # (clamped) valence used
    arousal: float  # (clamped) arousal used
    mask: np.ndarray  # [H,W] float32 soft face mask the motion was faded with (1 = full motion)


def saturate(offsets: np.ndarray, limit: float) -> np.ndarray:
    """Soft length limit per landmark: |o| -> limit·tanh(|o| / limit), direction kept ([N,3] -> [N,3])."""
    n = np.linalg.norm(offsets, axis=-1, keepdims=True)
    return offsets * (limit * np.tanh(n / limit) / np.maximum(n, 1e-12))


def project_offsets(offsets: np.ndarray, model: ExpressionModel, lmk: np.ndarray) -> np.ndarray:
    """Model offsets [478,3] (head frame) -> image offsets [478,2] px for a face with landmarks [478,2+].

    Weak perspective: the 2×3 linear part of the least-squares affine map that takes the model's neutral
    face (rigid points, 3-D) onto the frame's rigid points (2-D) carries scale, in-plane rotation and
    the foreshortening of a turned head.
    """
    X = model.neutral_shape[STABLE_IDX].astype(np.float64)  # [N,3]
    Y = lmk[STABLE_IDX, :2].astype(np.float64)  # [N,2]
    Xh = np.concatenate([X - X.mean(0), np.ones((len(X), 1))], 1)
    A, *_ = np.linalg.lstsq(Xh, Y, rcond=None)  # [4,2]
    return (offsets.astype(np.float64) @ A[:3]).astype(np.float32)


def eye_openness(lmk: np.ndarray) -> np.ndarray:
    """Opening / width of each eye [2] (right, left) from landmarks [478,2+]."""
    gaps = np.linalg.norm(lmk[LID_PAIRS[:, 1], :2] - lmk[LID_PAIRS[:, 0], :2], axis=1).reshape(2, 5).mean(1)
    width = np.linalg.norm(lmk[EYE_CORNERS[:, 0], :2] - lmk[EYE_CORNERS[:, 1], :2], axis=1)
    return gaps / np.maximum(width, 1e-6)


def limit_eyelids(off: np.ndarray, lmk: np.ndarray, settings: GeneratorSettings) -> np.ndarray:
    """Image offsets [478,2] with each eyelid pair's opening change limited (see GeneratorSettings).

    A warp can only stretch or squash the lid: closing an open eye squashes the iris and smears the
    lashes, widening a closed (blinking) eye stretches the closed lid. So on a closed eye the opening
    change is dropped, and on an open eye the new opening is kept within `lid_gap_range` of the old one;
    the pair's common motion (the lids moving together, with the brows) is kept. The opening is measured
    down the face (perpendicular to the line of the outer eye corners): measured as the pair's distance,
    a lower lid sliding sideways as it rose kept the distance in range while the eye shut to 0.6 of its
    opening (german_anchor at angry, whole-face warp: irises erased).
    """
    out = off.copy()
    lo, hi = settings.closed_eye
    keep = np.clip((eye_openness(lmk) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)  # [2]
    rmin, rmax = settings.lid_gap_range
    across = _across(lmk, EYE_OUTER)  # [2] unit vector down the face
    for e in range(2):
        up, dn = LID_PAIRS[5 * e: 5 * e + 5, 0], LID_PAIRS[5 * e: 5 * e + 5, 1]
        mean = 0.5 * (out[up] + out[dn])  # [5,2] common motion of each pair
        half = keep[e] * 0.5 * (out[dn] - out[up])  # [5,2] half the opening change
        g0 = (lmk[dn, :2] - lmk[up, :2]) @ across  # [5] current opening (upper lid -> lower lid)
        g1 = g0 + 2 * half @ across
        want = np.clip(g1, rmin * g0, rmax * g0)
        moved = np.abs(g1 - g0) > 1e-9
        t = np.where(moved, (want - g0) / np.where(moved, g1 - g0, 1.0), 1.0)  # share of the change kept
        half = half * np.clip(t, 0.0, 1.0)[:, None]
        out[up] = mean - half
        out[dn] = mean + half
    return out


def _across(lmk: np.ndarray, pair) -> np.ndarray:
    """Unit vector [2] perpendicular to the line through two landmarks (the outer eye corners: down the
    face), pointing down the image (y grows downwards)."""
    ax = lmk[pair[1], :2] - lmk[pair[0], :2]
    ax = ax / max(float(np.linalg.norm(ax)), 1e-9)
    down = np.array([-ax[1], ax[0]])
    return down if down[1] >= 0 else -down


def brow_lid_gaps(lmk: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """[10] signed gap of each lower-brow point of landmarks lmk [478,2+] above the upper-lid point under it
    (the nearest along the eye axis), along the face's down direction, both taken from ref [478,2+] (px)."""
    down = _across(ref, EYE_OUTER)
    ax = np.array([down[1], -down[0]])  # along the eyes (either way: only its line is used)
    out = []
    for brow, lid in zip(BROW_LOWER, UPPER_LIDS):
        under = lid[np.abs((ref[lid, :2] - ref[brow, None, :2]) @ ax).argmin(1)]  # [5]
        out.append((lmk[under, :2] - lmk[brow, :2]) @ down)
    return np.concatenate(out)


def limit_brows(off: np.ndarray, upper: np.ndarray, lmk: np.ndarray, min_share: float) -> np.ndarray:
    """Image offsets [478,2] with the upper face's (mask upper [478]) scaled down so that every brow point
    keeps at least min_share of its gap above the upper lid (`brow_lid_gaps`) in frame landmarks lmk."""
    g0 = brow_lid_gaps(lmk, lmk)
    closing = g0 - brow_lid_gaps(lmk[:, :2] + off, lmk)  # [10] how much nearer each brow point comes
    ok = g0 > 0
    if min_share <= 0 or not ok.any():
        return off
    room = (1 - min_share) * g0[ok]
    k = float(np.min(np.where(closing[ok] > room, room / np.maximum(closing[ok], 1e-9), 1.0)))
    if k >= 1.0:
        return off
    out = off.copy()
    out[upper] *= k
    return out


def face_mask(shape: tuple[int, int], lmk: np.ndarray, parsing: np.ndarray | None,
              settings: GeneratorSettings) -> np.ndarray:
    """Soft mask [H,W] float32 of the moving face: parsing's face classes (or the landmark oval), feathered.
    """
    import cv2

    H, W = shape
    face_h = float(face_height_px(lmk))
    if parsing is not None:
        lab = parsing
        if lab.shape != (H, W):
            lab = cv2.resize(lab, (W, H), interpolation=cv2.INTER_NEAREST)
        m = np.isin(lab, FACE_CLASSES).astype(np.uint8)
    else:
        m = np.zeros((H, W), np.uint8)
        cv2.fillPoly(m, [np.round(lmk[FACE_OVAL, :2]).astype(np.int32)], 1)
    grow = int(round(abs(settings.mask_grow) * face_h))
    if grow:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1))
        m = cv2.dilate(m, k) if settings.mask_grow > 0 else cv2.erode(m, k)
    sigma = max(settings.mask_feather * face_h, 0.5)
    soft = cv2.GaussianBlur(m.astype(np.float32), (0, 0), sigma)
    # feathering halves the mask at its edge: rescale so the face interior moves fully
    return np.clip(soft * 2.0, 0.0, 1.0) * (soft > 0)


def warp_image(image: np.ndarray, src: np.ndarray, dst: np.ndarray, mask: np.ndarray,
               settings: GeneratorSettings) -> np.ndarray:
    """Move image [H,W,3] so points src [N,2] land on dst [N,2]; motion faded by mask [H,W] (output frame)."""
    import cv2

    H, W = image.shape[:2]
    k = settings.border_anchors
    t = np.linspace(0, 1, k, endpoint=False)
    border = np.concatenate([np.stack([t * (W - 1), np.zeros(k)], 1),
                             np.stack([np.full(k, W - 1), t * (H - 1)], 1),
                             np.stack([(1 - t) * (W - 1), np.full(k, H - 1)], 1),
                             np.stack([np.zeros(k), (1 - t) * (H - 1)], 1)])
    ctrl = np.concatenate([dst, border]).astype(np.float64)  # backward map: fitted at the destinations
    back = np.concatenate([src - dst, np.zeros_like(border)]).astype(np.float64)
    w, aff, scale = tps_fit(ctrl, back, settings.smoothing)
    g = max(1, settings.grid_step)
    gy, gx = np.arange(0, H + g, g, dtype=np.float64), np.arange(0, W + g, g, dtype=np.float64)
    pts = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    disp = tps_eval(ctrl, w, aff, scale, pts).reshape(len(gy), len(gx), 2).astype(np.float32)
    # bilinear upsampling of the coarse field: pixel x sits at grid coordinate x / g
    xx, yy = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    full = cv2.remap(disp, xx / g, yy / g, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    full *= mask[..., None]
    return cv2.remap(image, xx + full[..., 0], yy + full[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


class EmotionalFaceGenerator:
    """Applies the expression model to identity frames by an image warp (see the module docstring)."""

    def __init__(self, model: ExpressionModel | None = None,
                 settings: GeneratorSettings = GeneratorSettings(),
                 texture: ExpressionTexture | None = None):
        self.model = model or ExpressionModel.load()
        self.settings = settings
        self.texture = texture if texture is not None or settings.texture == 0 else ExpressionTexture.load()

    def __call__(self, image: np.ndarray, lmk: np.ndarray, parsing: np.ndarray | None,
                 valence: float, arousal: float) -> GeneratedFace:
        """image [H,W,3] uint8, lmk [478,2+] px, parsing [S,S] uint8 CelebAMask-HQ labels (or None)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"The identity frame must be an [H,W,3] uint8 image, got {image.shape} "
                             f"{image.dtype}.")
        if lmk.ndim != 2 or lmk.shape[0] < 478 or lmk.shape[1] < 2:
            raise InputError(f"Face landmarks must be MediaPipe's [478,2+] array, got {lmk.shape}.")
        if not np.isfinite(lmk[:, :2]).all():
            raise InputError("The face landmarks contain NaN or infinite values (was a face found?).")
        v, a, _ = clamp_to_disc(valence, arousal)
        s = self.settings
        change = self.model.change(v, a, s.category_gain)
        src = lmk[:478, :2].astype(np.float32)
        off3 = change.offsets * s.gain  # [478,3] head frame, eye-distance units
        upper = self.model.upper_landmarks  # brows, lids, cheeks
        off3[upper] = saturate(off3[upper], s.max_offset)
        off = limit_eyelids(project_offsets(off3, self.model, lmk), src, s)  # [478,2] px
        off = limit_brows(off, upper, src, s.brow_gap_min)
        # the projection mixes depth into image y: pin the inner-lip opening again, in the image
        pair_mean = 0.5 * (off[INNER_LIP_PAIRS[:, 0]] + off[INNER_LIP_PAIRS[:, 1]])
        off[INNER_LIP_PAIRS[:, 0]] = pair_mean
        off[INNER_LIP_PAIRS[:, 1]] = pair_mean
        dst = src + off
        mask = face_mask(image.shape[:2], src, parsing, s)
        keep = np.arange(N_MESH)  # iris points left out: near-duplicates of the eyelids' motion
        if np.abs(off).max() < 1e-3:
            out = image.copy()
        else:
            out = warp_image(image, src[keep], dst[keep], mask, s)
        # landmarks move with the faded field, as the pixels do
        H, W = image.shape[:2]
        xi = np.clip(np.round(dst[:, 0]).astype(int), 0, W - 1)
        yi = np.clip(np.round(dst[:, 1]).astype(int), 0, H - 1)
        moved = src + off * mask[yi, xi][:, None]
        if self.texture is not None and s.texture != 0:
            out = self.texture.apply(out, moved, mask, v, a, strength=s.texture, colour=s.texture_colour,
                                     mouth_feather=s.texture_mouth_feather, grid_step=s.grid_step,
                                     highpass=s.texture_highpass, factors=s.category_texture)
        return GeneratedFace(out, moved.astype(np.float32), (moved - src).astype(np.float32),
                             (change.blendshapes * s.gain).astype(np.float32), change.blendshape_names,
                             v, a, mask)


GRID_CATEGORIES = ("neutral", "happy", "surprised", "fear", "angry", "disgusted", "contempt", "sad", "calm")


def emotion_grid(frames: np.ndarray, lmk: np.ndarray, parsing: np.ndarray | None,
                 generator: EmotionalFaceGenerator | None = None,
                 categories: tuple[str, ...] = GRID_CATEGORIES, tile: int = 192,
                 zoom: float = 1.0) -> np.ndarray:
    """A labelled grid [rows*tile, cols*tile, 3] uint8: frames (rows) × emotions (columns).

    zoom > 1 crops each tile around the face (centre of the landmarks) before resizing to `tile`.
    """
    import cv2

    from emotalk.emotion import CATEGORIES

    gen = generator or EmotionalFaceGenerator()
    rows = []
    for k in range(len(frames)):
        row = []
        for c in categories:
            g = gen(frames[k], lmk[k], None if parsing is None else parsing[k], *CATEGORIES[c])
            im = g.image
            if zoom > 1.0:
                H, W = im.shape[:2]
                side = int(min(H, W) / zoom)
                cx, cy = np.round(lmk[k][:468, :2].mean(0)).astype(int)
                x0 = int(np.clip(cx - side // 2, 0, W - side))
                y0 = int(np.clip(cy - side // 2, 0, H - side))
                im = im[y0:y0 + side, x0:x0 + side]
            im = cv2.resize(im, (tile, tile), interpolation=cv2.INTER_AREA)
            if k == 0:
                cv2.putText(im, c, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
                cv2.putText(im, c, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
            row.append(im)
        rows.append(np.concatenate(row, 1))
    return np.concatenate(rows, 0)
