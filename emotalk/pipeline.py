"""The API that the app and the CLI call: requests in, files out. It knows nothing of the UI.

Every function validates its inputs first and raises an `EmoTalkError` whose message is meant for the
user; heavy modules (torch, the model, TTS) are imported only when a function needs them.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from emotalk import assets, media
from emotalk.errors import InputError

# identities: the store's lookup is part of this API (the app and the CLI list, load and push through it)
from emotalk.identity.store import (  # noqa: F401
    IdentityInfo,
    identity_info,
    list_identities,
    load_cached,
    load_hub_identity,
    push_identity,
    resolve_identity,
    user_dir,
    validate_identity_name,
    validate_repo_id,
)
from emotalk.render.camera import orbit
from emotalk.render.label import label_frames

Progress = Callable[[str, float], None]  # (stage text, fraction 0..1)

MAX_TEXT_CHARS = 2000  # typed text longer than this is refused (about 2.5 minutes of speech)
MAX_SPEECH_S = 120.0  # uploaded speech longer than this is refused
MIN_SIZE, MAX_SIZE = 32, 1024  # allowed output sides in px
SIZE_GPU, SIZE_CPU = 512, 256  # default output side on a GPU / on a CPU


@dataclass
class RenderRequest:
    """Everything one render needs; the app's inputs map onto it one to one."""

    identity: str  # identity name (shipped or user), a folder path, or "hf:owner/repo"
    audio: str | None = None  # path of a speech file ...
    text: str | None = None  # ... or typed text (spoken by TTS)
    voice: str | None = None  # TTS voice name (None: the default)
    valence: float = 0.0  # [-1, 1]
    arousal: float = 0.0  # [-1, 1]
    intensity: float = 1.0  # scales (valence, arousal) toward neutral, [0, 1]
    emotion_track: list[tuple[float, float, float]] | None = None  # (t s, v, a) keyframes; overrides v/a
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

    video: Path  # the mp4 (H.264 + AAC)
    speech_wav: Path  # the speech that drives it (16 kHz mono)
    n_frames: int
    seconds: float  # wall time of the whole request
    tts_engine: str | None  # engine that spoke typed text; None for uploaded speech
    notice: str | None  # fallbacks, clamping, CPU notices, joined
    timings: dict[str, float]  # seconds per stage


@dataclass
class SpeechResult:
    """Speech made from typed text."""

    wav: Path
    engine: str
    notice: str | None  # why a fallback engine spoke, when one did
    duration: float


