"""A long recording cut into pieces at its quietest moments, on video-frame boundaries.

Why: an English upload's phone timings come from a transcript and an alignment. Found for the whole
recording, they held back a stream's first frame for all of its length: 1.8–2.5 s for 30 s on a 2-core CPU,
and more for longer recordings. Piece by piece, the first piece's phones are found in about 0.5 s, and the
next piece's while this one plays.
Cuts fall on the quietest frame of a search window, where the speech is most likely paused. Each piece is
a whole number of video frames long, so no timing drifts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PieceSettings:
    """Where a recording is cut."""

    first_s: float = 4.0  # the first piece is at most this long (the stream waits for its phones)
    max_s: float = 10.0  # later pieces are at most this long
    search: float = 0.4  # each cut is the quietest frame in the last `search` share of its piece
    min_last_s: float = 2.0  # the last piece is at least this long (else it joins the one before)


DEFAULT = PieceSettings()


def frame_energy(wav: np.ndarray, sr: int, fps: float) -> np.ndarray:
    """Log mean square [T] of each video frame's samples (T = round(len / sr * fps))."""
    wav = np.asarray(wav, np.float32)
    T = max(1, int(round(len(wav) / sr * fps)))
    edges = np.minimum(len(wav), np.round(np.arange(T + 1) * sr / fps).astype(np.int64))
    sq = np.concatenate([[0.0], np.cumsum(wav.astype(np.float64) ** 2)])
    n = np.maximum(edges[1:] - edges[:-1], 1)
    return np.log((sq[edges[1:]] - sq[edges[:-1]]) / n + 1e-10)


def piece_bounds(wav: np.ndarray, sr: int = 16000, fps: float = 25.0,
                 settings: PieceSettings = DEFAULT) -> list[tuple[int, int]]:
    """Sample ranges [(start, end)] covering `wav` in order: one range when it is short, else a first
    piece of at most first_s, then pieces of at most max_s, each cut at the quietest frame (energy
    smoothed over 3 frames) of its window."""
    s = settings
    T = max(1, int(round(len(wav) / sr * fps)))
    if T / fps <= s.first_s + s.min_last_s:
        return [(0, len(wav))]
    e = np.convolve(frame_energy(wav, sr, fps), np.ones(3) / 3, mode="same")
    cuts, start, span = [], 0, s.first_s
    while (T - start) / fps > span + s.min_last_s:
        hi = start + int(round(span * fps))
        lo = max(start + 1, hi - max(1, int(round(s.search * span * fps))))
        cut = lo + int(np.argmin(e[lo:hi]))
        cuts.append(cut)
        start, span = cut, s.max_s
    frames = [0, *cuts, T]
    edge = [min(len(wav), int(round(k * sr / fps))) for k in frames]
    edge[-1] = len(wav)
    return list(zip(edge[:-1], edge[1:]))
