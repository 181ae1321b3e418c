"""AV-sync check: the cross-correlation finds a known lag, the shift moves audio the right way, and on a
real clip a delay we add ourselves is measured back."""

from __future__ import annotations

import numpy as np
import pytest

from emotalk.avsync import offset as avsync
from emotalk.face.landmarks import mouth_opening
from tests.conftest import shared


def _speechlike(T: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.convolve(rng.random(T) ** 3, np.hanning(5), mode="same")
    return x / x.max()


@pytest.mark.parametrize("lag", [-7, -2, 0, 3, 6])
def test_offset_found_on_synthetic_signals(lag):
    T = 500
    mouth = _speechlike(T)
    env = np.roll(mouth, lag) + 0.05 * np.random.default_rng(1).normal(size=T)
    r = avsync.estimate_offset(mouth, env, max_lag=10)
    assert r.offset_frames == lag
    assert r.confidence > 5 and len(r.corr) == 21


def test_unrelated_signals_are_not_confident():
    r = avsync.estimate_offset(_speechlike(500, 1), _speechlike(500, 2), max_lag=10)
    assert r.confidence < 4


def test_shift_audio_direction_and_length():
    sr, fps = 16000, 25.0
    wav = np.zeros(16000, np.float32)
    wav[6400] = 1.0  # a click at 0.4 s = frame 10
    out = avsync.shift_audio(wav, 3, 20000, sr, fps)  # audio was 3 frames late: move it earlier
    assert len(out) == 20000 and np.argmax(out) == 6400 - 3 * 640
    out = avsync.shift_audio(wav, -2, 8000, sr, fps)
    assert len(out) == 8000 and np.argmax(out) == 6400 + 2 * 640


def test_envelope_and_mouth_shapes():
    wav = np.sin(np.linspace(0, 2000, 16000)).astype(np.float32) * np.repeat([0.0, 1.0], 8000)
    env = avsync.speech_envelope(wav, 25)
    assert env.shape == (25,) and env[:12].max() < env[13:].min()
    lmk = np.zeros((4, 478, 2), np.float32)
    lmk[:, 33, 0], lmk[:, 263, 0] = 0, 100
    lmk[:, 14, 1] = [0, 10, 20, 30]
    assert np.allclose(mouth_opening(lmk), [0, 0.1, 0.2, 0.3])


@pytest.mark.slow
def test_added_delay_is_measured_on_real_clip():
    """Obama address (20 s): measure its offset, then delay its audio by 4 frames and measure again."""
    from emotalk import media
    from emotalk.face import tracking

    clip = shared("clips/obama_address_20s_450px_25fps.mp4")
    raw = tracking.track_video(media.iter_frames(clip, size=(225, 225)), n_frames=500)
    mouth = mouth_opening(tracking.fill_gaps(raw.lmk, raw.found))
    wav = media.read_audio(clip)
    T = len(mouth)
    base = avsync.estimate_offset(mouth, avsync.speech_envelope(wav, T))
    assert base.confidence > 4
    late = np.concatenate([np.zeros(4 * 640, np.float32), wav])
    r = avsync.estimate_offset(mouth, avsync.speech_envelope(late, T))
    assert r.offset_frames == base.offset_frames + 4
