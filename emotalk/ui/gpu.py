"""The app's GPU sections: each call that needs the GPU, wrapped for Hugging Face Spaces (ZeroGPU asks
for GPU time per call) and a plain call everywhere else. Inputs are validated before these run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from emotalk import pipeline

try:  # Hugging Face Spaces: the same code, with GPU time requested per call
    import spaces

    def gpu(duration: Any = 60):
        """`spaces.GPU(duration=...)` on a Space."""
        return spaces.GPU(duration=duration)
except ImportError:
    def gpu(duration: Any = 60):
        """No-op outside Spaces."""
        return lambda fn: fn


@gpu(duration=lambda req, workdir, progress=None: pipeline.estimate_gpu_seconds(req))
def synthesize(req: pipeline.RenderRequest, workdir: Path,
               progress: Callable[[str, float], None] | None = None):
    """The one GPU call of a render (validated request in, RenderResult out)."""
    return pipeline.synthesize(req, workdir=workdir, progress=progress)


@gpu(duration=10)
def preview(req: pipeline.RenderRequest):
    """One still frame at the request's emotion."""
    return pipeline.preview(req)


@gpu(duration=1200)
def fine_tune(clip: str, name: str, preset: str, consent: bool, progress, on_sample,
              design: str = "mouth"):
    """A whole fine-tune, in the pipeline's own resumable work folder (never auto-cleaned); `design`: how
    emotions are drawn (`training.settings.EMOTION_DESIGNS`)."""
    return pipeline.fine_tune(clip, name, preset=preset, consent=consent, progress=progress,
                              on_sample=on_sample, emotion_design=design)
