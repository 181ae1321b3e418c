"""Coarticulation: phone timings + per-phone lip targets -> a smooth lip-code track [T,M].

Each phone pulls the lips towards its target with a dominance function that peaks at the phone's centre
(a Gaussian whose width follows the phone's duration) and whose strength depends on the phone's class and
the lip parameter: bilabials (p/b/m) and labiodentals (f/v) dominate gap, press and lower-lip drop (they
must close / tuck the lip whatever their neighbours are), rounded vowels and w dominate rounding and width,
with a long left tail (anticipatory rounding: lips round during earlier consonants), open vowels dominate
jaw and gap; most other consonants are weak, so they take the shape of their vowel neighbours. The track
is the dominance-weighted mean of the targets (Cohen & Massaro's model, in its simplest form). Bilabial
closures are then held: the gap sits at the closed level for the closure's duration (at least
`closure_min_frames`), since a weighted mean alone never quite closes the lips between two vowels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emotalk.lips import LIP_NAMES

M = len(LIP_NAMES)
_IDX = {n: i for i, n in enumerate(LIP_NAMES)}

# ARPAbet phone classes (stress removed); anything unlisted is a "weak" consonant
BILABIAL = frozenset({"P", "B", "M"})
LABIODENTAL = frozenset({"F", "V"})
ROUNDED = frozenset({"UW", "UH", "OW", "OY", "AO", "W"})
OPEN = frozenset({"AA", "AE", "AH", "AW", "AY", "EH", "EY"})
VOWEL = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})
POSTALVEOLAR = frozenset({"SH", "ZH", "CH", "JH", "R"})  # slightly rounded, protruded lips


def _strength(**kw: float) -> np.ndarray:
    """Per-parameter dominance strengths [M] (default 1) from keyword values, e.g. gap=3."""
    s = np.ones(M, np.float64)
    for k, v in kw.items():
        s[_IDX[k]] = v
    return s


# class -> dominance strength per lip parameter [M] (relative: only ratios between neighbours matter)
STRENGTH = {
    "bilabial": _strength(gap=6.0, press=6.0, lower=3.0, jaw=1.5, width=1.0, round=0.5),
    "labiodental": _strength(gap=3.0, press=2.0, lower=5.0, jaw=1.5, width=1.0, round=0.5),
    "rounded": _strength(round=5.0, width=4.0, gap=1.5, jaw=1.5, press=0.6, lower=1.0),
    "open": _strength(jaw=4.0, gap=4.0, lower=3.0, width=1.5, round=1.0, press=1.5),
    "vowel": _strength(jaw=2.0, gap=2.0, lower=1.5, width=2.0, round=1.0, press=1.0),
    "postalveolar": _strength(round=2.0, width=1.5, gap=0.6, jaw=0.6, press=0.5, lower=0.6),
    "weak": _strength(gap=0.5, jaw=0.5, lower=0.5, width=0.5, round=0.3, press=0.5),
    "pause": _strength(gap=1.0, jaw=1.0, lower=1.0, width=1.0, round=1.0, press=1.0),
}


def phone_class(phone: str) -> str:
    """Coarticulation class of an ARPAbet phone (stress digits ignored)."""
    p = "".join(ch for ch in phone.upper() if not ch.isdigit())
    if p in ("SIL", "SP", "SPN", "") or p.startswith("+"):
        return "pause"
    if p in BILABIAL:
        return "bilabial"
    if p in LABIODENTAL:
        return "labiodental"
    if p in ROUNDED:
        return "rounded"
    if p in OPEN:
        return "open"
    if p in VOWEL:
        return "vowel"
    if p in POSTALVEOLAR:
        return "postalveolar"
    return "weak"


@dataclass(frozen=True)
class CoarticSettings:
    """Shape of the dominance functions and of the held closures."""

    width: float = 0.5  # dominance sigma as a fraction of the phone's duration
    min_sigma_s: float = 0.035  # narrowest dominance sigma, seconds (short phones still reach neighbours)
    max_sigma_s: float = 0.12  # widest dominance sigma, seconds (long phones do not smear far)
    anticipation_s: float = 0.04  # extra left-side sigma of rounding (round, width) on rounded phones, s
    # (measured on speaker folds: 0.12 s lowered the rounding correlation 0.38 -> 0.31; 0.03-0.04 s is best)
    closure_min_frames: int = 2  # a p/b/m holds the closed gap for at least this many frames
    closure_press: bool = True  # held closures also raise `press` to at least the phone's target
    closure_pose: bool = True  # given the identity's shut pose, p/b/m hold all of it, not only gap and press
    # (a long-trained obama drew the p/b/m mean code with the gap held parted: MediaPipe opening 0.042, its
    # shut pose 0.013, real closed frames 0.014; BENCHMARKS.md, thirteenth session)


def as_phone_tuples(phones: Sequence) -> list[tuple[str, float, float]]:
    """(phone, start s, end s) from tuples or objects with .phone/.start/.end; stress digits removed."""
    out = []
    for p in phones:
        name, s, e = (p.phone, p.start, p.end) if hasattr(p, "phone") else p
        name = "".join(ch for ch in str(name).upper() if not ch.isdigit())
        if float(e) > float(s):
            out.append((name, float(s), float(e)))
    return sorted(out, key=lambda x: x[1])


def dominance_track(phones: Sequence[tuple[str, float, float]], targets: np.ndarray, T: int, fps: float,
                    fallback: np.ndarray, settings: CoarticSettings = CoarticSettings()) -> np.ndarray:
    """Dominance-weighted lip track [T,M] of phones with targets [P,M] (one row per phone, in order).

    Frames far from every phone get `fallback` [M] (e.g. the rest pose)."""
    t = np.arange(T, dtype=np.float64)[:, None] / fps  # [T,1]
    num = np.zeros((T, M))
    den = np.full((T, M), 1e-6)  # the fallback's tiny weight: used only where no phone reaches
    num += den * np.asarray(fallback, np.float64)
    for (name, s, e), x in zip(phones, np.asarray(targets, np.float64)):
        cls = phone_class(name)
        c = 0.5 * (s + e)
        sig = float(np.clip(settings.width * (e - s), settings.min_sigma_s, settings.max_sigma_s))
        sig_l = np.full(M, sig)
        if cls == "rounded":
            for k in ("round", "width"):
                sig_l[_IDX[k]] = sig + settings.anticipation_s
        d = t - c  # [T,1]
        sg = np.where(d < 0, sig_l[None], sig)  # [T,M]
        if cls == "pause":  # a pause is flat over its length, then falls off like a phone
            d = np.maximum(np.abs(d) - 0.5 * (e - s), 0.0)
        D = STRENGTH[cls][None] * np.exp(-0.5 * (d / sg) ** 2)  # [T,M]
        num += D * x[None]
        den += D
    return (num / den).astype(np.float32)


def closure_frames(phones: Sequence[tuple[str, float, float]], T: int, fps: float,
                   min_frames: int = 2) -> list[np.ndarray]:
    """Frame indices of each bilabial closure: frames whose time falls inside the phone, at least
    `min_frames` around its centre."""
    out = []
    for name, s, e in phones:
        if phone_class(name) != "bilabial":
            continue
        a, b = int(np.ceil(s * fps - 1e-9)), int(np.ceil(e * fps - 1e-9))  # frames k with s <= k/fps < e
        if b - a < min_frames:
            c = 0.5 * (s + e) * fps
            a = int(np.floor(c - 0.5 * (min_frames - 1) + 0.5))  # the min_frames frames nearest the centre
            b = a + min_frames
        idx = np.arange(max(a, 0), min(b, T))
        if len(idx):
            out.append(idx)
    return out


def hold_closures(track: np.ndarray, phones: Sequence[tuple[str, float, float]], fps: float,
                  closed_gap: float, press: float | None = None,
                  settings: CoarticSettings = CoarticSettings(),
                  pose: np.ndarray | None = None) -> np.ndarray:
    """A copy of track [T,M] with the gap at `closed_gap` (and press >= `press`) on every p/b/m closure;
    given `pose` [M] (an identity's shut mouth) and `settings.closure_pose`, closures take that whole pose."""
    out = np.array(track, np.float32)
    g, pr = _IDX["gap"], _IDX["press"]
    for idx in closure_frames(phones, len(out), fps, settings.closure_min_frames):
        if pose is not None and settings.closure_pose:
            out[idx] = np.asarray(pose, np.float32)
        out[idx, g] = np.minimum(out[idx, g], closed_gap)
        if press is not None and settings.closure_press:
            out[idx, pr] = np.maximum(out[idx, pr], press)
    return out
