"""Clip check in seconds, before any preprocessing or GPU time: can this clip make an identity?

Reads the audio, a few dozen frames spread over the clip (keyframes: they decode alone) and 5 s of
consecutive frames from the most talkative keyframe (jitter; AV sync by `avsync.lipsync.estimate_sync`).
`check_clip` does not raise for a bad clip: it returns `ok=False` with every reason and what to do, so
the app shows the whole report at once; `raise_if_refused()` makes that an InputError. Face refusals are
preprocessing's own (`stages.checks.judge_faces`).
"""

from __future__ import annotations

import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emotalk import media
from emotalk.dataset.stages.checks import CheckSettings, judge_faces
from emotalk.errors import InputError, MediaError
from emotalk.face import landmarks, tracking
from emotalk.media import SR

LEVELS = ("ok", "warning", "unsure", "refused")  # a finding's level, mildest first


@dataclass(frozen=True)
class ClipCheckSettings:
    """Sampling and thresholds of the clip check (durations and face rules match preprocessing)."""

    min_seconds: float = 4.0  # shorter clips are refused
    max_seconds: float = 600.0  # longer clips are refused
    short_seconds: float = 15.0  # shorter clips are warned about: few poses and mouth shapes
    samples: int = 24  # frames spread over the clip looked at for faces, lighting and motion
    min_samples: int = 12  # with fewer keyframes than this, one decode pass picks frames (if in budget)
    decode_budget_px: float = 3e8  # ...when duration x fps x width x height is at most this
    window_frames_sampled: int = 6  # frames of the consecutive window also looked at for faces
    max_side: int = 640  # frames are decoded at most this large (landmarks scaled back to source px)
    window_s: float = 5.0  # consecutive frames tracked for jitter and AV sync, seconds
    fps: float = 25.0  # frame rate of that window
    faces: CheckSettings = field(default_factory=CheckSettings)  # preprocessing's face rules
    small_face_px: float = 180.0  # faces smaller than this (forehead to chin, source px) are warned about
    min_fps: float = 20.0  # lower frame rates are warned about
    min_side_px: int = 360  # a shorter frame side is warned about
    dark_luma: float = 60.0  # mean face brightness (0-255) below this: too dark
    max_clipped: float = 0.08  # more of the face than this at luma >= 250: overexposed
    max_wander: float = 0.35  # spread (std) of the face centre over the clip, in face heights
    max_zoom: float = 1.35  # largest over smallest face size (90th / 10th percentile) over the clip
    max_jitter: float = 0.02  # frame-to-frame shake of the face centre (RMS), in face heights
    min_voiced: float = 0.15  # a smaller voiced fraction of the audio: little speech
    min_speech_band: float = 0.6  # a smaller share of the energy in 80-4000 Hz: not speech-like
    sync_max_lag: int = 8  # AV offsets searched in the window, +- frames
    sync_min_confidence: float = 0.15  # a clear peak this far above the median: the offset is trusted
    sync_warn_frames: int = 2  # |offset| above this (25 fps frames) is warned about, as in preprocessing


DEFAULT = ClipCheckSettings()


@dataclass
class Finding:
    """One line of the report: what was measured and, when it is not ok, what to do."""

    topic: str  # what was checked: file, duration, frame rate, faces, lighting, audio, AV sync, ...
    level: str  # one of LEVELS
    text: str  # what was found, in words
    fix: str = ""  # what to do about it (warnings and refusals)


