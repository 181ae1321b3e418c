"""Emotion as a point (valence, arousal) of the disc: category coordinates, clamping, tracks over time,
and the one parser of keyframe tracks (JSON / CSV) used by the app, the CLI and the API."""

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
