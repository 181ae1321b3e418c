"""What a render asks for and what it gives back, and the checks a request passes before any work.

The pipeline re-exports everything here as its API; the limits stated to users (text length, speech
length, sizes) are defined once, here, so every path says the same limit in the same words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from emotalk import media
from emotalk.errors import InputError

MAX_TEXT_CHARS = 2000  # typed text longer than this is refused (about 2.5 minutes of speech)
MAX_SPEECH_S = 120.0  # uploaded speech (a recording, or a video's sound) longer than this is refused
MIN_SIZE, MAX_SIZE = 32, 1024  # allowed output sides in px
SIZE_GPU, SIZE_CPU = 512, 256  # default output side on a GPU / on a CPU
CHARS_PER_SPEECH_S = 14.0  # typed text is spoken at about this many characters per second
MAX_INTENSITY = 1.5  # emotion strength above 1 is "exaggerated"
LIP_SOURCES = ("auto", "audio")  # RenderRequest.lips


@dataclass
class RenderRequest:
    """Everything one render needs; the app's inputs map onto it one to one."""

    identity: str  # identity name (shipped or user), a folder path, or "hf:owner/repo"
    audio: str | None = None  # path of a speech recording, or of a video whose sound is used ...
    text: str | None = None  # ... or typed text (spoken by TTS)
    engine: str | None = None  # TTS engine id (see pipeline.tts_engines; None: the offline default)
    voice: str | None = None  # online voice name, e.g. en-US-GuyNeural (None: the engine's default)
    valence: float = 0.0  # [-1, 1]
    arousal: float = 0.0  # [-1, 1]
    intensity: float = 1.0  # strength of the emotion: 0 neutral, 1 full, up to MAX_INTENSITY "exaggerated"
    emotion_track: list[tuple[float, float, float]] | None = None  # (t s, v, a) keyframes; overrides v/a
    transcript: str | None = None  # words of an uploaded recording (optional): phone timings for the lips
    phones: list[tuple[str, float, float]] | None = None  # (phone, start s, end s) of the speech, if known
    # already (API and benchmarks); None: found from the TTS text or the transcript where possible
    lips: str = "auto"  # lip source: "auto" (phone shapes where phone timings are known, timed by the
    # audio driver; the driver alone otherwise) or "audio" (the audio driver alone)
    size: int | None = None  # output side in px (None: the identity's, at most SIZE_CPU on a CPU)
    yaw: float = 0.0  # camera yaw offset, degrees
    pitch: float = 0.0  # camera pitch offset, degrees
    blink_rate: float = 1.0  # blinks relative to the identity's natural rate
    seed: int = 0  # random seed (blinks)
    watermark: bool = True  # small "AI-generated" label on the video
    device: str | None = None  # "cuda" or "cpu" (None: cuda when available)
    notices: list[str] = field(default_factory=list)  # filled by validation (clamping, CPU size, ...)


@dataclass
class RenderResult:
    """What a render produced."""

    video: Path  # the mp4 (H.264 + AAC; the sound keeps an upload's own rate and channels)
    speech_wav: Path  # the speech that drives the lips (16 kHz mono)
    n_frames: int  # frames in the video
    seconds: float  # wall time of the whole request (not the clip's length: see audio_seconds)
    tts_engine: str | None  # engine that spoke typed text; None for uploaded speech
    notice: str | None  # fallbacks, clamping, CPU notices: each once, joined
    timings: dict[str, float]  # seconds per stage
    audio_seconds: float = 0.0  # length of the clip's speech


@dataclass
class SpeechResult:
    """Speech made from typed text."""

    wav: Path  # 16 kHz mono wav
    engine: str  # "piper (en_US-joe-medium)": the engine that spoke, and its voice
    notice: str | None  # why the chosen engine did not speak, when it did not
    duration: float  # seconds


def speech_too_long(name: str, seconds: float) -> InputError:
    """The one refusal of uploaded speech over MAX_SPEECH_S (from probing or after decoding)."""
    return InputError(f"{name} lasts {seconds:.0f} s; speech is limited to {MAX_SPEECH_S:.0f} s "
                      f"({MAX_SPEECH_S / 60:g} min). Trim it, or split it into shorter renders.")


def text_too_long(n_chars: int) -> InputError:
    """The one refusal of typed text over MAX_TEXT_CHARS."""
    return InputError(f"The text has {n_chars} characters; the limit is {MAX_TEXT_CHARS}. "
                      "Split it into shorter renders.")


def check_speech_file(path: str) -> media.MediaInfo:
    """Probe an uploaded recording or video: it must have sound, at most MAX_SPEECH_S long."""
    info = media.probe(path, max_seconds=math.inf)  # our own limit and message below
    if not info.has_audio:
        raise InputError(f"{Path(path).name} has no audio track; upload speech (a recording, or a "
                         "video with sound).")
    if info.duration > MAX_SPEECH_S:
        raise speech_too_long(Path(path).name, info.duration)
    return info


