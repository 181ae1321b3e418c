"""Stage 7 of building a dataset: the head-removed body frame of every cropped frame, made by a pool of
threads chunk by chunk (a chunk = one chunk of the label store: its labels are decoded once) and handed
to the writer in frame order, with the labels' frame-to-frame change (parsing flicker) on the way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from emotalk.dataset.pool import ordered_map
from emotalk.dataset.progress import Progress
from emotalk.dataset.stages import plate
from emotalk.dataset.stages.store import CHUNK, read_labels
from emotalk.errors import MediaError

MAX_IN_FLIGHT_BYTES = 1 << 30  # memory of the chunks being made at once (more cores than this feeds wait)


@dataclass
class BodyResult:
    """What the body pass measured and kept besides the frames it wrote."""

    flicker: list[float] = field(default_factory=list)  # per frame pair: changed labels / person pixels
    body: dict[int, np.ndarray] = field(default_factory=dict)  # kept frames' body frame [S,S,3]
    crop: dict[int, np.ndarray] = field(default_factory=dict)  # kept frames' crop [S,S,3]


def label_change(prev: np.ndarray, lab: np.ndarray) -> float:
    """Changed labels over the person pixels of either map [S,S] (0 when neither has a person)."""
    person = (lab != 0) | (prev != 0)
    return float((lab != prev)[person].mean()) if person.any() else 0.0


def _chunk(labels: Path, bg: np.ndarray, s: plate.PlateSettings, job: tuple[int, list[np.ndarray]]):
    """(start, crops [n][S,S,3]) -> (start, crops, bodies [n][S,S,3], flicker inside the chunk, its first
    and last label maps [S,S])."""
    i0, frames = job
    labs = read_labels(labels, np.arange(i0, i0 + len(frames)))  # [n,S,S]
    bodies = [plate.body_frame(f, lab, bg, s) for f, lab in zip(frames, labs)]
    flick = [label_change(labs[j - 1], labs[j]) for j in range(1, len(labs))]
    return i0, frames, bodies, flick, labs[0], labs[-1]


def body_frames(crops: Iterator[np.ndarray], labels: Path, T: int, bg: np.ndarray, s: plate.PlateSettings,
                write: Callable[[np.ndarray], None], workers: int = 1, keep: set[int] = frozenset(),
                report: Progress | None = None) -> BodyResult:
    """Body frames of the T crops (in order) with the label store `labels`, each passed to `write` in
    frame order; `workers` threads (1: serially here). Chunks of 25 frames, at most workers + 2 in flight
    and MAX_IN_FLIGHT_BYTES in all (46 MB a chunk at 512 px). Frames in `keep` are returned too."""
    out = BodyResult()

    def jobs():
        for i0 in range(0, T, CHUNK):
            frames = list(islice(crops, min(CHUNK, T - i0)))
            if len(frames) < min(CHUNK, T - i0):
                raise MediaError(f"the cropped frames ended at frame {i0 + len(frames)} of {T}; preprocess "
                                 "the clip again.")
            yield i0, frames

    chunk_bytes = CHUNK * bg.size * 7 // 3  # a chunk's crops, bodies and labels: 3 + 3 + 1 bytes a pixel
    in_flight = max(2, min(workers + 2, MAX_IN_FLIGHT_BYTES // chunk_bytes))
    last = None
    for i0, frames, bodies, flick, first, final in ordered_map(
            lambda job: _chunk(labels, bg, s, job), jobs(), workers, in_flight=in_flight):
        if last is not None:
            out.flicker.append(label_change(last, first))
        out.flicker.extend(flick)
        last = final
        for k, b in enumerate(bodies):
            write(b)
            if i0 + k in keep:
                out.body[i0 + k], out.crop[i0 + k] = b, frames[k]
        if report:
            report(f"body frame {i0 + len(bodies)}/{T}", (i0 + len(bodies)) / T)
    return out
