"""Phone-aware lips: phone timings -> a target lip-code track, blended with the audio driver; rest in pauses.

The LipDriver maps each audio window to a lip code by mean squared error, so it regresses to the mean: open
vowels open too little and closures do not close. Where phone timings are known (TTS text, or an English
recording's transcript aligned), each phone's lip shape comes from a cross-speaker table (per-phone mean
z-code at the phone's centre over many tracked speakers, `scripts/build_phone_lips.py`,
`emotalk/models/phone_lips.json`), coarticulated (`emotalk.lips.coarticulation`), and blended per
parameter with the driver: `lips = w * phones + (1 - w) * driver`. Bilabial closures are held at the
closed gap after the blend. In pauses of at least `pause_min_s` (from the phones, else from the speech
energy, which works for any language) the lips ease to the rest pose within `pause_ease_s` and stay there.

All codes are z-scores in an identity's units ([T,M], M = len(LIP_NAMES)).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from emotalk.errors import AssetError
from emotalk.lips import LIP_NAMES
from emotalk.lips.coarticulation import (
    CoarticSettings,
    as_phone_tuples,
    dominance_track,
    hold_closures,
    phone_class,
)

PHONE_LIPS = Path(__file__).resolve().parents[1] / "models" / "phone_lips.json"
M = len(LIP_NAMES)


@dataclass(frozen=True)
class PhoneLipSettings:
    """How phone timings, the driver and pauses make the rendered lip code."""

    weight: tuple[float, ...] = (0.5, 0.4, 0.4, 0.5, 0.6, 0.6)  # per LIP_NAMES: share of the phone track
    # in the blend (1 - weight: the driver's); chosen on speaker folds by scripts/build_phone_lips.py
    phone_gain: tuple[float, ...] = (1.8, 2.0, 2.0, 2.0, 2.0, 2.0)  # per LIP_NAMES: the phone track's
    # excursion from the rest pose is scaled by this (table means average out, so they span too little;
    # on speaker folds gap 1.8 brings the open-vowel 95th-percentile gap to the truth's, the others 2.0
    # bring the blend's spread to ~0.9-1.0 of the truth's)
    energy_gate: float = 0.0  # 0: phone amplitude as is; 1: scaled by the local speech loudness in [0,1]
    # (measured: no gain in correlation at 0.5, lower phone contrast; off)
    hold_closures: bool = True  # p/b/m close fully after the blend (the driver part would reopen them)
    pauses: bool = True  # ease to the rest pose in long pauses
    pause_min_s: float = 0.4  # a pause at least this long rests
    pause_ease_s: float = 0.2  # the rest pose is reached this long after the pause starts
    pause_lead_s: float = 0.12  # the lips leave the rest pose this long before speech resumes
    pause_closed: bool = True  # in those pauses the lips close (the held closure's gap and press on the
    # rest pose): the cross-speaker rest pose alone (gap -0.31 z) left rendered mouths half open in
    # pauses (0 of 10 pauses at rest on audio-driven obama renders, BENCHMARKS.md issue 16)
    silence_level: float = 0.2  # energy pauses: frames below lo + level * (hi - lo) of the log speech-band
    # energy (lo, hi: its 5th and 95th percentiles) are silent
    coverage_pad_s: float = 0.1  # phone timings are trusted this far outside the first/last phone
    coartic: CoarticSettings = field(default_factory=CoarticSettings)  # dominance blending


DEFAULT = PhoneLipSettings()
PHONES_ONLY = PhoneLipSettings(weight=(1.0,) * M)  # the phone track alone (measurements)
NO_REST = PhoneLipSettings(pauses=False)  # phones + driver, the lips keep moving in pauses
PRESETS = {"default": DEFAULT, "phones-only": PHONES_ONLY, "no-rest": NO_REST}  # render-time lip settings


# --- the table ----------------------------------------------------------------------------------------

@dataclass
class PhoneTable:
    """Per-phone mean lip code (z-scores, cross-speaker) and the rest pose."""

    targets: dict[str, np.ndarray]  # phone -> mean z-code [M] at the phone's centre
    counts: dict[str, int]  # phone -> occurrences it was averaged over
    rest: np.ndarray  # [M] mean code in pauses >= 0.3 s
    closed_gap: float  # z-gap of a held bilabial closure
    closed_press: float  # z-press of a held bilabial closure
    min_count: int = 10  # phones seen fewer times fall back to their class mean
    shut_gap: float | None = None  # z-gap of fully shut lips (an identity's own table: its tracked 1st-
    # percentile gap): held p/b/m closures and long pauses go down to it; None: `closed_gap`. Renders span
    # only ~0.45-0.8x of the code's gap (+0.02-0.03 raw) and close less than the code says, so the lips are
    # sent to the most closed level this person shows (measured in out/, issue 16 notes)
    shut_pose: np.ndarray | None = None  # [M] an identity's own table: its mean code over its most shut
    # frames; long pauses take its jaw, press and lower lip (None: the rest pose's)

    @property
    def closed_level(self) -> float:
        """z-gap that held closures and long pauses go to."""
        return self.closed_gap if self.shut_gap is None else min(self.closed_gap, self.shut_gap)

    def pause_pose(self, closed: bool = True) -> np.ndarray:
        """Lip code [M] of a long pause: the rest pose, with the lips closed if `closed`: the closure gap, and
        the jaw, press and lower lip of this person's shut mouth (its shut pose; else the closure's press)."""
        pose = np.array(self.rest, np.float64)
        if closed:
            pose[LIP_NAMES.index("gap")] = self.closed_level
            pose[LIP_NAMES.index("press")] = self.closed_press
            if self.shut_pose is not None:
                for name in ("jaw", "press", "lower"):
                    pose[LIP_NAMES.index(name)] = self.shut_pose[LIP_NAMES.index(name)]
        return pose

    def closure_pose(self) -> np.ndarray | None:
        """Lip code [M] that p/b/m frames hold: this person's shut pose with the gap at the closed level and
        at least the closure's press (None: no shut pose, only gap and press are held)."""
        if self.shut_pose is None:
            return None
        pose = np.array(self.shut_pose, np.float64)
        pose[LIP_NAMES.index("gap")] = self.closed_level
        pose[LIP_NAMES.index("press")] = max(pose[LIP_NAMES.index("press")], self.closed_press)
        return pose

    def target(self, phone: str) -> np.ndarray:
        """Lip target [M] of a phone; rare or unknown phones get their class's count-weighted mean."""
        if phone_class(phone) == "pause":
            return self.rest
        if self.counts.get(phone, 0) >= self.min_count:
            return self.targets[phone]
        return self._class_mean(phone_class(phone))

    @lru_cache(maxsize=16)  # noqa: B019  (tables are few and live as long as the process)
    def _class_mean(self, cls: str) -> np.ndarray:
        ks = [k for k in self.targets if phone_class(k) == cls and self.counts.get(k, 0) > 0]
        if not ks:
            ks = [k for k in self.targets if self.counts.get(k, 0) > 0]
        w = np.array([self.counts[k] for k in ks], np.float64)
        return (np.stack([self.targets[k] for k in ks]) * w[:, None]).sum(0) / w.sum()

    def closure(self) -> np.ndarray:
        """Lip code [M] of a p/b/m closure as spoken (the count-weighted mean of the bilabial targets)."""
        return self._class_mean("bilabial")

    def __hash__(self) -> int:  # for the class-mean cache
        return id(self)


