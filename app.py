"""EmoTalk web app (Gradio Blocks): layout and wiring only; the work is in emotalk.pipeline."""

from __future__ import annotations

import os

import gradio as gr

from emotalk import pipeline
from emotalk.errors import EmoTalkError


def _convert(clip: str | None) -> str:
    if not clip:
        raise gr.Error("Upload a video clip first.")
    try:
        return str(pipeline.convert_clip(clip))
    except EmoTalkError as e:
        raise gr.Error(str(e)) from e


def build() -> gr.Blocks:
    with gr.Blocks(title="EmoTalk") as demo:
        gr.Markdown("# EmoTalk\nEmotion-controllable 3D Gaussian talking heads.")
        with gr.Tab("Convert a clip"):
            gr.Markdown("Any container, frame rate or size in; 25 fps H.264 + AAC mp4 out "
                        "(the format identities are trained from).")
            with gr.Row():
                clip_in = gr.Video(label="Your clip", sources=["upload"])
                clip_out = gr.Video(label="25 fps H.264 + AAC")
            gr.Button("Convert", variant="primary").click(_convert, clip_in, clip_out,
                                                          api_name="convert")
        with gr.Tab("Model files"):
            table = gr.Dataframe(headers=["name", "state", "size", "licence", "carrier (PyPI)"],
                                 value=pipeline.model_files, interactive=False)
            gr.Button("Refresh").click(pipeline.model_files, None, table, api_name="model_files")
    return demo


if __name__ == "__main__":
    build().queue(max_size=16, default_concurrency_limit=1).launch(
        server_name=os.environ.get("EMOTALK_HOST", "127.0.0.1"),
        server_port=int(os.environ.get("EMOTALK_PORT", "7860")))
