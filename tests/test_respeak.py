"""Re-spoken audio codes: the time map and code sampler (speech.time_warp), and a real re-speak of a
short clip (training.respeak)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from emotalk.speech import time_warp
from emotalk.speech.align import Phone, Word
from emotalk.training import respeak
from tests.conftest import shared


def test_time_map_passes_through_anchors_and_is_monotone():
    ta, tb = np.array([0.5, 1.0, 2.0]), np.array([0.3, 1.2, 1.6])
    t = np.linspace(-1, 4, 501)
    m = time_warp.time_map(t, ta, tb)
    assert np.allclose(time_warp.time_map(ta, ta, tb), tb)
    assert np.all(np.diff(m) > 0)
    assert time_warp.time_map(np.array([0.0]), ta, tb)[0] == pytest.approx(-0.2)  # slope 1 before
    assert time_warp.time_map(np.array([3.0]), ta, tb)[0] == pytest.approx(2.6)  # and after
    assert np.allclose(time_warp.time_map(t, np.array([]), np.array([])), t)


def test_anchors_from_matched_words_and_phones():
    wa = [Word("hello", 0.1, 0.5), Word("big", 0.6, 0.9), Word("world", 1.0, 1.4)]
    wb = [Word("hello", 0.0, 0.3), Word("world", 0.5, 0.8)]
    names = ("HH", "AH", "L", "OW")
    pa = [Phone(n, 0.1 + 0.1 * i, 0.2 + 0.1 * i, 0) for i, n in enumerate(names)]
    edges = (0.0, 0.05, 0.1, 0.2, 0.3)
    pb = [Phone(n, edges[i], edges[i + 1], 0) for i, n in enumerate(names)]
    pairs = time_warp.match_words(wa, wb)
    assert pairs == [(0, 0), (2, 1)]
    ta, tb = time_warp.anchors(wa, pa, wb, pb, pairs)
    assert np.allclose(ta, [0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 1.4])  # word edges + inner phone boundaries
    assert np.allclose(tb, [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8])


def test_guess_times_interpolates_unheard_words():
    words = [Word(t, 0, 0) for t in ("a", "quick", "brown", "fox")]
    heard = [Word("a", 1.0, 1.2), Word("quack", 1.3, 1.5), Word("fox", 2.0, 2.4)]
    g = time_warp.guess_times(words, heard, 3.0)
    assert (g[0].start, g[3].end) == (1.0, 2.4)
    assert 1.0 < g[1].start < g[2].start < 2.0


def test_unwarped_code_equals_the_projects_audio_code():
    from emotalk.speech.features import compute_audio_code

    rng = np.random.default_rng(1)
    wav = (0.1 * rng.standard_normal(16000 * 2)).astype(np.float32)
    seq, t0 = time_warp.feature_sequence(wav, "mel")
    mine = time_warp.sample_code(seq, t0, "mel", np.arange(50) / 25.0)
    ref = compute_audio_code(wav, 16000, n_frames=50, kind="mel")
    assert mine.shape == ref.shape == (50, 32, 80)
    assert np.abs(mine[:45] - ref[:45]).max() < 1e-3  # the last frames see past the end differently


def test_warp_moves_the_code_by_a_known_delay():
    """A copy of the speech delayed by 0.2 s, mapped with a 0.2 s shift, gives back the original code."""
    rng = np.random.default_rng(2)
    wav = (0.1 * rng.standard_normal(16000 * 3) * np.repeat(rng.random(30), 1600)).astype(np.float32)
    late = np.concatenate([np.zeros(3200, np.float32), wav])
    seq_a, t0a = time_warp.feature_sequence(wav, "mel")
    seq_b, t0b = time_warp.feature_sequence(late, "mel")
    ft = np.arange(10, 60) / 25.0
    a = time_warp.sample_code(seq_a, t0a, "mel", ft)
    b = time_warp.sample_code(seq_b, t0b, "mel", ft, lambda t: t + 0.2)
    b0 = time_warp.sample_code(seq_b, t0b, "mel", ft)
    assert np.abs(a - b).mean() < 0.02 < np.abs(a - b0).mean()


def test_respeak_a_real_clip(tmp_path):
    """A GRID sentence re-spoken by Piper: every word matched, timing error well under the TTS's own,
    the warped speech in sync with the original mouth, codes on the original frames, loadable."""
    from emotalk import media
    from emotalk.avsync import lipsync
    from emotalk.speech.tts_offline import piper_available

    if piper_available():
        pytest.skip(piper_available())
    path = shared("clips/grid/sbwe5n.mpg")
    wav = media.read_audio(path, 16000)
    _, mouth = lipsync.track_mouth(media.iter_frames(path, fps=25.0), 25.0)
    T = len(mouth)
    paths = respeak.respeak(wav, T, 25.0, tmp_path / "respoken", ["piper-joe"], kind="mel", mouth=mouth)
    assert [p.name for p in paths] == ["piper-joe.npz"]
    with np.load(paths[0]) as z:  # the re-spoken feature sequence and the time map's anchors
        assert z["seq"].dtype == np.float16 and z["seq"].shape[1] == 80 and len(z["ta"]) == len(z["tb"]) > 5
    code = respeak.load_respoken(SimpleNamespace(root=tmp_path, n_frames=T, fps=25.0))[0]
    assert code.shape == (T, 32, 80) and np.isfinite(code).all()
    q = json.loads((tmp_path / "respoken" / "index.json").read_text())["voices"][0]
    assert q["matched"] == q["words"] >= 5
    assert q["mean_abs_error_s"] < 0.12 and q["mean_abs_error_s"] < 0.5 * q["mean_abs_error_unwarped_s"]
    assert q["code_cosine"] > q["code_cosine_unwarped"]
    assert abs(q["peak_lag_model"]) <= 1 and q["corr0_model"] > 0.2  # the warped speech is in sync
    ds = SimpleNamespace(root=tmp_path, n_frames=T, fps=25.0)
    got = respeak.load_respoken(ds)
    assert len(got) == 1 and got[0].dtype == np.float32 and got[0].shape == code.shape
    assert respeak.load_respoken(ds, kind="whisper") == []


@pytest.mark.parametrize("clip", ["macron_address_50s_512px_30fps.mp4", "german_anchor_20s_512px_25fps.mp4"])
def test_non_english_speech_is_refused(clip):
    """Re-speaking French or German with English voices would teach nonsense: refused with a reason, every
    time (the check decodes greedily; a sampled decoding once let the French clip through)."""
    from emotalk import media
    from emotalk.errors import MediaError

    wav = media.read_audio(shared(f"clips/{clip}"), 16000)[: 16000 * 15]
    with pytest.raises(MediaError, match="English"):
        respeak.analyse_original(wav, 375, 25.0, "mel")
