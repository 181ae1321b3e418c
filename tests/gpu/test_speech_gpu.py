"""The audio code is the same on CPU and CUDA (needs only torch + numpy on the GPU host).

Weights: $EMOTALK_WHISPER_DIR, else .gpudata/whisper-tiny.en-encoder (an encoder-only model.bin written
by `python bench/bench_speech.py --gpudata`), else the asset cache. Speech: .gpudata/speech.npy (our own
TTS output) when present, else a synthetic voiced signal.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.gpu


def _weights() -> Path:
    for p in (os.environ.get("EMOTALK_WHISPER_DIR"), REPO / ".gpudata" / "whisper-tiny.en-encoder"):
        if p and (Path(p) / "model.bin").is_file():
            return Path(p)
    from emotalk import assets

    try:
        return assets.path("whisper-tiny.en")
    except Exception as e:
        pytest.skip(f"no Whisper weights here ({e})")


def _speech(seconds: float) -> np.ndarray:
    p = REPO / ".gpudata" / "speech.npy"
    if p.is_file():
        x = np.load(p).astype(np.float32)
    else:
        t = np.arange(int(8 * 16000)) / 16000
        f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
        voiced = np.sin(2 * np.pi * 3 * t) > 0  # syllable-like on/off
        x = (0.3 * np.sin(2 * np.pi * np.cumsum(f0) / 16000) * voiced).astype(np.float32)
    reps = int(np.ceil(seconds * 16000 / len(x)))
    return np.tile(x, reps)[: int(seconds * 16000)]


@pytest.mark.parametrize("kind,seconds", [("whisper", 70.0), ("whisper", 6.0), ("mel", 20.0)])
def test_cpu_and_cuda_codes_agree(kind, seconds):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from emotalk.speech.features import compute_audio_code

    wav = _speech(seconds)
    w = _weights()
    cpu = compute_audio_code(wav, 16000, kind=kind, device="cpu", model_dir=w)
    compute_audio_code(wav[:16000], 16000, kind=kind, device="cuda", model_dir=w)  # warm up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    gpu = compute_audio_code(wav, 16000, kind=kind, device="cuda", model_dir=w)
    dt = time.perf_counter() - t0
    assert gpu.shape == cpu.shape and gpu.dtype == np.float32
    err = np.abs(gpu - cpu)
    cos = (gpu * cpu).sum(-1) / (np.linalg.norm(gpu, axis=-1) * np.linalg.norm(cpu, axis=-1) + 1e-12)
    print(f"\n  {kind} {seconds:.0f} s: max |cpu-gpu| {err.max():.2e}, mean {err.mean():.2e}, "
          f"min cosine {cos.min():.6f}, |code| mean {np.abs(cpu).mean():.3f}; cuda {dt:.3f} s "
          f"= {dt / seconds:.4f}x real time")
    assert err.mean() < 1e-4 and err.max() < 1e-2 and cos.min() > 0.9999


if __name__ == "__main__":  # for a GPU host without pytest
    for args in [("whisper", 70.0), ("whisper", 6.0), ("mel", 20.0)]:
        test_cpu_and_cuda_codes_agree(*args)
    print("ok")
