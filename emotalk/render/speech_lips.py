"""The lip code a render is driven by: the audio driver alone, or phone-aware lips with rest in pauses.

`lip_track` turns an identity's speech into its lip code per frame [T,M] (fed to `render_frames(lips=...)`):
- "audio": the identity's LipDriver on the audio code, clamped to its trained range: exactly what the
  renderer does when no lips are given (the baseline);
- "auto": phone-aware lips (`emotalk.lips.phones`): the driver blended with coarticulated per-phone targets
  where phone timings are known, held p/b/m closures, and the rest pose in pauses >= 0.4 s (pauses from
  the phones, or from the speech energy where there are none, so any language rests in silence).
`speech_phones` finds phone timings cheaply for the pipeline: the known text aligned (TTS), or an English
recording transcribed and aligned; other languages get None. It never raises.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np
import torch

from emotalk.errors import InputError
from emotalk.identity.checkpoint import Identity
from emotalk.lips.own_phones import load_own
from emotalk.lips.phones import DEFAULT, PhoneLipSettings, PhoneTable, phone_lips

_LOG = logging.getLogger(__name__)
SOURCES = ("auto", "audio")  # "auto": phones + driver + rest in pauses; "audio": the driver alone
# A recording is taken for English only when Whisper tiny.en is sure of it. Measured on the shared clips
# (greedy decoding): 29 English speakers have median word probability >= 0.89 and repetition <= 1.62;
# German, French, Mandarin x2, Russian, Portuguese have median <= 0.86 and/or repetition >= 2.37.
MAX_REPETITION = 2.0  # Whisper's compression ratio above this: it looped (did not understand)
MIN_WORD_PROB = 0.8  # median word probability below this: not (clear) English


def driver_lips(identity: Identity, audio_code: np.ndarray, batch: int = 256) -> np.ndarray:
    """The identity's LipDriver prediction [T,M] (z-scores, unclamped) for audio code [T,W,C]."""
    model = identity.model
    dev = model.lip_lo.device
    code = np.asarray(audio_code, np.float32)
    with torch.no_grad():
        parts = [model.lip_driver(torch.as_tensor(code[i:i + batch]).to(dev))
                 for i in range(0, len(code), batch)]
    return torch.cat(parts).float().cpu().numpy()


def clamp_lips(identity: Identity, lips: np.ndarray) -> np.ndarray:
    """Lip code [T,M] clamped into the identity's trained range (lip_lo, lip_hi), as the renderer does."""
    m = identity.model
    x = torch.as_tensor(np.asarray(lips, np.float32)).to(m.lip_lo.device)
    return torch.minimum(torch.maximum(x, m.lip_lo), m.lip_hi).cpu().numpy()


def lip_track(identity: Identity, wav16k: np.ndarray | None, audio_code: np.ndarray,
              phones: Sequence | None = None, source: str = "auto", settings: PhoneLipSettings = DEFAULT,
              table: PhoneTable | None = None) -> np.ndarray | None:
    """Lip code [T,M] for each frame of audio code [T,W,C] (16 kHz speech wav16k [N] of the same audio, for
    pauses), phone timings (objects with .phone/.start/.end or (phone, start s, end s), audio seconds) or
    None. None for identities without a lip code (older, audio-code-driven ones). `table` None: the
    identity's own phone table and gain (`emotalk.lips.own_phones`, phone_lips.json in its folder) if it
    has one, else the cross-speaker table."""
    if source not in SOURCES:
        raise InputError(f"Unknown lip source {source!r}; choose one of {', '.join(SOURCES)}.")
    model = identity.model
    if not getattr(model.settings, "lip_code", False):
        return None
    code = np.asarray(audio_code, np.float32)
    if code.ndim != 3 or tuple(code.shape[1:]) != tuple(model.audio_shape):
        raise InputError(f"The audio code has shape {code.shape}; this identity needs [T, "
                         f"{model.audio_shape[0]}, {model.audio_shape[1]}].")
    drv = driver_lips(identity, code)
    if source == "audio":
        return clamp_lips(identity, drv)
    wav = None if wav16k is None else np.asarray(wav16k, np.float32)
    if table is None:  # the identity's own phone targets and range where it has them (phone_lips.json)
        own = load_own(identity.root)
        if own is not None:
            table, settings = own.table, own.settings(settings)
    lips = phone_lips(drv, float(identity.fps), phones, wav, table, settings)
    return clamp_lips(identity, lips)


