"""Short playable pieces of a video being made: MPEG-TS segments (H.264 + AAC) and an HLS playlist.

Each segment is encoded on its own (one ffmpeg call, key frame first, no B-frames), time-stamped where
it sits in the whole clip (`start_s`), so the segments play one after another as one stream: listed in
an HLS playlist, handed to a streaming player (Gradio's `gr.Video(streaming=True)` takes .ts files), or
simply concatenated into one MPEG-TS byte stream (`| ffplay -`).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotalk.errors import MediaError
from emotalk.folders import atomic_path, atomic_write_bytes
from emotalk.media import ffmpeg
from emotalk.media.audio import SR, write_wav

AUDIO_RATE = 48000  # segment audio rate: AAC's priming (1024 samples) is 21 ms here, 64 ms at 16 kHz


@dataclass(frozen=True)
class Segment:
    """One encoded piece of a streamed video."""

    path: Path  # the .ts file
    index: int  # 0, 1, ... in playing order
    start_frame: int  # first frame of the whole clip in this segment
    n_frames: int  # frames in it
    fps: float

    @property
    def start_s(self) -> float:
        return self.start_frame / self.fps

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps


def encode_segment(path: str | os.PathLike, frames: np.ndarray, fps: float, audio: np.ndarray | None,
                   sr: int = SR, start_s: float = 0.0, crf: int = 20, preset: str = "veryfast") -> Path:
    """Frames [N,H,W,3] uint8 (+ mono audio [M] float32 at `sr`, fitted to the frames' length) -> one
    MPEG-TS file whose time stamps start at `start_s`. Written atomically."""
    f = np.ascontiguousarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8 or not len(f):
        raise MediaError(f"A segment needs frames [N,H,W,3] uint8 (N >= 1), got {f.shape} {f.dtype}.")
    n, h, w = f.shape[:3]
    if w % 2 or h % 2:
        raise MediaError(f"Frame size {w}x{h} must be even for H.264; use an even resolution.")
    dur = n / fps
    with tempfile.TemporaryDirectory(prefix="emotalk-seg-") as tmp:
        cmd = [ffmpeg.ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"]
        if audio is not None:
            m = int(round(dur * sr))
            a = np.asarray(audio, np.float32).reshape(-1)[:m]
            wav = write_wav(Path(tmp) / "a.wav", np.pad(a, (0, m - a.size)), sr)
            cmd += ["-i", str(wav), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", "128k",
                    "-ar", str(AUDIO_RATE), "-ac", "1"]
        cmd += ["-c:v", "libx264", "-preset", preset, "-tune", "zerolatency", "-crf", str(crf),
                "-pix_fmt", "yuv420p", "-g", str(max(n, 1)), "-t", f"{dur:.6f}",
                "-output_ts_offset", f"{start_s:.6f}", "-muxdelay", "0", "-muxpreload", "0", "-f", "mpegts"]
        with atomic_path(path) as out:
            try:
                r = subprocess.run(cmd + [str(out)], input=f.tobytes(), capture_output=True,
                                   timeout=ffmpeg.timeout_for(dur))
            except subprocess.TimeoutExpired as e:
                raise MediaError("Encoding a video segment took too long.") from e
            if r.returncode != 0:
                raise MediaError(f"Encoding a video segment failed: "
                                 f"{r.stderr.decode(errors='replace').strip()[-300:]}")
    return Path(path)


def playlist_text(segments: list[Segment], ended: bool) -> str:
    """An HLS (EVENT) playlist of the segments so far; `ended` closes it (#EXT-X-ENDLIST)."""
    target = max([1] + [int(np.ceil(s.duration)) for s in segments])
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-PLAYLIST-TYPE:EVENT", f"#EXT-X-TARGETDURATION:{target}",
             "#EXT-X-MEDIA-SEQUENCE:0"]
    for s in segments:
        lines += [f"#EXTINF:{s.duration:.3f},", s.path.name]
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def write_playlist(path: str | os.PathLike, segments: list[Segment], ended: bool) -> Path:
    """Write (atomically, so a player never reads half of it) the HLS playlist of `segments`."""
    return atomic_write_bytes(path, playlist_text(segments, ended).encode())
