"""The audio code that drives the lips: per video frame, a window of speech features around it.

Two kinds (`kind=`):
- "whisper" (default): Whisper tiny.en encoder states, 384-d at 50 Hz, W=16 steps (0.32 s) per frame.
  Audio of any length is cut into 30 s encoder windows (what Whisper was trained on) that overlap by
  `ChunkSettings.overlap_s` and are cross-faded linearly there, so there is no seam at the borders.
- "mel": Whisper's own log-mel front end (80 bands at 100 Hz, W=32 steps, the same 0.32 s): no
  network, cheap, speaker-dependent; useful as a baseline or where the encoder is too slow.
Frame t shows the instant t/fps; its window covers feature steps at t/fps + (i - W/2)/rate for
i = 0..W-1 (ER-NeRF's convention: W/2 steps before, W/2 - 1 after), linearly interpolated when
rate/fps is not an integer. Context before 0 s and after the end is real silence (zero padding).
Note for consumers: Whisper states carry a large, slowly varying context/position offset in a few
channels (the raw cosine of the same words 2 s later in a window is ~0.8); after standardising each
channel the per-frame content agrees (~0.98). Normalise channels (e.g. LayerNorm / dataset statistics)
before using the code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotalk.errors import InputError
from emotalk.media import SR  # sample rate of every speech array in the project


@dataclass(frozen=True)
class CodeKind:
    """What one kind of audio code is made of."""

    name: str  # "whisper" or "mel"
    rate_hz: float  # feature steps per second
    window: int  # W: feature steps per video frame (even)
    channels: int  # C: feature size per step


KINDS: dict[str, CodeKind] = {
    "whisper": CodeKind("whisper", 50.0, 16, 384),
    "mel": CodeKind("mel", 100.0, 32, 80),
}


@dataclass(frozen=True)
class ChunkSettings:
    """How long audio is cut into encoder windows."""

    window_s: float = 30.0  # encoder input per chunk; Whisper is trained on exactly 30 s
    overlap_s: float = 6.0  # neighbouring chunks share this much, cross-faded linearly
    batch: int = 4  # chunks per encoder call (memory vs speed)


DEFAULT_CHUNKS = ChunkSettings()  # Whisper as trained: 30 s windows (use this for anything stored)
FAST_CHUNKS = ChunkSettings(window_s=10.0, overlap_s=2.0)  # ~4x less CPU for short clips; codes differ
# slightly from DEFAULT_CHUNKS (cosine ~0.99), so never mix the two in one identity's training and use

Progress = Callable[[str, float], None]


def code_dims(kind: str = "whisper") -> tuple[int, int]:
    """(W, C) of the audio code of this kind."""
    return (_kind(kind).window, _kind(kind).channels)


def _kind(kind: str) -> CodeKind:
    if kind not in KINDS:
        raise InputError(f"Unknown audio code kind {kind!r}; choose one of: {', '.join(KINDS)}.")
    return KINDS[kind]


def as_mono(wav: np.ndarray, sr: int) -> np.ndarray:
    """A float32 mono copy of `wav` ([N] or [N,C] with C <= 8 channels), checked for sanity."""
    wav = np.asarray(wav)
    if wav.ndim == 2 and min(wav.shape) <= 8:
        wav = wav.mean(axis=1 if wav.shape[1] <= wav.shape[0] else 0)
    if wav.ndim != 1:
        raise InputError(f"Audio must be a 1-D waveform (or [samples, channels]); got shape {wav.shape}.")
    if wav.size == 0:
        raise InputError("The audio is empty (0 samples). Give a recording with speech in it.")
    if not np.issubdtype(wav.dtype, np.number):
        raise InputError(f"Audio samples must be numbers, not {wav.dtype}.")
    if np.issubdtype(wav.dtype, np.integer):
        wav = wav.astype(np.float32) / float(np.iinfo(wav.dtype).max)
    wav = wav.astype(np.float32, copy=False)
    if not np.all(np.isfinite(wav)):
        raise InputError("The audio contains NaN or infinite samples; it is corrupt.")
    if not isinstance(sr, int | np.integer) or sr < 1000:
        raise InputError(f"Sample rate must be an integer >= 1000 Hz, got {sr!r}.")
    return wav


def to_16k(wav: np.ndarray, sr: int) -> np.ndarray:
    """Resample mono float32 audio [N] from `sr` to 16 kHz (soxr, high quality)."""
    if sr != SR:
        import soxr  # only needed for other rates; not installed on the GPU host

        wav = soxr.resample(wav, int(sr), SR, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(wav, dtype=np.float32)


def as_mono_16k(wav: np.ndarray, sr: int) -> np.ndarray:
    """A float32 mono 16 kHz copy of `wav` ([N] or [N,C] with C <= 8 channels), checked for sanity."""
    return to_16k(as_mono(wav, sr), sr)


def _device(device: str):
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InputError(f"Unknown device {device!r}; use 'cpu' or 'cuda'.") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device='cuda' was asked for, but no CUDA GPU is available here; use 'cpu'.")
    return dev


def _chunk_layout(n_mel: int, chunks: ChunkSettings) -> tuple[list[int], int, int]:
    """Start mel frames of the encoder windows covering n_mel frames, window and overlap in mel frames."""
    from emotalk.speech.whisper_encoder import WINDOW_FRAMES

    win = 2 * int(round(chunks.window_s * 50))  # mel frames, even so encoder steps align
    overlap = 2 * int(round(chunks.overlap_s * 50))
    if not 200 <= win <= WINDOW_FRAMES:
        raise InputError(f"window_s must be in [2, 30] s (Whisper's input), got {chunks.window_s}.")
    if not 0 <= overlap <= win // 2:
        raise InputError(f"overlap_s must be in [0, window_s/2], got {chunks.overlap_s}.")
    hop = win - overlap
    n = 1 if n_mel <= win else 1 + math.ceil((n_mel - win) / hop)
    return [k * hop for k in range(n)], win, overlap


def whisper_sequence(audio: np.ndarray, device: str = "cpu", chunks: ChunkSettings = DEFAULT_CHUNKS,
                     model_dir: str | Path | None = None, progress: Progress | None = None) -> np.ndarray:
    """Whisper encoder states of 16 kHz audio [N] -> [S,384] at 50 Hz (step s centred at s/50 s)."""
    import torch

    from emotalk.speech.whisper_encoder import HOP, exact_float32, load_encoder
    from emotalk.speech.whisper_encoder import log_mel as _log_mel

    if model_dir is None:  # $EMOTALK_WHISPER_DIR: an encoder-only copy (GPU hosts; `bench speech --gpudata`)
        import os

        from emotalk import assets

        model_dir = os.environ.get("EMOTALK_WHISPER_DIR") or assets.fetch("whisper-tiny.en")
    dev = _device(device)
    n_mel = len(audio) // HOP
    starts, win, overlap = _chunk_layout(n_mel, chunks)
    steps, ov = win // 2, overlap // 2  # encoder steps per window and per overlap
    total = starts[-1] + win  # mel frames the windows span
    padded = np.zeros(total * HOP, np.float32)  # Whisper pads with zeros, then takes the log-mel
    padded[: len(audio)] = audio[: total * HOP]
    enc = load_encoder(str(model_dir), str(dev))
    out = torch.zeros(total // 2, enc.dim, dtype=torch.float32)  # [S,C]
    with torch.inference_mode(), exact_float32(dev.type == "cuda"):
        mel = _log_mel(torch.from_numpy(padded).to(dev))  # [80,total]
        for b0 in range(0, len(starts), chunks.batch):
            group = starts[b0:b0 + chunks.batch]
            batch = torch.stack([mel[:, s:s + win] for s in group])  # [B,80,win]
            feats = enc(batch).float().cpu()  # [B,win/2,384]
            for j, s in enumerate(group):
                k = b0 + j
                w = torch.ones(steps)
                ramp = (torch.arange(ov, dtype=torch.float32) + 0.5) / max(ov, 1)  # complementary ramps
                if k > 0 and ov:
                    w[:ov] = ramp
                if k < len(starts) - 1 and ov:
                    w[-ov:] = ramp.flip(0)
                out[s // 2: s // 2 + steps] += w[:, None] * feats[j]
            if progress:
                progress("speech features", min(1.0, (b0 + len(group)) / len(starts)))
    return out[: n_mel // 2].numpy()


def mel_sequence(audio: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Whisper-normalised log-mel of 16 kHz audio [N] -> [S,80] at 100 Hz (step s centred at s/100 s)."""
    import torch

    from emotalk.speech.whisper_encoder import exact_float32, log_mel

    dev = _device(device)
    with torch.inference_mode(), exact_float32(dev.type == "cuda"):
        return log_mel(torch.from_numpy(audio).to(dev)).T.cpu().numpy().astype(np.float32)