@dataclass
class ClipReport:
    """What the clip check found; `ok` is False when the clip cannot make an identity."""

    name: str  # the clip's file name
    findings: list[Finding] = field(default_factory=list)  # in the order checked
    duration_s: float = 0.0  # from the container
    fps: float = 0.0  # nominal video frame rate
    width: int = 0  # displayed frame width, px
    height: int = 0  # displayed frame height, px
    sampled_frames: int = 0  # frames spread over the clip that were looked at
    face_frac: float | None = None  # fraction of them with a face
    multi_face_frac: float | None = None  # fraction with two or more faces
    face_px: float | None = None  # median forehead-to-chin height, source px
    face_luma: float | None = None  # median mean brightness of the face, 0-255
    clipped_frac: float | None = None  # median fraction of face pixels at luma >= 250
    wander: float | None = None  # face-centre spread over the clip, face heights
    zoom: float | None = None  # face-size ratio (90th / 10th percentile) over the clip
    jitter: float | None = None  # frame-to-frame face-centre shake in the window, face heights
    voiced_frac: float | None = None  # fraction of 40 ms audio frames that are voiced speech
    speech_band: float | None = None  # share of the sound's energy in 80-4000 Hz
    av_offset_frames: int | None = None  # audio lag in the window, 25 fps frames (+ = audio late)
    av_confidence: float | None = None  # peak minus median of the lag correlation
    av_sure: bool = False  # the offset's peak is clear and confident
    seconds: float = 0.0  # how long the check took

    @property
    def ok(self) -> bool:
        return not any(f.level == "refused" for f in self.findings)

    def add(self, topic: str, level: str, text: str, fix: str = "") -> None:
        self.findings.append(Finding(topic, level, text, fix))

    def flag(self, topic: str, bad: bool, text: str, fix: str, ok_text: str = "") -> None:
        """A warning with its fix when `bad`, else an ok line (`ok_text`, or the same text)."""
        self.add(topic, "warning", text, fix) if bad else self.add(topic, "ok", ok_text or text)

    def reasons(self) -> list[str]:
        """Why the clip is refused, each with what to do (empty when it is ok)."""
        return [f"{f.text} {f.fix}".strip() for f in self.findings if f.level == "refused"]

    def markdown(self) -> str:
        """A short list for the app and the CLI: the verdict, then one line per finding (fixes inline)."""
        warn = sum(f.level in ("warning", "unsure") for f in self.findings)
        head = (f"**{self.name}: refused**, it cannot make an identity" if not self.ok else
                f"**{self.name}: ready**" + (f" ({warn} to look at)" if warn else ""))
        mark = {"ok": "[ok]", "warning": "**[warning]**", "unsure": "*[unsure]*", "refused": "**[refused]**"}
        lines = [head, ""]
        for f in self.findings:
            fix = f" *Fix:* {f.fix}" if f.fix and f.level != "ok" else ""
            lines.append(f"- {mark[f.level]} {f.topic}: {f.text}{fix}")
        lines.append(f"\n_checked in {self.seconds:.1f} s from {self.sampled_frames} sampled frames_")
        return "\n".join(lines)

    def raise_if_refused(self) -> None:
        """InputError naming every reason, when the clip cannot make an identity."""
        if not self.ok:
            raise InputError(f"{self.name} cannot make an identity: " + " ".join(self.reasons()))

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}


def check_clip(path: str | Path, settings: ClipCheckSettings = DEFAULT) -> ClipReport:
    """Check a clip for fine-tuning in a few seconds; see the module docstring."""
    t0 = time.monotonic()
    rep = ClipReport(Path(path).name)
    try:
        _check(Path(path), settings, rep)
    except MediaError as e:  # unreadable, truncated, not media: the file itself is the problem
        rep.add("file", "refused", str(e))
    rep.seconds = time.monotonic() - t0
    return rep


def _ffmpeg_frames(args: list[str], size: tuple[int, int], timeout: float) -> tuple[np.ndarray, str]:
    """ffmpeg with `args` (input, filters) into RGB frames of `size`: (frames [N,H,W,3], its log)."""
    w, h = size
    cmd = [media.ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", *args, "-f", "rawvideo",
           "-pix_fmt", "rgb24", "-"]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise MediaError("Reading frames took far too long; the file looks damaged. Re-encode it.") from e
    n = len(r.stdout) // (w * h * 3)
    frames = np.frombuffer(r.stdout[: n * w * h * 3], np.uint8).reshape(n, h, w, 3)
    return frames, r.stderr.decode(errors="replace")


