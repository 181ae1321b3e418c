"""The Gradio adapter (the fine-tune run aside: ui.finetune): widget values -> pipeline requests, uploads,
progress, and pipeline errors -> titled toasts. The pipeline validates requests; these functions only
translate, and keep web visitors to listed identities (never a server folder)."""

from __future__ import annotations

import csv
import io
import json
import logging
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gradio as gr

from emotalk import pipeline
from emotalk.emotion import parse_track_text
from emotalk.errors import EmoTalkError, InputError
from emotalk.media import AUDIO_EXTS, VIDEO_EXTS
from emotalk.ui import gpu, serving
from emotalk.ui.messages import duration_words, result_markdown, user_error, warn
from emotalk.ui.plots import emotion_track_figure
from emotalk.ui.thumbs import thumbnail_for

log = logging.getLogger(__name__)

# what the upload boxes offer to pick: the files the pipeline reads (it says so when it cannot). Clip boxes
# are plain file boxes, not video players, so a corrupt or unplayable clip gets one message, the pipeline's
CLIP_EXTS = list(VIDEO_EXTS)
SPEECH_EXTS = list(AUDIO_EXTS + VIDEO_EXTS)  # recordings, and videos (their sound is used)
SIZES = [("auto", 0)] + [(f"{n} px", n) for n in (128, 256, 384, 512, 768)]


def request_dir(kind: str = "req") -> Path:
    """A private folder for one request, after clearing request folders past their age."""
    s = serving.SETTINGS
    s.out_root.mkdir(parents=True, exist_ok=True)
    pipeline.cleanup_old_outputs(s.out_root, s.output_max_age_s)
    return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=s.out_root))


def check_identity(identity: str | None) -> str:
    """A listed identity name, or "hf:owner/repo": a web visitor never names a server folder."""
    name = (identity or "").strip()
    if not name:
        raise InputError("Pick an identity first (click a face in the gallery).")
    if name.startswith("hf:"):
        return "hf:" + pipeline.validate_repo_id(name)
    if name not in {i.name for i in pipeline.list_identities()}:
        raise InputError(f"Unknown identity '{name}'; pick one from the gallery or load one from the Hub.")
    return name


def parse_track(rows: Any) -> list[tuple[float, float, float]] | None:
    """Keyframes from the timeline table, sorted by time (blank rows skipped); None when it is empty.

    The rows are read as CSV by the one keyframe parser, emotion.parse_track_text."""
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["time", "valence", "arousal"])
    kept = 0
    for row in rows or []:
        cells = ["" if c is None else str(c).strip() for c in list(row)[:3]]
        if any(cells):
            out.writerow(cells)
            kept += 1
    return sorted(parse_track_text(buf.getvalue(), ".csv")) if kept else None


def _number(value: Any, what: str) -> float:
    """A widget's number; API callers can send anything, so say which value was not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}.") from None


def build_request(identity: str | None, source: str = "auto", audio: str | None = None,
                  mic: str | None = None, text: str | None = None, engine: str | None = None,
                  voice: str | None = None, spoken: dict | None = None, valence: Any = 0.0,
                  arousal: Any = 0.0, intensity: Any = 1.0, track_rows: Any = None, size: Any = 0,
                  yaw: Any = 0.0, pitch: Any = 0.0, blink_rate: Any = 1.0, seed: Any = 0,
                  watermark: bool = True) -> pipeline.RenderRequest:
    """The RenderRequest for the Generate inputs. The open speech tab decides the source (auto: the
    uploaded file or recording if there is one); after "Speak", the wav the visitor heard is rendered."""
    text = (text or "").strip() or None
    speech = audio or mic
    if source == "text" or (source != "audio" and not speech):
        if not text:
            raise InputError("Type some text in the Text tab (or upload speech in the Audio tab).")
        speech = None
        heard = spoken or {}
        if (heard.get("text"), heard.get("engine_id"), heard.get("voice")) == (text, engine, voice) and \
                Path(heard.get("wav", "")).is_file():
            speech, text = heard["wav"], None
    else:
        if not speech:
            raise InputError("Upload a speech recording or a video, or record one, in the Audio tab.")
        text = None
    return pipeline.RenderRequest(
        identity=check_identity(identity), audio=speech, text=text, engine=engine or None,
        voice=voice or None, valence=_number(valence, "Valence"), arousal=_number(arousal, "Arousal"),
        intensity=_number(intensity, "Intensity"), emotion_track=parse_track(track_rows),
        size=int(_number(size, "Resolution")) or None, yaw=_number(yaw, "Camera yaw"),
        pitch=_number(pitch, "Camera pitch"), blink_rate=_number(blink_rate, "Blink rate"),
        seed=int(_number(seed, "Seed")), watermark=bool(watermark))


# ---------------------------------------------------------------- identities

def caption(info: pipeline.IdentityInfo) -> str:
    """A thumbnail's caption: the name, and where the identity came from unless it is shipped."""
    origin = {"shipped": "", "user": "yours", "hub": "Hub"}.get(info.source, info.source)
    return f"{info.name} · {origin}" if origin else info.name