def speech_seconds(req: RenderRequest) -> float:
    """Expected length of a request's speech: the upload's duration, or the typed text's at 14 chars/s."""
    if req.audio:
        return check_speech_file(req.audio).duration
    return len((req.text or "").strip()) / CHARS_PER_SPEECH_S


def device_info() -> dict:
    """Where rendering runs, the default output size there, the rasterizer in use ("renderer": see
    `raster.backend_status`; checked once) and a notice for CPU users or a GPU without gsplat."""
    from emotalk.gaussians.raster import backend_status

    renderer = backend_status()
    if renderer["device"] == "cuda":
        return {"device": "cuda", "default_size": SIZE_GPU, "notice": renderer["notice"],
                "renderer": renderer}
    return {"device": "cpu", "default_size": SIZE_CPU, "renderer": renderer,
            "notice": f"No GPU here: rendering runs on the CPU at {SIZE_CPU}px by default, several "
                      "times slower than real time."}


def _number(value: object, what: str) -> float:
    """A finite number from whatever an API caller sent; InputError naming the field otherwise."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}.") from None
    if not math.isfinite(x):
        raise InputError(f"{what} must be a finite number, got {value!r}.")
    return x


def _whole(value: object, what: str) -> int:
    x = _number(value, what)
    if x != int(x):
        raise InputError(f"{what} must be a whole number, got {value!r}.")
    return int(x)


def _note(r: RenderRequest, text: str) -> None:
    if text not in r.notices:  # a request validated twice says each thing once
        r.notices.append(text)


def validate_request(req: RenderRequest) -> RenderRequest:
    """Check a request before any GPU work; returns a normalised copy (notices say what changed)."""
    from emotalk.emotion import EmotionTrack, clamp_to_disc

    r = replace(req, notices=list(req.notices))
    if not (r.identity or "").strip():
        raise InputError("Pick an identity first.")
    has_text = bool(r.text and r.text.strip())
    if r.audio and has_text:
        raise InputError("Give either a speech file or text to speak, not both.")
    if not r.audio and not has_text:
        raise InputError("Give some speech: upload or record audio, or type text to speak.")
    if has_text and len(r.text) > MAX_TEXT_CHARS:
        raise text_too_long(len(r.text))
    if has_text:
        from emotalk.speech.tts import settings_for

        settings_for(r.engine, r.voice)  # an unknown engine, or a voice of another engine, is refused now
    if r.audio:
        check_speech_file(r.audio)
    r.valence, r.arousal = _number(r.valence, "Valence"), _number(r.arousal, "Arousal")
    r.intensity = _number(r.intensity, "Intensity")
    if not (0.0 <= r.intensity <= MAX_INTENSITY):
        raise InputError(f"Intensity must be between 0 and {MAX_INTENSITY:g} (1 = full, above 1 "
                         f"exaggerated), got {r.intensity}.")
    if r.lips not in LIP_SOURCES:
        raise InputError(f"Lip source must be one of {', '.join(LIP_SOURCES)}, got {r.lips!r}.")
    r.valence, r.arousal, note = clamp_to_disc(r.valence, r.arousal)
    if note:
        _note(r, note)
    if r.emotion_track:
        for n in EmotionTrack.from_keyframes(list(r.emotion_track)).notices:
            _note(r, n)
    if r.device not in (None, "cpu", "cuda"):
        raise InputError(f"Device must be cpu or cuda, got {r.device!r}.")
    if r.device == "cuda" and device_info()["device"] != "cuda":
        raise InputError("A CUDA GPU was asked for, but none is visible. Use the CPU.")
    if r.size is None and r.device is None and device_info()["notice"]:
        _note(r, device_info()["notice"])  # no GPU: say why it is small and slow
    elif r.size is not None:
        r.size = _whole(r.size, "Resolution")
        if not (MIN_SIZE <= r.size <= MAX_SIZE) or r.size % 2:
            raise InputError(f"Resolution must be an even number of pixels from {MIN_SIZE} to {MAX_SIZE}, "
                             f"got {r.size}.")
    r.yaw, r.pitch = _number(r.yaw, "Camera yaw"), _number(r.pitch, "Camera pitch")
    for what, val, lim in (("Camera yaw", r.yaw, 30.0), ("Camera pitch", r.pitch, 20.0)):
        if abs(val) > lim:
            raise InputError(f"{what} offset must be within ±{lim:.0f}°, got {val}.")
    r.blink_rate = _number(r.blink_rate, "Blink rate")
    if not (0.0 <= r.blink_rate <= 3.0):
        raise InputError(f"Blink rate must be between 0 and 3 (1 = natural), got {r.blink_rate}.")
    r.seed = _whole(r.seed, "Seed")
    return r


def join_notices(notices: list[str]) -> str | None:
    """The notices of a request as one line, each said once, in order."""
    return " ".join(dict.fromkeys(n for n in notices if n)) or None
