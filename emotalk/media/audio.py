"""Audio in and out: decode any file's first audio stream to mono float32, write 16-bit WAV atomically."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from emotalk.errors import MediaError
from emotalk.folders import atomic_path
from emotalk.media import ffmpeg
from emotalk.media.probe import probe

SR = 16000  # sample rate of every speech array in the project (datasets, features, sync, Whisper)


def read_audio(path: str | os.PathLike, sr: int = SR) -> np.ndarray:
    """Decode the first audio stream as mono float32 at `sr` Hz: [N] (lossy decodes may exceed ±1)."""
    info = probe(path)
    if not info.has_audio:
        raise MediaError(f"{info.path.name} has no audio track. Use a file with sound "
                         "(for a silent video, provide the speech separately).")
    cmd = [ffmpeg.ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(info.path), "-map", "0:a:0", "-vn",
           "-ac", "1", "-ar", str(sr), "-f", "f32le", "-"]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=ffmpeg.timeout_for(info.duration))
    except subprocess.TimeoutExpired as e:
        raise MediaError(f"Decoding the audio of {info.path.name} took too long; re-encode it.") from e
    wav = np.frombuffer(r.stdout, np.float32).copy()
    if wav.size == 0:
        msg = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no samples"]
        raise MediaError(f"The audio of {info.path.name} could not be decoded ({msg[0]}). "
                         "The file is damaged or truncated: re-export it.")
    return wav


def write_wav(path: str | os.PathLike, wav: np.ndarray, sr: int = SR) -> Path:
    """Write mono float audio as 16-bit PCM WAV, atomically."""
    import wave

    x = np.asarray(wav, np.float32).reshape(-1)
    pcm = (np.clip(x, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with atomic_path(path) as tmp:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(int(sr))
            w.writeframes(pcm.tobytes())
    return Path(path)
