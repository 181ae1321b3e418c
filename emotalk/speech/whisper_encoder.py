"""Whisper front end (log-mel) and the Whisper-tiny audio encoder in plain PyTorch.

One implementation for CPU and CUDA (no ctranslate2 needed on the GPU host), with weights read from
the registry's CTranslate2 folder. ctranslate2's own `Whisper.encode` is the reference it is tested
against (tests/test_speech_features.py).
"""

from __future__ import annotations

import contextlib
import functools
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emotalk.media import SR  # Whisper's sample rate (16 kHz), the project's
from emotalk.speech.ct2_weights import read_ct2_variables

N_FFT = 400  # 25 ms analysis window
HOP = 160  # 10 ms: mel frames at 100 Hz
N_MELS = 80  # mel channels of Whisper tiny
WINDOW_FRAMES = 3000  # mel frames the encoder takes (30 s)
WINDOW_STEPS = 1500  # encoder output steps per window (50 Hz)


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa's default)."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    lin = m * (200.0 / 3)
    log = 1000.0 * np.exp((m - 15.0) * (math.log(6.4) / 27.0))
    return np.where(m >= 15.0, log, lin)


def mel_filters(sr: int = SR, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Slaney-normalised triangular mel filterbank, [n_mels, n_fft//2+1] float32 (as Whisper uses)."""
    fft_hz = np.linspace(0.0, sr / 2, 1 + n_fft // 2)  # [F]
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2), n_mels + 2))  # [M+2]
    fdiff = np.diff(mel_hz)  # [M+1]
    ramps = mel_hz[:, None] - fft_hz[None, :]  # [M+2,F]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))  # [M,F]
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights.astype(np.float32)


def log_mel(audio: torch.Tensor) -> torch.Tensor:
    """Whisper log-mel of 16 kHz audio [N] -> [80, N//160], clamped to 8 (log10) below its maximum."""
    window = torch.hann_window(N_FFT, device=audio.device, dtype=torch.float32)
    spec = torch.stft(audio.float(), N_FFT, HOP, window=window, center=True, pad_mode="reflect",
                      return_complex=True)  # [F, N//160+1]
    power = spec[:, :-1].abs() ** 2  # [F, Tm]
    filt = torch.from_numpy(mel_filters()).to(audio.device)  # [80,F]
    mel = (filt @ power).clamp(min=1e-10).log10()  # [80,Tm]
    mel = torch.maximum(mel, mel.max() - 8.0)
    return (mel + 4.0) / 4.0


class WhisperEncoder(torch.nn.Module):
    """Whisper audio encoder: 2 convs (GELU, the second with stride 2), sinusoidal positions,
    pre-LN transformer blocks, final LayerNorm. Input mel [B,80,3000] -> [B,1500,384]."""

    def __init__(self, weights: dict[str, np.ndarray]):
        super().__init__()
        w = {k.removeprefix("encoder/"): torch.from_numpy(v.astype(np.float32)) for k, v in weights.items()
             if v.dtype.kind == "f"}
        self.n_heads = int(weights["encoder/num_heads"])
        self.n_layers = sum(1 for k in w if k.endswith("self_attention/linear_0/weight"))
        for k, v in w.items():
            self.register_buffer(k.replace("/", "__"), v, persistent=False)

    @property
    def dim(self) -> int:
        """Width of the encoder states (384 for tiny)."""
        return int(self._p("layer_norm/gamma").shape[0])

    def _p(self, name: str) -> torch.Tensor:
        return getattr(self, name.replace("/", "__"))

    def _ln(self, x: torch.Tensor, scope: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self._p(f"{scope}/gamma"), self._p(f"{scope}/beta"), 1e-5)

    def _linear(self, x: torch.Tensor, scope: str) -> torch.Tensor:
        return F.linear(x, self._p(f"{scope}/weight"), self._p(f"{scope}/bias"))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel [B,80,Tm] (Tm even, <= 3000) -> features [B,Tm/2,384]."""
        x = F.gelu(F.conv1d(mel, self._p("conv1/weight"), self._p("conv1/bias"), padding=1))
        x = F.gelu(F.conv1d(x, self._p("conv2/weight"), self._p("conv2/bias"), stride=2, padding=1))
        x = x.transpose(1, 2)  # [B,T,D]
        x = x + self._p("position_encodings/encodings")[: x.shape[1]]
        b, t, d = x.shape
        h = self.n_heads
        for i in range(self.n_layers):
            s = f"layer_{i}"
            y = self._linear(self._ln(x, f"{s}/self_attention/layer_norm"), f"{s}/self_attention/linear_0")
            q, k, v = y.view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)  # each [B,H,T,Dh]
            a = F.scaled_dot_product_attention(q, k, v)  # [B,H,T,Dh]
            x = x + self._linear(a.transpose(1, 2).reshape(b, t, d), f"{s}/self_attention/linear_1")
            y = F.gelu(self._linear(self._ln(x, f"{s}/ffn/layer_norm"), f"{s}/ffn/linear_0"))
            x = x + self._linear(y, f"{s}/ffn/linear_1")
        return self._ln(x, "layer_norm")


@functools.lru_cache(maxsize=4)
def load_encoder(model_dir: str, device: str = "cpu") -> WhisperEncoder:
    """The encoder of a CTranslate2 Whisper folder, on `device`, in eval mode (cached per process)."""
    weights = read_ct2_variables(Path(model_dir) / "model.bin", prefix="encoder/")
    return WhisperEncoder(weights).to(device).eval()


@contextlib.contextmanager
def exact_float32(enabled: bool = True):
    """Full float32 matmuls and convolutions (no TF32) so CUDA matches CPU; restores the settings.
    These are process-wide switches: only turn them on for CUDA work (CPU never uses TF32)."""
    if not enabled:
        yield
        return
    prec = torch.get_float32_matmul_precision()
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(prec)
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
