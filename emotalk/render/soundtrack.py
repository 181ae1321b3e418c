"""The sound of a render made from an upload: the user's own recording, at its own rate and channels.

The lips are driven by a 16 kHz mono copy of the speech; the mp4 keeps the upload's quality (e.g. 44.1 kHz
stereo), fitted to the video's length (padded with silence or cut).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from emotalk.errors import MediaError
from emotalk.folders import atomic_path
from emotalk.media import ffmpeg, probe

AAC_BITRATE = "192k"  # transparent for speech and music at 44.1/48 kHz stereo
MAX_RATE = 48000  # higher rates (88.2/96 kHz) are resampled to this: players and AAC profiles expect it


def mux_soundtrack(video: str | os.PathLike, source: str | os.PathLike, dst: str | os.PathLike,
                   duration: float) -> Path:
    """`video`'s frames (copied, not re-encoded) with the first audio stream of `source` (a recording or
    a video) as AAC, exactly `duration` seconds long, into `dst` (written atomically)."""
    info = probe(source, max_seconds=math.inf)
    if not info.has_audio:
        raise MediaError(f"{info.path.name} has no audio track to put under the video.")
    cmd = [ffmpeg.ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-i", str(video), "-i", str(info.path),
           "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", AAC_BITRATE,
           "-af", "apad", "-t", f"{duration:.6f}", "-movflags", "+faststart"]
    if info.audio_channels > 2:
        cmd += ["-ac", "2"]  # surround uploads become stereo
    if info.audio_rate > MAX_RATE:
        cmd += ["-ar", str(MAX_RATE)]
    with atomic_path(dst) as tmp:
        ffmpeg.run(cmd + ["-f", "mp4", str(tmp)], duration,
                   slow=f"Adding the sound of {info.path.name} took too long; re-export it.",
                   failed=f"Adding the sound of {info.path.name} to the video failed")
    return Path(dst)
