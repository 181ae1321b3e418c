"""Text to speech with an honest fallback chain. By default the text stays on this machine: Piper
en_US-joe-medium (offline, neural), else espeak-ng (offline, robotic); edge-tts (online voices: the text
is sent to Microsoft's service) speaks only when chosen (`engine_chain("edge")`, or a named online voice).
The result says who spoke and why the engines before it could not, so the app can show it. Output:
16 kHz mono float32 speech, word timings, and ARPAbet phone timings (pocketsphinx forced alignment of the
text to the produced audio).

Only the online voices speak languages other than English; for those there is no offline fallback
(an English voice reading French would be garbage), so the failure is reported instead.
Arousal may modulate rate and pitch (`arousal_prosody`, off by default): +1 arousal speaks faster
and higher, -1 slower and lower.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from emotalk.errors import EmoTalkError, InputError, MediaError
from emotalk.speech.align import Phone, Word, align_phones, written_words
from emotalk.speech.features import SR
from emotalk.speech.normalize import normalize_speech
from emotalk.speech.textnorm import MAX_CHARS, check_text, split_sentences

_LOG = logging.getLogger(__name__)
ENGINES = ("piper", "espeak", "edge")  # every engine; the first is the default
OFFLINE_ENGINES = ("piper", "espeak")  # engines that keep the text on this machine, best first
ENGINE_LABELS = {  # what a person is shown when choosing an engine
    "piper": "Piper, en_US joe (offline, default)",
    "espeak": "espeak-ng (offline, robotic)",
    "edge": "Online voice (Microsoft Edge): the text is sent to an online service",
}
OFFLINE_VOICES = {"piper": "en_US-joe-medium", "espeak": "en-us"}
_ONLINE_VOICE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]+)+")  # edge-tts voice names, e.g. en-US-AriaNeural
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class TTSSettings:
    """How text becomes speech."""

    engines: tuple[str, ...] | None = None  # tried in order; None: OFFLINE_ENGINES (edge first if voice set)
    voice: str | None = None  # edge-tts voice, e.g. "en-US-GuyNeural"; None: the language's default
    language: str = "en"  # language of the text (taken from `voice` when a voice is named)
    rate: float = 0.0  # speaking-rate change in percent, -50..+100
    pitch: float = 0.0  # pitch change in Hz, -50..+50 (Piper cannot change pitch)
    arousal_prosody: bool = False  # let the emotion's arousal modulate rate and pitch
    arousal_rate: float = 12.0  # rate change in percent per unit of arousal (with arousal_prosody)
    arousal_pitch: float = 8.0  # pitch change in Hz per unit of arousal (with arousal_prosody)
    connect_timeout_s: float = 2.0  # online voices: longest wait to reach the service
    receive_timeout_s: float = 15.0  # online voices: longest wait for the next piece of audio
    max_chars: int = MAX_CHARS  # longer text is refused
    chunk_chars: int = 400  # online requests hold whole sentences up to this many characters
    pause_s: float = 0.15  # silence between online requests
    align: bool = True  # forced-align words and phones of the produced speech (pocketsphinx)


DEFAULT = TTSSettings()  # offline unless an online voice is named
OFFLINE = TTSSettings(engines=OFFLINE_ENGINES)  # never touch the network
ONLINE = TTSSettings(engines=("edge",) + OFFLINE_ENGINES)  # the online voice first (sends the text)
EXPRESSIVE = TTSSettings(arousal_prosody=True)  # arousal speeds up / raises the voice


@dataclass
class TTSResult:
    """Speech made from text, and who made it."""

    wav: np.ndarray  # [N] float32, 16 kHz mono, loudness-normalised
    engine: str  # "edge", "piper" or "espeak": the engine that spoke
    voice: str  # that engine's voice
    text: str  # the text as spoken (symbols and emoji removed)
    words: list[Word]  # word timings (engine events for edge, else forced alignment)
    phones: list[Phone] = field(default_factory=list)  # ARPAbet phone timings when alignment worked
    fallbacks: list[tuple[str, str]] = field(default_factory=list)  # (engine, why it could not speak)
    rate: float = 0.0  # rate change used, percent
    pitch: float = 0.0  # pitch change used, Hz
    sr: int = SR

    @property
    def duration(self) -> float:
        return len(self.wav) / self.sr

    @property
    def fallback_reason(self) -> str | None:
        """Why the preferred engines did not speak; None when the first engine did."""
        return "; ".join(f"{e}: {why}" for e, why in self.fallbacks) or None

    def summary(self) -> str:
        s = f"spoken by {self.engine} ({self.voice}), {self.duration:.1f} s"
        return s + (f"; fell back because {self.fallback_reason}" if self.fallbacks else "")

    def srt(self, max_words: int = 8, max_gap_s: float = 0.7) -> str:
        """Subtitles (SRT) from the word timings, in the text's own spelling where possible."""
        return words_to_srt(written_words(self.text, self.words), max_words, max_gap_s)