def new_workdir(prefix: str = "emotalk-") -> Path:
    """A fresh private folder for one request's files (no fixed paths, no shared state)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def convert_clip(path: str | Path, workdir: str | Path | None = None, max_side: int = 720) -> Path:
    """Any uploaded clip -> 25 fps H.264 + AAC mp4 (the format everything downstream reads)."""
    out_dir = Path(workdir) if workdir else new_workdir()
    return media.standardize(path, out_dir / (Path(path).stem + "_25fps.mp4"), fps=25.0, max_side=max_side)


def model_files() -> list[list[str]]:
    """One row per model file: name, state in the cache, size, licence, carrier package."""
    return [[n, assets.status(n), f"{a.size / 1e6:.1f} MB", a.licence, a.carrier]
            for n, a in sorted(assets.REGISTRY.items())]


def device_info() -> dict:
    """Where rendering runs, the default output size there, and a notice for CPU users."""
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        cuda = False
    if cuda:
        return {"device": "cuda", "default_size": SIZE_GPU, "notice": None}
    return {"device": "cpu", "default_size": SIZE_CPU,
            "notice": f"No GPU here: rendering runs on the CPU at {SIZE_CPU}px by default, several "
                      "times slower than real time."}


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
        raise InputError(f"The text has {len(r.text)} characters; the limit is {MAX_TEXT_CHARS}. "
                         "Split it into shorter renders.")
    if r.audio:
        info = media.probe(r.audio)
        if not info.has_audio:
            raise InputError(f"{Path(r.audio).name} has no audio track; upload speech.")
        if info.duration > MAX_SPEECH_S:
            raise InputError(f"The speech lasts {info.duration:.0f} s; the limit is {MAX_SPEECH_S:.0f} s.")
    if not (0.0 <= r.intensity <= 1.0):
        raise InputError(f"Intensity must be between 0 and 1, got {r.intensity}.")
    r.valence, r.arousal, note = clamp_to_disc(float(r.valence), float(r.arousal))
    if note:
        r.notices.append(note)
    if r.emotion_track:
        track = EmotionTrack.from_keyframes(list(r.emotion_track))
        r.notices += track.notices
    if r.device not in (None, "cpu", "cuda"):
        raise InputError(f"Device must be cpu or cuda, got {r.device!r}.")
    if r.device == "cuda" and device_info()["device"] != "cuda":
        raise InputError("A CUDA GPU was asked for, but none is visible. Use the CPU.")
    if r.size is None and r.device is None and device_info()["notice"]:
        r.notices.append(device_info()["notice"])  # no GPU: say why it is small and slow
    elif r.size is not None and (not (MIN_SIZE <= int(r.size) <= MAX_SIZE) or int(r.size) % 2):
        raise InputError(f"Resolution must be an even number of pixels from {MIN_SIZE} to {MAX_SIZE}, "
                         f"got {r.size}.")
    for what, val, lim in (("Camera yaw", r.yaw, 30.0), ("Camera pitch", r.pitch, 20.0)):
        if abs(val) > lim:
            raise InputError(f"{what} offset must be within ±{lim:.0f}°, got {val}.")
    if not (0.0 <= r.blink_rate <= 3.0):
        raise InputError(f"Blink rate must be between 0 and 3 (1 = natural), got {r.blink_rate}.")
    return r


def voices() -> list[str]:
    """TTS voices to offer: the offline ones (always work) and the online default voices."""
    from emotalk.speech.tts import OFFLINE_VOICES
    from emotalk.speech.tts_edge import DEFAULT_VOICES

    return [f"offline:{e}" for e in OFFLINE_VOICES] + sorted(set(DEFAULT_VOICES.values()))


def _tts_settings(voice: str | None):
    from emotalk.speech import tts

    if voice and voice.startswith("offline:"):
        engine = voice.split(":", 1)[1]
        engines = tuple(e for e in tts.ENGINES if e != "edge")
        return tts.TTSSettings(engines=engines[engines.index(engine):] if engine in engines else engines)
    return tts.TTSSettings(voice=voice or None)


def speak(text: str, voice: str | None = None, workdir: Path | None = None, arousal: float = 0.0,
          progress: Progress | None = None) -> SpeechResult:
    """Typed text -> a 16 kHz wav, saying which engine spoke and why any fallback happened."""
    from emotalk.speech import tts

    if text and len(text) > MAX_TEXT_CHARS:
        raise InputError(f"The text has {len(text)} characters; the limit is {MAX_TEXT_CHARS}.")
    res = tts.synthesize(text, _tts_settings(voice), arousal=arousal, progress=progress)
    out = media.write_wav(Path(workdir or new_workdir()) / "speech.wav", res.wav, res.sr)
    return SpeechResult(out, f"{res.engine} ({res.voice})", res.fallback_reason, res.duration)


def estimate_gpu_seconds(req: RenderRequest) -> int:
    """A generous GPU-time budget for one render (for @spaces.GPU(duration=...))."""
    if req.audio:
        try:
            dur = media.probe(req.audio).duration
        except Exception:
            dur = MAX_SPEECH_S
    else:
        dur = len(req.text or "") / 14.0  # about 14 characters per second of speech
    return int(min(300, 20 + 1.5 * dur))


def cleanup_old_outputs(root: Path, max_age_s: float) -> int:
    """Delete request folders under `root` older than `max_age_s`; returns how many were removed."""
    root = Path(root)
    if not root.is_dir():
        return 0
    now, n = time.time(), 0
    for p in root.iterdir():
        try:
            if now - p.stat().st_mtime > max_age_s:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
                n += 1
        except FileNotFoundError:
            continue
    return n


# ---- identities -------------------------------------------------------------------------------


# ---- rendering --------------------------------------------------------------------------------


def _emotion_per_frame(r: RenderRequest, n: int, fps: float):
    import numpy as np

    from emotalk.emotion import EmotionTrack

    if r.emotion_track:
        track = EmotionTrack.from_keyframes(list(r.emotion_track), duration=n / fps)
    else:
        track = EmotionTrack.constant(r.valence, r.arousal)
    return (track.sample(n, fps) * np.float32(r.intensity)).astype(np.float32)


def _device() -> str:
    return device_info()["device"]


def _default_size(identity_size: int, device: str) -> int:
    """The identity's own size, capped at SIZE_CPU on a CPU (even)."""
    s = identity_size if device == "cuda" else min(identity_size, SIZE_CPU)
    return int(s) - int(s) % 2


