"""A dataset's arrays on the training device, and rendering frames of them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from emotalk.errors import EmoTalkError
from emotalk.gaussians.model import (
    Frames,
    TalkingGaussians,
)
from emotalk.media import resize_frames


@dataclass
class TrainData:
    """The dataset's arrays at the training size, on the training device."""

    frames: Tensor  # [T,S,S,3] uint8
    body: Tensor  # [T,S,S,3] uint8
    parsing: Tensor  # [T,S,S] uint8
    viewmats: Tensor  # [T,4,4]
    K: Tensor  # [3,3] at S
    audio: Tensor  # [T,W,C]
    upper: Tensor  # [T,U]
    lmk2d: Tensor  # [T,478,2] at S
    size: int
    train_idx: np.ndarray
    val_idx: np.ndarray
    alt_audio: Tensor | None = None  # [V,T,W,C] the same words re-spoken by V other voices, or None
    lips: Tensor | None = None  # [T,M] tracked lip code of every frame (emotalk.lips), None without one


def dataset_audio_code(ds, kind: str = "whisper") -> np.ndarray:
    """The clip's audio code [T,W,C]: precomputed in the dataset folder, else computed.

    Precomputed forms: `audio_code_{kind}.npy` ([T,W,C]) or `audio_code_{kind}.npz` with the distinct
    feature rows `rows` [R,C] and `index` [T,W] (windows overlap, so this is several times smaller).
    """
    code = getattr(ds, "audio_code", None)
    if code is not None:
        return np.asarray(code, np.float32)
    p = Path(ds.root) / f"audio_code_{kind}.npy"
    pz = p.with_suffix(".npz")
    if pz.is_file():
        with np.load(pz) as z:
            code = z["rows"][z["index"]]
    elif p.is_file():
        code = np.load(p)
    else:
        from emotalk.speech.features import compute_audio_code

        code = compute_audio_code(ds.audio(), 16000, n_frames=ds.n_frames, fps=ds.fps, kind=kind)
    if code.shape[0] != ds.n_frames:
        raise EmoTalkError(f"audio code of {ds.root} has {code.shape[0]} frames, the clip {ds.n_frames}; "
                           f"delete {p} and train again.")
    return np.asarray(code, np.float32)


def load_train_data(ds, size: int | None, audio_code: np.ndarray, device: str,
                    alt_codes: list[np.ndarray] | None = None) -> TrainData:
    """Decode and resize the dataset once; everything stays on `device` during training.
    alt_codes: re-spoken codes [T,W,C] of the same frames (`emotalk.speech.respeak.load_respoken`)."""
    S = int(size or ds.size)
    sc = S / ds.size
    K = ds.K.astype(np.float32).copy()
    K[:2] *= sc
    dev = torch.device(device)

    def t(x, dtype=None):
        return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype).to(dev)

    from emotalk.lips import dataset_lips

    try:
        lips = dataset_lips(ds)[1]
    except EmoTalkError:  # a dataset without mouth blendshapes: only audio-code models train on it
        lips = None

    return TrainData(
        frames=t(resize_frames(ds.frames(), S)), body=t(resize_frames(ds.body(), S)),
        parsing=t(resize_frames(ds.parsing(), S, "nearest")),
        viewmats=t(ds.world_to_cam, torch.float32), K=t(K), audio=t(audio_code, torch.float32),
        upper=t(ds.upper_face, torch.float32), lmk2d=t(ds.lmk2d * sc, torch.float32), size=S,
        train_idx=np.asarray(ds.train_idx), val_idx=np.asarray(ds.val_idx),
        alt_audio=t(np.stack(alt_codes), torch.float32) if alt_codes else None,
        lips=None if lips is None else t(lips, torch.float32))


def frames_at(data: TrainData, idx: Tensor, emotion: Tensor | None = None, audio: Tensor | None = None,
              tracked_lips: bool = True) -> Frames:
    """Conditions and cameras of dataset frames `idx` [B] (emotion: neutral unless given; audio [B,W,C]:
    the frames' own code unless given). tracked_lips: give lip-code models the frames' tracked lip code
    (training); False: they predict it from the audio, as when rendering new speech (held-out scores)."""
    B = len(idx)
    emo = emotion if emotion is not None else data.audio.new_zeros(B, 2)
    aud = audio if audio is not None else data.audio[idx]
    lips = data.lips[idx] if tracked_lips and data.lips is not None else None
    return Frames(data.viewmats[idx], data.K[None].expand(B, 3, 3), aud, data.upper[idx], emo, lips)


def respoken_audio(data: TrainData, idx: Tensor, rng: np.random.Generator, prob: float) -> tuple[Tensor, int]:
    """Audio codes [B,W,C] of frames idx [B], each replaced with probability `prob` by the same frame's
    code in a random re-spoken voice; and how many were replaced."""
    aud = data.audio[idx]
    if data.alt_audio is None or prob <= 0:
        return aud, 0
    swap = rng.random(len(idx)) < prob
    if not swap.any():
        return aud, 0
    voice = torch.as_tensor(rng.integers(0, data.alt_audio.shape[0], int(swap.sum())), device=idx.device)
    sel = torch.as_tensor(np.flatnonzero(swap), device=idx.device)
    aud = aud.clone()
    aud[sel] = data.alt_audio[voice, idx[sel]]
    return aud, int(swap.sum())


def head_size_of(ds) -> float:
    """Size of the head in head-frame units (width of the tracked landmarks)."""
    return float(np.ptp(ds.lmk3d[ds.train_idx[0]][:, 0]))


def render_batch(model: TalkingGaussians, data: TrainData, idx: Tensor, backend: str = "auto",
                  emotion: Tensor | None = None):
    """Render dataset frames idx [B] over their body frames, driven by their audio as new speech would be
    (lip-code models predict the lips from it) -> RenderOut."""
    fr = frames_at(data, idx, emotion, tracked_lips=False)
    body = data.body[idx].float() / 255
    return model.render(fr, data.size, data.size, body, backend=backend)
