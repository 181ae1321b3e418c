"""Other voices saying the same words: offline TTS voice settings, and perturbed copies of a recording
(pitch and formants moved together, tempo changed) that need no transcript and work in any language.

Used to re-speak a dataset's words (`emotalk.training.respeak`) and to train the lip driver.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emotalk.errors import InputError, MediaError
from emotalk.media import SR


@dataclass(frozen=True)
class Voice:
    """One offline TTS voice setting used for re-speaking."""

    name: str  # file stem under respoken/
    engine: str  # "piper", "espeak" or "perturb" (the original recording, pitch/formants/tempo changed)
    voice: str = ""  # espeak-ng voice (with +variant); ignored by Piper (one voice, en_US-joe-medium)
    rate: float = 0.0  # speaking-rate change, percent (perturb: tempo change, percent)
    pitch: float = 0.0  # pitch change, Hz (espeak only)
    tone: float = 1.0  # perturb only: factor on pitch and formants together (1.2: a smaller vocal tract)

    @property
    def needs_text(self) -> bool:
        """TTS voices re-speak the transcript; perturbed ones transform the recording itself."""
        return self.engine != "perturb"


# Voices that pocketsphinx (en-US acoustic model) aligns reliably; measured on the Obama and Reagan clips.
# espeak-ng en-gb+f3 (high), en-gb-scotland (low, slow) and en-029 were tried and dropped: too few of
# their words aligned (BENCHMARKS.md, Lip-sync).
VOICES: dict[str, Voice] = {v.name: v for v in (
    Voice("piper-joe", "piper"),
    Voice("piper-joe-fast", "piper", rate=25.0),
    Voice("espeak-en-us", "espeak", "en-us"),
    Voice("espeak-en-us-f2", "espeak", "en-us+f2"),
    Voice("espeak-en-us-m3-fast-low", "espeak", "en-us+m3", rate=15.0, pitch=-20.0),
    Voice("espeak-en-gb-rp-f4-high", "espeak", "en-gb-x-rp+f4", pitch=15.0),
    Voice("espeak-en-us-klatt3", "espeak", "en-us+klatt3"),
    Voice("orig-tone125", "perturb", tone=1.25),
    Voice("orig-tone080-fast", "perturb", tone=0.8, rate=15.0),
    Voice("orig-tone112-slow", "perturb", tone=1.12, rate=-12.0),
)}
PERTURBED_VOICES = tuple(k for k, v in VOICES.items() if v.engine == "perturb")
# Default: the perturbed recordings only. In the H100 ablation (BENCHMARKS.md, Lip-sync §4) they kept or
# improved held-out quality and sync on obama and macron, while adding the TTS voices (aligned to within
# 47-93 ms) made obama's held-out LMD and other-speaker offsets worse. TTS voices stay available by name.
DEFAULT_VOICES = PERTURBED_VOICES


def perturb(wav: np.ndarray, v: Voice) -> np.ndarray:
    """The recording with pitch and formants times `v.tone` and the tempo times 1 + v.rate/100:
    a resample (moves everything, like tape speed) then a phase-vocoder time stretch (restores tempo)."""
    import librosa

    tempo = 1.0 + v.rate / 100.0
    if not (0.5 <= v.tone <= 2.0 and 0.5 <= tempo <= 2.0):
        raise InputError(f"Voice {v.name}: tone {v.tone} / tempo {tempo} outside 0.5..2.")
    y = np.asarray(wav, np.float32)
    if v.tone != 1.0:
        y = librosa.resample(y, orig_sr=SR, target_sr=int(round(SR / v.tone)), res_type="soxr_hq")
    if tempo / v.tone != 1.0:
        y = librosa.effects.time_stretch(y, rate=tempo / v.tone)
    return y.astype(np.float32)


def speak(text: str, v: Voice) -> np.ndarray:
    """16 kHz speech of `text` in voice `v` (MediaError when the engine cannot run here)."""
    from emotalk.speech.tts_offline import EngineUnavailable, speak_espeak, speak_piper

    try:
        if v.engine == "piper":
            return speak_piper(text, v.rate)
        if v.engine == "espeak":
            return speak_espeak(text, v.rate, v.pitch, v.voice or "en-us")
    except EngineUnavailable as e:
        raise MediaError(f"Voice {v.name} could not speak: {e}") from e
    raise InputError(f"Unknown engine {v.engine!r} for voice {v.name}; use piper or espeak "
                     f"(perturbed voices transform the recording: see `perturb`).")