def _spread_frames(info: media.MediaInfo, size: tuple[int, int],
                   s: ClipCheckSettings) -> tuple[np.ndarray, list[float]]:
    """Frames spread over the clip [N,H,W,3] and every keyframe's time (s). Keyframes decode alone, so are
    nearly free; where they are sparse and the clip is small (`decode_budget_px`), one pass picks frames."""
    step = 0.75 * info.duration / s.samples
    pick = f"select='isnan(prev_selected_t)+gte(abs(t-prev_selected_t)\\,{step:.3f})'"
    scale = f"scale={size[0]}:{size[1]}:flags=area"
    frames, log = _ffmpeg_frames(["-v", "info", "-skip_frame", "nokey", "-i", str(info.path), "-map", "0:v:0",
                                  "-an", "-vf", f"showinfo,{pick},{scale}", "-fps_mode", "passthrough"],
                                 size, 30 + info.duration)
    keys = [float(t) for t in re.findall(r"pts_time:\s*(-?[0-9.]+)", log)]
    cost = info.duration * info.fps * info.width * info.height
    if len(frames) < s.min_samples and 0 < cost <= s.decode_budget_px:
        rate = s.samples / max(info.duration, 1e-3)
        frames, _ = _ffmpeg_frames(["-v", "error", "-i", str(info.path), "-map", "0:v:0", "-an", "-vf",
                                    f"fps={rate:.4f},{scale}"], size, 30 + 4 * info.duration)
    keep = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), s.samples)).round().astype(int))
    return frames[keep], keys


def _window(info: media.MediaInfo, start: float, seconds: float, size: tuple[int, int],
            fps: float) -> np.ndarray:
    """Consecutive frames from `start` at a constant `fps` (from a keyframe: nothing decoded in vain)."""
    return _ffmpeg_frames(["-v", "error", "-ss", f"{start:.3f}", "-i", str(info.path), "-t", f"{seconds:.3f}",
                           "-map", "0:v:0", "-an", "-vf", f"fps={fps},scale={size[0]}:{size[1]}:flags=area"],
                          size, 60 + 4 * seconds)[0]


def speech_frames(wav: np.ndarray, fps: float = 25.0) -> tuple[np.ndarray, float]:
    """Voiced 1/fps frames of 16 kHz audio [N] -> (voiced [T] bool, share of the energy in 80-4000 Hz).

    Voiced: within 20 dB of the loud frames and periodic at a speaking pitch (70-400 Hz
    autocorrelation peak above 0.45 of the frame's energy).
    """
    hop = int(round(SR / fps))
    T = len(wav) // hop
    if T == 0:
        return np.zeros(0, bool), 0.0
    x = wav[: T * hop].reshape(T, hop).astype(np.float64)
    x = (x - x.mean(1, keepdims=True)) * np.hanning(hop)
    spec = np.abs(np.fft.rfft(x, 2 * hop)) ** 2  # [T,F]; 2*hop: autocorrelation without wrap-around
    f = np.fft.rfftfreq(2 * hop, 1 / SR)
    band = float(spec[:, (f >= 80) & (f <= 4000)].sum() / max(spec.sum(), 1e-12))
    ac = np.fft.irfft(spec, 2 * hop)[:, :hop]
    periodic = ac[:, int(SR / 400):int(SR / 70)].max(1) / np.maximum(ac[:, 0], 1e-12) > 0.45
    rms = np.sqrt(ac[:, 0] / hop)
    return periodic & (rms > max(0.1 * np.percentile(rms, 95), 3e-4)), band


