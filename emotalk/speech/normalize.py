"""Bring any speech recording to the project's form: 16 kHz mono float32, DC removed, loudness
normalised (ITU-R BS.1770 gated loudness), optionally trimmed of leading/trailing silence.

Checks refuse what would give a meaningless result: too short, too long, silent. Clipping (flat
runs at full scale) is a warning by default (clipped speech still drives the lips; the user may want
to know) and an error with `on_clipping="error"`.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotalk.errors import InputError, MediaError
from emotalk.speech.features import SR, as_mono, to_16k

_LOG = logging.getLogger(__name__)


class ClippingWarning(UserWarning):
    """The recording is clipped (flat runs at full scale)."""


@dataclass(frozen=True)
class SpeechSettings:
    """How speech is checked and normalised."""

    target_lufs: float = -20.0  # integrated loudness after normalisation (speech, some headroom)
    peak_ceiling: float = 0.98  # the gain is lowered so no sample exceeds this (no new clipping)
    trim_silence: bool = False  # cut leading/trailing silence (keeps `trim_margin_s` around speech)
    trim_margin_s: float = 0.15  # silence kept on each side when trimming
    trim_threshold_db: float = -40.0  # a 20 ms frame is silence below this, relative to the loudest
    min_seconds: float = 0.3  # shorter recordings are refused
    max_seconds: float = 600.0  # longer recordings are refused
    silence_lufs: float = -60.0  # a recording quieter than this (gated loudness) counts as silent
    silence_peak: float = 1e-3  # ... and so does one whose peak is below this (-60 dBFS)
    clip_fraction: float = 0.001  # more than this fraction of samples in flat full-scale runs = clipped
    on_clipping: str = "warn"  # "warn" (default), "error" or "ignore"


DEFAULT = SpeechSettings()
KEEP_SILENCE = DEFAULT
TRIMMED = SpeechSettings(trim_silence=True)  # for TTS output and uploaded takes with long pauses


@dataclass(frozen=True)
class SpeechStats:
    """What a check found in a recording."""

    seconds: float  # duration
    peak: float  # max |sample|
    lufs: float  # BS.1770 gated loudness (-inf for silence)
    clipped_fraction: float  # fraction of samples in flat runs (>= 3 samples) at the peak level


def _biquad(b: list[float], a: list[float], x: np.ndarray) -> np.ndarray:
    from scipy.signal import lfilter

    return lfilter(np.asarray(b) / a[0], np.asarray(a) / a[0], x)


def _k_weight(x: np.ndarray, sr: int) -> np.ndarray:
    """BS.1770 K-weighting (high shelf + high pass), designed for any rate with the RBJ formulas."""
    def shelf(f0: float, gain_db: float, q: float):
        k = math.tan(math.pi * f0 / sr)
        vh = 10 ** (gain_db / 20)
        vb = vh ** 0.4996667741545416
        a0 = 1 + k / q + k * k
        return ([(vh + vb * k / q + k * k), 2 * (k * k - vh), (vh - vb * k / q + k * k)],
                [a0, 2 * (k * k - 1), 1 - k / q + k * k])

    def highpass(f0: float, q: float):
        k = math.tan(math.pi * f0 / sr)
        return [1.0, -2.0, 1.0], [1 + k / q + k * k, 2 * (k * k - 1), 1 - k / q + k * k]

    b, a = shelf(1681.974450955533, 3.999843853973347, 0.7071752369554196)
    y = _biquad(b, a, x)
    b, a = highpass(38.13547087602444, 0.5003270373238773)
    b = [v * a[0] for v in b]  # the high pass is normalised by a0 like the shelf
    return _biquad(b, a, y)


def loudness_lufs(wav: np.ndarray, sr: int = SR) -> float:
    """Gated integrated loudness (BS.1770-4: 400 ms blocks, -70 LUFS absolute, -10 LU relative gate)."""
    x = _k_weight(np.asarray(wav, np.float64), sr)
    block, step = int(0.4 * sr), int(0.1 * sr)
    if len(x) < block:
        z = np.array([np.mean(x ** 2)])
    else:
        c = np.concatenate([[0.0], np.cumsum(x ** 2)])
        starts = np.arange(0, len(x) - block + 1, step)
        z = (c[starts + block] - c[starts]) / block  # [B] mean square per block
    with np.errstate(divide="ignore"):
        lk = -0.691 + 10 * np.log10(z)
    z = z[lk > -70.0]
    if z.size == 0:
        return -math.inf
    rel = -0.691 + 10 * np.log10(z.mean()) - 10.0
    with np.errstate(divide="ignore"):
        z = z[-0.691 + 10 * np.log10(z) > rel]
    return float(-0.691 + 10 * np.log10(z.mean()))


def clipped_fraction(wav: np.ndarray) -> float:
    """Fraction of samples in runs of >= 3 equal samples at (>= 99.5 % of) the peak level."""
    a = np.abs(wav)
    peak = float(a.max()) if a.size else 0.0
    if peak < 0.5:  # quiet recordings cannot be clipped at full scale
        return 0.0
    at = a >= 0.995 * peak
    if not at.any():
        return 0.0
    # run lengths of consecutive at-peak samples
    edges = np.diff(np.concatenate([[0], at.view(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = ends - starts
    return float(lengths[lengths >= 3].sum() / a.size)


def speech_stats(wav: np.ndarray, sr: int = SR) -> SpeechStats:
    x = np.asarray(wav, np.float32)
    return SpeechStats(len(x) / sr, float(np.abs(x).max()) if x.size else 0.0,
                       loudness_lufs(x - x.mean(), sr) if x.size else -math.inf, clipped_fraction(x))


def check_speech(wav: np.ndarray, sr: int = SR, settings: SpeechSettings = DEFAULT,
                 name: str = "The recording") -> SpeechStats:
    """Refuse too short, too long or silent audio (MediaError); warn or refuse when clipped."""
    st = speech_stats(wav, sr)
    s = settings
    if st.seconds < s.min_seconds:
        raise MediaError(f"{name} is {st.seconds:.2f} s long; speech needs at least {s.min_seconds} s. "
                         "Record or type a longer sentence.")
    if st.seconds > s.max_seconds:
        raise MediaError(f"{name} is {st.seconds:.0f} s long; the limit is {s.max_seconds:.0f} s. "
                         "Cut it into shorter parts.")
    if st.peak < s.silence_peak or st.lufs < s.silence_lufs:
        raise MediaError(f"{name} is silent (peak {st.peak:.2g}, loudness {st.lufs:.0f} LUFS): no speech "
                         "to drive the lips. Check the microphone or the file's audio track.")
    if st.clipped_fraction > s.clip_fraction and s.on_clipping != "ignore":
        msg = (f"{name} is clipped ({100 * st.clipped_fraction:.1f} % of samples flat at full scale): "
               "it was recorded too loud. Lip-sync still works, but re-record lower for best quality.")
        if s.on_clipping == "error":
            raise MediaError(msg)
        warnings.warn(msg, ClippingWarning, stacklevel=3)
        _LOG.warning(msg)
    return st


def trim_silence(wav: np.ndarray, sr: int = SR, threshold_db: float = -40.0,
                 margin_s: float = 0.15) -> np.ndarray:
    """Cut leading and trailing silence (20 ms frames below `threshold_db` of the loudest frame)."""
    hop = int(0.02 * sr)
    n = len(wav) // hop
    if n < 2:
        return wav
    rms = np.sqrt(np.mean(wav[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)  # [n]
    loud = np.flatnonzero(20 * np.log10(rms / rms.max()) > threshold_db)
    m = int(margin_s * sr)
    start = max(0, loud[0] * hop - m)
    end = min(len(wav), (loud[-1] + 1) * hop + m)
    return wav[start:end]


def normalize_speech(wav: np.ndarray, sr: int = SR, settings: SpeechSettings = DEFAULT,
                     name: str = "The recording") -> np.ndarray:
    """Any waveform ([N] or [N,C], any rate) -> checked, 16 kHz mono, DC-free, loudness-normalised [N]."""
    x = as_mono(wav, sr)
    x = to_16k(x - x.mean(), sr)  # DC offset removed before resampling (no edge transient)
    check_speech(x, SR, settings, name)
    from scipy.signal import butter, sosfiltfilt

    x = sosfiltfilt(butter(2, 20.0, "highpass", fs=SR, output="sos"), x).astype(np.float32)  # slow drift
    if settings.trim_silence:
        x = trim_silence(x, SR, settings.trim_threshold_db, settings.trim_margin_s)
        if len(x) < settings.min_seconds * SR:
            raise MediaError(f"{name} has only {len(x) / SR:.2f} s of sound after trimming silence; "
                             f"speech needs at least {settings.min_seconds} s.")
    lufs = loudness_lufs(x, SR)
    gain = 10 ** ((settings.target_lufs - lufs) / 20) if math.isfinite(lufs) else 1.0
    peak = float(np.abs(x).max())
    if peak * gain > settings.peak_ceiling:
        gain = settings.peak_ceiling / peak
    return (x * gain).astype(np.float32)


def load_speech(path_or_array: str | os.PathLike | np.ndarray, sr: int | None = None,
                settings: SpeechSettings = DEFAULT) -> np.ndarray:
    """The pipeline's one entry for speech: a file (any container/codec) or an array (at `sr` Hz,
    16 kHz when None) -> 16 kHz mono float32 [N], checked and normalised (see SpeechSettings)."""
    if isinstance(path_or_array, str | os.PathLike):
        from emotalk.media import read_audio

        p = Path(path_or_array)
        wav = read_audio(p, SR)  # MediaError on missing/corrupt/no audio
        return normalize_speech(wav, SR, settings, name=p.name)
    if isinstance(path_or_array, np.ndarray | list | tuple):
        return normalize_speech(np.asarray(path_or_array), SR if sr is None else sr, settings)
    kind = type(path_or_array).__name__
    raise InputError(f"load_speech takes a file path or a waveform array, not {kind}.")
