"""Per-identity phone lip targets: this person's own lip code per phone, rest pose, closure and range.

The cross-speaker table (`emotalk/models/phone_lips.json`) knows how lips move on average, not how far
*this* person opens (reagan's real clip: open-vowel / p-b-m contrast 4.6; the table's blend gave him
1.5-2.5). From the identity's own clip (its tracked lip code [T,M] in its z units and its speech's phones,
transcribed and force-aligned like the sync metric does) we take:
- per phone: the mean code at the phone's centre, shrunk towards the table by count
  (`n / (n + prior_count)` own, the rest the table's target), so phones the clip says rarely lean on it;
- the rest pose: the mean code inside the clip's own pauses (shrunk towards the table's by frames);
- the closure: the gap and press at the most closed frame of each p/b/m (shrunk the same way), and the
  gap of fully shut lips (its tracked 1st-percentile gap), which held closures and long pauses go down to
  (renders close less than the code says);
- `phone_gain` per parameter: the tracked code's spread over speech frames over the spread of the phone
  track with gain 1, so the phone track spans this person's range (the table's fixed 1.8-2.0 was tuned
  for averaged cross-speaker targets).

Stored in the identity folder as `phone_lips.json` (optional: identities without it use the cross-speaker
table); `render.speech_lips.lip_track` picks it up. Only English speech gets one (the aligner is English).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from emotalk.errors import AssetError
from emotalk.lips import LIP_NAMES
from emotalk.lips.coarticulation import as_phone_tuples, phone_class
from emotalk.lips.phones import (
    DEFAULT,
    PhoneLipSettings,
    PhoneTable,
    load_table,
    pauses_from_phones,
    phone_track,
    table_from_json,
)

_LOG = logging.getLogger(__name__)
FILE = "phone_lips.json"  # in the identity folder
KIND = "emotalk-identity-phone-lips"
M = len(LIP_NAMES)
_GAP, _PRESS = LIP_NAMES.index("gap"), LIP_NAMES.index("press")
# English check of a clip's transcript (as render.speech_lips does for uploads; Whisper tiny.en greedy)
MAX_REPETITION = 2.0  # compression ratio above this: the recogniser looped (not English)
MIN_WORD_PROB = 0.8  # median word probability below this: not (clear) English


@dataclass(frozen=True)
class OwnPhoneSettings:
    """How an identity's own phone targets are made from its clip."""

    prior_count: float = 8.0  # a phone seen n times: n / (n + prior_count) its own mean, the rest the table's
    rest_prior_frames: float = 25.0  # the same for the rest pose, counted in pause frames
    closed_prior: float = 4.0  # the same for the closure gap/press, counted in p/b/m closures
    pause_min_s: float = 0.3  # the clip's pauses at least this long give the rest pose ...
    pause_margin_s: float = 0.1  # ... over their frames this far inside the speech on either side
    gain_range: tuple[float, float] = (1.0, 2.5)  # phone_gain is clipped to this range
    gain_scale: float = 1.0  # multiplies the spread ratio (1: the phone track spans the tracked spread)
    max_offset: int = 2  # a residual AV offset (frames) of the clip up to this is undone on the phones
    min_seconds: float = 4.0  # shorter clips get no table (too few phones to learn from)
    shut_percentile: float = 1.0  # fully shut lips (held closures, long pauses): this percentile of the
    # tracked gap (renders open more than the code says at the low end, so the natural closure mean is not
    # enough)
    shut_pose_percentile: float = 5.0  # the shut pose (jaw, press, lower lip of long pauses) is the mean code
    # of the frames whose gap is at most this percentile: the rest pose with only the gap and press of a
    # p/b/m closed rendered obama's paused mouth parted (MediaPipe 0.04-0.06 vs 0.008 tracked; BENCHMARKS.md)


DEFAULT_OWN = OwnPhoneSettings()


@dataclass
class OwnPhoneLips:
    """An identity's phone table and the phone gain that goes with it."""

    table: PhoneTable
    phone_gain: tuple[float, ...]  # per LIP_NAMES

    def settings(self, base: PhoneLipSettings = DEFAULT) -> PhoneLipSettings:
        """`base` with this identity's phone gain."""
        return replace(base, phone_gain=tuple(float(g) for g in self.phone_gain))


# --- building --------------------------------------------------------------------------------------------

def code_at(code: np.ndarray, t: float, fps: float) -> np.ndarray:
    """Code [T,M] linearly interpolated at time t (s)."""
    x = float(np.clip(t * fps, 0, len(code) - 1))
    i = int(np.floor(x))
    j = min(i + 1, len(code) - 1)
    return (1 - (x - i)) * code[i] + (x - i) * code[j]


def _use(frames: np.ndarray | None, T: int) -> np.ndarray:
    """Mask [T] of the frames the table may learn from (all when None)."""
    m = np.zeros(T, bool)
    m[np.asarray(frames if frames is not None else np.arange(T), np.int64)] = True
    return m


