"""The API that the app and the CLI call: requests in, files out. It knows nothing of the UI.

Every function validates its inputs first and raises an `EmoTalkError` whose message is meant for the
user; heavy modules (torch, the model, TTS) are imported only when a function needs them.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from emotalk import assets, media
from emotalk.errors import InputError

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
class IdentityInfo:
    """An identity the app can pick."""

    name: str
    path: Path
    thumbnail: Path | None
    source: str  # "shipped" | "user" | "hub"


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


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def validate_identity_name(name: str, shipped: set[str] | None = None) -> str:
    """A safe new identity name: letters, digits, '-' and '_', not a shipped identity's name."""
    n = (name or "").strip()
    if not _NAME.match(n):
        raise InputError(f"Identity name {name!r} is not allowed: use 1-64 letters, digits, '-' or '_', "
                         "starting with a letter or digit (no spaces, dots or slashes).")
    if shipped is None:
        shipped = _shipped_names()
    if n.lower() in {s.lower() for s in shipped}:
        raise InputError(f"{n!r} is the name of a shipped identity; choose another name.")
    return n


def validate_repo_id(repo_id: str) -> str:
    """A Hugging Face repo id 'owner/name' (no URLs, no path tricks)."""
    r = (repo_id or "").strip()
    if r.startswith("hf:"):
        r = r[3:]
    if not _REPO.match(r) or ".." in r:
        raise InputError(f"{repo_id!r} is not a Hugging Face repo id; write it as owner/name.")
    return r


