"""Progress of dataset building: each stage reports 0..1 of its own work; callers see 0..1 of the whole."""

from __future__ import annotations

import time
from collections.abc import Callable

Progress = Callable[[str, float], None]  # (what is happening, fraction done)


class StageClock:
    """Maps each stage's own 0..1 progress onto the part's 0..1 and records stage times."""

    def __init__(self, progress: Progress | None, names: tuple[str, ...], weights: tuple[float, ...]):
        self.progress = progress
        self.weights = dict(zip(names, weights))
        self.start: dict[str, float] = {}
        self.times: dict[str, float] = {}
        self.cur: str | None = None

    def begin(self, name: str, text: str) -> Progress:
        """Start stage `name` (ending the one before); returns its progress callback."""
        now = time.time()
        if self.cur:
            self.times[self.cur] = round(now - self.start[self.cur], 2)
        self.cur = name
        self.start[name] = now
        keys = list(self.weights)
        base = sum(self.weights[k] for k in keys[: keys.index(name)])
        w = self.weights[name]

        def report(msg: str, frac: float) -> None:
            if self.progress:
                self.progress(msg, min(1.0, base + w * max(0.0, min(1.0, frac))))

        report(text, 0.0)
        return report

    def end(self) -> dict[str, float]:
        """End the current stage; seconds per stage so far."""
        if self.cur:
            self.times[self.cur] = round(time.time() - self.start[self.cur], 2)
            self.cur = None
        return dict(self.times)


def sub_progress(progress: Progress | None, a: float, b: float) -> Progress | None:
    """Progress of a part of the run mapped onto [a, b] of the whole."""
    if progress is None:
        return None
    return lambda msg, f: progress(msg, a + (b - a) * f)
