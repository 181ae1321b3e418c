"""Offline voices, each run as a separate process (both are GPL-3; we never import them):
Piper `en_US-joe-medium` (neural, `python -m piper` from piper-tts; one long-lived process per rate
that loads the voice once, see piper_process.py) and espeak-ng (formant synthesis, Debian package, a
process per text). Both write a WAV that is read back and resampled to 16 kHz."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from emotalk.speech.piper_process import EngineUnavailable, process_for

__all__ = ["EngineUnavailable", "espeak_available", "piper_available", "piper_command", "prestart_piper",
           "speak_espeak", "speak_piper"]


def _timeout_s(text: str) -> float:
    return 60.0 + 0.3 * len(text)  # process start + generous synthesis time on a slow CPU


def _run(cmd: list[str], text: str, out: Path, engine: str) -> np.ndarray:
    try:
        proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, timeout=_timeout_s(text))
    except subprocess.TimeoutExpired as e:
        raise EngineUnavailable(f"{engine} took longer than {_timeout_s(text):.0f} s") from e
    except OSError as e:
        raise EngineUnavailable(f"{engine} could not start ({e})") from e
    if proc.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise EngineUnavailable(f"{engine} failed (exit {proc.returncode}: {tail[0]})")
    from emotalk.media import read_audio

    return read_audio(out, 16000)


def piper_available() -> str | None:
    """None when Piper can run here, else why not."""
    if importlib.util.find_spec("piper") is None:
        return "piper-tts is not installed (pip install piper-tts)"
    return None


def piper_command(rate: float = 0.0, sentence_pause_s: float = 0.25) -> list[str]:
    """The Piper command line (without its output folder) for the en_US-joe-medium voice at `rate` %."""
    from emotalk import assets
    from emotalk.errors import AssetError

    try:
        voice = assets.fetch("piper-en_US-joe-medium")
    except AssetError as e:
        raise EngineUnavailable(f"the Piper voice is missing ({e})") from e
    return [sys.executable, "-m", "piper", "-m", str(voice / "en_US-joe-medium.onnx"),
            "-c", str(voice / "en_US-joe-medium.onnx.json"),
            "--length-scale", f"{1.0 / max(0.3, 1.0 + rate / 100.0):.3f}",
            "--sentence-silence", f"{sentence_pause_s:.2f}"]


def speak_piper(text: str, rate: float = 0.0, sentence_pause_s: float = 0.25) -> np.ndarray:
    """English speech from Piper's en_US-joe-medium voice: [N] float32 16 kHz. `rate` in percent.
    The text is spoken as one line by the kept Piper process for this rate (started on first use)."""
    why = piper_available()
    if why:
        raise EngineUnavailable(why)
    return process_for(piper_command(rate, sentence_pause_s)).speak(text)


def prestart_piper(rate: float = 0.0) -> str | None:
    """Start the kept Piper process for `rate` now (it loads the voice in the background), so the first
    request's first sentence does not wait for the load; returns why not when Piper cannot run here."""
    why = piper_available()
    if why:
        return why
    try:
        process_for(piper_command(rate)).start()
    except EngineUnavailable as e:
        return str(e)
    return None


def espeak_available() -> str | None:
    if shutil.which("espeak-ng") is None:
        return "espeak-ng is not installed (apt-get install espeak-ng)"
    return None


def speak_espeak(text: str, rate: float = 0.0, pitch: float = 0.0, voice: str = "en-us") -> np.ndarray:
    """English speech from espeak-ng: [N] float32 16 kHz. `rate` in percent, `pitch` in Hz (approx.)."""
    why = espeak_available()
    if why:
        raise EngineUnavailable(why)
    wpm = int(round(175 * max(0.3, 1.0 + rate / 100.0)))
    pitch_arg = int(np.clip(50 + pitch / 2.0, 0, 99))  # espeak's 0..99 scale, ~2 Hz per step
    with tempfile.TemporaryDirectory(prefix="emotalk-espeak-") as tmp:
        out = Path(tmp) / "speech.wav"
        cmd = ["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch_arg), "-b", "1", "-w", str(out),
               "--stdin"]
        return _run(cmd, text, out, "espeak-ng")
