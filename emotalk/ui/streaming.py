"""Generate, streamed: the video plays while it renders, the pad steers the emotion of the rest of it.

Gradio's streaming video output (`gr.Video(streaming=True)`) takes the pipeline's MPEG-TS segments as
they are made and plays them as one live HLS stream; the complete mp4 arrives at the end, as in the
plain Generate. Gradio re-muxes every segment with ffmpeg and ffprobe from PATH, so streaming is offered
only where both are installed (`available`). While a visitor's stream runs, `steer` (the sliders' change
event, outside the queue) records the (valence, arousal) wanted now; the pipeline reads it before each
chunk.
"""

from __future__ import annotations

import shutil
import threading
from typing import Any

import gradio as gr

from emotalk import pipeline
from emotalk.errors import EmoTalkError
from emotalk.media.segments import Segment
from emotalk.ui import gpu, handlers
from emotalk.ui.messages import duration_words, user_error

_LIVE: dict[str, tuple[float, float]] = {}  # session -> (valence, arousal) wanted now, while it streams
_LOCK = threading.Lock()


def available() -> bool:
    """Whether Gradio can stream video here (its streaming output runs ffmpeg and ffprobe from PATH)."""
    return bool(shutil.which("ffmpeg") and shutil.which("ffprobe"))


def steer(valence: float, arousal: float, request: gr.Request) -> None:
    """The emotion wanted now by this visitor; it steers the rest of their running stream (if any)."""
    key = getattr(request, "session_hash", None)
    with _LOCK:
        if key in _LIVE:
            try:
                _LIVE[key] = (float(valence), float(arousal))
            except (TypeError, ValueError):
                pass  # a half-typed number: the next change brings a whole one


def live_emotion(key: str):
    """The pipeline's view of a session's steering: a callable giving the (valence, arousal) now."""
    return lambda: _LIVE.get(key)


@gpu.gpu(duration=lambda req, workdir, progress=None, live=None: pipeline.estimate_gpu_seconds(req))
def _stream(req: pipeline.RenderRequest, workdir, progress=None, live=None):
    """The one GPU call of a streamed render: segments, then the RenderResult."""
    yield from pipeline.synthesize_stream(req, workdir, progress, emotion=live)


def generate(identity: str, source: str = "auto", audio: str | None = None, text: str | None = None,
             voice: str | None = None, valence: float = 0.0, arousal: float = 0.0, intensity: float = 1.0,
             track: Any = None, size: int = 0, yaw: float = 0.0, pitch: float = 0.0,
             blink_rate: float = 1.0, seed: float = 0, watermark: bool = True, engine: str | None = None,
             mic: str | None = None, spoken: dict | None = None, request: gr.Request = None,
             progress: gr.Progress = gr.Progress()):  # noqa: B008
    """Like handlers.generate, streamed: yields each segment to the live player as it is ready, then the
    complete mp4, the speech wav, the files and the notes (live player, video, wav, files, notes)."""
    req, expected = handlers.checked_request(identity, source, audio, text, voice, valence, arousal,
                                             intensity, track, size, yaw, pitch, blink_rate, seed, watermark,
                                             engine, mic, spoken)
    workdir = handlers.request_dir()
    progress(0.0, desc=f"queued (expected about {duration_words(expected)})")
    key = getattr(request, "session_hash", None) or workdir.name
    with _LOCK:
        _LIVE[key] = (req.valence, req.arousal)
    result = None
    try:
        for part in _stream(req, workdir, handlers.reporter(progress), live_emotion(key)):
            if isinstance(part, Segment):
                yield str(part.path), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            else:
                result = part
    except EmoTalkError as e:
        raise user_error(e) from e
    finally:
        with _LOCK:
            _LIVE.pop(key, None)
    yield (gr.skip(), *handlers.result_outputs(req, workdir, result, spoken))