def refresh_identities(selected: str | None = None):
    """The gallery (the chosen face highlighted), the list of names, and the identity dropdown."""
    infos = pipeline.list_identities()
    names = [i.name for i in infos]
    value = selected if selected in names else (names[0] if names else None)
    items = [(thumbnail_for(i.name, i.thumbnail), caption(i)) for i in infos]
    gallery = gr.Gallery(value=items, selected_index=names.index(value) if value else None)
    return gallery, names, gr.Dropdown(choices=names, value=value)


def pick_identity(names: list[str], evt: gr.SelectData) -> str:
    """The identity under the clicked thumbnail."""
    return names[evt.index]


def highlight_identity(identity: str | None, names: list[str]):
    """Highlights the chosen identity's face in the gallery (also when it was picked in the dropdown)."""
    return gr.Gallery(selected_index=names.index(identity) if identity in (names or []) else None)


def engine_choices() -> list[tuple[str, str]]:
    """(label, id) of the TTS engines for the engine radio; the first is the default."""
    return [(label, engine) for engine, label in pipeline.tts_engines()]


def online_voices() -> list[tuple[str, str]]:
    """(label, name) of the online voices; empty: the online engine's default voice."""
    return [("default", "")] + [(v, v) for v in pipeline.voices() if not v.startswith("offline:")]


def voice_box(engine: str | None):
    """The online-voice menu shows only while the online engine is chosen (and is emptied otherwise)."""
    if engine == "edge":
        return gr.Dropdown(visible=True)
    return gr.Dropdown(visible=False, value="", allow_custom_value=True)


def on_load():
    """Per page load: identities, the device notice (said once, here) and the default resolution."""
    gallery, names, dropdown = refresh_identities()
    info = pipeline.device_info()
    notice = f"Running on **{info['device'].upper()}**; default output {info['default_size']} px."
    if info.get("notice"):
        notice += f"  \n⚠️ {info['notice']}"
    if not names:
        notice += "  \nNo identity installed yet: fine-tune one (Fine-tune tab) or load one from the Hub."
    return gallery, names, dropdown, notice


def load_hub(repo_id: str, token: str | None):
    """Downloads an identity from the Hub (the pipeline checks the repo id), adds it and selects it."""
    try:
        info = pipeline.load_hub_identity((repo_id or "").strip(), token=(token or "").strip() or None)
    except EmoTalkError as e:
        raise user_error(e) from e
    gr.Info(f"Loaded {info.name} from the Hub.")
    return refresh_identities(info.name)


def push(name: str, repo_id: str, token: str) -> str:
    """Uploads one of the listed identities to the visitor's own Hub repo with their token."""
    try:
        name = check_identity(name)
        url = pipeline.push_identity(name, (repo_id or "").strip(), (token or "").strip())
    except EmoTalkError as e:
        raise user_error(e) from e
    return f"Pushed **{name}** to [{url.rsplit('/', 2)[-2]}/{url.rsplit('/', 1)[-1]}]({url})."


# ---------------------------------------------------------------- speech, preview, render

def speak(text: str, engine: str | None = None, voice: str | None = None):
    """Typed text -> speech: the wav, which engine spoke, and the record that lets Generate reuse it."""
    text = (text or "").strip()
    try:
        if not text:
            raise InputError("Type some text to speak.")
        res = pipeline.speak(text, voice=voice or None, engine=engine or None, workdir=request_dir("tts"))
    except EmoTalkError as e:
        raise user_error(e) from e
    note = f"Spoken by **{res.engine}** ({res.duration:.1f} s)."
    if res.notice:
        note += f"  \n⚠️ {res.notice}"
    return str(res.wav), note, {"text": text, "engine_id": engine, "voice": voice, "wav": str(res.wav),
                                "engine": res.engine}


