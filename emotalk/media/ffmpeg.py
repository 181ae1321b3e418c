"""The ffmpeg binary (imageio-ffmpeg's own) and the bounds every call to it runs under.

Read the limits as `ffmpeg.LIMITS` at call time (tests swap the object).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from emotalk.errors import MediaError


@dataclass(frozen=True)
class MediaLimits:
    """Bounds on what we agree to decode."""

    max_bytes: int = 2 * 1024**3  # larger files are refused before decoding
    max_seconds: float = 15 * 60.0  # longer media is refused
    probe_timeout_s: float = 30.0  # ffmpeg -i on a sane file takes well under a second
    min_timeout_s: float = 60.0  # a decode/encode may always take this long
    timeout_per_media_s: float = 8.0  # ...plus this many seconds per second of media
    stall_timeout_s: float = 30.0  # a streamed decode that yields no frame for this long is killed


LIMITS = MediaLimits()


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary; MediaError when there is none (imageio-ffmpeg missing or binary-less)."""
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise MediaError("imageio-ffmpeg is not installed: run pip install -r requirements.txt") from e
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as e:
        raise MediaError(f"No ffmpeg binary found ({e}). Reinstall imageio-ffmpeg, or set IMAGEIO_FFMPEG_EXE "
                         "to an ffmpeg executable.") from e


def ffmpeg_status() -> tuple[bool, str]:
    """(available, the binary's path or why there is none): for reports and fallbacks."""
    try:
        return True, ffmpeg_exe()
    except MediaError as e:
        return False, str(e)


def timeout_for(duration: float) -> float:
    """Seconds a whole decode or encode of `duration` seconds of media may take."""
    return LIMITS.min_timeout_s + LIMITS.timeout_per_media_s * max(duration, 0.0)


def run(cmd: list[str], duration: float, slow: str, failed: str, tail: int = 300) -> None:
    """Run an ffmpeg command within `timeout_for(duration)`; a timeout or a failure is a MediaError that
    starts with `slow` or `failed` (the user's words) and ends with the end of ffmpeg's own message."""
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=timeout_for(duration))
    except subprocess.TimeoutExpired as e:
        raise MediaError(slow) from e
    if r.returncode != 0:
        raise MediaError(f"{failed}: {r.stderr.decode(errors='replace').strip()[-tail:]}")


def check_file(path: str | os.PathLike) -> Path:
    """The path, if it names a non-empty file within the size limit; MediaError otherwise."""
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p} does not exist. Check the path.")
    if not p.is_file():
        raise MediaError(f"{p} is not a file.")
    size = p.stat().st_size
    if size == 0:
        raise MediaError(f"{p.name} is empty (0 bytes). Upload the file again.")
    if size > LIMITS.max_bytes:
        raise MediaError(f"{p.name} is {size / 1e9:.1f} GB; the limit is {LIMITS.max_bytes / 1e9:.1f} GB. "
                         "Trim or re-encode it smaller.")
    return p
