"""What a media file holds (streams, size, rate, rotation), read from `ffmpeg -i` (no ffprobe needed)."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from emotalk.errors import MediaError
from emotalk.media import ffmpeg

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m4v")
AUDIO_EXTS = (".wav", ".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".flac")


@dataclass(frozen=True)
class MediaInfo:
    """What ffmpeg says a file holds (sizes after rotation metadata is applied)."""

    path: Path
    duration: float  # seconds (0 when unknown)
    has_video: bool
    has_audio: bool
    width: int = 0  # displayed width, after rotation
    height: int = 0  # displayed height, after rotation
    fps: float = 0.0  # nominal frame rate of the video stream
    rotation: int = 0  # degrees from the display matrix (0, 90, 180, 270)
    video_codec: str = ""
    audio_codec: str = ""
    audio_rate: int = 0
    audio_channels: int = 0


_DUR = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VID = re.compile(r"Stream #\S+.*?: Video: (\w+).*?, (\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"(\d+(?:\.\d+)?) fps")
_TBR = re.compile(r"(\d+(?:\.\d+)?) tbr")
_AUD = re.compile(r"Stream #\S+.*?: Audio: (\w+).*?, (\d+) Hz, ([^,]+)")
_ROT = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees|rotate\s*:\s*(-?\d+)")


def probe(path: str | os.PathLike, max_seconds: float | None = None) -> MediaInfo:
    """Read a file's streams with `ffmpeg -i`; MediaError if it is not media, or longer than `max_seconds`
    (None: LIMITS.max_seconds; a caller with its own, stricter limit and message passes math.inf)."""
    p = ffmpeg.check_file(path)
    limits = ffmpeg.LIMITS
    try:
        r = subprocess.run([ffmpeg.ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(p)],
                           capture_output=True, text=True, errors="replace", timeout=limits.probe_timeout_s)
    except subprocess.TimeoutExpired as e:
        raise MediaError(f"Reading {p.name} took over {limits.probe_timeout_s:.0f} s; the file looks "
                         "damaged. Re-encode or re-export it.") from e
    err = r.stderr
    vid, aud = _VID.search(err), _AUD.search(err)
    if "Invalid data found" in err or (not vid and not aud):
        raise MediaError(f"{p.name} is not a readable video or audio file (corrupt, truncated or "
                         f"another kind of file). Supported: {', '.join(VIDEO_EXTS + AUDIO_EXTS)}.")
    m = _DUR.search(err)
    duration = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3)) if m else 0.0
    width = height = 0
    fps = 0.0
    rotation = 0
    vcodec = acodec = ""
    if vid:
        vcodec, width, height = vid.group(1), int(vid.group(2)), int(vid.group(3))
        line = err[vid.start(): err.find("\n", vid.start())]
        f = _FPS.search(line) or _TBR.search(line)
        fps = float(f.group(1)) if f else 0.0
        rm = _ROT.search(err[vid.start():])
        if rm:
            rotation = int(round(float(rm.group(1) or rm.group(2)))) % 360
            if rotation in (90, 270):
                width, height = height, width
    rate = channels = 0
    if aud:
        acodec, rate = aud.group(1), int(aud.group(2))
        lay = aud.group(3).strip()
        channels = 1 if lay.startswith("mono") else 2 if lay.startswith("stereo") else (
            int(lay.split()[0]) if lay.split()[0].isdigit() else 2)
    if vcodec in ("png", "mjpeg", "bmp", "gif") and duration < 0.05 and not aud:
        raise MediaError(f"{p.name} is a still image, not a video. Upload a video clip.")
    limit = limits.max_seconds if max_seconds is None else max_seconds
    if duration > limit:
        raise MediaError(f"{p.name} lasts {duration:.0f} s; the limit is {limit:.0f} s. "
                         "Trim it first.")
    return MediaInfo(p, duration, bool(vid), bool(aud), width, height, fps, rotation, vcodec, acodec,
                     rate, channels)
