"""The dataset's cropped frames, read back from frames.mp4 (no raw frame array is kept on disk)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from emotalk import media
from emotalk.errors import MediaError


def iter_crops(video: Path, S: int, fps: float, T: int) -> Iterator[np.ndarray]:
    """The T frames [S,S,3] uint8 of frames.mp4 in order (OpenCV decodes where there is no ffmpeg);
    MediaError when the video holds another number of frames or another size."""
    n = 0
    for f in media.iter_frames(video, fps=fps, max_frames=T):
        if f.shape != (S, S, 3):
            raise MediaError(f"{video.name} has frames of {f.shape[1]}x{f.shape[0]} px, expected {S}x{S}.")
        n += 1
        yield f
    if n != T:
        raise MediaError(f"{video.name} decoded to {n} frames but {T} were written; the work folder seems "
                         "damaged. Preprocess the clip again.")


def read_crops(video: Path, S: int, fps: float, T: int, idx: np.ndarray) -> np.ndarray:
    """Frames idx (sorted or not) of frames.mp4 as [N,S,S,3] uint8, in one decoding pass."""
    idx = np.asarray(idx, np.int64)
    out = np.empty((len(idx), S, S, 3), np.uint8)
    where: dict[int, list[int]] = {}
    for j, i in enumerate(idx):
        where.setdefault(int(i), []).append(j)
    last = int(idx.max()) + 1 if len(idx) else 0
    for i, f in enumerate(iter_crops(video, S, fps, T)):
        for j in where.get(i, ()):
            out[j] = f
        if i + 1 >= last:
            break
    return out