def synthesize(req: RenderRequest, workdir: Path | None = None,
               progress: Progress | None = None) -> RenderResult:
    """Speech (file or text) + identity + emotion -> an mp4 with the speech, lips in sync."""
    from dataclasses import replace as dc_replace

    from emotalk.media import VideoWriter
    from emotalk.render.frames import render_frames
    from emotalk.speech.features import compute_audio_code
    from emotalk.speech.normalize import load_speech

    t_start = time.time()
    timings: dict[str, float] = {}
    say = progress or (lambda s, f: None)
    r = validate_request(req)
    work = Path(workdir or new_workdir())
    work.mkdir(parents=True, exist_ok=True)
    dev = r.device or _device()
    t = time.time()
    say("loading identity", 0.0)
    ident = load_cached(resolve_identity(r.identity), dev)
    r.size = r.size or _default_size(ident.size, dev)
    timings["load"] = time.time() - t
    t = time.time()
    engine = None
    if r.text and r.text.strip():
        say("speaking the text", 0.05)
        sp = speak(r.text, r.voice, work, arousal=r.arousal)
        engine = sp.engine
        if sp.notice:
            r.notices.append(f"TTS fallback: {sp.notice}")
        wav = load_speech(sp.wav)
    else:
        say("reading the speech", 0.05)
        wav = load_speech(r.audio)
    speech_wav = media.write_wav(work / "speech.wav", wav)
    timings["speech"] = time.time() - t
    n = max(1, int(round(len(wav) / 16000 * ident.fps)))
    t = time.time()
    say("audio features", 0.15)
    kind = ident.meta["model"].get("audio_kind", "whisper")
    code = compute_audio_code(wav, 16000, n_frames=n, fps=ident.fps, kind=kind, device=dev)
    timings["features"] = time.time() - t
    emotion = _emotion_per_frame(r, n, ident.fps)
    if r.yaw or r.pitch:
        ident = dc_replace(ident, track_w2c=orbit(ident.track_w2c, r.yaw, r.pitch))
    out = work / "emotalk.mp4"
    t = time.time()
    with VideoWriter(out, fps=ident.fps, audio=wav, sr=16000) as w:
        for frames in render_frames(ident, code, emotion, size=r.size, device=dev, blinks=r.blink_rate > 0,
                                    blink_rate=r.blink_rate, seed=r.seed,
                                    progress=lambda s, f: say(f"rendering frame {int(f * n)}/{n}",
                                                              0.2 + 0.75 * f)):
            w.write_batch(label_frames(frames) if r.watermark else frames)
        say("encoding", 0.97)
    timings["render_encode"] = time.time() - t
    say("done", 1.0)
    return RenderResult(out, speech_wav, n, time.time() - t_start, engine,
                        " ".join(r.notices) or None, timings)


