"""Lip-sync metrics: unit checks on synthetic signals, then real clips (shift test, known offsets)."""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pytest

from emotalk.avsync import lipsync
from emotalk.speech.align import Phone
from tests.conftest import shared


def _shift(wav: np.ndarray, k: int, fps: float = 25.0) -> np.ndarray:
    """Audio k frames later (k > 0) or earlier (k < 0), same length."""
    s = int(round(k * 16000 / fps))
    if s > 0:
        return np.concatenate([np.zeros(s, wav.dtype), wav[:-s]])
    return np.concatenate([wav[-s:], np.zeros(-s, wav.dtype)]) if s < 0 else wav


def test_lag_correlation_finds_a_known_lag():
    rng = np.random.default_rng(0)
    x = np.convolve(rng.standard_normal(300), np.ones(5) / 5, mode="same")
    for lag in (-4, 0, 3):
        y = np.roll(x, lag)  # the "speech" comes `lag` frames later
        c = lipsync.lag_correlation(x, y, 10)
        assert int(np.argmax(c)) - 10 == lag


def test_expected_opening_and_phone_contrast():
    phones = [Phone("SIL", 0.0, 0.2), Phone("M", 0.2, 0.36), Phone("AA", 0.36, 0.6), Phone("P", 0.6, 0.72),
              Phone("IY", 0.72, 0.96), Phone("SIL", 0.96, 1.2)]
    e = lipsync.expected_opening(phones, 30, 25.0, smooth_s=0.0)
    assert e[12] == 1.0 and e[6] == 0.0 and e[20] == 0.7  # AA wide, M closed, IY open
    mouth = np.where(e > 0.5, 0.4, 0.02)
    pc = lipsync.phone_contrast(mouth, phones, 25.0)
    assert pc.n_open == 12 and pc.n_closed == 7
    assert pc.ratio == pytest.approx(20.0)
    # with the audio 5 frames late the vowels fall on other frames and the contrast collapses
    assert lipsync.phone_contrast(mouth, phones, 25.0, offset=5).ratio < 0.5 * pc.ratio


@lru_cache(maxsize=4)
def _clip(rel: str):
    from emotalk import media

    path = shared(f"clips/{rel}")
    _, mouth = lipsync.track_mouth(media.iter_frames(path, fps=25.0), 25.0)
    wav = media.read_audio(path, 16000)
    phones, _, _ = lipsync.phones_for(wav)
    return mouth, wav, phones


@pytest.mark.parametrize("rel", ["grid/sbwe5n.mpg", "grid/lbax4n.mpg"])
def test_clean_clip_peaks_at_zero_with_a_clear_peak(rel):
    mouth, wav, phones = _clip(rel)
    est = lipsync.estimate_sync(mouth, wav, phones)
    assert abs(est.offset) <= 1, est
    assert est.clear and est.confidence > 0.3, est


@pytest.mark.parametrize("k", [-6, -4, -2, 2, 4, 6])
def test_shifting_the_audio_moves_the_offset(k):
    mouth, wav, phones = _clip("grid/sbwe5n.mpg")
    base = lipsync.estimate_sync(mouth, wav, phones).offset
    moved = [Phone(p.phone, p.start + k / 25.0, p.end + k / 25.0, p.word) for p in phones]
    est = lipsync.estimate_sync(mouth, _shift(wav, k), moved)
    assert abs(est.offset - (base + k)) <= 1, (k, base, est.offset)


def test_out_of_sync_source_is_found():
    """The shared Obama address excerpt has its audio ~6 frames (240 ms) late: measured, not assumed 0."""
    from emotalk import media

    path = shared("clips/obama_address_20s_450px_25fps.mp4")
    _, mouth = lipsync.track_mouth(media.iter_frames(path, fps=25.0, size=(226, 226)), 25.0)
    est = lipsync.estimate_sync(mouth, media.read_audio(path, 16000), None)
    assert 4 <= est.offset <= 7 and est.clear, est


def test_report_of_a_real_clip_has_phone_contrast():
    mouth, wav, phones = _clip("grid/sbwe5n.mpg")
    rep = lipsync.measure(mouth, wav, "sbwe5n", phones)
    assert rep.contrast is not None and rep.contrast.n_closed > 0
    assert rep.contrast.ratio > 2.0, rep.contrast
    d = rep.to_dict()
    assert d["sync"]["offset"] == rep.sync.offset and len(d["sync"]["corr"]) == 21


def test_cli_measures_a_clip(tmp_path, capsys):
    from emotalk.cli.sync import main

    path = shared("clips/grid/lbax4n.mpg")
    assert main([str(path), "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "AV offset:" in out and "phone contrast:" in out
    d = json.loads((tmp_path / "s.json").read_text())
    assert abs(d["sync"]["offset"]) <= 1 and d["contrast"]["n_open"] > 0


def test_no_face_gives_no_clear_sync():
    rng = np.random.default_rng(3)
    wav = (0.1 * rng.standard_normal(16000 * 4)).astype(np.float32)
    rep = lipsync.measure(np.full(100, np.nan), wav, "blank", None, found=0.0)
    assert not rep.sync.clear and "not meaningful" in rep.notes[-1]


def test_shipped_sync_model_loads():
    from emotalk.avsync import syncnet

    m = syncnet.load()
    assert m.weight.shape == m.mean.shape == (40 * 11,)
    assert len(m.info["clips"]) >= 10 and "obama_address_20s_450px_25fps" in m.info["out_of_sync"]
