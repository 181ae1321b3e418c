"""Emotion's mouth as an offset in lip-code space: what an emotion does to the lips, added to the speech's
lip code, so the renderer draws an emotional mouth with the same Gaussians (and sharpness) as a speech one.

Fitted from MEAD (`scripts/fit_emotion_lips.py` -> emotalk/models/emotion_lips.json): per category the
change of each lip parameter (`LIP_NAMES`) against the same actor's neutral clip, in z-units of that
actor's speech spread (the unit of an identity's lip code), averaged over actors. Applied offsets keep the
opening speech-driven: gap always 0, a small jaw drop for surprise only, no grin-like widening for
negative emotions (`applied_offsets`).
Any (v, a) of the disc: r · smoothstep blend of the two angular neighbours' offset per radius (the
expression model's polar map): continuous, exactly 0 at (0, 0), exact at every measured category.

Emotion's dropped jaw (`emotion_opening`, `open_lips`) is separate and on by default: surprise and fear
open the lip code's gap and jaw (FACS AU26), faded out toward the identity's most closed gap so closures
and pauses still shut. The offset table above stays off by default (EmotionSwitches.lip_offset).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from emotalk.emotion import CATEGORIES
from emotalk.errors import AssetError
from emotalk.lips import LIP_NAMES as NAMES

DEFAULT_TABLE = Path(__file__).resolve().parents[1] / "models" / "emotion_lips.json"
JAW_CATEGORIES = ("surprised",)  # the one emotion whose face (not a louder voice) drops the jaw (AU26)
MAX_JAW = 0.6  # largest jaw offset kept (z): a hint of a dropped jaw, never an open mouth
LEFT_OUT = ("contempt",)  # 2 degrees from disgusted on the disc with the opposite width change (the map
# would flip within 2 degrees) and no recogniser class: its (v, a) takes disgusted's mouth instead
WIDEN_NEGATIVE = False  # MEAD's sad, fear and disgusted widen the mouth (+0.7..1.5 z), but the speech fields
# draw a wider code as spread lips with teeth (an "ee"), which reads as a grin (seen on obama's renders):
# negative-valence categories keep width <= 0 unless this is True
MAX_OFFSET = 1.0  # any applied offset is clipped to +-this (z): the speech fields tie the parameters
# together (obama: +1 z of press alone closes the rendered mouth to 0.88x, -1 z of width to 0.74x), so a
# larger offset fights the opening; happy at 1.0: opening 0.97x neutral, at 1.5: 0.91x


def applied_offsets(measured: dict[str, np.ndarray], spread: dict[str, np.ndarray] | None = None,
                    n_actors: int = 3) -> dict[str, np.ndarray]:
    """The offsets the renderer adds, from the actors' mean changes {category: [M] z} and their spread
    over actors {category: [M]}: each mean shrunk toward 0 by how much the actors disagree (James-Stein:
    × max(0, 1 - var_of_mean / mean²)), clipped to +-MAX_OFFSET; gap 0 (the opening belongs to the
    speech; MEAD actors open wider in every emotion because they speak louder); jaw only for
    JAW_CATEGORIES, at most MAX_JAW; no widening for negative valence (`WIDEN_NEGATIVE`)."""
    out = {}
    for c, d in measured.items():
        m = np.asarray(d, np.float64)
        if spread is not None:
            var_mean = np.asarray(spread[c], np.float64) ** 2 / max(n_actors, 1)
            m = m * np.clip(1 - var_mean / np.maximum(m * m, 1e-12), 0, 1)
        a = np.clip(m, -MAX_OFFSET, MAX_OFFSET)
        a[NAMES.index("gap")] = 0.0
        j, w = NAMES.index("jaw"), NAMES.index("width")
        a[j] = float(np.clip(a[j], 0, MAX_JAW)) if c in JAW_CATEGORIES else 0.0
        if not WIDEN_NEGATIVE and CATEGORIES.get(c, (0.0, 0.0))[0] < 0:
            a[w] = min(a[w], 0.0)
        out[c] = a.astype(np.float32)
    return out


@dataclass
class EmotionLipTable:
    """Per-category lip-code offsets and the polar disc map over them."""

    categories: list[str]  # measured categories, by increasing angle atan2(a, v)
    angles: np.ndarray  # [K] float32 radians in [-pi, pi)
    measured: dict[str, np.ndarray]  # category -> [M] float32 measured change (z)
    applied: dict[str, np.ndarray]  # category -> [M] float32 offset the renderer adds (z)
    info: dict = field(default_factory=dict)  # provenance: actors, clips, spread over actors

    @classmethod
    def from_measured(cls, measured: dict[str, np.ndarray], applied: dict[str, np.ndarray],
                      info: dict | None = None) -> EmotionLipTable:
        cats = sorted((c for c in applied if c in CATEGORIES and c not in ("neutral", *LEFT_OUT)),
                      key=lambda c: math.atan2(CATEGORIES[c][1], CATEGORIES[c][0]))
        ang = np.array([math.atan2(CATEGORIES[c][1], CATEGORIES[c][0]) for c in cats], np.float32)
        f = {c: np.asarray(measured[c], np.float32) for c in cats}
        return cls(cats, ang, f, {c: np.asarray(applied[c], np.float32) for c in cats}, dict(info or {}))

    def per_radius(self) -> np.ndarray:
        """[K,M] applied offset per unit radius, in `categories` order."""
        return np.stack([self.applied[c] / math.hypot(*CATEGORIES[c]) for c in self.categories])

    def save(self, path: str | Path = DEFAULT_TABLE) -> Path:
        from emotalk.folders import atomic_write_bytes

        r = lambda x: [round(float(v), 4) for v in x]  # noqa: E731
        doc = {"names": list(NAMES), "unit": "z (the actor's speech spread)",
               "applied": {c: r(self.applied[c]) for c in self.categories},
               "measured": {c: r(self.measured[c]) for c in self.categories}, "info": self.info}
        return atomic_write_bytes(path, json.dumps(doc, indent=1).encode())

    @classmethod
    def load(cls, path: str | Path = DEFAULT_TABLE) -> EmotionLipTable:
        p = Path(path)
        if not p.is_file():
            raise AssetError(f"The emotion lip table {p} is missing: reinstall the package (it ships in "
                             f"emotalk/models) or fit it with scripts/fit_emotion_lips.py.")
        doc = json.loads(p.read_text(encoding="utf-8"))
        if doc.get("names") != list(NAMES):
            raise AssetError(f"The emotion lip table {p} has parameters {doc.get('names')}, this version "
                             f"needs {list(NAMES)}: fit it again with scripts/fit_emotion_lips.py.")
        return cls.from_measured(doc["measured"], doc["applied"], doc.get("info"))


@lru_cache(maxsize=4)
def _disc_map(path: str) -> tuple[Tensor, Tensor]:
    t = EmotionLipTable.load(path)
    per = torch.as_tensor(t.per_radius(), dtype=torch.float32)
    return torch.as_tensor(t.angles, dtype=torch.float64), per


def disc_blend(va: Tensor, intensity: Tensor | float, ang: Tensor, per: Tensor) -> Tensor:
    """The polar disc map [B,M]: emotions va [B,2] (put onto the unit disc) between the categories at
    angles ang [K] (increasing) with offsets per unit radius per [K,M]: r · intensity · the smoothstep blend
    of the two angular neighbours; exactly 0 at (0, 0) or intensity 0."""
    v = va.detach().to(torch.float64)
    ang, per = ang.to(v.device), per.to(v.device)  # the tables live on the CPU; renders may be on CUDA
    r = torch.linalg.norm(v, dim=-1).clamp(max=1.0)  # [B]
    th = torch.atan2(v[:, 1], v[:, 0])
    j = torch.searchsorted(ang, th.contiguous(), right=True)  # next category counter-clockwise
    i = (j - 1) % len(ang)
    j = j % len(ang)
    two_pi = 2 * math.pi
    span = torch.remainder(ang[j] - ang[i], two_pi)
    span = torch.where(span == 0, torch.full_like(span, two_pi), span)
    u = torch.remainder(th - ang[i], two_pi) / span
    s = (u * u * (3 - 2 * u)).float()[:, None]  # [B,1] smoothstep
    off = (1 - s) * per[i] + s * per[j]  # [B,M]
    g = torch.as_tensor(intensity, dtype=torch.float32, device=v.device).reshape(-1)
    return (off * (r.float() * g)[:, None]).to(va.device)


def emotion_lip_offset(va: Tensor, intensity: Tensor | float = 1.0, path: str | Path = DEFAULT_TABLE
                       ) -> Tensor:
    """Lip-code offset [B,M] (z) for emotions va [B,2] (put onto the unit disc) times intensity (scalar or
    [B]); exactly 0 at (0, 0) or intensity 0."""
    ang, per = _disc_map(str(path))
    return disc_blend(va, intensity, ang, per)


# -- emotion's dropped jaw -------------------------------------------------------------------------

OPENING = {  # emotion's opening at full intensity: per lip parameter, the share of the identity's headroom
    # above its mean code (lip_hi, z; the code is z-scored per identity) that every open frame is lifted by
    "surprised": {"gap": 0.5, "jaw": 0.5, "round": 0.25},  # FACS surprise: jaw drop (AU26/27), rounder
    "fear": {"gap": 0.5, "jaw": 0.5},  # FACS fear: jaw drop (AU26) with stretched lips (not drawn: a wider
    # code renders as a grin, see WIDEN_NEGATIVE)
}  # every other category opens by 0. Why: surprise and fear read nowhere without it (the expression model
# leaves the jaw to speech). A share of the identity's own headroom, not a fixed offset: a fixed +2 z
# pushed 15-19 % of obama's speech frames into his trained maximum (sync fell to 0.79x neutral) while
# reagan's range had room to spare
MAX_SHARE = 0.9  # the largest share (intensity 1.5 asks 0.75)
OPEN_FADE = 1.5  # z above the identity's most closed trained gap (lip_lo) over which the opening fades in:
# a p/b/m closure or a paused mouth near that gap stays (nearly) shut, an open vowel opens further


@lru_cache(maxsize=1)
def _opening_map() -> tuple[Tensor, Tensor]:
    """(angles [K], opening per unit radius [K,M]) over the categories of the disc (0 outside OPENING)."""
    cats = sorted((c for c in CATEGORIES if c not in ("neutral", "calm", *LEFT_OUT)),
                  key=lambda c: math.atan2(CATEGORIES[c][1], CATEGORIES[c][0]))
    ang = torch.tensor([math.atan2(CATEGORIES[c][1], CATEGORIES[c][0]) for c in cats], dtype=torch.float64)
    per = torch.zeros(len(cats), len(NAMES))
    for k, c in enumerate(cats):
        for name, z in OPENING.get(c, {}).items():
            per[k, NAMES.index(name)] = z / math.hypot(*CATEGORIES[c])
    return ang, per


def emotion_opening(va: Tensor, intensity: Tensor | float = 1.0) -> Tensor:
    """Emotion's opening share [B,M] (0..MAX_SHARE) for emotions va [B,2] times intensity (scalar or [B]):
    the `OPENING` of surprise and fear on the polar disc map; exactly 0 at (0, 0), intensity 0 and away
    from surprised and fear (0 at happy and angry)."""
    ang, per = _opening_map()
    return disc_blend(va, intensity, ang, per).clamp(0, MAX_SHARE)


def open_lips(lips: Tensor, share: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """Lip code [B,M] with every open frame lifted by the opening share [B or 1,M] of the identity's headroom
    above its mean code (hi [M], z), faded in by the speech's own gap (smoothstep over `OPEN_FADE` z above
    lo's gap). One lift for all open frames keeps the speech's own movement among them: moving each frame
    part of the way to hi (until 2026-11-29) halved it, and sync at surprise and fear fell to 0.79-0.85x
    neutral (reagan 0.81 / 0.84 -> 0.89 / 0.96 with the lift, BENCHMARKS.md "Fourteenth session").
    Monotonic in the speech's code; never below it; closures near lo stay shut; entries with no share are
    returned exactly as given. A torch function of tensors only (CUDA graphs capture it)."""
    g = NAMES.index("gap")
    x = ((lips[:, g:g + 1] - lo[g]) / OPEN_FADE).clamp(0, 1)  # [B,1]
    moved = lips + share * (x * x * (3 - 2 * x)) * hi.clamp_min(0)
    return torch.where(share != 0, moved, lips)
