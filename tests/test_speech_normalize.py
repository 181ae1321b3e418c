"""Speech normalisation: loudness (BS.1770), mono/16 kHz, DC, trimming, and refusals of bad audio."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from emotalk.errors import InputError, MediaError
from emotalk.speech.normalize import (
    ClippingWarning,
    SpeechSettings,
    _k_weight,
    load_speech,
    loudness_lufs,
    normalize_speech,
    trim_silence,
)
from tests.conftest import shared

SR = 16000


def _voice(seconds: float = 2.0, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    """A speech-like test signal: a 140 Hz buzz with harmonics, amplitude-modulated at 4 Hz."""
    t = np.arange(int(seconds * sr)) / sr
    buzz = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 12))
    return (amp * buzz / 2.5 * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def test_k_weighting_matches_bs1770_at_48k():
    """Impulse response of our K-weighting == the standard's published 48 kHz biquads."""
    from scipy.signal import lfilter

    imp = np.zeros(256)
    imp[0] = 1
    ref = lfilter([1.53512485958697, -2.69169618940638, 1.19839281085285],
                  [1.0, -1.69065929318241, 0.73248077421585], imp)
    ref = lfilter([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621], ref)
    assert np.abs(_k_weight(imp, 48000) - ref).max() < 1e-6


def test_loudness_of_a_full_scale_sine():
    t = np.arange(3 * 48000) / 48000
    assert loudness_lufs(np.sin(2 * np.pi * 997 * t), 48000) == pytest.approx(-3.01, abs=0.05)
    assert loudness_lufs(np.zeros(SR), SR) == -math.inf


def test_normalises_level_dc_rate_and_channels():
    x = _voice(2.0, 44100, amp=0.05) + 0.2  # quiet, with a DC offset, 44.1 kHz
    stereo = np.stack([x, 0.5 * x], 1)  # [N,2]
    y = normalize_speech(stereo, 44100)
    assert y.dtype == np.float32 and y.ndim == 1 and len(y) == pytest.approx(2 * SR, abs=2)
    assert abs(float(y.mean())) < 1e-3
    assert loudness_lufs(y) == pytest.approx(SpeechSettings().target_lufs, abs=0.5)
    assert np.abs(y).max() <= SpeechSettings().peak_ceiling + 1e-6


def test_peak_ceiling_wins_over_loudness():
    x = np.zeros(2 * SR, np.float32)
    x[SR:SR + 20] = 0.5  # a click in silence would need a huge gain to reach the target loudness
    x += _voice(2.0, amp=0.01)
    y = normalize_speech(x, SR, SpeechSettings(target_lufs=-5.0))
    assert np.abs(y).max() <= 0.98 + 1e-6


def test_trim_silence_keeps_a_margin():
    x = np.concatenate([np.zeros(SR), _voice(1.0), np.zeros(2 * SR)]).astype(np.float32)
    y = trim_silence(x, SR, margin_s=0.1)
    assert len(y) == pytest.approx(1.2 * SR, abs=0.05 * SR)
    z = normalize_speech(x, SR, SpeechSettings(trim_silence=True))
    assert 1.0 * SR < len(z) < 1.4 * SR  # 1 s of sound and 0.15 s margins


def test_refuses_silence_short_long_and_wrong_types():
    with pytest.raises(MediaError, match="silent"):
        normalize_speech(np.zeros(SR, np.float32))
    with pytest.raises(MediaError, match="silent"):
        normalize_speech(_voice(1.0, amp=1e-4))  # -80 dBFS hum
    with pytest.raises(MediaError, match="at least 0.3 s"):
        normalize_speech(_voice(0.2))
    with pytest.raises(MediaError, match="limit"):
        normalize_speech(_voice(3.0), settings=SpeechSettings(max_seconds=2.0))
    with pytest.raises(MediaError, match="after trimming"):
        normalize_speech(np.concatenate([np.zeros(SR), _voice(0.1), np.zeros(SR)]),
                         settings=SpeechSettings(trim_silence=True, trim_margin_s=0.0))
    with pytest.raises(InputError):
        load_speech(42)
    with pytest.raises(InputError, match="empty"):
        load_speech(np.zeros(0, np.float32))


def test_clipping_warns_by_default_and_can_refuse():
    x = np.clip(_voice(1.0, amp=3.0), -1, 1)
    with pytest.warns(ClippingWarning, match="clipped"):
        normalize_speech(x)
    with pytest.raises(MediaError, match="clipped"):
        normalize_speech(x, settings=SpeechSettings(on_clipping="error"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        normalize_speech(_voice(1.0, amp=0.9))  # loud but not clipped: no warning


def test_files_missing_corrupt_and_silent(tmp_path):
    with pytest.raises(MediaError):
        load_speech(tmp_path / "nope.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 10)
    with pytest.raises(MediaError):
        load_speech(bad)
    from emotalk.media import write_wav

    write_wav(tmp_path / "silence.wav", np.zeros(SR, np.float32))
    with pytest.raises(MediaError, match="silent"):
        load_speech(tmp_path / "silence.wav")


@pytest.mark.parametrize("rel", ["clips/may_5s_512px_25fps.mp4", "clips/grid/bbaf2n.mpg"])
def test_speech_from_video_files(rel):
    y = load_speech(shared(rel))
    assert y.dtype == np.float32 and y.ndim == 1 and len(y) > SR
    assert loudness_lufs(y) == pytest.approx(-20.0, abs=0.7)


@pytest.mark.parametrize("name", ["speech_hallo_7s.wav", "speech_macron_12s.wav", "speech_hdtf_radio_8s.wav"])
def test_shared_files(name):
    """44.1/48 kHz and stereo files come out as 16 kHz mono at the target loudness."""
    import soundfile as sf

    path = shared(f"audio/{name}")
    info = sf.info(str(path))
    y = load_speech(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) / SR == pytest.approx(info.duration, abs=0.01)
    assert loudness_lufs(y) == pytest.approx(-20.0, abs=0.7)
