"""The API that the app and the CLI call: requests in, files out. It knows nothing of the UI.

Every function validates its inputs first and raises an `EmoTalkError` whose message is meant for the
user; heavy modules (torch, the model, TTS) are imported only when a function needs them. The request and
result types, the limits and the checks live in `emotalk.requests` and are part of this API.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import replace
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

# rendering: whole or streamed (emotalk.pipeline.render)
from emotalk.pipeline.render import (  # noqa: F401, E402
    FIRST_SEGMENT_S,
    SENTENCE_PAUSE_S,
    Progress,
    _default_size,
    _device,
    _render_inputs,
    _tts,
    new_workdir,
    synthesize,
    synthesize_stream,
)
from emotalk.render.camera import orbit
from emotalk.render.label import label_frames

# requests, results, limits and their checks: part of this API
from emotalk.requests import (  # noqa: F401
    MAX_SIZE,
    MAX_SPEECH_S,
    MAX_TEXT_CHARS,
    MIN_SIZE,
    SIZE_CPU,
    SIZE_GPU,
    RenderRequest,
    RenderResult,
    SpeechResult,
    device_info,
    join_notices,
    speech_seconds,
    speech_too_long,
    text_too_long,
    validate_request,
)


def convert_clip(path: str | Path, workdir: str | Path | None = None, max_side: int = 720) -> Path:
    """Any uploaded clip -> 25 fps H.264 + AAC mp4 (the format everything downstream reads)."""
    out_dir = Path(workdir) if workdir else new_workdir()
    return media.standardize(path, out_dir / (Path(path).stem + "_25fps.mp4"), fps=25.0, max_side=max_side)


def model_files() -> list[list[str]]:
    """One row per model file: name, state in the cache, size, licence, carrier package."""
    return [[n, assets.status(n), f"{a.size / 1e6:.1f} MB", a.licence, a.carrier]
            for n, a in sorted(assets.REGISTRY.items())]


# ---- speech from text -------------------------------------------------------------------------


def tts_engines() -> list[tuple[str, str]]:
    """(id, label) of the TTS engines to choose from, the default (Piper, offline) first. Typed text
    stays on this machine unless "edge" is chosen, whose label says the text goes to an online service."""
    from emotalk.speech.tts import ENGINE_LABELS, ENGINES

    return [(e, ENGINE_LABELS[e]) for e in ENGINES]


def voices() -> list[str]:
    """TTS voices to offer: the offline ones (always work) and the online default voices."""
    from emotalk.speech.tts import OFFLINE_VOICES
    from emotalk.speech.tts_edge import DEFAULT_VOICES

    return [f"offline:{e}" for e in OFFLINE_VOICES] + sorted(set(DEFAULT_VOICES.values()))


def speak(text: str, voice: str | None = None, workdir: Path | None = None, arousal: float = 0.0,
          progress: Progress | None = None, engine: str | None = None) -> SpeechResult:
    """Typed text -> a 16 kHz wav by the chosen `engine` (None: Piper, offline; an online `voice` name
    picks the online voice). The notice says why another engine spoke, only when one did."""
    res, notice = _tts(text, voice, arousal, engine, progress)
    out = media.write_wav(Path(workdir or new_workdir()) / "speech.wav", res.wav, res.sr)
    return SpeechResult(out, f"{res.engine} ({res.voice})", notice, res.duration)


# ---- what a render will take ------------------------------------------------------------------


def estimate_seconds(req: RenderRequest) -> float:
    """Expected compute seconds of this request on this device, before it starts (measured speeds, the
    CPU's current load counted; see `render.speed`). Refuses what validation refuses about the speech."""
    from emotalk.render.speed import estimate

    dev = req.device or _device()
    size = int(req.size or (SIZE_GPU if dev == "cuda" else SIZE_CPU))
    return estimate(speech_seconds(req), size, dev, tts=not req.audio)


def estimate_gpu_seconds(req: RenderRequest) -> int:
    """A generous GPU-time budget for one render (for @spaces.GPU(duration=...))."""
    try:
        dur = speech_seconds(req)
    except Exception:
        dur = MAX_SPEECH_S
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


# ---- rendering --------------------------------------------------------------------------------

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
    emo = np.array([[r.valence, r.arousal, r.intensity]], np.float32)
    if r.yaw or r.pitch:
        ident = replace(ident, track_w2c=orbit(ident.track_w2c, r.yaw, r.pitch))
    frames = next(iter(render_frames(ident, _SILENT_CODE[key], emo, batch=1, size=r.size, device=dev,
                                     blinks=False)))
    return label_frames(frames)[0] if r.watermark else frames[0]


_SILENT_CODE: dict = {}


def warm_up(identity: str, size: int | None = None, device: str | None = None) -> None:
    """What the app does at launch, in the background, so that its first visitor does not wait for loading:
    the offline voice starts, and one still of `identity` loads the model, the audio encoder, the body loop
    and the render kernels (compiled on a GPU's first use); a second, emotional still makes the emotion's
    per-identity parts (the mouth warp's basis: about 1 s on a CPU) before a visitor picks an emotion."""
    from emotalk.speech.tts_offline import prestart_piper

    prestart_piper()  # returns at once (the voice loads in the background); a reason where Piper cannot run
    preview(RenderRequest(identity=identity, size=size, device=device))
    preview(RenderRequest(identity=identity, size=size, device=device, valence=0.8, arousal=0.5))


# ---- fine-tuning a new identity -----------------------------------------------------------------

FINE_TUNE_PRESETS = ("fast", "quality", "cpu", "test")  # the recipes of emotalk.training.settings.RECIPES


def fine_tune_recipe(preset: str, device: str | None = None) -> dict:
    """What a fine-tune with `preset` makes on this device (on a CPU, fast and quality become the CPU
    preview): name, preview, size (px), emotions, steps, emotion_steps and a one-line description."""
    from emotalk.training.settings import recipe_for

    return recipe_for(preset, device or _device()).summary()


def estimate_fine_tune_seconds(clip: str, preset: str, device: str | None = None) -> float:
    """Expected seconds of a whole fine-tune of `clip` with `preset` on this device, before it starts."""
    import math

    from emotalk.identity.fit import estimate_parts
    from emotalk.training.settings import recipe_for

    dev = device or _device()
    seconds = media.probe(clip, max_seconds=math.inf).duration
    return float(sum(estimate_parts(recipe_for(preset, dev), seconds, dev).values()))


def fit_identity(source: str | Path, out: str | Path, recipe, workdir: str | Path | None = None,
                 device: str | None = None, name: str | None = None, progress: Progress | None = None,
                 on_sample: Callable[[list[float], object], None] | None = None, on_status=None):
    """A clip, or an already-built dataset folder, -> the identity folder `out` by a fine-tune recipe (a
    RECIPES name or a `Recipe`): what `fine_tune` and the train CLI both run. Resumes from `workdir`
    (default: OUT.work) after a crash. Returns an `emotalk.identity.fit.FitResult`."""
    import math

    from emotalk.identity.fit import fit_identity as fit
    from emotalk.training.settings import Recipe, recipe_named

    dev = device or _device()
    r = recipe if isinstance(recipe, Recipe) else recipe_named(recipe)
    src = Path(source)
    if not src.exists():
        raise InputError(f"{src} does not exist: give a video clip or a dataset folder "
                         "(from 'python -m emotalk preprocess').")
    is_clip = not src.is_dir()
    seconds = media.probe(src, max_seconds=math.inf).duration if is_clip else None
    work = Path(workdir) if workdir else Path(out).with_name(Path(out).name + ".work")
    return fit(src, out, r, work, device=dev, name=name, progress=progress, on_sample=on_sample,
               on_status=on_status, clip_seconds=seconds)


def fine_tune(clip: str, name: str, preset: str = "fast", consent: bool = False,
              workdir: Path | None = None, progress: Progress | None = None,
              on_sample: Callable[[list[float], object], None] | None = None,
              steps: int | None = None, size: int | None = None, emotion_design: str | None = None):
    """A user's clip -> a new identity in the user's folder by recipe `preset` (resumable; see
    `fit_identity`). On a CPU, fast and quality run the CPU preview recipe (hours otherwise).

    `on_sample(loss_history, frame)` gets the loss curve as it grows and a held-out render every few
    hundred steps and at the end. `steps`/`size` override the recipe (tests); `emotion_design` "mouth"
    (default) or "face" picks how emotions are drawn (`training.settings.EMOTION_DESIGNS`). Returns a
    `FittedIdentity` (an IdentityInfo with the recipe's summary and a notice saying what a preview is).
    """
    from emotalk.identity.fit import FittedIdentity
    from emotalk.identity.report import fit_report
    from emotalk.training.settings import override, recipe_for

    if not consent:
        raise InputError("Tick the consent box: you must have the right to use this person's likeness.")
    if preset not in FINE_TUNE_PRESETS:
        raise InputError(f"Unknown preset {preset!r}; choose one of {', '.join(FINE_TUNE_PRESETS)}.")
    name = validate_identity_name(name)
    dest = user_dir() / name
    if dest.exists():
        raise InputError(f"You already have an identity named {name!r}; choose another name.")
    dev = _device()
    recipe = override(recipe_for(preset, dev), steps=steps, size=size, emotion_design=emotion_design)
    work = Path(workdir) if workdir else user_dir().parent / "work" / name
    res = fit_identity(clip, dest, recipe, work, dev, name, progress, on_sample)
    notice = getattr(res, "notice", None)  # the clip check's warnings
    if recipe.preview:
        swapped = f"No GPU here, so {preset!r} ran as the CPU preview: " if recipe.name != preset else ""
        preview = (f"{swapped}{name} is a small preview ({recipe.describe()}); a fine-tune on a GPU with "
                   "'fast' or 'quality' makes the full 512 px identity.")
        notice = " ".join(filter(None, [notice, preview]))
    return FittedIdentity(**vars(identity_info(dest, "user")), recipe=recipe.summary(), notice=notice,
                          report=fit_report(res.summary, dest))
