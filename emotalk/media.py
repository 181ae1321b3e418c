"""Decode and encode video and audio with imageio-ffmpeg's own ffmpeg binary.

Every ffmpeg call has a timeout; every failure becomes a MediaError that says what was wrong with the
file and what to do. Frames are streamed (`iter_frames`); outputs are written atomically.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotalk.errors import MediaError

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m4v")
AUDIO_EXTS = (".wav", ".mp3", ".m4a", ".aac", ".ogg", ".oga", ".opus", ".flac")


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


def ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg
    except ImportError as e:  # pragma: no cover - a hard dependency
        raise MediaError("imageio-ffmpeg is not installed: run pip install -r requirements.txt") from e
    return imageio_ffmpeg.get_ffmpeg_exe()


def _timeout_for(duration: float) -> float:
    return LIMITS.min_timeout_s + LIMITS.timeout_per_media_s * max(duration, 0.0)


def _check_file(path: str | os.PathLike) -> Path:
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


_DUR = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VID = re.compile(r"Stream #\S+.*?: Video: (\w+).*?, (\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"(\d+(?:\.\d+)?) fps")
_TBR = re.compile(r"(\d+(?:\.\d+)?) tbr")
_AUD = re.compile(r"Stream #\S+.*?: Audio: (\w+).*?, (\d+) Hz, ([^,]+)")
_ROT = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees|rotate\s*:\s*(-?\d+)")


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read a file's streams with `ffmpeg -i` (no ffprobe needed); MediaError if it is not media."""
    p = _check_file(path)
    try:
        r = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(p)],
                           capture_output=True, text=True, errors="replace",
                           timeout=LIMITS.probe_timeout_s)
    except subprocess.TimeoutExpired as e:
        raise MediaError(f"Reading {p.name} took over {LIMITS.probe_timeout_s:.0f} s; the file looks "
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
    if duration > LIMITS.max_seconds:
        raise MediaError(f"{p.name} lasts {duration:.0f} s; the limit is {LIMITS.max_seconds:.0f} s. "
                         "Trim it first.")
    return MediaInfo(p, duration, bool(vid), bool(aud), width, height, fps, rotation, vcodec, acodec,
                     rate, channels)


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


def _even(n: int) -> int:
    return max(2, n - n % 2)


def iter_frames(path: str | os.PathLike, fps: float = 25.0, size: tuple[int, int] | None = None,
                max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield RGB frames [H,W,3] uint8 at a constant `fps` (any input rate, VFR too; rotation applied).

    `size=(W,H)` resizes; otherwise the displayed size is kept.
    """
    info = probe(path)
    if not info.has_video:
        raise MediaError(f"{info.path.name} has no video stream. Upload a video of the person.")
    w, h = size if size else (info.width, info.height)
    vf = f"fps={fps},scale={w}:{h}:flags=area,format=rgb24"
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(info.path), "-map", "0:v:0", "-an",
           "-vf", vf, "-f", "rawvideo", "-pix_fmt", "rgb24"]
    if max_frames is not None:
        cmd += ["-frames:v", str(int(max_frames))]
    cmd.append("-")
    nbytes = w * h * 3
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    dog = _Watchdog(proc, LIMITS.min_timeout_s + LIMITS.stall_timeout_s)
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


def read_audio(path: str | os.PathLike, sr: int = 16000) -> np.ndarray:
    """Decode the first audio stream as mono float32 at `sr` Hz: [N] (lossy decodes may exceed ±1)."""
    info = probe(path)
    if not info.has_audio:
        raise MediaError(f"{info.path.name} has no audio track. Use a file with sound "
                         "(for a silent video, provide the speech separately).")
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(info.path), "-map", "0:a:0", "-vn",
           "-ac", "1", "-ar", str(sr), "-f", "f32le", "-"]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=_timeout_for(info.duration))
    except subprocess.TimeoutExpired as e:
        raise MediaError(f"Decoding the audio of {info.path.name} took too long; re-encode it.") from e
    wav = np.frombuffer(r.stdout, np.float32).copy()
    if r.returncode != 0 and wav.size == 0 or wav.size == 0:
        msg = r.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no samples"]
        raise MediaError(f"The audio of {info.path.name} could not be decoded ({msg[0]}). "
                         "The file is damaged or truncated: re-export it.")
    return wav


def _atomic_target(path: str | os.PathLike) -> tuple[Path, Path]:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=out.suffix, dir=out.parent)
    os.close(fd)
    return out, Path(tmp)


def write_wav(path: str | os.PathLike, wav: np.ndarray, sr: int = 16000) -> Path:
    """Write mono float audio as 16-bit PCM WAV, atomically."""
    import wave

    x = np.asarray(wav, np.float32).reshape(-1)
    pcm = (np.clip(x, -1.0, 1.0) * 32767.0).round().astype("<i2")
    out, tmp = _atomic_target(path)
    try:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(int(sr))
            w.writeframes(pcm.tobytes())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


class VideoWriter:
    """Stream RGB frames into an mp4 (H.264 yuv420p, faststart) with optional AAC audio.

    Encoding runs in a background ffmpeg process while the caller renders. On close, the audio is
    padded or trimmed to exactly the video's length and muxed; the file appears atomically.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 25.0, audio: np.ndarray | None = None,
                 sr: int = 16000, crf: int = 18, preset: str = "veryfast"):
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
        cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
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
            rc = self._proc.wait(timeout=_timeout_for(self.n_frames / self.fps))
        except subprocess.TimeoutExpired as e:
            self._proc.kill()
            raise MediaError("The video encoder did not finish in time.") from e
        if rc != 0:
            raise MediaError(f"The video encoder failed: {self._stderr()}")
        out, tmp = _atomic_target(self.path)
        try:
            dur = self.n_frames / self.fps
            cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-i", str(self._video_only)]
            if self.audio is not None:
                wav_path = Path(self._tmpdir.name) / "audio.wav"
                n = int(round(dur * self.sr))
                a = np.asarray(self.audio, np.float32).reshape(-1)[:n]
                a = np.pad(a, (0, n - a.size))
                write_wav(wav_path, a, self.sr)
                cmd += ["-i", str(wav_path), "-map", "0:v:0", "-map", "1:a:0", "-c:a", "aac",
                        "-b:a", "160k"]
            cmd += ["-c:v", "copy", "-movflags", "+faststart", "-t", f"{dur:.6f}", str(tmp)]
            r = subprocess.run(cmd, capture_output=True, timeout=_timeout_for(dur))
            if r.returncode != 0:
                raise MediaError(f"Muxing the video failed: {r.stderr.decode(errors='replace')[-300:]}")
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
            self._tmpdir.cleanup()
        return out

    def abort(self) -> None:
        """Stop without writing anything (used when rendering fails)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._tmpdir.cleanup()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 25.0,
                audio: np.ndarray | None = None, sr: int = 16000, crf: int = 18) -> Path:
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
    w, h = _even(w), _even(h)
    out, tmp = _atomic_target(dst)
    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-i", str(info.path), "-map", "0:v:0"]
    if info.has_audio:
        cmd += ["-map", "0:a:0", "-c:a", "aac", "-ar", "48000", "-ac", "2"]
    cmd += ["-vf", f"fps={fps},scale={w}:{h}", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
            "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-shortest", str(tmp)]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=_timeout_for(info.duration))
        if r.returncode != 0:
            raise MediaError(f"Could not convert {info.path.name}: "
                             f"{r.stderr.decode(errors='replace').strip()[-200:]}")
        os.replace(tmp, out)
    except subprocess.TimeoutExpired as e:
        raise MediaError(f"Converting {info.path.name} took too long; the file looks damaged.") from e
    finally:
        tmp.unlink(missing_ok=True)
    return out
