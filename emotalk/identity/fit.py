"""An identity from a dataset: train, then the emotion stage, then save the checkpoint folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from emotalk.training.data import dataset_audio_code, load_train_data
from emotalk.training.loop import evaluate, train
from emotalk.training.settings import TrainSettings, TrainStatus


def train_identity(ds, settings: TrainSettings, out: str | os.PathLike, work_dir: str | os.PathLike,
                   device: str = "cpu", on_status: Callable[[TrainStatus], None] | None = None,
                   audio_code: np.ndarray | None = None, name: str | None = None,
                   source_clip: str | None = None, emotion_steps: int | None = None
                   ) -> tuple[Path, dict, np.ndarray]:
    """Train (resumably, in work_dir), add the emotion field (emotion stage), render a held-out thumbnail
    and write the identity folder `out`.

    emotion_steps: emotion-stage steps (None: 3000 on a GPU, 0 on the CPU, where it would take hours;
    an identity without it renders every emotion as neutral). Returns (identity folder, training summary,
    thumbnail [S,S,3] uint8). The CLI and the app use this.
    """
    from emotalk.identity.checkpoint import save_identity

    code = audio_code if audio_code is not None else dataset_audio_code(ds, settings.audio_kind)
    model, summary = train(ds, settings, work_dir, device=device, on_status=on_status, audio_code=code)
    if emotion_steps is None:
        emotion_steps = 3000 if str(device).startswith("cuda") and settings.steps >= 1000 else 0
    if emotion_steps > 0:
        from emotalk.training.emotion_stage import EmotionStageSettings, run_emotion_stage

        st = EmotionStageSettings(steps=emotion_steps, n_frames=12)
        es = run_emotion_stage(model, ds, st, device=device, size=settings.size, audio_code=code)
        summary["emotion_stage"] = {"steps": emotion_steps, "minutes": round(es["minutes"], 2),
                                    "targets": es["n_targets"]}
    data = load_train_data(ds, settings.size, code, device)
    thumb_idx = data.val_idx[:1] if len(data.val_idx) else data.train_idx[:1]
    thumb, _ = evaluate(model, data, thumb_idx)
    path = save_identity(out, model, ds, settings, summary, name=name, source_clip=source_clip,
                         size=data.size, thumbnail=thumb[0])
    return path, summary, thumb[0]