def _face_stats(faces: list[list[np.ndarray]], frames: np.ndarray, scale: float) -> np.ndarray:
    """The largest face of each sampled frame that has one (landmarks in source px; frames `scale` times
    smaller) -> [N,5]: height, centre x, centre y (source px), mean brightness 0-255, clipped fraction."""
    rows = []
    for fs, img in zip(faces, frames):
        if fs:
            lm = max(fs, key=lambda a: float(landmarks.face_height_px(a)))
            top = np.array(img.shape[1::-1]) - 1
            (x0, y0), (x1, y1) = (np.clip(v / scale, 0, top).astype(int) for v in (lm[:, :2].min(0),
                                                                                    lm[:, :2].max(0)))
            luma = img[y0:y1 + 1, x0:x1 + 1].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            rows.append([landmarks.face_height_px(lm), *lm[landmarks.STABLE_IDX, :2].mean(0), luma.mean(),
                         (luma >= 250).mean()])
    return np.array(rows, np.float64).reshape(-1, 5)


def _judge_format(rep: ClipReport, info: media.MediaInfo, s: ClipCheckSettings) -> None:
    """Duration, frame rate and resolution."""
    d = info.duration
    if d and d < s.min_seconds:
        rep.add("duration", "refused", f"{d:.1f} s long; at least {s.min_seconds:.0f} s of talking is "
                "needed.", "Use a longer clip (1 to 5 minutes is best).")
    elif d > s.max_seconds:
        rep.add("duration", "refused", f"{d:.0f} s long; the limit is {s.max_seconds:.0f} s.",
                "Trim it: 1 to 5 minutes of talking is plenty.")
    else:
        rep.flag("duration", d < s.short_seconds, f"{d:.1f} s: few head poses and mouth shapes to learn "
                 "from.", "A clip of 1 to 5 minutes gives a better identity.", f"{d:.1f} s")
    rep.flag("frame rate", 0 < info.fps < s.min_fps, f"{info.fps:g} fps: mouth motion between frames is "
             "lost.", f"Record at 25 or 30 fps (at least {s.min_fps:g}).", f"{info.fps:g} fps")
    rep.flag("resolution", min(info.width, info.height) < s.min_side_px, f"{info.width}x{info.height}: the "
             "face will look soft.", "Use a higher-resolution recording (720p or more).",
             f"{info.width}x{info.height}")


def _judge_audio(rep: ClipReport, wav: np.ndarray | None, s: ClipCheckSettings) -> np.ndarray | None:
    """Audio present and speech-like; returns voiced 25 fps frames, or None when the audio is unusable."""
    if wav is None or len(wav) < SR * 0.5 or float(np.abs(wav).max(initial=0.0)) < 1e-4:
        rep.add("audio", "refused", "the clip has no audio track." if wav is None else "the audio track is "
                "empty or silent.", "Use a clip with the person's own speech: its lips are learnt from it.")
        return None
    if len(wav) / SR < 0.9 * rep.duration_s - 0.5:
        rep.add("file", "refused", f"only {len(wav) / SR:.1f} s of its {rep.duration_s:.1f} s decode: the "
                "file is truncated or damaged.", "Export or upload it again.")
    voiced, band = speech_frames(wav, s.fps)
    rep.voiced_frac, rep.speech_band = float(voiced.mean()), band
    if rep.voiced_frac < s.min_voiced:
        rep.add("audio", "warning", f"little speech: voiced in {100 * rep.voiced_frac:.0f} % of the clip.",
                "Use a clip where the person talks most of the time.")
    else:
        rep.flag("audio", band < s.min_speech_band, f"not like clean speech (only {100 * band:.0f} % of the "
                 "energy in 80-4000 Hz): music or noise?", "Use a clip without music or loud noise.",
                 f"speech, voiced {100 * rep.voiced_frac:.0f} % of the time")
    return voiced


