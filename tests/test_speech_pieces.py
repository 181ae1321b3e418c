"""Long uploads are cut into pieces at pauses, on frame boundaries (speech.pieces)."""

from __future__ import annotations

import numpy as np

from emotalk.speech.pieces import PieceSettings, frame_energy, piece_bounds

SR, FPS = 16000, 25.0


def _speechlike(seconds: float, gaps: list[float], seed: int = 0) -> np.ndarray:
    """Noise bursts with silent 0.3 s gaps starting at `gaps` (s)."""
    rng = np.random.default_rng(seed)
    wav = (0.2 * rng.standard_normal(int(seconds * SR))).astype(np.float32)
    for g in gaps:
        wav[int(g * SR):int((g + 0.3) * SR)] = 0.0
    return wav


def test_short_speech_stays_whole():
    wav = _speechlike(5.5, [])
    assert piece_bounds(wav, SR, FPS) == [(0, len(wav))]


def test_long_speech_is_cut_in_its_pauses_on_frame_boundaries():
    wav = _speechlike(31.0, gaps=[3.0, 11.5, 19.0, 26.0])
    b = piece_bounds(wav, SR, FPS)
    assert b[0][0] == 0 and b[-1][1] == len(wav)
    assert all(x[1] == y[0] for x, y in zip(b, b[1:]))  # contiguous, in order
    lengths = [(e - s) / SR for s, e in b]
    assert lengths[0] <= 4.0 + 1e-9 and max(lengths[1:-1]) <= 10.0 + 1e-9 and lengths[-1] >= 2.0
    frame = SR / FPS
    for s, _ in b[1:]:
        assert abs(s / frame - round(s / frame)) < 1e-6  # a whole number of frames before each cut
    cuts = [s / SR for s, _ in b[1:]]
    for c, g in zip(cuts, [3.0, 11.5, 19.0]):  # each cut falls inside the pause its window holds
        assert g - 0.05 <= c <= g + 0.35, (c, g)


def test_without_pauses_pieces_still_bound_the_wait_and_a_short_tail_joins():
    wav = _speechlike(15.0, [])
    b = piece_bounds(wav, SR, FPS, PieceSettings(first_s=4.0, max_s=10.0))
    lengths = [(e - s) / SR for s, e in b]
    assert len(b) == 2 and 2.4 <= lengths[0] <= 4.0 and lengths[1] >= 2.0


def test_frame_energy_is_per_video_frame():
    wav = np.zeros(SR, np.float32)
    wav[: SR // 2] = 0.5
    e = frame_energy(wav, SR, FPS)
    assert e.shape == (25,) and e[:12].min() > e[13:].max()