def preview(req: RenderRequest):
    """One frame [H,W,3] uint8 at the request's emotion, mouth at rest: quick feedback for the picker."""
    import numpy as np

    from emotalk.render.frames import render_frames
    from emotalk.speech.features import compute_audio_code

    r = replace(req, text=req.text or "preview", audio=None)
    r = validate_request(r)
    dev = r.device or _device()
    ident = load_cached(resolve_identity(r.identity), dev)
    r.size = r.size or _default_size(ident.size, dev)
    kind = ident.meta["model"].get("audio_kind", "whisper")
    key = (kind, dev)
    if key not in _SILENT_CODE:
        _SILENT_CODE[key] = compute_audio_code(np.zeros(16000, np.float32), 16000, n_frames=1,
                                               fps=ident.fps, kind=kind, device=dev)
    emo = np.array([[r.valence, r.arousal]], np.float32) * np.float32(r.intensity)
    if r.yaw or r.pitch:
        from dataclasses import replace as dc_replace

        ident = dc_replace(ident, track_w2c=orbit(ident.track_w2c, r.yaw, r.pitch))
    frames = next(iter(render_frames(ident, _SILENT_CODE[key], emo, batch=1, size=r.size, device=dev,
                                     blinks=False)))
    return label_frames(frames)[0] if r.watermark else frames[0]


_SILENT_CODE: dict = {}


# ---- fine-tuning a new identity -----------------------------------------------------------------

FINE_TUNE_PRESETS = ("fast", "quality")


def fine_tune(clip: str, name: str, preset: str = "fast", consent: bool = False,
              workdir: Path | None = None, progress: Progress | None = None,
              on_sample: Callable[[list[float], object], None] | None = None,
              steps: int | None = None, size: int | None = None) -> IdentityInfo:
    """A user's clip -> a new identity in the user's folder: preprocess, train, save (resumable).

    `on_sample(loss_history, frame)` gets the loss curve and a held-out render a few times during training.
    `steps`/`size` override the preset (CPU users and tests).
    """
    from dataclasses import replace as dc_replace

    from emotalk.dataset.build import PRESETS as DATA_PRESETS
    from emotalk.dataset.build import preprocess
    from emotalk.identity.fit import train_identity
    from emotalk.training.data import dataset_audio_code
    from emotalk.training.settings import PRESETS as TRAIN_PRESETS

    if not consent:
        raise InputError("Tick the consent box: you must have the right to use this person's likeness.")
    if preset not in FINE_TUNE_PRESETS:
        raise InputError(f"Unknown preset {preset!r}; choose {' or '.join(FINE_TUNE_PRESETS)}.")
    name = validate_identity_name(name)
    dest = user_dir() / name
    if dest.exists():
        raise InputError(f"You already have an identity named {name!r}; choose another name.")
    say = progress or (lambda s, f: None)
    dev = _device()
    s = TRAIN_PRESETS[preset]
    if dev == "cpu":  # a CPU trains a small model at a small size, or it would take hours
        s = dc_replace(s, size=128, steps=600, batch=2, lpips=False,
                       model=dc_replace(s.model, n_face_init=3000, n_mouth_init=400))
    if steps:
        s = dc_replace(s, steps=int(steps))
    if size:
        s = dc_replace(s, size=int(size))
    work = Path(workdir) if workdir else user_dir().parent / "work" / name
    work.mkdir(parents=True, exist_ok=True)
    ds_dir = work / "dataset"
    if (ds_dir / "meta.json").is_file():
        from emotalk.dataset.format import load_dataset

        ds = load_dataset(ds_dir)  # a crashed fine-tune resumes after preprocessing
    else:
        data_settings = DATA_PRESETS["default"] if dev == "cuda" else DATA_PRESETS["fast"]
        ds = preprocess(clip, ds_dir, data_settings, progress=lambda m, f: say(f"preprocess: {m}", 0.4 * f))
    code = dataset_audio_code(ds, s.audio_kind)
    losses: list[float] = []
    last_sample = [0]

    def status(st) -> None:
        losses.append(float(st.loss))
        say(f"train [{st.stage}] step {st.step}/{st.steps}, loss {st.loss:.4f}, "
            f"ETA {st.eta_s / 60:.1f} min", 0.4 + 0.55 * st.step / max(1, st.steps))
        if on_sample and st.step - last_sample[0] >= max(1, st.steps // 6):
            last_sample[0] = st.step
            on_sample(list(losses), None)

    _, _, thumb = train_identity(ds, s, dest, work / "train", device=dev, on_status=status, audio_code=code,
                                 name=name, source_clip=str(clip))
    if on_sample:
        on_sample(list(losses), thumb)
    say("done", 1.0)
    return identity_info(dest, "user")