def own_samples(code: np.ndarray, phones: Sequence, fps: float, frames: np.ndarray | None = None,
                settings: OwnPhoneSettings = DEFAULT_OWN) -> dict:
    """This clip's samples: {"phones": {phone: [codes [M]]}, "rest": [frame idx], "closed": [[gap, press]]}
    from its lip code [T,M] and phones (video time), using only `frames` (None: all)."""
    z = np.asarray(code, np.float64)
    T = len(z)
    use = _use(frames, T)
    ph = as_phone_tuples(phones)
    vals: dict[str, list] = {}
    closed = []
    for name, s, e in ph:
        cls = phone_class(name)
        if cls == "pause" or not use[min(int(round(0.5 * (s + e) * fps)), T - 1)]:
            continue
        vals.setdefault(name, []).append(code_at(z, 0.5 * (s + e), fps))
        if cls == "bilabial":  # the most closed frame of the closure
            a, b = max(int(np.floor(s * fps)), 0), min(int(np.ceil(e * fps)) + 1, T)
            if b > a and use[a:b].all():
                k = a + int(np.argmin(z[a:b, _GAP]))
                closed.append([z[k, _GAP], z[k, _PRESS]])
    rest: list[int] = []
    for s, e in pauses_from_phones(ph, T, fps, settings.pause_min_s):
        a = int(np.ceil((s + (settings.pause_margin_s if s > 0 else 0)) * fps))
        b = int(np.floor((e - (settings.pause_margin_s if e < T / fps - 1e-6 else 0)) * fps))
        rest += [k for k in range(max(a, 0), min(b, T)) if use[k]]
    return {"phones": vals, "rest": rest, "closed": closed}


def _shrink(own: np.ndarray, n: float, prior: np.ndarray, k: float) -> np.ndarray:
    return (n * np.asarray(own, np.float64) + k * np.asarray(prior, np.float64)) / max(n + k, 1e-9)


def blend_with_table(code: np.ndarray, samples: dict, base: PhoneTable, frames: np.ndarray | None = None,
                     settings: OwnPhoneSettings = DEFAULT_OWN) -> dict:
    """Table JSON (the cross-speaker format, plus own counts and the pause gap) of this clip's samples
    shrunk to `base`; the shut gap is the used `frames`' (None: all) low percentile of the tracked gap."""
    z = np.asarray(code, np.float64)
    used = z[_use(frames, len(z))]
    shut = float(np.percentile(used[:, _GAP], settings.shut_percentile))
    shut_pose = used[used[:, _GAP] <= np.percentile(used[:, _GAP], settings.shut_pose_percentile)].mean(0)
    phones = {}
    for name in sorted(set(base.targets) | set(samples["phones"])):
        v = samples["phones"].get(name, [])
        prior = base.target(name)
        mean = _shrink(np.mean(v, 0), len(v), prior, settings.prior_count) if v else prior
        phones[name] = {"mean": np.round(mean, 4).tolist(), "count": int(base.counts.get(name, 0) + len(v)),
                        "own_count": len(v)}
    rf = samples["rest"]
    rest = _shrink(z[rf].mean(0), len(rf), base.rest, settings.rest_prior_frames) if rf else base.rest
    cl = np.asarray(samples["closed"], np.float64).reshape(-1, 2)
    closed = (_shrink(cl.mean(0), len(cl), [base.closed_gap, base.closed_press], settings.closed_prior)
              if len(cl) else np.array([base.closed_gap, base.closed_press]))
    return {"names": list(LIP_NAMES), "phones": phones, "rest": np.round(rest, 4).tolist(),
            "rest_frames": len(rf), "closed": {"gap": round(float(closed[0]), 4),
                                               "press": round(float(closed[1]), 4), "count": len(cl),
                                               "shut_gap": round(shut, 4),
                                               "shut_pose": np.round(shut_pose, 4).tolist()}}


def fit_phone_gain(table: PhoneTable, code: np.ndarray, phones: Sequence, fps: float,
                   frames: np.ndarray | None = None, settings: OwnPhoneSettings = DEFAULT_OWN) -> list[float]:
    """Per-parameter phone gain [M]: spread of the tracked code over the spread of the gain-1 phone track,
    over the used speech frames (in a phone, not a pause nor a held p/b/m), times `gain_scale`, clipped."""
    z = np.asarray(code, np.float64)
    T = len(z)
    one = PhoneLipSettings(phone_gain=(1.0,) * M)
    tr = phone_track(phones, T, fps, table, one).astype(np.float64)
    t = np.arange(T) / fps
    speech = np.zeros(T, bool)
    for name, s, e in as_phone_tuples(phones):
        if phone_class(name) not in ("pause", "bilabial"):  # held closures are set, not scaled by the gain
            speech |= (t >= s) & (t < e)
    m = speech & _use(frames, T)
    if m.sum() < 10:
        return list(DEFAULT.phone_gain)
    ratio = z[m].std(0) / np.maximum(tr[m].std(0), 1e-6) * settings.gain_scale
    return [round(float(g), 3) for g in np.clip(ratio, *settings.gain_range)]


