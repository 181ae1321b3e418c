"""What the app says: pipeline errors as titled toasts, durations in words, and the notes under a render."""

from __future__ import annotations

import re

import gradio as gr

from emotalk.errors import EmoTalkError

_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")  # what an HTML parser would read as the start of a tag
TITLES = {"InputError": "Check your input", "MediaError": "Check your file",
          "AssetError": "Model file missing", "DatasetError": "Identity problem",
          "FineTuneStopped": "Fine-tune stopped"}


def _toast_text(e: EmoTalkError) -> tuple[str, str]:
    """(title, message) for a toast. Gradio 6 heads every toast "Error", so the message starts with the
    title too. Toasts render HTML: only a "<" that would open a tag (an echoed file name, say) is escaped,
    so API callers read quotes, "<=" and ">=" as written."""
    title = TITLES.get(type(e).__name__, "Something went wrong")
    return title, f"{title}: {_TAG_START.sub('&lt;', str(e))}"


def user_error(e: EmoTalkError) -> gr.Error:
    """The pipeline's message as an error toast; the server log gets one line, not a traceback."""
    title, message = _toast_text(e)
    return gr.Error(message, title=title, print_exception=False)


def warn(e: EmoTalkError) -> None:
    """The pipeline's message as a warning toast (for quiet, repeated calls such as the preview)."""
    title, message = _toast_text(e)
    gr.Warning(message, title=title)


def duration_words(seconds: float) -> str:
    """"40 s", "3 min", "1 h 5 min": a wait as a person says it."""
    s = max(0.0, float(seconds))
    if s < 90:
        return f"{max(1, round(s))} s"
    if s < 3600:
        return f"{round(s / 60)} min"
    return f"{int(s // 3600)} h {round(s % 3600 / 60)} min"


def result_markdown(result, spoken: dict | None = None) -> str:
    """Notes under a render: how long the clip is, how long the request took, the voice, each notice once."""
    lines = [f"**{result.audio_seconds:.1f} s clip**, {result.n_frames} frames · made in "
             f"{duration_words(result.seconds)}."]
    engine = result.tts_engine or (spoken or {}).get("engine")
    if engine:
        lines.append(f"Voice: {engine}.")
    if result.notice:
        lines.append(f"⚠️ {result.notice}")
    if result.timings:
        lines.append("Time per step: " + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()))
    return "  \n".join(lines)