def _judge_faces(rep: ClipReport, faces: list[list[np.ndarray]], frames: np.ndarray, scale: float,
                 info: media.MediaInfo, s: ClipCheckSettings) -> bool:
    """Faces in the sampled frames (landmarks in source px): count, size, lighting, motion; False: refused."""
    n, counts = len(faces), np.array([len(f) for f in faces])
    rep.face_frac, rep.multi_face_frac = float((counts > 0).mean()), float((counts > 1).mean())
    try:
        judge_faces(faces, info.width, info.height, s.faces, rep.name)
    except InputError as e:
        rep.add("faces", "refused", str(e))
        return False
    st = _face_stats(faces, frames, scale)
    h, c = st[:, 0], st[:, 1:3]
    rep.face_px = float(np.median(h))
    if (counts > 1).any():
        rep.add("faces", "warning", f"a second face in {int((counts > 1).sum())} of {n} sampled frames.",
                "Keep only the speaker in the shot (crop the video to them).")
    else:
        seen = f"{int((counts > 0).sum())} of {n} sampled frames"
        rep.flag("faces", rep.face_frac < 0.9, f"a face in only {seen}.",
                 "Trim the parts where the person is out of view.", f"one face in {seen}")
    size = f"about {rep.face_px:.0f} px from forehead to chin"
    rep.flag("face size", rep.face_px < s.small_face_px, f"{size}: fine detail will be soft.",
             "Film closer or at a higher resolution (a face of 250 px or more is best).", size)
    rep.face_luma, rep.clipped_frac = float(np.median(st[:, 3])), float(np.median(st[:, 4]))
    if rep.face_luma < s.dark_luma:
        rep.add("lighting", "warning", f"the face is dark (brightness {rep.face_luma:.0f} of 255).",
                "Light the face from the front (a window or lamp behind the camera).")
    else:
        rep.flag("lighting", rep.clipped_frac > s.max_clipped, f"the face is overexposed "
                 f"({100 * rep.clipped_frac:.0f} % pure white).", "Use softer light or lower the exposure.",
                 f"face brightness {rep.face_luma:.0f} of 255")
    rep.wander = float(np.linalg.norm(c.std(0)) / rep.face_px) if len(c) > 1 else 0.0
    rep.zoom = float(np.percentile(h, 90) / max(np.percentile(h, 10), 1e-6))
    spread = f"spread {rep.wander:.2f} face heights"
    rep.flag("motion", rep.wander > s.max_wander or rep.zoom > s.max_zoom, f"the face moves a lot over the "
             f"clip ({spread}, size x{rep.zoom:.2f}).", "Use a steady camera; the person should stay put.",
             f"the face stays in place ({spread})")
    return True


def _judge_window(rep: ClipReport, frames: np.ndarray, start: float, wav: np.ndarray, scale: float,
                  s: ClipCheckSettings) -> None:
    """Jitter and AV sync from consecutive frames (from `start` s) and their audio."""
    from emotalk.avsync import lipsync

    tr = tracking.track_video(iter(frames), n_frames=len(frames), fps=s.fps)
    short = len(frames) < 2 * s.sync_max_lag + 12 or len(wav) < len(frames) * SR / s.fps / 2
    if tr.found.mean() < 0.8 or short:
        rep.add("AV sync", "unsure", f"not measured: face tracked in {100 * tr.found.mean():.0f} % of "
                f"{len(frames)} consecutive frames.", "Preprocessing measures it again over the whole clip.")
        return
    lmk = tracking.fill_gaps(tr.lmk, tr.found)
    centre = lmk[:, landmarks.STABLE_IDX, :2].mean(1) * scale  # [T,2] source px
    smooth = np.stack([np.convolve(np.pad(c, 2, mode="edge"), np.ones(5) / 5, "valid") for c in centre.T], 1)
    h = float(np.median(landmarks.face_height_px(lmk))) * scale
    rep.jitter = float(np.sqrt(((centre - smooth) ** 2).sum(1).mean()) / h)
    shake = f"{100 * rep.jitter:.1f} % of the face height per frame"
    rep.flag("jitter", rep.jitter > s.max_jitter, f"the face shakes ({shake}).",
             "Use a tripod or a stabilised recording.", f"steady ({shake})")
    sync = lipsync.SyncSettings(max_lag=s.sync_max_lag)
    est = lipsync.estimate_sync(landmarks.mouth_opening(lmk), wav, None, sync)
    rep.av_offset_frames, rep.av_confidence = est.offset, est.confidence
    rep.av_sure = bool(est.clear and est.confidence >= s.sync_min_confidence)
    where, ms = f"in {len(frames) / s.fps:.0f} s from {start:.1f} s", 1000 * est.offset / s.fps
    if not rep.av_sure:
        rep.add("AV sync", "unsure", f"no clear reading {where} (best {ms:+.0f} ms, confidence "
                f"{est.confidence:.2f}).", "Nothing to do: preprocessing measures it over the whole clip.")
    else:
        rep.flag("AV sync", abs(est.offset) > s.sync_warn_frames, f"the audio is about {abs(ms):.0f} ms "
                 f"{'late' if ms > 0 else 'early'} against the lips ({where}).", "Preprocessing corrects "
                 "this; if the lips still look off, re-export the clip with sound and picture in sync.",
                 f"in sync ({ms:+.0f} ms, {where})")


