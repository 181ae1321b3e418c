"""Encode video: H.264 (yuv420p, faststart) mp4s with optional AAC audio, written atomically."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from emotalk.errors import MediaError
from emotalk.folders import atomic_path
from emotalk.media import ffmpeg
from emotalk.media.audio import SR, write_wav
from emotalk.media.frames import even
from emotalk.media.probe import probe


class VideoWriter:
    """Stream RGB frames into an mp4 (H.264 yuv420p, faststart) with optional AAC audio.

    Encoding runs in a background ffmpeg process while the caller renders. On close, the audio is
    padded or trimmed to exactly the video's length and muxed; the file appears atomically.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 25.0, audio: np.ndarray | None = None,
                 sr: int = SR, crf: int = 18, preset: str = "veryfast"):
        self.path = Path(path)
        self.fps, self.audio, self.sr, self.crf, self.preset = fps, audio, sr, crf, preset
        self.n_frames = 0
        self._proc: subprocess.Popen | None = None
        self._size: tuple[int, int] | None = None
        self._tmpdir = tempfile.TemporaryDirectory(prefix="emotalk-enc-")
        self._video_only = Path(self._tmpdir.name) / "video.mp4"

    def __enter__(self) -> VideoWriter:
        return self

    def _start(self, w: int, h: int) -> None:
        if w % 2 or h % 2:
            raise MediaError(f"Frame size {w}x{h} must be even for H.264; use an even resolution.")
        cmd = [ffmpeg.ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{w}x{h}", "-r", str(self.fps), "-i", "-", "-an", "-c:v", "libx264",
               "-preset", self.preset, "-crf", str(self.crf), "-pix_fmt", "yuv420p",
               str(self._video_only)]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
        self._size = (w, h)

    def write(self, frame: np.ndarray) -> None:
        """Append one frame [H,W,3] uint8 RGB."""
        f = np.ascontiguousarray(frame)
        if f.ndim != 3 or f.shape[2] != 3 or f.dtype != np.uint8:
            raise MediaError(f"Frames must be [H,W,3] uint8 RGB, got {f.shape} {f.dtype}.")
        h, w = f.shape[:2]
        if self._proc is None:
            self._start(w, h)
        elif (w, h) != self._size:
            raise MediaError(f"Frame size changed from {self._size} to {(w, h)} inside one video.")
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(f.tobytes())
        except BrokenPipeError as e:
            raise MediaError(f"The video encoder stopped: {self._stderr()}") from e
        self.n_frames += 1

    def write_batch(self, frames: np.ndarray | Iterable[np.ndarray]) -> None:
        """Append frames [N,H,W,3] uint8."""
        for f in frames:
            self.write(f)

    def _stderr(self) -> str:
        if self._proc is None or self._proc.stderr is None:
            return ""
        try:
            return self._proc.stderr.read().decode(errors="replace").strip()[-300:]
        except (OSError, ValueError):
            return ""

    def close(self) -> Path:
        """Finish encoding, mux the audio, and move the file into place."""
        if self._proc is None:
            self._tmpdir.cleanup()
            raise MediaError("No frames were written; nothing to encode.")
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            rc = self._proc.wait(timeout=ffmpeg.timeout_for(self.n_frames / self.fps))
        except subprocess.TimeoutExpired as e:
            self._proc.kill()
            raise MediaError("The video encoder did not finish in time.") from e
        err = self._stderr() if rc != 0 else ""
        if self._proc.stderr is not None:
            self._proc.stderr.close()  # read or not, the pipe is ours to close
        if rc != 0:
            raise MediaError(f"The video encoder failed: {err}")
        try:
            with atomic_path(self.path) as tmp:
                self._mux(tmp)
        finally:
            self._tmpdir.cleanup()
        return self.path

    def _mux(self, dst: Path) -> None:
        """The encoded video (and the audio, fitted to its length) into `dst`."""
        dur = self.n_frames / self.fps
        cmd = [ffmpeg.ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-i", str(self._video_only)]
        if self.audio is not None:
            wav_path = Path(self._tmpdir.name) / "audio.wav"
            n = int(round(dur * self.sr))
            a = np.asarray(self.audio, np.float32).reshape(-1)[:n]
            write_wav(wav_path, np.pad(a, (0, n - a.size)), self.sr)
            cmd += ["-i", str(wav_path), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac", "-b:a", "160k"]
        cmd += ["-c:v", "copy", "-movflags", "+faststart", "-t", f"{dur:.6f}", str(dst)]
        r = subprocess.run(cmd, capture_output=True, timeout=ffmpeg.timeout_for(dur))
        if r.returncode != 0:
            raise MediaError(f"Muxing the video failed: {r.stderr.decode(errors='replace')[-300:]}")

    def abort(self) -> None:
        """Stop without writing anything (used when rendering fails)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()
            for pipe in (self._proc.stdin, self._proc.stderr):
                if pipe is not None:
                    try:
                        pipe.close()
                    except OSError:  # a broken pipe to a killed encoder
                        pass
        self._tmpdir.cleanup()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 25.0,
                audio: np.ndarray | None = None, sr: int = SR, crf: int = 18) -> Path:
    """Encode frames (an array [N,H,W,3] or any iterable of [H,W,3]) with optional audio."""
    w = VideoWriter(path, fps, audio, sr, crf)
    try:
        w.write_batch(frames)
    except BaseException:
        w.abort()
        raise
    return w.close()


def standardize(src: str | os.PathLike, dst: str | os.PathLike, fps: float = 25.0,
                max_side: int | None = None) -> Path:
    """Re-encode any video to constant-`fps` H.264 + AAC mp4 (the app's first real feature)."""
    info = probe(src)
    if not info.has_video:
        raise MediaError(f"{info.path.name} has no video stream.")
    w, h = info.width, info.height
    if max_side and max(w, h) > max_side:
        s = max_side / max(w, h)
        w, h = int(w * s), int(h * s)
    w, h = even(w), even(h)
    cmd = [ffmpeg.ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-i", str(info.path), "-map", "0:v:0"]
    if info.has_audio:
        cmd += ["-map", "0:a:0", "-c:a", "aac", "-ar", "48000", "-ac", "2"]
    cmd += ["-vf", f"fps={fps},scale={w}:{h}", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
            "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-shortest"]
    with atomic_path(dst) as tmp:
        ffmpeg.run(cmd + [str(tmp)], info.duration, tail=200,
                   slow=f"Converting {info.path.name} took too long; the file looks damaged.",
                   failed=f"Could not convert {info.path.name}")
    return Path(dst)
