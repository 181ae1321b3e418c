"""speech_phones' time limit is real: a call that times out returns promptly and its worker thread stops
(it used to go on in the background); in time, the phones come back as before."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np

from emotalk.render import speech_lips


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("emotalk-phones") and t.is_alive()]


def _slow_transcribe(seconds: float):
    """A stand-in for Whisper: one 'segment' every 20 ms for `seconds`, reporting progress as it does."""
    state = {"segments": 0, "finished": False}

    def transcribe(wav, greedy=False, progress=None, **_):
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            time.sleep(0.02)
            state["segments"] += 1
            if progress:
                progress("transcribing", 0.5)
        state["finished"] = True
        word = SimpleNamespace(text="hello", start=0.0, end=0.5, score=0.99)
        return SimpleNamespace(words=[word], repetition=1.0)

    return transcribe, state


def test_timed_out_call_returns_promptly_and_leaves_no_worker(monkeypatch):
    import emotalk.avsync.lipsync as lipsync
    import emotalk.speech.align as align

    transcribe, state = _slow_transcribe(30.0)
    monkeypatch.setattr(align, "transcribe", transcribe)
    aligned = []
    monkeypatch.setattr(lipsync, "align_robust", lambda wav, words: aligned.append(1) or ([], ["x"], []))
    notes: list[str] = []
    before = set(_workers())  # e.g. an uncooperative stand-in of another test, still sleeping
    t0 = time.monotonic()
    out = speech_lips.speech_phones(np.zeros(16000, np.float32), timeout_s=0.3, notes=notes)
    dt = time.monotonic() - t0
    assert out is None and dt < 0.3 + speech_lips.CANCEL_WAIT_S, dt
    assert any("longer than" in n for n in notes), notes
    assert not set(_workers()) - before, "the phone worker still runs after the time limit"
    n = state["segments"]
    time.sleep(0.1)
    assert state["segments"] == n and not state["finished"] and not aligned  # it really stopped


def test_in_time_call_returns_the_phones(monkeypatch):
    import emotalk.avsync.lipsync as lipsync
    import emotalk.speech.align as align

    transcribe, _ = _slow_transcribe(0.05)
    monkeypatch.setattr(align, "transcribe", transcribe)
    monkeypatch.setattr(lipsync, "align_robust", lambda wav, words: ([], ["HH", "AH"], []))
    notes: list[str] = []
    before = set(_workers())
    assert speech_lips.speech_phones(np.zeros(16000, np.float32), timeout_s=5.0, notes=notes) == ["HH", "AH"]
    assert not set(_workers()) - before


def test_a_failure_is_a_note_not_an_error(monkeypatch):
    import emotalk.speech.align as align

    def broken(*a, **k):
        raise RuntimeError("whisper missing")

    monkeypatch.setattr(align, "transcribe", broken)
    notes: list[str] = []
    before = set(_workers())
    assert speech_lips.speech_phones(np.zeros(16000, np.float32), timeout_s=5.0, notes=notes) is None
    assert notes == ["no phone timings: whisper missing"] and not set(_workers()) - before
