"""The emotion parts of the talking head (used by `TalkingGaussians`): render switches, the lip lock, the
mouth mask of the emotion field, and emotion's offset to the lip code.

Why: the emotion field moving, rescaling and recolouring the lip Gaussians on top of speech blurred the
mouth (sharpness 0.30-0.53x neutral) and fought the audio (happy shut the mouth). With the mouth mask the
field leaves the lips to the speech fields, and the emotional mouth shape comes through the lip code
(`emotalk.lips.emotion`), drawn by the same Gaussians that draw speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class EmotionSwitches:
    """Render-time switches of a model's emotion parts (not saved: every load starts from the defaults)."""

    lip_offset: bool = False  # add emotion's lip-code offset (emotalk.lips.emotion) to the lip code
    # (lip-code models). Off by default: on audio-driven renders of the shipped obama (H200, 5 drives) it
    # shut the sad mouth (opening 0.91 -> 0.79 of neutral) and softened it (sharpness 0.79 -> 0.63) without
    # making any emotion read better (BENCHMARKS.md, issue 17). The emotion stage keeps it off while training.
    mouth_mask: bool = True  # fade the emotion field's deltas to 0 at the lips: the model's mouth mask
    # (`TalkingGaussians.set_mouth_mask`, set by the emotion stage), else one read from its lip-lock weights
    mouth_warp: bool = True  # where the mask fades the field out, warp the face Gaussians by the
    # expression model's lower-face change (smile, frown, press; `emotalk.gaussians.emotion_warp`), if set
    warp_stretch: bool = True  # the warp also scales each Gaussian's axes by how much it stretches them:
    # without it a smile's stretched lips thinned into a faint line (audio-driven renders, BENCHMARKS.md)
    jaw_drop: bool = True  # surprise and fear open the lip code (`emotalk.lips.emotion.emotion_opening`,
    # lip-code models): without it neither reads on any identity (the expression model leaves the jaw out)


def lip_lock(d: Tensor, w: Tensor, u: Tensor) -> Tensor:
    """Emotion deltas d [B,N,13] with the motion along the opening direction u [3] of the Gaussians with
    lip-lock weight w [N] pulled to the weighted mean of that region: upper and lower lip move together."""
    g = d[..., :3] @ u  # [B,N] motion along the opening direction
    m = (g * w).sum(-1, keepdim=True) / w.sum()  # [B,1] the lip region's common motion
    pos = d[..., :3] + (w * (m - g))[..., None] * u
    return torch.cat([pos, d[..., 3:]], -1)


def smoothstep(x):
    """0 below 0, 1 above 1, C1 in between (numpy or torch)."""
    x = x.clip(0, 1)
    return x * x * (3 - 2 * x)


def mouth_keep(dist: np.ndarray, inner: float, outer: float) -> np.ndarray:
    """Share [N] of the emotion field kept at distances dist [N] from the lips (units: mouth width): 0 up to
    `inner`, 1 from `outer` on, a smoothstep between."""
    return smoothstep((np.asarray(dist, np.float64) - inner) / max(outer - inner, 1e-6)).astype(np.float32)


def lip_lock_distance(w: np.ndarray, radius: float = 0.25) -> np.ndarray:
    """Distance [N] (mouth widths) to the central inner lips, read back from lip-lock weights w [N] =
    exp(-(d / radius)^2) (`emotalk.training.emotion_stage.lip_lock_weights`); weights that underflowed to 0
    give the largest distance float32 can tell (~2.4 widths at radius 0.25). For identities whose emotion
    stage ran before the mouth mask existed (the shipped ones)."""
    w = np.asarray(w, np.float64).reshape(-1)
    floor = float(np.finfo(np.float32).tiny)
    return radius * np.sqrt(-np.log(np.clip(w, floor, 1.0)))


LIP_LOCK_MASK = (0.3, 0.65)  # mouth_keep's inner/outer on the lip-lock distance, which is measured from
# the central inner lips (the lip outline lies ~0.15-0.3 mouth widths beyond them)


def keep_from_lip_lock(w: Tensor) -> Tensor:
    """Mouth mask [N,1] from lip-lock weights w [N,1], for identities whose emotion stage ran before the
    mask existed (measured on the shipped obama: happy's mouth opening 0.39 -> 0.91 of neutral)."""
    d = lip_lock_distance(w.detach().cpu().numpy())
    return torch.as_tensor(mouth_keep(d, *LIP_LOCK_MASK), device=w.device).reshape(-1, 1)


def emotional_lips(lips: Tensor, emotion: Tensor, gain: Tensor | None, lo: Tensor, hi: Tensor) -> Tensor:
    """Lip code [B,M] plus emotion's offset for emotion [B,2] at strength gain [B] (None: 1), clamped to the
    identity's trained range lo/hi [M]; rows (and entries) with no offset are returned exactly as given."""
    from emotalk.lips.emotion import emotion_lip_offset

    g = torch.ones(len(emotion), device=emotion.device) if gain is None else gain
    if not bool(((emotion != 0).any(-1) & (g != 0)).any()):
        return lips
    off = emotion_lip_offset(emotion, g).to(lips)  # [B,M]
    moved = torch.minimum(torch.maximum(lips + off, lo), hi)
    return torch.where(off != 0, moved, lips)


def dropped_jaw(lips: Tensor, emotion: Tensor, gain: Tensor | None, lo: Tensor, hi: Tensor) -> Tensor:
    """Lip code [B,M] opened by emotion's dropped jaw for emotion [B,2] at strength gain [B] (None: 1)
    (`emotalk.lips.emotion.open_lips`); returned as given when no row opens."""
    from emotalk.lips.emotion import emotion_opening, open_lips

    g = torch.ones(len(emotion), device=emotion.device) if gain is None else gain
    opening = emotion_opening(emotion, g).to(lips)  # [B,M]
    if not bool((opening != 0).any()):
        return lips
    return open_lips(lips, opening, lo, hi)