def _window_start(voiced: np.ndarray | None, starts: list[float], duration: float,
                  s: ClipCheckSettings) -> float:
    """Start of the consecutive-frame window: the keyframe (cheap to seek to) followed by the most speech."""
    win = min(s.window_s, duration)
    cand = [float(t) for t in starts if t + win <= duration + 1e-3] or [0.0]
    if voiced is None:
        return cand[len(cand) // 2]
    score = [voiced[int(t * s.fps): int((t + win) * s.fps)].sum() for t in cand]
    return cand[int(np.argmax(score))]


def _warm_imports() -> None:
    """Import MediaPipe and the AV-sync stack (torch, librosa) while ffmpeg decodes (seconds when cold)."""
    import librosa
    from mediapipe.tasks.python import vision  # noqa: F401

    from emotalk.avsync import lipsync  # noqa: F401

    _ = librosa.feature.melspectrogram, librosa.stft


def _check(path: Path, s: ClipCheckSettings, rep: ClipReport) -> None:
    """Fill `rep`; MediaError when the file cannot be read at all."""
    info = media.probe(path)
    rep.duration_s, rep.fps, rep.width, rep.height = info.duration, info.fps, info.width, info.height
    if not info.has_video:
        rep.add("video", "refused", "the file has no video stream.", "Upload a video of the person talking.")
        return
    _judge_format(rep, info, s)
    if info.duration > s.max_seconds:
        return
    k = min(1.0, s.max_side / max(info.width, info.height))
    size = (max(2, 2 * round(info.width * k / 2)), max(2, 2 * round(info.height * k / 2)))
    scale = info.width / size[0]  # source px per decoded px
    pool = ThreadPoolExecutor(3)
    try:  # the imports may go on after a refusal (the pool is not waited for)
        pool.submit(_warm_imports)
        wav_job = pool.submit(media.read_audio, path, SR) if info.has_audio else None
        frames, keys = _spread_frames(info, size, s)
        wav = wav_job.result() if wav_job else None
        voiced = _judge_audio(rep, wav, s)
        start = _window_start(voiced, keys, info.duration or s.window_s, s)
        seconds = min(s.window_s, info.duration - start) if info.duration else s.window_s
        win_job = pool.submit(_window, info, start, seconds, size, s.fps)
        faces = tracking.detect_faces(list(frames), max_faces=3)
        window = win_job.result()
    finally:
        pool.shutdown(wait=False)
    if not len(frames) + len(window):
        raise MediaError(f"No frames could be decoded from {rep.name}: the file is damaged. Re-export it.")
    more = window[np.unique(np.linspace(0, len(window) - 1, s.window_frames_sampled).astype(int))
                  if len(window) else []]
    faces += tracking.detect_faces(list(more), max_faces=3)
    frames = np.concatenate([frames, more]) if len(frames) else more
    rep.sampled_frames = len(frames)
    faces = [[f * scale for f in fs] for fs in faces]  # landmarks in source px
    if _judge_faces(rep, faces, frames, scale, info, s) and voiced is not None:
        a = int(round(start * SR))
        _judge_window(rep, window, start, wav[a: a + int(round(len(window) * SR / s.fps))], scale, s)
