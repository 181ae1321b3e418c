"""Emotion's mouth as a smooth 3-D warp of the Gaussians: smile, frown and pressed lips drawn by the same
Gaussians that draw speech.

Why: the emotion field is faded out at the lips (its per-Gaussian moves, rescales and recolouring blurred
the mouth and fought the audio), so with the mouth mask alone no emotion reaches the mouth corners, and a
smile never shows. Here the expression model's landmark offsets (`emotalk.face.expression`: fitted on
MEAD, inner-lip opening pinned, jaw left out) of the lower face are carried into the identity's head
frame and spread over the Gaussians by a thin-plate spline through its own face landmarks. The spline is
smooth and moves neighbouring Gaussians together, so the lips stay sharp; each inner-lip pair moves as
one, and the lips between the corners move up or down as a block, so the mouth opening stays the audio's
(with only the inner lips pinned, a smile's lower lip rose into the opening: 0.52x neutral). It acts where
the mouth mask switches the field off (weight 1 - keep), so the two never add up. Linear in the
expression change: a warp per category is made once per identity and blended per frame with the
expression model's weights.

With `ModelSettings.emotion_warp_region` "face" the warp carries the whole face's change (brows, lids,
cheeks too; seventeenth session): the emotion field drew only about half of its targets' geometry (obama:
0.64 of the change, the eye-nose band 0.43-0.67), while a warp draws all of the expression model's. The
upper face is limited as the generator limits it on the identity's own face (each landmark's motion
saturated, lids kept within a range of their opening, brows above the lids), and the warp fades out away
from the face's landmarks (hair, ears, neck stay), as the generator's face mask does. Each eye moves as one
block (`eye_blocks`; eighteenth session): the spline alone bent the iris Gaussians, which sit behind the
lid landmarks, apart from the lids.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from emotalk.face.expression import ExpressionModel, keep_lip_gap, keep_lip_thickness
from emotalk.face.landmarks import EYE_RINGS, LID_PAIRS, N_MESH, STABLE_IDX, head_frame
from emotalk.face.thin_plate import tps_eval, tps_fit
from emotalk.gaussians.projection import quat_to_rotmat

WARP_SMOOTHING = 1e-3  # thin-plate regularisation (relative to the mean kernel value), as the generator's
FACE_FADE = (0.15, 0.4)  # "face" region: the warp is whole within the first distance of the nearest face
# landmark and gone beyond the second (outer-eye distances; smoothstep between): hair, ears and neck stay
REGIONS = ("mouth", "face")  # what the warp carries: the lower face (the field draws the rest), or all of it
EYE_BLOCK = (0.2, 0.12)  # "face" region: each eye, its lids and the skin just around them move as one block
# (the eye ring's mean motion, squashed by the lids' opening change) within an ellipse of these semi-axes
# (outer-eye distances, seen from the front) around the eye: the spline bent the Gaussians set behind the
# lid landmarks (iris, eyeball) apart from the lids and erased german_anchor's irises at angry, sad
EYE_BLOCK_FADE = 1.6  # ... and blends back into the spline's motion out to this many times the ellipse


@functools.lru_cache(maxsize=1)
def expression_model() -> ExpressionModel:
    """The committed expression model, loaded once."""
    return ExpressionModel.load()


def lower_face_changes(model: ExpressionModel) -> np.ndarray:
    """Landmark change per unit radius of each category [K,478,3] (normalised head frame), inner-lip
    opening pinned, the lips moving vertically as a block (no lip edge moves into the opening speech makes)
    and the upper face (above the nose tip: brows, lids; the emotion field's part) zeroed."""
    off = model.per_radius[:, : ExpressionModel.n_lmk].reshape(-1, 478, 3).astype(np.float64)
    off = keep_lip_thickness(keep_lip_gap(off), model.neutral_shape)
    off[:, model.upper_landmarks] = 0.0
    return off


def face_changes(model: ExpressionModel, face: np.ndarray, gain: float,
                 factors: dict[str, float] | None = None, settings=None) -> np.ndarray:
    """Whole-face landmark change per unit strength [K,478,3] (normalised head frame) of each category as
    the generator makes it on a face with landmarks face [478,3] at strength gain × factors[name]: inner-lip
    opening pinned, lips moving as a block, the upper face's motion saturated (`max_offset`), each lid
    pair's opening kept within `lid_gap_range` and every brow `brow_gap_min` of its gap above the lid
    (`emotalk.face.generator`, on this face's own frontal landmarks). Divided back by the strength, so
    the warp's blend (weights × gain) gives the limited change at each category."""
    from emotalk.face.generator import GeneratorSettings, limit_brows, limit_eyelids, saturate

    gs = settings or GeneratorSettings()
    off = model.per_radius[:, : ExpressionModel.n_lmk].reshape(-1, 478, 3).astype(np.float64)
    off = keep_lip_thickness(keep_lip_gap(off), model.neutral_shape)
    R, o, unit = head_frame(face.astype(np.float64))
    flat = ((face.astype(np.float64) - o) @ R.T / unit)[:, :2]  # the face seen from the front, y down
    upper = model.upper_landmarks
    out = np.zeros_like(off)
    for k, f in enumerate(model.factor_row(factors)):
        s = gain * f
        if abs(s) < 1e-9:
            continue
        o3 = off[k] * s
        o3[upper] = saturate(o3[upper], gs.max_offset)
        o2 = limit_brows(limit_eyelids(o3[:, :2], flat, gs), upper, flat, gs.brow_gap_min)
        o3[:, :2] = o2
        out[k] = o3 / s
    return out


def face_fade(face: np.ndarray, points: np.ndarray, fade: tuple[float, float] = FACE_FADE) -> np.ndarray:
    """[N] share of the whole-face warp at points [N,3]: 1 near the face's mesh landmarks face [478,3],
    0 beyond fade[1] outer-eye distances of the nearest one."""
    from scipy.spatial import cKDTree

    unit = float(np.linalg.norm(face[263] - face[33]))
    d = cKDTree(face[:N_MESH].astype(np.float64)).query(points.astype(np.float64))[0] / max(unit, 1e-12)
    x = np.clip((fade[1] - d) / max(fade[1] - fade[0], 1e-9), 0.0, 1.0)
    return (x * x * (3 - 2 * x)).astype(np.float32)


def eye_blocks(face: np.ndarray, changes: np.ndarray, points: np.ndarray,
               size: tuple[float, float] = EYE_BLOCK, fade: float = EYE_BLOCK_FADE
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each eye's change as a block: (offsets [K,N,3], Jacobians [K,N,3,3], weights [N]) at points [N,3]
    of the landmark changes [K,478,3] (head frame) through the face's landmarks [478,3]. A block moves
    with the mean change of the eye's ring of landmarks and stretches or squashes
    vertically about the ring's centre (seen from the front) by the lids' mean opening change. weights: 1
    within an ellipse of semi-axes `size` (outer-eye distances) around each eye, 0 beyond `fade` times it
    (smoothstep)."""
    R, o, unit = head_frame(face.astype(np.float64))
    flat = (face.astype(np.float64) - o) @ R.T / unit  # [478,3] frontal, y down, eye distance 1
    moved = changes.astype(np.float64) @ R.T / unit  # [K,478,3]
    p = (points.astype(np.float64) - o) @ R.T / unit  # [N,3]
    K, N = len(changes), len(p)
    off = np.zeros((K, N, 3))
    squeeze = np.zeros((K, N))  # vertical stretch - 1 of the block each point follows
    weight = np.zeros(N)
    for e, ring in enumerate(EYE_RINGS):
        centre = flat[ring].mean(0)
        rho = np.hypot((p[:, 0] - centre[0]) / size[0], (p[:, 1] - centre[1]) / size[1])
        t = np.clip((fade - rho) / (fade - 1.0), 0.0, 1.0)
        w = t * t * (3 - 2 * t)
        sel = w > weight
        weight = np.maximum(weight, w)
        pairs = LID_PAIRS[5 * e: 5 * e + 5]
        gap = flat[pairs[:, 1], 1] - flat[pairs[:, 0], 1]  # [5] opening, seen from the front
        for k in range(K):
            mean = moved[k, ring].mean(0)  # [3] the eye's common motion
            ratio = ((moved[k, pairs[:, 1], 1] - moved[k, pairs[:, 0], 1]) / gap).mean()  # opening change
            blk = mean[None] + ratio * (p[:, 1] - centre[1])[:, None] * np.array([0.0, 1.0, 0.0])
            off[k, sel] = blk[sel] @ R * unit  # back to the head frame
            squeeze[k, sel] = ratio
    jac = squeeze[..., None, None] * np.outer(R[1], R[1])  # d offset / dx: the frontal vertical squash
    return off.astype(np.float32), jac.astype(np.float32), weight.astype(np.float32)


def to_head_frame(offsets: np.ndarray, neutral: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Offsets [...,478,3] in the expression model's normalised frame (neutral face [478,3]) -> the
    identity's head frame (its face landmarks [478,3], metres): the linear part of the least-squares affine
    map taking the model's rigid points onto the identity's (scale, axes and handedness of either frame)."""
    X = neutral[STABLE_IDX].astype(np.float64)
    Y = face[STABLE_IDX].astype(np.float64)
    Xh = np.concatenate([X - X.mean(0), np.ones((len(X), 1))], 1)
    A, *_ = np.linalg.lstsq(Xh, Y - Y.mean(0), rcond=None)  # [4,3]
    return offsets.astype(np.float64) @ A[:3]


def warp_basis(face: np.ndarray, changes: np.ndarray, points: np.ndarray, smoothing: float = WARP_SMOOTHING,
               step: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Thin-plate warp of each category's landmark change [K,478,3] (head frame) through the face's
    landmarks [478,3], evaluated at points [N,3] -> (offsets [K,N,3], Jacobians [K,N,3,3] by central
    differences of `step` (head-frame units; None: not computed)) float32; the reference of
    `warp_basis_torch`."""
    K, N = len(changes), len(points)
    vals = changes.transpose(1, 0, 2).reshape(478, K * 3)  # one spline, K*3 output channels
    ctrl = face.astype(np.float64)
    w, aff, scale = tps_fit(ctrl, vals, smoothing)

    def at(p: np.ndarray) -> np.ndarray:  # [N,3] -> [K,N,3]
        return tps_eval(ctrl, w, aff, scale, p).reshape(N, K, 3).transpose(1, 0, 2)

    pts = points.astype(np.float64)
    off = at(pts).astype(np.float32)
    if step is None:
        return off, None
    jac = np.empty((K, N, 3, 3), np.float32)  # [k,n,i,j] = d offset_i / d x_j
    for j in range(3):
        e = np.zeros(3)
        e[j] = step
        jac[..., j] = (at(pts + e) - at(pts - e)) / (2 * step)
    return off, jac


def warp_basis_torch(face: np.ndarray, changes: np.ndarray, points: Tensor, smoothing: float = WARP_SMOOTHING,
                     jacobian: bool = False, chunk: int = 4096) -> tuple[Tensor, Tensor | None]:
    """`warp_basis` on the points' device, the Jacobians exact (the kernel U = r² log r² has gradient
    2 (x - c)(log r² + 1)) and in the same pass: one identity's warp in milliseconds on a GPU, instead of
    seconds of numpy before its first emotional frame. -> (offsets [K,N,3], Jacobians [K,N,3,3] or None)."""
    K, N = len(changes), len(points)
    vals = changes.transpose(1, 0, 2).reshape(478, K * 3)
    w, aff, scale = tps_fit(face.astype(np.float64), vals, smoothing)
    dev = points.device
    c = torch.as_tensor(face / scale, dtype=torch.float64, device=dev)  # [L,3]
    w_t = torch.as_tensor(w, device=dev)  # [L,C]
    a_t = torch.as_tensor(aff, device=dev)  # [4,C]
    off = torch.empty(N, K * 3, dtype=torch.float64, device=dev)
    jac = torch.empty(N, K * 3, 3, dtype=torch.float64, device=dev) if jacobian else None
    for s in range(0, N, chunk):
        p = points[s:s + chunk].detach().to(torch.float64) / scale  # [n,3]
        d = p[:, None, :] - c[None]  # [n,L,3]
        r2 = (d * d).sum(-1)  # [n,L]
        log = torch.where(r2 > 0, torch.log(r2.clamp_min(1e-300)), torch.zeros_like(r2))
        off[s:s + chunk] = (r2 * log) @ w_t + a_t[0] + p @ a_t[1:]
        if jac is not None:  # d/dx = (1/scale) d/dp
            k = 2 * (log + 1) * (r2 > 0)  # [n,L] the kernel's radial derivative factor
            g = torch.stack([(k * d[..., j]) @ w_t for j in range(3)], -1) + a_t[1:].t()[None]  # [n,C,3]
            jac[s:s + chunk] = g / scale
    off_k = off.reshape(N, K, 3).permute(1, 0, 2).float().contiguous()
    if jac is None:
        return off_k, None
    return off_k, jac.reshape(N, K, 3, 3).permute(1, 0, 2, 3).float().contiguous()


def axis_log_stretch(jac: Tensor, rot: Tensor) -> Tensor:
    """Log of how much the warp x -> x + u(x) with Jacobians jac [...,N,3,3] (of u) lengthens each
    Gaussian's axes, the columns of rot [N,3,3] -> [...,N,3]: added to the log-scales, a stretched lip keeps
    its Gaussians touching instead of thinning into a faint line."""
    eye = torch.eye(3, dtype=jac.dtype, device=jac.device)
    return torch.linalg.vector_norm((eye + jac) @ rot, dim=-2).clamp_min(1e-3).log()


def category_weights(model: ExpressionModel, emotion: np.ndarray, factors: dict[str, float] | None = None
                     ) -> np.ndarray:
    """Expression-model weights [B,K] of emotion rows [B,2] (valence, arousal), each category scaled by
    `factors` ({name: f}, missing: 1)."""
    return np.stack([model.weights(float(v), float(a), factors) for v, a in np.asarray(emotion, np.float64)])


class MouthWarp:
    """The warp of one identity's face Gaussians: offset basis [K,N,3] (and, given their rotations, the
    Jacobian basis [K,N,3,3]) made once, blended per emotion. region "mouth": the lower face's change;
    "face": the whole face's (`face_changes`, at strength gain × factors)."""

    def __init__(self, face: np.ndarray, means: Tensor, quats: Tensor | None = None,
                 model: ExpressionModel | None = None, region: str = "mouth", gain: float = 1.0,
                 factors: dict[str, float] | None = None):
        if region not in REGIONS:
            raise ValueError(f"warp region must be one of {REGIONS}, got {region!r}")
        self.model = model or expression_model()
        local = (lower_face_changes(self.model) if region == "mouth"
                 else face_changes(self.model, face, gain, factors))
        changes = to_head_frame(local, self.model.neutral_shape, face)
        # offsets [K,N,3] and, given rotations, Jacobians [K,N,3,3]
        self.basis, self.jac = warp_basis_torch(face, changes, means, jacobian=quats is not None)
        if region == "face":  # the eyes move as blocks, blended into the spline's motion around them
            blk, bjac, w = eye_blocks(face, changes, means.detach().cpu().numpy())
            w = torch.as_tensor(w, device=means.device)[:, None]  # [N,1]
            self.basis = (1 - w) * self.basis + w * torch.as_tensor(blk, device=means.device)
            if self.jac is not None:  # (the blend weight's own gradient left out)
                bjac = torch.as_tensor(bjac, device=means.device)
                self.jac = (1 - w)[..., None] * self.jac + w[..., None] * bjac
        self.rot = None if quats is None else quat_to_rotmat(quats.detach().float())  # [N,3,3]

    def weights(self, emotion: Tensor, factors: dict[str, float] | None = None) -> Tensor:
        """Expression-model weights [B,K] of emotion rows [B,2] (categories scaled by `factors`), on the
        basis' device."""
        w = category_weights(self.model, emotion.detach().float().cpu().numpy(), factors)
        return torch.as_tensor(w, dtype=self.basis.dtype, device=self.basis.device)

    def __call__(self, emotion: Tensor, gain: Tensor | float = 1.0, stretch: bool = True,
                 factors: dict[str, float] | None = None) -> tuple[Tensor, Tensor | None]:
        """Offsets [B,N,3] of the Gaussians at emotion [B,2] × gain (scalar or [N,1]: 1 = as measured on
        MEAD; each category's change also × factors[name]), and the log-stretch [B,N,3] of their axes (None
        without rotations, or not `stretch`)."""
        w = self.weights(emotion, factors)
        off = torch.einsum("bk,knc->bnc", w, self.basis) * gain
        if not stretch or self.jac is None or self.rot is None:
            return off, None
        g = gain[..., None] if torch.is_tensor(gain) else gain  # [N,1,1] or a number
        jac = torch.einsum("bk,knij->bnij", w, self.jac) * g
        return off, axis_log_stretch(jac, self.rot)


def warp_active(model) -> bool:
    """Whether a `TalkingGaussians` draws a mouth warp now: it has one (with its mouth mask) and the switches
    leave it on. No device work, so render paths can ask every frame."""
    sw = model.switches
    return bool(sw.mouth_warp and sw.mouth_mask and model.settings.emotion_mouth_warp
                and getattr(model, "emotion_keep", None) is not None
                and getattr(model, "emotion_face", None) is not None)


def warp_deltas(model, emotion: Tensor, branch: str = "face") -> Tensor | None:
    """A `TalkingGaussians`' mouth warp at emotion [B,2]: face deltas [B,N,13] (position; log-scale stretch
    with `switches.warp_stretch`) faded in where its mouth mask fades the emotion field out, or the inside
    of the mouth's position deltas [B,Nm,3] (all of it moves, with the lips around it); None when the model
    has no warp or the switches turn it off. The warp of each branch is made once per set of Gaussians."""
    if not warp_active(model):
        return None
    keep, face = model.emotion_keep, model.emotion_face  # [N,1], [478,3]
    means, quats = model.branches[branch]["means"], model.branches[branch]["quats"]
    factors = model.settings.emotion_category_gain  # the identity's calibrated strengths (may be empty)
    region = model.settings.emotion_warp_region
    gain = float(model.emotion_warp_gain)
    key = (means.data_ptr(), quats.data_ptr(), means.shape[0], means.device, face.data_ptr(), face._version,
           region, gain, tuple(sorted(factors.items())))
    cache = model.__dict__.setdefault("_warps", {})
    if cache.get(branch, (None,))[0] != key:
        f = face.detach().cpu().numpy()
        if not np.abs(f).any():
            return None  # made from settings and not loaded yet: no landmarks
        warp = MouthWarp(f, means, quats if branch == "face" else None, region=region, gain=gain,
                         factors=factors)
        share = None  # [N,1] where the face warp acts (the mouth region: where the mask fades the field out)
        if branch == "face":
            share = 1 - keep
            if region == "face":
                fade = torch.as_tensor(face_fade(f, means.detach().cpu().numpy()), device=keep.device)
                share = torch.maximum(share, fade[:, None].to(keep))
        cache[branch] = (key, warp, share)
    warp, share = cache[branch][1], cache[branch][2]
    if branch != "face":
        return warp(emotion, model.emotion_warp_gain, factors=factors)[0]  # [B,Nm,3]
    off, stretch = warp(emotion, model.emotion_warp_gain * share, model.switches.warp_stretch,
                        factors)  # [B,N,3]
    d = off.new_zeros(*off.shape[:2], 13)
    d[..., :3] = off
    if stretch is not None:
        d[..., 7:10] = stretch
    return d