class _Cancelled(Exception):
    """The caller stopped waiting for the phone timings (speech_phones' time limit)."""


def _find_phones(wav: np.ndarray, text: str | None,
                 cancel: threading.Event | None = None) -> tuple[list, str]:
    """(phones, note) for speech_phones; raises _Cancelled at its next check once `cancel` is set (before
    and after each Whisper segment, before the alignment)."""
    from emotalk.avsync.lipsync import align_robust
    from emotalk.speech.align import Word, transcribe

    def check(*_args) -> None:
        if cancel is not None and cancel.is_set():
            raise _Cancelled

    check()
    if text is None:
        tr = transcribe(wav, greedy=True, progress=check)
        check()
        if tr.repetition > MAX_REPETITION or np.median([w.score for w in tr.words]) < MIN_WORD_PROB:
            return [], ("no phone timings: the speech does not sound like English to the recogniser; "
                        "the lips follow the audio")
        words = tr.words
    else:
        words = [Word(t, 0.0, len(wav) / 16000) for t in text.split()]
    check()
    _, phones, notes = align_robust(wav, words)
    return phones, "; ".join(notes) if phones else "no phone timings: alignment failed"


CANCEL_WAIT_S = 0.5  # after its time limit, how long speech_phones waits for the worker to stop


def speech_phones(wav: np.ndarray, text: str | None = None, language: str = "en",
                  timeout_s: float | None = None, max_seconds: float = 180.0,
                  notes: list[str] | None = None) -> list | None:
    """Phone timings (emotalk.speech.align.Phone, seconds of 16 kHz `wav`) or None, never an error.

    Known text (TTS, or a transcript given with a recording): that text is aligned. An English recording:
    Whisper transcript, then alignment (speech the recogniser is unsure of, e.g. another language: None).
    Other languages, speech over `max_seconds`, a run over `timeout_s` (None: 20 s + 1.5 x the speech's
    length) or any failure (faster-whisper or pocketsphinx missing, e.g. on a GPU host): None, with the
    reason appended to `notes`. At the time limit the worker thread is told to stop and stops at its next
    check (between Whisper segments, before the alignment; a pocketsphinx call under way ends first); it
    is a daemon thread, so it never holds up the program's exit.
    Measured on this 2-core CPU: 4-20 s of speech took 3-9 s when idle, up to 21 s under load 9."""
    notes = notes if notes is not None else []
    if str(language).split("-")[0].lower() != "en":
        notes.append(f"no phone timings for language {language!r}: the lips follow the audio")
        return None
    wav = np.asarray(wav, np.float32)
    if len(wav) / 16000 > max_seconds:
        notes.append(f"no phone timings: speech longer than {max_seconds:.0f} s")
        return None
    if timeout_s is None:
        timeout_s = 20.0 + 1.5 * len(wav) / 16000
    cancel = threading.Event()
    box: dict = {}

    def work() -> None:
        try:
            box["result"] = _find_phones(wav, text, cancel)
        except _Cancelled:
            pass
        except Exception as e:  # noqa: BLE001  (phones are an improvement: nothing here may fail a render)
            box["error"] = e

    worker = threading.Thread(target=work, name="emotalk-phones", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        cancel.set()
        worker.join(CANCEL_WAIT_S)
        notes.append(f"no phone timings: alignment took longer than {timeout_s:.0f} s")
        return None
    if "error" in box:
        _LOG.warning("phone timings failed: %s", box["error"])
        notes.append(f"no phone timings: {box['error']}")
        return None
    phones, note = box["result"]
    if note:
        notes.append(note)
    return phones or None
