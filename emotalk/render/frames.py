"""Render an identity saying new speech: frames composited over the body track, in batches.

Speech longer than the body track replays the track's head poses, body frames and upper-face codes
back and forth; the turns are rounded (the replay slows down, stops and comes back over a few frames),
so there is no jump at loop points. Blinks: the track's own blinks are replayed; when the track blinks
rarely, natural blinks (every 2-6 s, ~0.25 s long) are added to the eye-blink channels.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch

from emotalk.errors import InputError
from emotalk.gaussians.fast_render import fast_renderer, path_settings
from emotalk.gaussians.fused_kernels import to_uint8
from emotalk.gaussians.model import BRANCHES, Frames
from emotalk.identity.checkpoint import Identity
from emotalk.media import resize_frames

Progress = Callable[[str, float], None]
TURN_FRAMES = 6  # half-width of the rounded turn of the back-and-forth replay


def pingpong_schedule(n: int, length: int, turn: int = TURN_FRAMES) -> np.ndarray:
    """Track frame for each of n output frames: 0..L-1, then back, ... with rounded turns. -> [n] int."""
    if length <= 1:
        return np.zeros(n, np.int64)
    if n <= length:
        return np.arange(n, dtype=np.int64)
    period = 2 * (length - 1)
    r = min(turn, (length - 1) // 2)
    t = np.arange(-r, n + r)
    ph = np.mod(t, period)
    tri = np.where(ph < length - 1, ph, period - ph).astype(np.float64)  # triangle wave
    if r > 0:
        k = np.hanning(2 * r + 3)[1:-1]
        tri = np.convolve(tri, k / k.sum(), mode="valid")  # rounds each corner over ~2r frames
    return np.clip(np.rint(tri[:n]), 0, length - 1).astype(np.int64)


def blink_channels(names: list[str]) -> list[int]:
    """Indices of the eye-blink channels among the upper-face code names."""
    return [i for i, n in enumerate(names) if "blink" in n.lower()]


def add_blinks(upper: np.ndarray, names: list[str], fps: float, seed: int = 0,
               min_rate_hz: float = 1 / 8) -> np.ndarray:
    """Upper-face codes [T,U] with natural blinks added when they blink less than `min_rate_hz`."""
    ch = blink_channels(names)
    if not ch or len(upper) < fps:
        return upper
    b = upper[:, ch].mean(1)
    lo, hi = np.percentile(b, 20), max(np.percentile(b, 99.5), 0.5)
    closed = b > lo + 0.5 * (hi - lo)
    n_blinks = int(np.sum(closed[1:] & ~closed[:-1]))
    if n_blinks >= min_rate_hz * len(upper) / fps:
        return upper
    rng = np.random.default_rng(seed)
    out = upper.copy()
    prof = np.concatenate([np.linspace(0, 1, max(2, round(0.1 * fps)) + 1)[1:],
                           np.linspace(1, 0, max(2, round(0.15 * fps)) + 1)[1:]])  # close fast, open slower
    amp = max(hi, 0.8)
    t = rng.uniform(1.0, 3.0) * fps
    while t < len(upper) - len(prof):
        i = int(t)
        for c in ch:
            seg = out[i:i + len(prof), c]
            out[i:i + len(prof), c] = np.maximum(seg, amp * prof)
        t += rng.uniform(2.0, 6.0) * fps
    return out


MAX_GAIN = 1.5  # strongest emotion gain (= requests.MAX_INTENSITY: "exaggerated")


def _as_emotion(emotion, n: int) -> np.ndarray:
    """Emotion per frame [n,3] (valence, arousal, gain) from (v, a), (v, a, gain), [n,2] or [n,3]."""
    e = np.asarray(emotion if emotion is not None else (0.0, 0.0), np.float32)
    if e.ndim == 1:
        e = np.broadcast_to(e, (n, e.shape[0]))
    if e.ndim != 2 or e.shape[0] != n or e.shape[1] not in (2, 3):
        raise InputError(f"The emotion track must be (valence, arousal[, gain]) or one such row per frame "
                         f"({n}x2 or {n}x3), got shape {e.shape}.")
    if e.shape[1] == 2:
        e = np.concatenate([e, np.ones((n, 1), np.float32)], 1)
    if not np.all(np.isfinite(e)) or np.abs(e[:, :2]).max() > 1:
        raise InputError("Valence and arousal must be numbers in [-1, 1].")
    if e[:, 2].min() < 0 or e[:, 2].max() > MAX_GAIN + 1e-6:
        raise InputError(f"The emotion gain (intensity) must be between 0 and {MAX_GAIN:g}.")
    return e


def _as_lips(lips, model, n: int) -> np.ndarray | None:
    """A given lip-code track as float32 [n,M], checked against the model (None stays None)."""
    if lips is None:
        return None
    if not getattr(model.settings, "lip_code", False):
        raise InputError("A lip-code track was given, but this identity is driven by the audio code (an "
                         "older identity): render without `lips`.")
    x = np.asarray(lips, np.float32)
    m = int(model.lip_lo.numel())
    if x.shape != (n, m) or not np.all(np.isfinite(x)):
        raise InputError(f"The lip track must be finite numbers, one row of {m} per frame ({n}x{m}), "
                         f"got shape {x.shape}.")
    return x


def render_frames(identity: Identity, audio_code: np.ndarray, emotion=None, batch: int = 8,
                  size: int | None = None, device: str = "cpu", backend: str = "auto",
                  blinks: bool = True, body: np.ndarray | None = None,
                  progress: Progress | None = None, blink_rate: float = 1.0,
                  seed: int = 0, lips: np.ndarray | None = None,
                  render_path: str | None = None) -> Iterator[np.ndarray]:
    """Yield rendered frames in batches ([b,S,S,3] uint8) for an audio code [T,W,C] and emotion: (v, a)
    or (v, a, gain), or per frame [T,2] / [T,3]; the gain (intensity, 0..MAX_GAIN, default 1) scales
    the emotion's effect while (v, a) stays on the disc. `lips` [T,M]: the lip code of each frame
    (emotalk.render.speech_lips.lip_track) instead of the driver's prediction (lip-code identities only).
    `render_path`: 'plain' (`TalkingGaussians.render`), 'fast', 'graphs' (the default; eager on a CPU),
    'compile' or 'graphs+compile' (emotalk.gaussians.fast_render); None: $EMOTALK_RENDER_PATH, else
    'graphs'."""
    model = identity.model
    code = np.asarray(audio_code, np.float32)
    if code.ndim != 3 or tuple(code.shape[1:]) != tuple(model.audio_shape):
        raise InputError(f"The audio code has shape {code.shape}; this identity needs [T, "
                         f"{model.audio_shape[0]}, {model.audio_shape[1]}] "
                         f"({identity.meta['model'].get('audio_kind')} features).")
    fast_settings = path_settings(render_path)
    T = len(code)
    emo = np.array(_as_emotion(emotion, T), np.float32)
    lips = _as_lips(lips, model, T)
    S = int(size or identity.size)
    if S % 2 or S < 16:
        raise InputError(f"The render size must be an even number of pixels >= 16, got {S}.")
    K = identity.K.astype(np.float32).copy()
    K[:2] *= S / identity.size
    frames_body = resize_frames(body, S) if body is not None else identity.body_frames(S)
    L = min(len(frames_body), len(identity.track_w2c))
    sched = pingpong_schedule(T, L)
    upper = np.array(identity.track_upper[sched], np.float32)
    if blinks:
        upper = add_blinks(upper, identity.upper_names, identity.fps, seed=seed,
                           min_rate_hz=blink_rate / 8)  # blink_rate 1 = one blink per 8 s at least
    dev = torch.device(device)
    model.to(dev)
    with warnings.catch_warnings():  # the cached loop is read-only; its tensor is only read (indexed)
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        body_t = torch.as_tensor(frames_body[:L]).to(dev)
    w2c_t = torch.as_tensor(identity.track_w2c[:L]).to(dev)
    Kt = torch.as_tensor(K).to(dev)
    with torch.no_grad():
        if fast_settings is None:
            caches = {b: model.precompute(b) for b in BRANCHES}
        else:
            fast = fast_renderer(model, fast_settings)
        up = _Uploads(dev, max(batch, UPLOAD_FRAMES), sched=sched, code=code, upper=upper, emo=emo, lips=lips)
        for i in range(0, T, batch):
            j = min(T, i + batch)
            x = up.get(i, j)
            fr = Frames(w2c_t[x["sched"]], Kt[None].expand(j - i, 3, 3), x["code"], x["upper"],
                        x["emo"][:, :2], gain=x["emo"][:, 2], lips=x["lips"])
            if fast_settings is None:
                out = model.render(fr, S, S, body_t[x["sched"]].float() / 255, caches=caches, backend=backend)
                yield to_uint8(out.rgb).cpu().numpy()
            else:
                u8 = fast.render_u8(fr, S, S, body_t[x["sched"]], backend=backend, emotion=emo[i:j])
                yield u8.cpu().numpy()
            if progress:
                progress("render", j / T)


UPLOAD_FRAMES = 64  # per-frame inputs go to the device this many frames at a time (not 5 copies a batch)


class _Uploads:
    """Per-frame arrays ([T,...] numpy, or None) copied to the device a chunk at a time; `get` slices them."""

    def __init__(self, dev: torch.device, chunk: int, **arrays: np.ndarray | None):
        self.dev, self.chunk, self.arrays = dev, chunk, arrays
        self.start, self.stop, self.on_dev = 0, 0, {}

    def get(self, i: int, j: int) -> dict:
        """Device tensors of frames [i, j) (views into the chunk holding them)."""
        if i < self.start or j > self.stop:
            self.start, self.stop = i, max(j, i + self.chunk)
            self.on_dev = {k: None if v is None else torch.as_tensor(v[self.start:self.stop]).to(self.dev)
                           for k, v in self.arrays.items()}
        a, b = i - self.start, j - self.start
        return {k: None if v is None else v[a:b] for k, v in self.on_dev.items()}
