"""Lip-sync self-supervision: perturbed voices of the recording, their compact storage, and training
with re-spoken codes mixed in."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from emotalk.training import respeak
from emotalk.training.data import load_train_data, respoken_audio
from emotalk.training.loop import train
from emotalk.training.settings import PRESETS, RespeakSettings


def _speechlike(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Syllable-rate modulated harmonic noise: has pitch, formant-ish colour and an envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    voiced = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / sr) / k for k in range(1, 12))
    env = np.clip(np.sin(2 * np.pi * 3.3 * t + rng.uniform(0, 6)), 0, None) ** 2
    return (0.3 * env * (voiced + 0.1 * rng.standard_normal(len(t)))).astype(np.float32)


def test_perturbed_voice_keeps_timing_and_changes_the_voice():
    """Tone up: shorter-period pitch, same duration; tempo change: duration scales exactly."""
    wav = _speechlike(3.0)
    up = respeak.perturb(wav, respeak.VOICES["orig-tone125"])
    assert abs(len(up) - len(wav)) < 0.02 * len(wav)
    fast = respeak.perturb(wav, respeak.VOICES["orig-tone080-fast"])
    assert len(fast) == pytest.approx(len(wav) / 1.15, rel=0.02)

    def f0(x):  # strongest spectral line below 400 Hz
        spec = np.abs(np.fft.rfft(x[:16000] * np.hanning(16000)))
        return np.argmax(spec[60:400]) + 60

    assert f0(up) == pytest.approx(1.25 * f0(wav), rel=0.08)
    with pytest.raises(Exception, match="outside"):
        respeak.perturb(wav, respeak.Voice("bad", "perturb", tone=3.0))


def test_perturbed_respeak_stores_compactly_and_loads_the_same_code(tmp_path):
    """Any-language path: no transcript needed; the stored sequence + time map give back the code that
    was measured, and the warped code lines up with the original better than the unwarped one."""
    wav = _speechlike(4.0, seed=1)
    T, fps = 100, 25.0
    voices = ["orig-tone080-fast", "orig-tone125"]
    paths = respeak.respeak(wav, T, fps, tmp_path / "respoken", voices, kind="mel")
    assert sorted(p.name for p in paths) == sorted(f"{v}.npz" for v in voices)
    index = json.loads((tmp_path / "respoken" / "index.json").read_text())
    assert index["text"] == "" and not index["skipped"]
    q = {v["voice"]: v for v in index["voices"]}
    fast = q["orig-tone080-fast"]
    assert fast["code_cosine"] > fast["code_cosine_unwarped"]  # the exact time map helps
    ds = type("DS", (), {"root": tmp_path, "n_frames": T, "fps": fps})()
    codes = respeak.load_respoken(ds, kind="mel")
    assert len(codes) == 2 and all(c.shape == (T, 32, 80) and c.dtype == np.float32 for c in codes)
    orig = respeak.plain_original(wav, T, fps, "mel")
    again, _, _, _ = respeak.respeak_voice(orig, respeak.VOICES["orig-tone080-fast"], "mel")
    assert np.allclose(codes[0], again, atol=2e-2)  # index order = the order asked for
    assert respeak.load_respoken(ds, kind="whisper") == []


def test_tts_voices_are_skipped_with_a_reason_for_speech_that_is_not_english(tmp_path):
    """No words to re-speak: the TTS voices are recorded as skipped, the perturbed ones are still made."""
    wav = _speechlike(3.0, seed=2)  # not speech Whisper can transcribe
    paths = respeak.respeak(wav, 75, 25.0, tmp_path, ["espeak-en-us", "orig-tone125"], kind="mel")
    assert [p.name for p in paths] == ["orig-tone125.npz"]
    skipped = json.loads((tmp_path / "index.json").read_text())["skipped"]
    assert "English" in skipped["espeak-en-us"]


def test_respoken_audio_replaces_the_requested_share():
    T, W, C = 20, 4, 3
    data = type("D", (), {})()
    data.audio = torch.zeros(T, W, C)
    data.alt_audio = torch.stack([torch.full((T, W, C), v + 1.0) for v in range(3)])
    idx = torch.arange(8)
    rng = np.random.default_rng(0)
    a, n = respoken_audio(data, idx, rng, 0.0)
    assert n == 0 and (a == 0).all()
    a, n = respoken_audio(data, idx, rng, 1.0)
    assert n == 8 and (a[:, 0, 0] >= 1).all() and (data.audio == 0).all()  # the dataset's code untouched
    data.alt_audio = None
    a, n = respoken_audio(data, idx, rng, 1.0)
    assert n == 0


def test_training_mixes_in_respoken_codes(may_dataset_64, tmp_path):
    """A real (tiny) dataset with perturbed voices of its own recording: training uses them and says so."""
    from emotalk.dataset.format import load_dataset

    root = tmp_path / "ds"
    shutil.copytree(may_dataset_64.root, root)
    ds = load_dataset(root)
    respeak.respeak(ds.audio(), ds.n_frames, ds.fps, root / "respoken", ["orig-tone125"], kind="mel")
    s = replace(PRESETS["test"], steps=12, size=32, audio_kind="mel", checkpoint_every=100,
                respeak=RespeakSettings(prob=0.5, start=0.0))
    _, summary = train(ds, s, tmp_path / "work")
    assert summary["respoken_voices"] == 1 and 0 < summary["respoken_frames"] < 12 * s.batch
    data = load_train_data(ds, 32, np.zeros((ds.n_frames, 32, 80), np.float32), "cpu",
                           respeak.load_respoken(ds, kind="mel"))
    assert tuple(data.alt_audio.shape) == (1, ds.n_frames, 32, 80)
    _, off = train(ds, replace(s, respeak=replace(s.respeak, prob=0.0)), tmp_path / "work-off")
    assert off["respoken_voices"] == 0 and off["respoken_frames"] == 0