def build_own_table(code: np.ndarray, phones: Sequence, fps: float, frames: np.ndarray | None = None,
                    base: PhoneTable | None = None, settings: OwnPhoneSettings = DEFAULT_OWN) -> dict:
    """The identity's phone-lips JSON from its lip code [T,M] (its z units), phones in video time and the
    frames it may learn from (its training frames; None: all)."""
    base = base if base is not None else load_table()
    samples = own_samples(code, phones, fps, frames, settings)
    d = blend_with_table(code, samples, base, frames, settings)
    gain = fit_phone_gain(table_from_json(d), code, phones, fps, frames, settings)
    return {"kind": KIND, **d, "fps": float(fps), "phone_gain": gain,
            "own": {"phones": int(sum(len(v) for v in samples["phones"].values())),
                    "phone_kinds": len(samples["phones"]), "rest_frames": len(samples["rest"]),
                    "closures": len(samples["closed"])},
            "prior": {"count": settings.prior_count, "rest_frames": settings.rest_prior_frames,
                      "closures": settings.closed_prior}}


# --- reading -----------------------------------------------------------------------------------------------

def own_from_json(d: dict) -> OwnPhoneLips:
    g = d.get("phone_gain", list(DEFAULT.phone_gain))
    if len(g) != M:
        raise AssetError(f"The identity's phone lip table has {len(g)} gains, this version needs {M}: "
                         f"build it again (emotalk.lips.own_phones.write_identity_phone_lips).")
    return OwnPhoneLips(table_from_json(d), tuple(float(x) for x in g))


def load_own(root: str | Path) -> OwnPhoneLips | None:
    """The identity folder's own phone table, or None when it has none or it is unreadable (the renderer
    then uses the cross-speaker table; a damaged file is logged, never fatal)."""
    p = Path(root) / FILE
    try:
        return _load_own(str(p), p.stat().st_mtime_ns)  # read once per version of the file
    except FileNotFoundError:
        return None


@lru_cache(maxsize=8)
def _load_own(path: str, mtime_ns: int) -> OwnPhoneLips | None:
    try:
        return own_from_json(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError, AssetError) as e:
        _LOG.warning("ignoring %s (%s): the cross-speaker phone table is used", path, e)
        return None


# --- from a dataset --------------------------------------------------------------------------------------

def clip_phones(wav: np.ndarray, mouth: np.ndarray | None = None, fps: float = 25.0,
                settings: OwnPhoneSettings = DEFAULT_OWN) -> tuple[list, str]:
    """Phone tuples (video time) of a clip's 16 kHz speech [N] and a reason ("" when found): Whisper
    transcript (English only: the recogniser must be sure), pocketsphinx alignment; with the clip's mouth
    opening [T] a residual AV offset of up to `max_offset` frames is undone."""
    from emotalk.avsync.lipsync import align_robust
    from emotalk.speech.align import transcribe

    wav = np.asarray(wav, np.float32)
    tr = transcribe(wav, greedy=True)
    if not tr.words:
        return [], "no words recognised"
    if tr.repetition > MAX_REPETITION or float(np.median([w.score for w in tr.words])) < MIN_WORD_PROB:
        return [], "the speech does not sound like English to the recogniser"
    _, phones, _ = align_robust(wav, tr.words)
    if not phones:
        return [], "phone alignment failed"
    off = 0
    if mouth is not None:
        from emotalk.avsync.lipsync import estimate_sync

        est = estimate_sync(np.asarray(mouth, np.float64), wav, phones)
        off = est.offset if est.clear and abs(est.offset) <= settings.max_offset else 0
    return [(p.phone, p.start - off / fps, p.end - off / fps) for p in phones], ""


def write_identity_phone_lips(root: str | Path, ds, phones: Sequence | None = None,
                              settings: OwnPhoneSettings = DEFAULT_OWN) -> Path | None:
    """Write `root`/phone_lips.json from identity dataset `ds` (its training frames, its speech); None, with
    the reason logged, when it cannot (not English, no blendshapes, no aligner...): never raises, since
    the identity renders without it. `phones` (video time) skips the transcription."""
    try:
        from emotalk.face.landmarks import mouth_opening
        from emotalk.folders import atomic_write_text
        from emotalk.lips import dataset_lips

        _, code = dataset_lips(ds)
        if len(code) / float(ds.fps) < settings.min_seconds:
            _LOG.info("no own phone table for %s: clip shorter than %.0f s", root, settings.min_seconds)
            return None
        if phones is None:
            phones, why = clip_phones(ds.audio(), mouth_opening(ds.lmk2d), float(ds.fps), settings)
            if not phones:
                _LOG.info("no own phone table for %s: %s", root, why)
                return None
        d = build_own_table(code, phones, float(ds.fps), np.asarray(ds.train_idx), settings=settings)
        return atomic_write_text(Path(root) / FILE, json.dumps(d, indent=1) + "\n")
    except Exception as e:  # noqa: BLE001  (an improvement: a fine-tune must not fail on it)
        _LOG.warning("no own phone table for %s: %s", root, e)
        return None
