"""Decode and encode video and audio with imageio-ffmpeg's own ffmpeg binary (OpenCV decodes video where
that binary is missing).

Every ffmpeg call has a timeout (`ffmpeg.LIMITS`); every failure becomes a MediaError that says what was
wrong with the file and what to do. Frames are streamed (`iter_frames`); outputs are written atomically.
Modules: ffmpeg (binary, limits), probe, decode (+ opencv_decode), audio, encode, frames (resizing).
"""

from __future__ import annotations

from emotalk.media.audio import SR, read_audio, write_wav
from emotalk.media.decode import iter_frames, read_frames
from emotalk.media.encode import VideoWriter, standardize, write_video
from emotalk.media.ffmpeg import MediaLimits, ffmpeg_exe, ffmpeg_status
from emotalk.media.frames import resize_frames
from emotalk.media.probe import AUDIO_EXTS, VIDEO_EXTS, MediaInfo, probe

__all__ = [
    "AUDIO_EXTS", "SR", "VIDEO_EXTS", "MediaInfo", "MediaLimits", "VideoWriter", "ffmpeg_exe",
    "ffmpeg_status", "iter_frames", "probe", "read_audio", "read_frames", "resize_frames", "standardize",
    "write_video", "write_wav",
]