def _shipped_names() -> set[str]:
    root = Path(__file__).resolve().parents[1] / "checkpoints"
    return {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()


def validate_request(req: RenderRequest) -> RenderRequest:
    """Check a request before any GPU work; returns a normalised copy (notices say what changed)."""
    from emotalk.face.emotion import EmotionTrack, clamp_to_disc

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

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_DIR = REPO_ROOT / "checkpoints"  # identities that come with the project


def user_dir() -> Path:
    """Where fine-tuned and Hub identities live: $EMOTALK_HOME/identities (~/.local/share/emotalk)."""
    import os

    base = os.environ.get("EMOTALK_HOME") or str(Path.home() / ".local" / "share" / "emotalk")
    return Path(base) / "identities"


def _identity_info(p: Path, source: str) -> IdentityInfo:
    thumb = p / "thumbnail.png"
    return IdentityInfo(p.name, p, thumb if thumb.is_file() else None, source)


def list_identities() -> list[IdentityInfo]:
    """Shipped identities first, then the user's (fine-tuned or loaded from the Hub)."""
    out = []
    for root, source in ((SHIPPED_DIR, "shipped"), (user_dir(), "user")):
        if root.is_dir():
            for p in sorted(root.iterdir()):
                if (p / "identity.json").is_file():
                    src = "hub" if (p / ".hub_repo").is_file() else source
                    out.append(_identity_info(p, src))
    return out


def resolve_identity(ref: str) -> Path:
    """An identity's folder from its name, a folder path, or 'hf:owner/repo'."""
    ref = (ref or "").strip()
    if ref.startswith("hf:"):
        return load_hub_identity(ref).path
    for info in list_identities():
        if info.name == ref:
            return info.path
    p = Path(ref).expanduser()
    if (p / "identity.json").is_file():
        return p
    names = ", ".join(i.name for i in list_identities()) or "none yet"
    raise InputError(f"No identity named {ref!r}. Available: {names}. Fine-tune one from a clip, or "
                     "load one from the Hub with hf:owner/repo.")


def load_hub_identity(repo_id: str, token: str | None = None) -> IdentityInfo:
    """Download an identity folder from a Hugging Face repo into the user's identities."""
    from emotalk.errors import AssetError

    rid = validate_repo_id(repo_id)
    dest = user_dir() / rid.replace("/", "__")
    if not assets.hub_reachable():
        if (dest / "identity.json").is_file():
            return _identity_info(dest, "hub")
        raise AssetError(f"The Hugging Face Hub cannot be reached (offline, or HF_HUB_OFFLINE is set), so "
                         f"{rid} cannot be loaded. Use a shipped identity or fine-tune your own.")
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(rid, local_dir=str(dest), token=token or None, etag_timeout=10,
                          allow_patterns=["identity.json", "model.safetensors", "body.mp4", "thumbnail.png"])
    except Exception as e:  # the Hub library raises many types; the user needs one message
        raise AssetError(f"Could not download {rid} from the Hub ({type(e).__name__}: {e}). Check the repo "
                         "id, your token for private repos, and the connection.") from e
    (dest / ".hub_repo").write_text(rid)
    from emotalk.identity import load_identity

    load_identity(dest)  # validates version and shapes now, not at render time
    return _identity_info(dest, "hub")


def push_identity(name: str, repo_id: str, token: str) -> str:
    """Upload a user identity folder to the user's own Hub repo; returns its URL."""
    from emotalk.errors import AssetError

    rid = validate_repo_id(repo_id)
    if not token:
        raise InputError("Pushing to the Hub needs your own write token.")
    path = resolve_identity(name)
    try:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        api.create_repo(rid, exist_ok=True, private=True)
        api.upload_folder(folder_path=str(path), repo_id=rid,
                          allow_patterns=["identity.json", "model.safetensors", "body.mp4", "thumbnail.png"])
    except Exception as e:
        raise AssetError(f"Could not push {name} to {rid} ({type(e).__name__}: {e}).") from e
    return f"https://huggingface.co/{rid}"


_LOADED: dict[tuple[str, float, str], object] = {}  # (path, mtime, device) -> Identity; bounded below


def _load(path: Path, device: str):
    """Load an identity once per process (renders and previews reuse it)."""
    from emotalk.identity import load_identity

    key = (str(path.resolve()), (path / "model.safetensors").stat().st_mtime, device)
    if key not in _LOADED:
        if len(_LOADED) >= 4:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = load_identity(path, device=device)
    return _LOADED[key]


# ---- rendering --------------------------------------------------------------------------------

def _orbit(w2c, yaw_deg: float, pitch_deg: float):
    """Turn the head frame by (yaw, pitch) degrees: a camera offset applied to every pose. [L,4,4]."""
    import numpy as np

    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    m = np.eye(4)
    m[:3, :3] = ry @ rx
    return (w2c @ m).astype(np.float32)


def _label(frames, text: str = "AI-generated"):
    """Burn a small translucent label into the bottom-right corner of frames [N,H,W,3]."""
    import cv2

    out = frames.copy()
    h, w = out.shape[1:3]
    if w < 256:  # keep the label small on small videos
        text = "AI"
    scale = max(0.3, w / 1100)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x0, y0 = w - tw - 8, h - 8
    for f in out:
        roi = f[y0 - th - 4:y0 + 4, x0 - 4:x0 + tw + 4]
        roi[:] = (roi * 0.45).astype(roi.dtype)
        cv2.putText(f, text, (x0, y0), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _emotion_per_frame(r: RenderRequest, n: int, fps: float):
    import numpy as np

    from emotalk.face.emotion import EmotionTrack

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
    from emotalk.speech.features import compute_audio_code
    from emotalk.speech.normalize import load_speech
    from emotalk.synthesis import render_frames

    t_start = time.time()
    timings: dict[str, float] = {}
    say = progress or (lambda s, f: None)
    r = validate_request(req)
    work = Path(workdir or new_workdir())
    work.mkdir(parents=True, exist_ok=True)
    dev = r.device or _device()
    t = time.time()
    say("loading identity", 0.0)
    ident = _load(resolve_identity(r.identity), dev)
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
        ident = dc_replace(ident, track_w2c=_orbit(ident.track_w2c, r.yaw, r.pitch))
    out = work / "emotalk.mp4"
    t = time.time()
    with VideoWriter(out, fps=ident.fps, audio=wav, sr=16000) as w:
        for frames in render_frames(ident, code, emotion, size=r.size, device=dev, blinks=r.blink_rate > 0,
                                    blink_rate=r.blink_rate, seed=r.seed,
                                    progress=lambda s, f: say(f"rendering frame {int(f * n)}/{n}",
                                                              0.2 + 0.75 * f)):
            w.write_batch(_label(frames) if r.watermark else frames)
        say("encoding", 0.97)
    timings["render_encode"] = time.time() - t
    say("done", 1.0)
    return RenderResult(out, speech_wav, n, time.time() - t_start, engine,
                        " ".join(r.notices) or None, timings)


def preview(req: RenderRequest):
    """One frame [H,W,3] uint8 at the request's emotion, mouth at rest: quick feedback for the picker."""
    import numpy as np

    from emotalk.speech.features import compute_audio_code
    from emotalk.synthesis import render_frames

    r = replace(req, text=req.text or "preview", audio=None)
    r = validate_request(r)
    dev = r.device or _device()
    ident = _load(resolve_identity(r.identity), dev)
    r.size = r.size or _default_size(ident.size, dev)
    kind = ident.meta["model"].get("audio_kind", "whisper")
    key = (kind, dev)
    if key not in _SILENT_CODE:
        _SILENT_CODE[key] = compute_audio_code(np.zeros(16000, np.float32), 16000, n_frames=1,
                                               fps=ident.fps, kind=kind, device=dev)
    emo = np.array([[r.valence, r.arousal]], np.float32) * np.float32(r.intensity)
    if r.yaw or r.pitch:
        from dataclasses import replace as dc_replace

        ident = dc_replace(ident, track_w2c=_orbit(ident.track_w2c, r.yaw, r.pitch))
    frames = next(iter(render_frames(ident, _SILENT_CODE[key], emo, batch=1, size=r.size, device=dev,
                                     blinks=False)))
    return _label(frames)[0] if r.watermark else frames[0]


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

    from emotalk.data import PRESETS as DATA_PRESETS
    from emotalk.data import preprocess
    from emotalk.train import PRESETS as TRAIN_PRESETS
    from emotalk.train import dataset_audio_code, train_identity

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
        from emotalk.data import load_dataset

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
    return _identity_info(dest, "user")
