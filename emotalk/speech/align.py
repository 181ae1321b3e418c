"""Word and phone timings of speech: Whisper transcripts with word timestamps (any English speech,
no text needed) and pocketsphinx forced alignment to ARPAbet phones (given the text).

Both return plain dataclasses with times in seconds; lip-sync training and the sync metrics use them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from emotalk.errors import InputError, MediaError
from emotalk.speech.features import SR, as_mono_16k
from emotalk.speech.textnorm import spoken_words

Progress = Callable[[str, float], None]
PS_FRAME_S = 0.01  # pocketsphinx frames are 10 ms


@dataclass(frozen=True)
class Word:
    """One word and when it was spoken."""

    text: str  # the word (transcript spelling, or dictionary spelling after alignment)
    start: float  # seconds
    end: float  # seconds
    score: float = 1.0  # recogniser confidence in [0,1]; 1.0 for TTS events and forced alignment


@dataclass(frozen=True)
class Phone:
    """One ARPAbet phone (stress digits removed) and when it was spoken."""

    phone: str  # "AA", "P", ...; "SIL" for a pause
    start: float  # seconds
    end: float  # seconds
    word: int = -1  # index into the word list it belongs to; -1 for pauses


@dataclass
class Transcript:
    """What was said, with timings."""

    text: str  # the full transcript
    words: list[Word]  # in time order
    phones: list[Phone] = field(default_factory=list)  # filled by forced alignment
    language: str = "en"
    repetition: float = 1.0  # Whisper's compression ratio of its most repetitive segment (text length over
    # its zlib-compressed length): over 2.4 the decoder looped, i.e. it did not understand the speech


# --- Whisper transcripts -----------------------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def _whisper(device: str):
    from faster_whisper import WhisperModel

    from emotalk import assets

    compute = "int8" if device == "cpu" else "float16"
    return WhisperModel(str(assets.fetch("whisper-tiny.en")), device=device, compute_type=compute,
                        cpu_threads=2)


def transcribe(wav: np.ndarray, sr: int = SR, language: str = "en", device: str = "cpu",
               progress: Progress | None = None, greedy: bool = False) -> Transcript:
    """Transcript with word timestamps (faster-whisper, the registry's Whisper tiny.en).

    Where greedy decoding looks wrong (log probability under -1 or compression ratio over 2.4: other
    languages, noise), faster-whisper decodes again by sampling at rising temperatures and keeps the
    best try: often better text, but random (ctranslate2's sampler cannot be re-seeded per call).
    greedy=True decodes once at temperature 0: the same audio always gives the same transcript.
    """
    if language.split("-")[0].lower() != "en":
        raise InputError(f"Transcription supports English only (Whisper tiny.en); got language {language!r}.")
    audio = as_mono_16k(wav, sr)
    model = _whisper(device)
    if progress:
        progress("transcribing", 0.0)
    decoding = {"temperature": 0.0} if greedy else {}
    segments, _info = model.transcribe(audio, language="en", word_timestamps=True, beam_size=1,
                                       condition_on_previous_text=False, vad_filter=False, **decoding)
    words: list[Word] = []
    texts: list[str] = []
    repetition = 1.0
    dur = len(audio) / SR
    for seg in segments:
        texts.append(seg.text.strip())
        repetition = max(repetition, float(seg.compression_ratio))
        for w in seg.words or []:
            t = w.word.strip()
            if t:
                words.append(Word(t, float(w.start), float(w.end), float(w.probability)))
        if progress:
            progress("transcribing", min(1.0, seg.end / max(dur, 1e-6)))
    if not words:
        raise MediaError("No speech was recognised in the audio. Use a recording of clear (English) speech.")
    return Transcript(" ".join(texts), words, language="en", repetition=repetition)


# --- pocketsphinx forced alignment -------------------------------------------------------------------

_LETTER_PHONES = {  # crude spelling -> ARPAbet for words missing from the dictionary (names, made-up words)
    "th": "TH", "sh": "SH", "ch": "CH", "ph": "F", "ng": "NG", "ck": "K", "qu": "K W", "ee": "IY", "oo": "UW",
    "ea": "IY", "ai": "EY", "ay": "EY", "ou": "AW", "ow": "OW", "oi": "OY", "oy": "OY",
    "a": "AE", "b": "B", "c": "K", "d": "D", "e": "EH", "f": "F", "g": "G", "h": "HH", "i": "IH", "j": "JH",
    "k": "K", "l": "L", "m": "M", "n": "N", "o": "AA", "p": "P", "q": "K", "r": "R", "s": "S", "t": "T",
    "u": "AH", "v": "V", "w": "W", "x": "K S", "y": "Y", "z": "Z",
}


def guess_pronunciation(word: str) -> str:
    """A rough ARPAbet pronunciation from spelling (keeps lip-relevant consonants such as p/b/m/f/v)."""
    w = re.sub(r"(.)\1+", r"\1", re.sub(r"[^a-z]", "", word.lower()))
    if w.endswith("e") and len(w) > 2:
        w = w[:-1]  # silent final e
    out: list[str] = []
    i = 0
    while i < len(w):
        two = w[i:i + 2]
        if len(two) == 2 and two in _LETTER_PHONES:
            out.append(_LETTER_PHONES[two])
            i += 2
        else:
            out.append(_LETTER_PHONES[w[i]])
            i += 1
    return " ".join(out) or "AH"


# Alignment searches with wide beams (the only path must survive synthetic voices too); a retry widens more.
_BEAMS = ({"beam": 1e-80, "wbeam": 1e-60, "pbeam": 1e-80}, {"beam": 1e-140, "wbeam": 1e-100, "pbeam": 1e-140})


def _align_once(pcm: bytes, words: list[str], beams: dict):
    from pocketsphinx import Decoder

    dec = Decoder(samprate=SR, bestpath=False, loglevel="FATAL", **beams)
    for w in set(words):
        if not dec.lookup_word(w):
            dec.add_word(w, guess_pronunciation(w), False)
    dec.set_align_text(" ".join(words))
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    if dec.hyp() is None:
        raise RuntimeError("no path through the text")
    dec.set_alignment()
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    al = dec.get_alignment()
    if al is None:
        raise RuntimeError("no alignment")
    def entries(seq):
        return [(e.name, e.start, e.duration) for e in seq]

    return entries(al.words()), entries(al.phones())


def align_phones(wav: np.ndarray, text: str, sr: int = SR) -> Transcript:
    """Forced alignment of `text` to the speech: words and ARPAbet phones with times (pocketsphinx en-us).

    Words missing from the CMU dictionary get a pronunciation guessed from their spelling.
    """
    audio = as_mono_16k(wav, sr)
    words = spoken_words(text)
    if not words:
        raise InputError("The text to align has no words in it.")
    peak = float(np.abs(audio).max())
    pcm = (np.clip(audio / max(peak, 1e-9) * 0.9, -1, 1) * 32767).astype("<i2").tobytes()
    err: Exception | None = None
    aligned, phones_raw = [], []
    for beams in _BEAMS:
        try:
            aligned, phones_raw = _align_once(pcm, words, beams)
            break
        except RuntimeError as e:
            err = e
    else:
        raise MediaError(f"The speech could not be aligned to the text ({err}). Check that the text is what "
                         "is said in the recording.") from err
    if not phones_raw:
        raise MediaError("The speech could not be aligned to the text: does the recording say it?")
    out_words: list[Word] = []
    for name, start, dur in aligned:
        if name.startswith("<") or name in ("[NOISE]", "SIL"):
            continue
        out_words.append(Word(re.sub(r"\(\d+\)$", "", name), round(start * PS_FRAME_S, 3),
                              round((start + dur) * PS_FRAME_S, 3)))
    phones: list[Phone] = []
    wi = 0
    for name, start, dur in phones_raw:
        s, e = round(start * PS_FRAME_S, 3), round((start + dur) * PS_FRAME_S, 3)
        p = re.sub(r"\d", "", name).upper()
        if p in ("SIL", "+SPN+", "+NSN+") or p.startswith("+"):
            phones.append(Phone("SIL", s, e, -1))
            continue
        while wi < len(out_words) - 1 and s >= out_words[wi].end - 1e-6:
            wi += 1
        phones.append(Phone(p, s, e, wi if out_words else -1))
    return Transcript(" ".join(w.text for w in out_words), out_words, phones)


def written_words(text: str, spoken: list[Word]) -> list[Word]:
    """Timings of the written tokens of `text` ("$3.50," keeps its spelling) from the timings of its
    spoken words (as `align_phones` returns them); `spoken` unchanged if the two do not match up."""
    out: list[Word] = []
    i = 0
    for token in text.split():
        n = len(spoken_words(token))
        if n == 0:
            continue
        if i + n > len(spoken):
            return spoken
        out.append(Word(token, spoken[i].start, spoken[i + n - 1].end, min(w.score for w in spoken[i:i + n])))
        i += n
    return out if i == len(spoken) else spoken


def transcribe_and_align(wav: np.ndarray, sr: int = SR, device: str = "cpu",
                         progress: Progress | None = None) -> Transcript:
    """Whisper transcript, then phone alignment of that transcript (for speech with no known text)."""
    tr = transcribe(wav, sr, device=device, progress=progress)
    al = align_phones(wav, tr.text, sr)
    return Transcript(tr.text, tr.words, al.phones, tr.language, tr.repetition)