def table_from_json(d: dict) -> PhoneTable:
    if list(d.get("names", [])) != list(LIP_NAMES):
        raise AssetError(f"The phone lip table has parameters {d.get('names')}, this version needs "
                         f"{list(LIP_NAMES)}: build it again with scripts/build_phone_lips.py.")
    ph = d["phones"]
    return PhoneTable({k: np.asarray(v["mean"], np.float64) for k, v in ph.items()},
                      {k: int(v["count"]) for k, v in ph.items()}, np.asarray(d["rest"], np.float64),
                      float(d["closed"]["gap"]), float(d["closed"]["press"]),
                      shut_gap=None if d["closed"].get("shut_gap") is None
                      else float(d["closed"]["shut_gap"]),
                      shut_pose=None if d["closed"].get("shut_pose") is None
                      else np.asarray(d["closed"]["shut_pose"], np.float64))


@lru_cache(maxsize=2)
def load_table(path: str | Path = PHONE_LIPS) -> PhoneTable:
    """The shipped (or given) cross-speaker phone lip table."""
    p = Path(path)
    if not p.is_file():
        raise AssetError(f"The phone lip table {p} is missing: reinstall the package (it ships in "
                         f"emotalk/models) or build it with scripts/build_phone_lips.py.")
    return table_from_json(json.loads(p.read_text()))


