"""One recording's timing mapped onto another's: matched words, a monotone time map through them, and
audio codes sampled through that map.

Words of two alignments of the same text are matched in order (difflib); matched words give time
anchors (word starts and ends, and phone boundaries where both sides have the same phones). The map
from one recording's time to the other's is piecewise linear through the anchors, slope 1 outside them.
A code [T,W,C] on the first recording's frames is sampled from the second's feature sequence at the
mapped times (`sample_code`), so no video is ever warped.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

import numpy as np

from emotalk.media import SR
from emotalk.speech.align import Word
from emotalk.speech.features import KINDS


def _key(word: str) -> str:
    """A word as matched: lower case, letters and digits only."""
    return "".join(c for c in word.lower() if c.isalnum())


def match_words(a: Sequence, b: Sequence) -> list[tuple[int, int]]:
    """Pairs (i, j) of words with the same text, in order (longest matching blocks of difflib)."""
    sm = difflib.SequenceMatcher(a=[_key(w.text) for w in a], b=[_key(w.text) for w in b], autojunk=False)
    return [(blk.a + k, blk.b + k) for blk in sm.get_matching_blocks() for k in range(blk.size)]


def anchors(words_a: Sequence, phones_a: Sequence, words_b: Sequence, phones_b: Sequence,
            pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Time anchors (ta [K] in a, tb [K] in b), strictly increasing in both, from matched words.

    Each matched word gives its start and end; when both sides have the same phone sequence for it,
    the inner phone boundaries too.
    """
    def by_word(phones: Sequence) -> dict[int, list]:
        out: dict[int, list] = {}
        for p in phones:
            if p.word >= 0 and p.phone != "SIL":
                out.setdefault(p.word, []).append(p)
        return out

    pa, pb = by_word(phones_a), by_word(phones_b)
    pts: list[tuple[float, float]] = []
    for i, j in pairs:
        wa, wb = words_a[i], words_b[j]
        pts.append((wa.start, wb.start))
        qa, qb = pa.get(i, []), pb.get(j, [])
        if qa and [p.phone for p in qa] == [p.phone for p in qb]:
            pts += [(x.end, y.end) for x, y in zip(qa[:-1], qb[:-1], strict=True)]
        pts.append((wa.end, wb.end))
    pts.sort()
    ta: list[float] = []
    tb: list[float] = []
    for x, y in pts:  # keep a strictly increasing chain (drop anchors that would fold time back)
        if not ta or (x > ta[-1] + 1e-4 and y > tb[-1] + 1e-4):
            ta.append(x)
            tb.append(y)
    return np.array(ta), np.array(tb)


def time_map(t: np.ndarray, ta: np.ndarray, tb: np.ndarray) -> np.ndarray:
    """Piecewise-linear, monotone map of times t (any shape) through anchors; slope 1 outside them."""
    t = np.asarray(t, np.float64)
    if len(ta) == 0:
        return t.copy()
    if len(ta) == 1:
        return t + (tb[0] - ta[0])
    out = np.interp(t, ta, tb)
    out = np.where(t < ta[0], tb[0] + (t - ta[0]), out)
    return np.where(t > ta[-1], tb[-1] + (t - ta[-1]), out)


def guess_times(words: Sequence, heard: Sequence, duration: float) -> list:
    """`words` (the text to align) with rough times in another recording, from what Whisper `heard` in it:
    matched words take the heard times, the others are interpolated (only used to cut alignment chunks)."""
    pairs = match_words(words, heard)
    if not pairs:
        step = duration / max(len(words), 1)
        return [Word(w.text, i * step, (i + 1) * step) for i, w in enumerate(words)]
    ia = np.array([i for i, _ in pairs], np.float64)
    starts = np.interp(np.arange(len(words)), ia, [heard[j].start for _, j in pairs])
    ends = np.interp(np.arange(len(words)), ia, [heard[j].end for _, j in pairs])
    return [Word(w.text, float(a), float(max(a, b))) for w, a, b in zip(words, starts, ends, strict=True)]


def feature_sequence(wav: np.ndarray, kind: str = "whisper", device: str = "cpu") -> tuple[np.ndarray, float]:
    """Per-step features of 16 kHz speech [S,C] and the time (s) of step 0's centre (negative: the
    silence padded in front, as `compute_audio_code` does, so windows near 0 s see real context)."""
    from emotalk.speech.features import mel_sequence, whisper_sequence

    k = KINDS[kind]
    lead = k.window // 2 + 2
    tail = k.window // 2 + 2
    lead_samples = int(round(lead * SR / k.rate_hz))
    padded = np.concatenate([np.zeros(lead_samples, np.float32), np.asarray(wav, np.float32),
                             np.zeros(int(round(tail * SR / k.rate_hz)), np.float32)])
    seq = whisper_sequence(padded, device) if kind == "whisper" else mel_sequence(padded, device)
    return seq, -lead / k.rate_hz


def sample_code(seq: np.ndarray, t0: float, kind: str, frame_times: np.ndarray,
                warp: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Code [T,W,C] from a feature sequence seq [S,C] (step s centred at t0 + s/rate): frame t's window
    step i reads time warp(frame_times[t] + (i - W/2)/rate), interpolated linearly; times outside the
    sequence read its end steps (padded silence, from `feature_sequence`)."""
    k = KINDS[kind]
    tau = frame_times[:, None] + (np.arange(k.window)[None, :] - k.window // 2) / k.rate_hz  # [T,W]
    if warp is not None:
        tau = warp(tau)
    pos = np.clip((tau - t0) * k.rate_hz, 0, len(seq) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(seq) - 1)
    frac = (pos - lo)[..., None].astype(np.float32)
    return ((1 - frac) * seq[lo] + frac * seq[hi]).astype(np.float32)


def warped_signal(x: np.ndarray, rate_hz: float, times: np.ndarray) -> np.ndarray:
    """Sample a per-step signal x [S] (step s at s/rate_hz) at `times` (s) -> [len(times)]."""
    return np.interp(np.asarray(times) * rate_hz, np.arange(len(x)), x)