def _srt_time(t: float) -> str:
    ms = int(round(max(t, 0.0) * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def words_to_srt(words: list[Word], max_words: int = 8, max_gap_s: float = 0.7) -> str:
    """Group words into subtitle lines (at most `max_words`, split at pauses longer than `max_gap_s`)."""
    lines: list[list[Word]] = []
    for w in words:
        if (not lines or len(lines[-1]) >= max_words or w.start - lines[-1][-1].end > max_gap_s
                or lines[-1][-1].text.endswith((".", "!", "?"))):
            lines.append([])
        lines[-1].append(w)
    return "".join(f"{i}\n{_srt_time(ln[0].start)} --> {_srt_time(ln[-1].end)}\n"
                   f"{' '.join(w.text for w in ln)}\n\n" for i, ln in enumerate(lines, 1))


def speakable(text: str) -> str:
    """Text without emoji and other pictographs (engines would read their names or choke on them)."""
    kept = "".join(" " if unicodedata.category(c) in ("So", "Sk", "Cs", "Co", "Cn") else c for c in text)
    return " ".join(kept.split())


def _chunks(text: str, limit: int) -> list[str]:
    out: list[str] = []
    for s in split_sentences(text, limit):
        if out and len(out[-1]) + 1 + len(s) <= limit:
            out[-1] += " " + s
        else:
            out.append(s)
    return out


def _prosody(settings: TTSSettings, arousal: float) -> tuple[float, float]:
    rate, pitch = settings.rate, settings.pitch
    if settings.arousal_prosody:
        a = float(np.clip(arousal, -1.0, 1.0))
        rate, pitch = rate + settings.arousal_rate * a, pitch + settings.arousal_pitch * a
    if not (-50 <= rate <= 100 and -50 <= pitch <= 50):
        raise InputError(f"Rate {rate:+.0f} % or pitch {pitch:+.0f} Hz out of range (rate -50..+100 %, "
                         "pitch -50..+50 Hz).")
    return rate, pitch


def _speak_edge(text: str, voice: str, rate: float, pitch: float, s: TTSSettings,
                progress: Progress | None) -> tuple[np.ndarray, list[Word]]:
    from emotalk.speech.tts_edge import speak_edge

    pieces: list[np.ndarray] = []
    words: list[Word] = []
    t0 = 0.0
    chunks = _chunks(text, s.chunk_chars)
    for i, c in enumerate(chunks):
        got = speak_edge(c, voice, rate, pitch, s.connect_timeout_s, s.receive_timeout_s)
        words += [replace(w, start=round(w.start + t0, 3), end=round(w.end + t0, 3)) for w in got.words]
        pieces.append(got.wav)
        t0 += len(got.wav) / SR
        if i < len(chunks) - 1:
            pieces.append(np.zeros(int(s.pause_s * SR), np.float32))
            t0 += s.pause_s
        if progress:
            progress("speaking (online voice)", 0.8 * (i + 1) / len(chunks))
    return np.concatenate(pieces), words


def engine_chain(engine: str) -> tuple[str, ...]:
    """The engines tried when `engine` is chosen: it first, then the offline ones (so the text goes to
    the online service only when the online voice was chosen)."""
    if engine not in ENGINES:
        raise InputError(f"Unknown TTS engine {engine!r}; choose from {', '.join(ENGINES)}.")
    return (engine,) + tuple(e for e in OFFLINE_ENGINES if e != engine)


def settings_for(engine: str | None = None, voice: str | None = None, **kw) -> TTSSettings:
    """TTS settings for a chosen engine and voice. None: the online voice when `voice` names one, else
    the default (Piper). "offline:piper" / "offline:espeak" as the voice choose that offline engine."""
    if voice and voice.startswith("offline:"):
        engine, voice = engine or voice.split(":", 1)[1], None
    voice = (voice or "").strip() or None
    engine = engine or ("edge" if voice else ENGINES[0])
    chain = engine_chain(engine)
    if voice and engine != "edge":
        raise InputError(f"{voice!r} is an online voice, but the {ENGINE_LABELS[engine]} voice was chosen; "
                         "choose the online voice, or leave the voice empty.")
    return TTSSettings(engines=chain, voice=voice, **kw)


def text_to_speech(text: str, settings: TTSSettings = DEFAULT, arousal: float = 0.0,
                   progress: Progress | None = None) -> TTSResult:
    """Speak `text` with the first engine of `settings.engines` that can; see the module docstring."""
    s = settings
    if s.voice is not None and not _ONLINE_VOICE.fullmatch(s.voice):
        raise InputError(f"{s.voice!r} is not an online voice name; names look like en-US-AriaNeural "
                         "(python -m emotalk speak --list-voices).")
    language = (s.voice.split("-")[0] if s.voice else s.language).lower()
    text = speakable(check_text(text, s.max_chars, language))
    check_text(text, s.max_chars, language)  # emoji-only text is empty now: say so
    chosen = s.engines if s.engines is not None else (("edge",) if s.voice else ()) + OFFLINE_ENGINES
    unknown = [e for e in chosen if e not in ENGINES]
    if unknown or not chosen:
        raise InputError(f"Unknown TTS engine(s) {unknown or chosen}; choose from {', '.join(ENGINES)}.")
    engines = list(chosen)
    fallbacks: list[tuple[str, str]] = []
    if language != "en":
        offline = [e for e in engines if e != "edge"]
        engines = [e for e in engines if e == "edge"]
        fallbacks += [(e, f"speaks English only, not {language!r}") for e in offline]
        if not engines:
            raise InputError(f"No available voice speaks {language!r}: the offline voices (Piper, espeak-ng) "
                             "speak English only. Allow the online voices, or write English text.")
    rate, pitch = _prosody(s, arousal)
    from emotalk.speech.tts_edge import DEFAULT_VOICES, EdgeUnavailable
    from emotalk.speech.tts_offline import EngineUnavailable, speak_espeak, speak_piper

    for engine in engines:
        try:
            words: list[Word] = []
            if engine == "edge":
                voice = s.voice or DEFAULT_VOICES.get(language)
                if voice is None:
                    raise EdgeUnavailable(f"no default online voice for {language!r}; name one with --voice")
                wav, words = _speak_edge(text, voice, rate, pitch, s, progress)
            elif engine == "piper":
                voice = OFFLINE_VOICES["piper"]
                if progress:
                    progress("speaking (Piper, offline)", 0.1)
                wav = speak_piper(text, rate)
            else:
                voice = OFFLINE_VOICES["espeak"]
                wav = speak_espeak(text, rate, pitch)
            wav = normalize_speech(wav, SR, name=f"The speech from {engine}")
        except (EdgeUnavailable, EngineUnavailable, MediaError) as e:
            _LOG.info("TTS engine %s unavailable: %s", engine, e)
            fallbacks.append((engine, str(e)))
            continue
        result = TTSResult(wav, engine, voice, text, words, fallbacks=fallbacks, rate=rate, pitch=pitch)
        if s.align and language == "en":
            if progress:
                progress("aligning words and phones", 0.9)
            try:
                al = align_phones(wav, text)
                result.phones = al.phones
                if not result.words:
                    result.words = al.words
            except EmoTalkError as e:
                _LOG.warning("alignment of the %s speech failed: %s", engine, e)
        if progress:
            progress("speech ready", 1.0)
        return result
    reasons = "; ".join(f"{e}: {why}" for e, why in fallbacks)
    if language != "en":
        raise MediaError(f"Only the online voices speak {language!r}, and they could not be used "
                         f"({reasons}). Check the network, write English text, or upload a recording.")
    raise MediaError(f"No voice could speak the text ({reasons}). Install espeak-ng or piper-tts for offline "
                     "speech, or check the network for the online voices.")