@lru_cache(maxsize=1)
def shipped_closure() -> tuple[float, ...]:
    """The shipped table's p/b/m closure code (`PhoneTable.closure`), read once per process: every lip-code
    model keeps it as the floor of its opening gain."""
    return tuple(float(x) for x in load_table().closure())


# --- tracks -------------------------------------------------------------------------------------------

def held(track: np.ndarray, phones: Sequence, fps: float, table: PhoneTable,
         coartic: CoarticSettings) -> np.ndarray:
    """track [T,M] with every p/b/m closure held at `table`'s closure (its closed gap and press, and its
    whole shut pose where it has one: `hold_closures`)."""
    return hold_closures(track, phones, fps, table.closed_level, table.closed_press, coartic,
                         table.closure_pose())


def with_pauses(phones: Sequence) -> list[tuple[str, float, float]]:
    """Phone tuples with every gap between phones filled by a "SIL" pause (from 0 s on)."""
    out: list[tuple[str, float, float]] = []
    t = 0.0
    for name, s, e in as_phone_tuples(phones):
        if s > t + 1e-3:
            out.append(("SIL", t, s))
        out.append((name, max(s, t) if out else s, e))
        t = max(t, e)
    return out


def phone_track(phones: Sequence, T: int, fps: float, table: PhoneTable,
                settings: PhoneLipSettings = DEFAULT) -> np.ndarray:
    """Target lip-code track [T,M] from phone timings: coarticulated table targets, the excursion from
    the rest pose scaled by `phone_gain`, closures held (no pause rest yet)."""
    ph = with_pauses(phones)
    gain = np.asarray(settings.phone_gain, np.float64)
    targets = np.stack([table.rest + gain * (table.target(n) - table.rest) if phone_class(n) != "pause"
                        else table.rest for n, _, _ in ph]) if ph else np.zeros((0, M))
    tr = dominance_track(ph, targets, T, fps, table.rest, settings.coartic)
    return held(tr, ph, fps, table, settings.coartic)


def pauses_from_phones(phones: Sequence, T: int, fps: float, min_s: float) -> list[tuple[float, float]]:
    """Pauses (start, end) s of at least `min_s`: SIL phones, gaps between phones, and the stretches
    before the first and after the last phone (up to T/fps)."""
    ph = [p for p in as_phone_tuples(phones) if phone_class(p[0]) != "pause"]
    out, t = [], 0.0
    for _, s, e in ph:
        if s - t >= min_s:
            out.append((t, s))
        t = max(t, e)
    if T / fps - t >= min_s:
        out.append((t, T / fps))
    return out


def sil_cover(phones: Sequence, s: float, e: float) -> float:
    """Fraction of [s, e) s covered by phones marked as pauses (SIL)."""
    cov = sum(max(0.0, min(e, pe) - max(s, ps)) for n, ps, pe in as_phone_tuples(phones)
              if phone_class(n) == "pause")
    return cov / max(e - s, 1e-9)