def frame_windows(seq: np.ndarray, n_frames: int, fps: float, rate_hz: float, window: int,
                  lead_steps: float) -> np.ndarray:
    """Per-frame windows of a feature sequence: seq [S,C] -> [T,W,C].

    Step s of `seq` is centred at time s/rate_hz - lead_steps/rate_hz of the original audio; frame t
    takes steps at t/fps + (i - W/2)/rate_hz, interpolated linearly, clamped to the sequence ends.
    """
    pos = (np.arange(n_frames)[:, None] * (rate_hz / fps) + np.arange(window)[None, :]
           - window // 2 + lead_steps)  # [T,W] fractional step index
    pos = np.clip(pos, 0, len(seq) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(seq) - 1)
    frac = (pos - lo)[..., None].astype(np.float32)
    if not frac.any():
        return np.ascontiguousarray(seq[lo])
    return ((1 - frac) * seq[lo] + frac * seq[hi]).astype(np.float32)


def compute_audio_code(wav: np.ndarray, sr: int = 16000, n_frames: int | None = None, fps: float = 25.0,
                       kind: str = "whisper", device: str = "cpu", *, model_dir: str | Path | None = None,
                       chunks: ChunkSettings = DEFAULT_CHUNKS,
                       progress: Progress | None = None) -> np.ndarray:
    """Audio code [T,W,C] float32 for the video frames of `wav`: T = n_frames (the audio is padded
    with silence, or the code is cut) or round(duration*fps). The window layout: module docstring."""
    k = _kind(kind)
    if not (isinstance(fps, int | float) and math.isfinite(fps) and 1 <= fps <= 240):
        raise InputError(f"fps must be a number in [1, 240], got {fps!r}.")
    audio = as_mono_16k(wav, sr)
    if n_frames is None:
        n_frames = int(round(len(audio) / SR * fps))
    if not isinstance(n_frames, int | np.integer) or n_frames < 1:
        raise InputError(f"The audio code needs at least one video frame; got n_frames={n_frames!r} "
                         f"({len(audio) / SR:.3f} s of audio at {fps} fps).")
    lead = k.window // 2 + 2  # steps of silence before 0 s, so the first frames see real context
    hop_samples = SR / k.rate_hz
    lead_samples = int(round(lead * hop_samples))
    need = int(math.ceil(((n_frames - 1) / fps + (k.window // 2 + 2) / k.rate_hz) * SR))
    padded = np.zeros(lead_samples + max(need, len(audio)), np.float32)  # the whole audio is encoded:
    padded[lead_samples:lead_samples + len(audio)] = audio  # Whisper's attention sees all of it
    if k.name == "whisper":
        seq = whisper_sequence(padded, device, chunks, model_dir, progress)
    else:
        seq = mel_sequence(padded, device)
    return frame_windows(seq, int(n_frames), float(fps), k.rate_hz, k.window, float(lead))
