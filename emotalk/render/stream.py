"""Rendering a clip a piece at a time, the same as rendering it whole: what streamed playback needs.

`render_frames` lays the body track over the frames it is given; called once per piece it would start
the track (head motion, blinks) again at every piece. A `Timeline` lays the track over the whole clip
once (the same back-and-forth schedule and blinks `render_frames` makes for a clip of that length) and
gives each piece its own part of it, so pieces rendered one after another join without a seam. The
emotion of the rest of a stream can be steered while it plays (`EmotionSteer`), and speech made while
the previous piece renders (`prefetch`). `render_chunks` is the render loop of every render.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

import numpy as np

from emotalk.emotion import clamp_to_disc
from emotalk.identity.checkpoint import Identity
from emotalk.render.frames import add_blinks, pingpong_schedule

LiveEmotion = Callable[[], "tuple[float, float] | None"]  # the (valence, arousal) wanted now, or None


class Timeline:
    """The identity's body track laid along a clip of `capacity` frames (grown when a stream runs
    longer): per frame, which track frame plays and the upper-face code, blinks added."""

    def __init__(self, identity: Identity, size: int, capacity: int, blinks: bool = True,
                 blink_rate: float = 1.0, seed: int = 0):
        self.identity, self.blinks, self.blink_rate, self.seed = identity, blinks, blink_rate, seed
        self.body = identity.body_frames(size)  # [L,S,S,3] uint8, read-only, cached per identity and size
        self.length = min(len(self.body), len(identity.track_w2c))  # L
        self._lay(max(1, capacity))

    def _lay(self, n: int) -> None:
        ident = self.identity
        self.sched = pingpong_schedule(n, self.length)  # [n] track frame per clip frame
        upper = np.array(ident.track_upper[self.sched], np.float32)  # [n,U]
        if self.blinks:  # as render_frames: blink_rate 1 = one blink per 8 s at least
            upper = add_blinks(upper, ident.upper_names, ident.fps, seed=self.seed,
                               min_rate_hz=self.blink_rate / 8)
        self.upper = upper

    def part(self, kwargs: dict, first: int, a: int, b: int) -> dict:
        """`render_frames` keyword arguments for frames [a, b) of a piece that starts at clip frame
        `first`: the identity cut to those frames' track, their body frames, and every per-frame array
        of the piece's `kwargs` (audio code, emotion, ...: length = the piece's frames) cut to [a, b)."""
        n = len(kwargs["audio_code"])
        if first + b > len(self.sched):
            self._lay(max(2 * len(self.sched), first + b))
        idx = self.sched[first + a:first + b]
        out = {k: (v[a:b] if isinstance(v, np.ndarray) and v.ndim >= 1 and len(v) == n else v)
               for k, v in kwargs.items()}
        out["identity"] = replace(kwargs["identity"], track_w2c=kwargs["identity"].track_w2c[idx],
                                  track_upper=self.upper[first + a:first + b])
        out["body"] = self.body[idx]
        out["blinks"] = False  # already in the timeline's upper-face codes
        return out


class EmotionSteer:
    """Per-frame emotion of a stream whose (valence, arousal) may change while it plays: once the live
    value differs from the one the stream started with, it replaces the planned emotion (a constant or
    a keyframe track) for the rest of the stream, reached over `ramp` frames (no jump)."""

    def __init__(self, live: LiveEmotion | None, intensity: float = 1.0, ramp: int = 8):
        self.live, self.intensity, self.ramp = live, float(intensity), max(1, ramp)
        self.seen = live() if live else None  # what the stream started with: not a change
        self.target: np.ndarray | None = None  # [2] the steered emotion, intensity applied
        self.last: np.ndarray | None = None  # [2] emotion of the last frame given out
        self.step = 0  # frames into the current ramp

    def __call__(self, planned: np.ndarray) -> np.ndarray:
        """The emotion for the next b frames ([b,2] (v, a), or [b,3] with a gain column, which is kept),
        given the planned one."""
        va = self.live() if self.live else None
        if va is not None and tuple(va) != (tuple(self.seen) if self.seen is not None else None):
            self.seen = tuple(va)
            v, a, _ = clamp_to_disc(float(va[0]), float(va[1]))
            scale = self.intensity if planned.shape[1] == 2 else 1.0  # [.,3]: the gain column scales
            self.target, self.step = np.float32([v, a]) * np.float32(scale), 0
            self.start = self.last if self.last is not None else planned[0, :2]
        out = np.array(planned, np.float32)
        if self.target is not None:
            k = np.minimum(1.0, (self.step + 1 + np.arange(len(out))) / self.ramp)[:, None]
            out[:, :2] = self.start + k * (self.target - self.start)
            self.step += len(out)
        if len(out):
            self.last = out[-1, :2].copy()
        return out


def prefetch(items: Iterable, ahead: int = 1) -> Iterator:
    """The items of `items`, made in a background thread up to `ahead` in advance (speech of the next
    sentence while this one renders); an error there is raised here, in order."""
    q: queue.Queue = queue.Queue(maxsize=max(1, ahead))
    done, stop = object(), threading.Event()

    def work() -> None:
        try:
            for it in items:
                while not stop.is_set():
                    try:
                        q.put((it, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((done, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put((done, e))

    threading.Thread(target=work, daemon=True, name="prefetch").start()
    try:
        while True:
            it, err = q.get()
            if it is done:
                if err is not None:
                    raise err
                return
            yield it
    finally:
        stop.set()


def render_chunks(pieces: Iterable[dict], chunk_frames: Callable[[int], int], capacity: int | None = None,
                  steer: EmotionSteer | None = None, label: Callable | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  expected: int = 1) -> Iterator[tuple[np.ndarray, int, bool]]:
    """Render a clip given as pieces (the `render_frames` keyword arguments of each piece of speech) in
    chunks of `chunk_frames(first frame of the chunk)` frames, along one `Timeline` (`capacity` frames
    at first; None: the first piece's length). Yields (frames [b,S,S,3], clip frame of the first, last
    batch of its chunk?); `steer` sets each chunk's emotion, `label` marks frames, `progress(done,
    total)` counts frames (`expected` of them, or more once known)."""
    from emotalk.render.frames import render_frames

    timeline, first = None, 0
    for kw in pieces:
        n = len(kw["audio_code"])
        if timeline is None:
            timeline = Timeline(kw["identity"], kw["size"] or kw["identity"].size, capacity or n,
                                kw.get("blinks", True), kw.get("blink_rate", 1.0), kw.get("seed", 0))
        a = 0
        while a < n:
            b = min(n, a + max(1, chunk_frames(first + a)))
            part = timeline.part(kw, first, a, b)
            if steer is not None:
                part["emotion"] = steer(part["emotion"])
            total = max(expected, first + n)
            if progress is not None:
                a0, span = first + a, b - a
                part["progress"] = lambda s, f, a0=a0, span=span, total=total: progress(a0 + int(f * span),
                                                                                       total)
            batches = render_frames(**part)
            nxt = next(batches, None)
            while nxt is not None:
                frames, nxt = nxt, next(batches, None)
                yield (label(frames) if label else frames), first + a, nxt is None
                a += len(frames)
        first += n