def preview_size() -> int:
    """Side of the preview still: half the device's default (quick; the render has the detail)."""
    return max(128, int(pipeline.device_info()["default_size"]) // 2)


def preview(identity: str | None, valence: float, arousal: float, intensity: float, yaw: float,
            pitch: float):
    """A still at the current emotion; quiet (a warning, not an error) since it runs on every move."""
    if not identity:
        return None
    try:
        req = pipeline.RenderRequest(
            identity=check_identity(identity), valence=_number(valence, "Valence"),
            arousal=_number(arousal, "Arousal"), intensity=_number(intensity, "Intensity"),
            yaw=_number(yaw, "Camera yaw"), pitch=_number(pitch, "Camera pitch"), size=preview_size())
        return gpu.preview(req)
    except EmoTalkError as e:
        warn(e)
        return gr.skip()


def warm_up() -> None:
    """Loads the first identity and renders one still (at launch, in the background), so the first
    visitor's preview comes in a second rather than after the model loads; the offline voice loads too."""
    infos = pipeline.list_identities()
    try:
        if infos:
            pipeline.warm_up(infos[0].name, size=preview_size())
    except Exception as e:  # noqa: BLE001 - only a speed-up: the visitor's own preview reports any error
        log.warning("warm-up of %s failed: %s", infos[0].name, e)


def estimate(identity: str | None, source: str, audio: str | None, mic: str | None, text: str | None,
             engine: str | None, size: Any) -> str:
    """The expected compute time of a render with these inputs, said before it starts."""
    try:
        req = build_request(identity, source, audio, mic, text, engine, size=size)
        seconds = pipeline.estimate_seconds(req)
    except EmoTalkError:
        return ""  # nothing to render yet; Generate says what is missing
    line = f"Expected: about **{duration_words(seconds)}** of compute"
    device = pipeline.device_info()
    if device["device"] == "cpu":
        line += " on this CPU"
        if seconds > 60 and (req.size or device["default_size"]) > 128:
            line += "; a smaller Resolution (128 px) is about 4× quicker"
    return line + "."


def checked_request(identity, source, audio, text, voice, valence, arousal, intensity, track, size, yaw,
                    pitch, blink_rate, seed, watermark, engine, mic,
                    spoken) -> tuple[pipeline.RenderRequest, float]:
    """The validated request of the Generate inputs and its expected seconds (before any GPU work)."""
    try:
        req = build_request(identity, source, audio, mic, text, engine, voice, spoken, valence, arousal,
                            intensity, track, size, yaw, pitch, blink_rate, seed, watermark)
        req = pipeline.validate_request(req)
        return req, pipeline.estimate_seconds(req)
    except EmoTalkError as e:
        raise user_error(e) from e


def reporter(progress: gr.Progress):
    """A pipeline progress callback (stage, fraction) that drives a Gradio progress bar."""
    return lambda stage, fraction: progress(max(0.0, min(1.0, float(fraction))), desc=stage)


def result_outputs(req: pipeline.RenderRequest, workdir: Path, result, spoken: dict | None):
    """A finished render's outputs: the mp4, the speech wav, the files to download, the notes."""
    settings = workdir / "settings.json"
    settings.write_text(json.dumps({k: v for k, v in asdict(req).items() if k != "audio"}, indent=1,
                                   default=str))
    files = [str(result.video), str(result.speech_wav), str(settings)]
    return str(result.video), str(result.speech_wav), files, result_markdown(result, spoken)


def generate(identity: str, source: str = "auto", audio: str | None = None, text: str | None = None,
             voice: str | None = None, valence: float = 0.0, arousal: float = 0.0, intensity: float = 1.0,
             track: Any = None, size: int = 0, yaw: float = 0.0, pitch: float = 0.0,
             blink_rate: float = 1.0, seed: float = 0, watermark: bool = True, engine: str | None = None,
             mic: str | None = None, spoken: dict | None = None,
             progress: gr.Progress = gr.Progress()):  # noqa: B008
    """Checks the request (before any GPU work), renders it into a fresh folder; video, wav, files, notes."""
    req, expected = checked_request(identity, source, audio, text, voice, valence, arousal, intensity, track,
                                    size, yaw, pitch, blink_rate, seed, watermark, engine, mic, spoken)
    workdir = request_dir()
    progress(0.0, desc=f"queued (expected about {duration_words(expected)})")
    try:
        result = gpu.synthesize(req, workdir, reporter(progress))
    except EmoTalkError as e:
        raise user_error(e) from e
    return result_outputs(req, workdir, result, spoken)


def update_track_plot(track: Any, valence: float, arousal: float):
    """The emotion-track plot, or a warning when the table cannot be read."""
    try:
        return emotion_track_figure(parse_track(track), float(valence), float(arousal))
    except EmoTalkError as e:
        warn(e)
        return gr.skip()


def convert(clip: str | None) -> str:
    """Any clip -> 25 fps H.264 + AAC mp4."""
    try:
        if not clip:
            raise InputError("Upload a video clip first.")
        return str(pipeline.convert_clip(clip, workdir=request_dir("conv")))
    except EmoTalkError as e:
        raise user_error(e) from e


def check_clip(clip: str | None):
    """The clip check's report on the Fine-tune tab as soon as a clip is uploaded, before Fine-tune is
    pressed: a line saying it runs, then the report (a few seconds, in a queue worker, so the page stays
    usable); nothing when the box is cleared. The fine-tune reuses the report (identity.fit.check_clip)."""
    if not clip:
        yield ""
        return
    yield "_Checking the clip: faces, light, speech and sync (a few seconds)…_"
    from emotalk.identity.fit import check_clip as check

    try:
        yield check(clip).markdown()
    except EmoTalkError as e:  # the check's own tools are missing (a model file, ffmpeg)
        yield f"⚠️ The clip could not be checked: {e}"


def examples_rows(folder: Path) -> list[list[Any]]:
    """Example inputs (identity, speech file, its text, valence, arousal, intensity); our own TTS spoke."""
    try:
        spec = json.loads((folder / "examples.json").read_text())
        known = sorted(i.name for i in pipeline.list_identities())
    except (OSError, ValueError):
        return []
    rows = []
    for r in spec:
        identity = r["identity"] if r["identity"] in known else next(iter(known), None)
        if identity and (folder / r["audio"]).is_file():
            rows.append([identity, str(folder / r["audio"]), r["text"], r["valence"], r["arousal"],
                         r["intensity"]])
    return rows
