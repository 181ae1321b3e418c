"""Decode video frames at a constant frame rate: the ffmpeg binary, or OpenCV where there is none.

GPU hosts may lack an ffmpeg binary; there the same frames (layout, rate, size) come from OpenCV's own
decoder (`opencv_decode`), so datasets and checkpoints read the same everywhere.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator

import numpy as np

from emotalk.errors import MediaError
from emotalk.media import ffmpeg, opencv_decode
from emotalk.media.probe import probe


class _Watchdog:
    """Kills a streamed decode that stalls: no frame for `seconds` (the clock restarts at each `kick`).

    A stall, not the total time, is what marks a damaged file: a slow consumer must not be punished.
    """

    def __init__(self, proc: subprocess.Popen, seconds: float):
        self.fired = False
        self._proc, self._seconds = proc, seconds
        self._deadline = time.monotonic() + seconds
        self._done = threading.Event()
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self._done.wait(min(1.0, max(self._seconds, 0.01))):
            if time.monotonic() > self._deadline:
                self.fired = True
                self._proc.kill()
                return

    def kick(self) -> None:
        self._deadline = time.monotonic() + self._seconds

    def cancel(self) -> None:
        self._done.set()


def iter_frames(path: str | os.PathLike, fps: float = 25.0, size: tuple[int, int] | None = None,
                max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield RGB frames [H,W,3] uint8 at a constant `fps` (any input rate, VFR too; rotation applied).

    `size=(W,H)` resizes; otherwise the displayed size is kept. Without an ffmpeg binary, OpenCV decodes.
    """
    available, _ = ffmpeg.ffmpeg_status()
    if not available:
        yield from opencv_decode.iter_frames(ffmpeg.check_file(path), fps, size, max_frames)
        return
    info = probe(path)
    if not info.has_video:
        raise MediaError(f"{info.path.name} has no video stream. Upload a video of the person.")
    w, h = size if size else (info.width, info.height)
    vf = f"fps={fps},scale={w}:{h}:flags=area,format=rgb24"
    cmd = [ffmpeg.ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(info.path), "-map", "0:v:0", "-an",
           "-vf", vf, "-f", "rawvideo", "-pix_fmt", "rgb24"]
    if max_frames is not None:
        cmd += ["-frames:v", str(int(max_frames))]
    cmd.append("-")
    nbytes = w * h * 3
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    dog = _Watchdog(proc, ffmpeg.LIMITS.min_timeout_s + ffmpeg.LIMITS.stall_timeout_s)
    n = 0
    try:
        assert proc.stdout is not None
        while True:
            buf = proc.stdout.read(nbytes)
            if len(buf) < nbytes:
                break
            n += 1
            yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
            dog.kick()  # the consumer may take its time; only a stalled decoder is killed
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate()
        dog.cancel()
    if dog.fired:
        raise MediaError(f"Decoding {info.path.name} took too long; the file looks damaged. Re-encode it.")
    if n == 0:
        msg = err.decode(errors="replace").strip().splitlines()[-1:] or ["no frames"]
        raise MediaError(f"No frames could be decoded from {info.path.name} ({msg[0]}). "
                         "The file is damaged or truncated: re-export it.")


def read_frames(path: str | os.PathLike, fps: float = 25.0, size: tuple[int, int] | None = None,
                max_frames: int | None = None) -> np.ndarray:
    """All frames at once: [T,H,W,3] uint8. Prefer iter_frames for long clips."""
    frames = list(iter_frames(path, fps, size, max_frames))
    return np.stack(frames)