def speech_level(wav: np.ndarray, T: int, fps: float) -> np.ndarray:
    """Speech loudness per frame [T] in [0,1]: log speech-band energy between its 5th and 95th percentile."""
    from emotalk.avsync.lipsync import speech_band_energy

    e = speech_band_energy(np.asarray(wav, np.float32), T, fps)
    lo, hi = np.percentile(e, 5), np.percentile(e, 95)
    return np.clip((e - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[a, b) index runs where mask [T] is true."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    d = np.flatnonzero(np.diff(m.astype(np.int8)))
    return list(zip(d[::2].tolist(), d[1::2].tolist()))


def pauses_from_energy(level: np.ndarray, fps: float, settings: PhoneLipSettings = DEFAULT
                       ) -> list[tuple[float, float]]:
    """Pauses (start, end) s of at least settings.pause_min_s where speech level [T] is silent (any
    language)."""
    quiet = level < settings.silence_level
    return [(a / fps, b / fps) for a, b in runs(quiet) if (b - a) / fps >= settings.pause_min_s]


def rest_weight(pauses: Sequence[tuple[float, float]], T: int, fps: float,
                settings: PhoneLipSettings = DEFAULT) -> np.ndarray:
    """Weight of the rest pose per frame [T] in [0,1]: 1 from `pause_ease_s` after a pause starts to
    `pause_lead_s` before it ends, smooth (cosine) ramps of `pause_ease_s` on either side inside the pause
    edges. Pauses at the clip's start/end rest from their outer edge on."""
    t = np.arange(T) / fps
    w = np.zeros(T)
    end_s = T / fps
    ease = max(settings.pause_ease_s, 1e-3)
    for s, e in pauses:
        a = s + ease if s > 1e-6 else s  # the clip's first pause rests from the start
        b = e - settings.pause_lead_s if e < end_s - 1e-6 else e + 1.0
        if b <= a:
            continue
        up = np.clip((t - s) / ease, 0, 1) if s > 1e-6 else np.ones(T)
        down = np.clip((b + ease - t) / ease, 0, 1)  # leaves rest over the next `ease` seconds
        r = np.where((t >= a) & (t <= b), 1.0, np.minimum(up, down) * ((t > s) & (t < b + ease)))
        w = np.maximum(w, 0.5 - 0.5 * np.cos(np.pi * r))
    return w.astype(np.float32)


def coverage(phones: Sequence, T: int, fps: float, pad_s: float) -> np.ndarray:
    """Per frame [T]: 1 where the phone timings cover it (each phone +- pad, short holes filled), else 0,
    with smooth edges."""
    c = np.zeros(T, np.float32)
    t = np.arange(T) / fps
    for _, s, e in as_phone_tuples(phones):
        c[(t >= s - pad_s) & (t < e + pad_s)] = 1.0
    for a, b in runs(c < 0.5):  # short holes between phones are covered (an unmarked short pause)
        if 0 < a and b < T and (b - a) / fps < 0.6:
            c[a:b] = 1.0
    k = np.hanning(7)[1:-1]  # ~0.15 s ramps at the edges of the covered stretches
    return np.convolve(np.pad(c, 2, mode="edge"), k / k.sum(), mode="valid").astype(np.float32)


def phone_lips(driver: np.ndarray, fps: float, phones: Sequence | None = None, wav: np.ndarray | None = None,
               table: PhoneTable | None = None, settings: PhoneLipSettings = DEFAULT) -> np.ndarray:
    """Lip code [T,M] from the driver's prediction driver [T,M], phone timings where given (blended per
    parameter, closures held) and the rest pose in pauses (from phones, and from the speech energy of 16 kHz
    `wav` [N] where there are no phones)."""
    drv = np.asarray(driver, np.float64)
    T = len(drv)
    table = table if table is not None else load_table()
    rest = table.rest
    ph = as_phone_tuples(phones or [])
    out = drv.copy()
    level = speech_level(wav, T, fps) if wav is not None and len(wav) else None
    cov = coverage(ph, T, fps, settings.coverage_pad_s) if ph else np.zeros(T, np.float32)
    if ph:
        tr = phone_track(ph, T, fps, table, settings)
        if settings.energy_gate > 0 and level is not None:
            g = 1.0 - settings.energy_gate * (1.0 - level)[:, None]
            tr = rest + g * (tr - rest)
        w = np.asarray(settings.weight, np.float64)[None] * cov[:, None]
        out = w * tr + (1 - w) * drv
        if settings.hold_closures:
            full = with_pauses(ph)
            out = held(out, full, fps, table, settings.coartic)
    if settings.pauses:
        pauses = pauses_from_phones(ph, T, fps, settings.pause_min_s) if ph else []
        if level is not None:  # a gap in the phones where speech goes on (an unaligned chunk) is no pause;
            # a pause the aligner marked silent (SIL) is one even where the room's echo keeps the energy up
            # (a 0.85 s SIL of the macron drive had only 8 of 21 frames under silence_level: it never rested)
            def quiet(s: float, e: float) -> float:
                a = int(s * fps)
                return float(np.mean(level[a:max(int(e * fps), a + 1)] < settings.silence_level))

            pauses = [(s, e) for s, e in pauses if sil_cover(ph, s, e) >= 0.8 or quiet(s, e) >= 0.5]
        if level is not None:  # where phones do not reach: pauses from the speech energy
            pauses += [(s, e) for s, e in pauses_from_energy(level, fps, settings)
                       if cov[int(s * fps):max(int(e * fps), int(s * fps) + 1)].max(initial=0) < 0.5]
        r = rest_weight(pauses, T, fps, settings)[:, None]
        out = r * table.pause_pose(settings.pause_closed) + (1 - r) * out
    return out.astype(np.float32)

