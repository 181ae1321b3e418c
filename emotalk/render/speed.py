"""How long a render will take here, said before it starts (and used to offer a smaller size on a CPU).

The model: wall seconds per second of speech (a part per frame and a part per pixel), measured on the
development machine, idle (2 x86_64 cores, torch's 2 threads, no GPU; the shipped obama,
`speech_obama_5s.wav`, a warm process, 2026-11-27): 3.2 s per second of speech at 256 px, 2.1 at 128 px;
Piper 0.5. A shared CPU is much slower (at load 4 on 2 cores the same 128 px render took 5-57 times as
long), so before any render the load average scales the guess; once a render has finished, the pace it
really had replaces that guess (`observe`), so the next estimate follows this machine as it is now.
GPU: the H100 studio benchmark (BENCHMARKS.md: 10 s of speech rendered at 512 px and encoded in 2.57 s).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class RenderSpeed:
    """Wall seconds per second of speech on an idle machine, by device; CPU: frame + pixel * (size/ref)**2."""

    cpu_frame_s: float = 1.7  # wall seconds per second of speech that do not depend on the size
    cpu_pixel_s: float = 1.5  # wall seconds per second of speech at cpu_ref_size, growing with the area
    cpu_ref_size: int = 256  # side (px) at which cpu_pixel_s was measured
    cpu_fixed_s: float = 1.0  # wall seconds per request: reading the speech, features, encoder, muxing
    tts_s: float = 0.5  # wall seconds per second of speech spoken from typed text (Piper + alignment)
    gpu_s: float = 0.26  # wall seconds per second of speech at gpu_ref_size (render + encode)
    gpu_ref_size: int = 512  # side (px) at which gpu_s was measured
    gpu_fixed_s: float = 3.0  # wall seconds per request on a GPU: features, first frame, muxing
    load_power: float = 2.0  # before any observation: wall grows as (load / cores) ** this
    memory: float = 0.5  # weight of the newest observation against the ones before (0..1]


SPEED = RenderSpeed()
_observed: dict[str, float] = {}  # device -> how much slower than the model renders really ran
_lock = threading.Lock()


def cpu_share() -> float:
    """How much slower than on an idle machine work runs now: >= 1, from the 1-minute load average."""
    cores = max(1, os.cpu_count() or 1)
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this system
        return 1.0
    return max(1.0, load / cores) ** SPEED.load_power


def model_seconds(speech_s: float, size: int, device: str = "cpu", tts: bool = False,
                  speed: RenderSpeed = SPEED) -> float:
    """Wall seconds on an idle machine, from the measured speeds alone."""
    s, speech_s = speed, max(0.0, float(speech_s))
    tts_s = speech_s * s.tts_s if tts else 0.0
    if device == "cuda":
        return s.gpu_fixed_s + speech_s * s.gpu_s * max(1.0, (size / s.gpu_ref_size) ** 2) + tts_s
    per_speech_s = s.cpu_frame_s + s.cpu_pixel_s * (size / s.cpu_ref_size) ** 2
    return s.cpu_fixed_s + speech_s * per_speech_s + tts_s


def estimate(speech_s: float, size: int, device: str = "cpu", tts: bool = False,
             speed: RenderSpeed = SPEED) -> float:
    """Expected wall seconds to render `speech_s` seconds of speech at `size` px on `device` ("cpu" or
    "cuda"); `tts`: the speech is spoken from text first."""
    with _lock:
        slower = _observed.get(device)
    if slower is None:
        slower = cpu_share() if device == "cpu" else 1.0
    return model_seconds(speech_s, size, device, tts, speed) * slower


def observe(speech_s: float, size: int, device: str, wall_s: float, tts: bool = False,
            speed: RenderSpeed = SPEED) -> None:
    """Remember how fast a finished render really ran, for the next estimates on this device."""
    expected = model_seconds(speech_s, size, device, tts, speed)
    if expected <= 0 or wall_s <= 0:
        return
    ratio = min(50.0, max(0.1, wall_s / expected))
    with _lock:
        before = _observed.get(device)
        _observed[device] = ratio if before is None else speed.memory * ratio + (1 - speed.memory) * before


def forget() -> None:
    """Drop what was observed (tests; a machine that changed)."""
    with _lock:
        _observed.clear()

