"""Decode a clip once: every frame into a temporary frame store (a [T,H,W,3] uint8 .npy, in RAM-backed
/dev/shm when it has room), with a grey thumbnail of every frame (scene cuts) and a few full frames
(faces) taken on the way. Tracking workers read the store by path; the crops are cut from it; it is
removed at the end of `prepare`, so no raw frames stay on disk."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotalk.dataset.progress import Progress
from emotalk.errors import MediaError

SHM = Path("/dev/shm")


@dataclass
class DecodedClip:
    """A clip decoded once (see module docstring)."""

    path: Path  # the store: [cap,H,W,3] uint8 .npy; frames [0, n_frames) are the clip's
    n_frames: int  # T: frames decoded at the dataset's frame rate
    scale: float  # store px / source px (1 unless the clip was larger than the store's budget)
    thumbs: np.ndarray  # [T,t,t] float32 grey thumbnails
    samples: list[np.ndarray] = field(default_factory=list)  # evenly spaced frames [H,W,3], store px

    def frames(self) -> np.ndarray:
        """[T,H,W,3] uint8, memory-mapped (read only)."""
        return np.load(self.path, mmap_mode="r")[: self.n_frames]

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def store_dir(nbytes: int, fallback: Path) -> Path:
    """/dev/shm when it can hold nbytes with 1 GB to spare, else `fallback` (a disk folder)."""
    try:
        if SHM.is_dir() and shutil.disk_usage(SHM).free > nbytes + (1 << 30):
            return SHM
    except OSError:
        pass
    return fallback


def decode_clip(clip: Path, fps: float, duration: float, width: int, height: int, budget_mb: float,
                thumb: int, n_samples: int, tmp_dir: Path, report: Progress) -> DecodedClip:
    """Decode `clip` at `fps` into a new frame store (scaled down when it would pass `budget_mb`)."""
    import cv2

    from emotalk import media

    t_est = max(1, int(round(duration * fps)))
    cap = int(t_est * 1.02) + int(2 * fps) + 10  # the decoder may give a few frames more than duration * fps
    scale = min(1.0, math.sqrt(budget_mb * 1e6 / max(1, cap * width * height * 3)))
    w, h = width, height
    if scale < 1.0:
        w, h = max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)
        scale = w / width
    nbytes = cap * w * h * 3
    d = store_dir(nbytes, tmp_dir)
    d.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="emotalk-frames-", suffix=".npy", dir=d)
    os.close(fd)
    path = Path(name)
    want = set(np.linspace(0, t_est - 1, n_samples).round().astype(int).tolist())
    try:
        store = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(cap, h, w, 3))
        thumbs = np.empty((cap, thumb, thumb), np.float32)
        samples, n = [], 0
        for i, f in enumerate(media.iter_frames(clip, fps=fps, size=None if scale == 1.0 else (w, h),
                                                max_frames=cap)):
            store[i] = f
            g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
            thumbs[i] = cv2.resize(g, (thumb, thumb), interpolation=cv2.INTER_AREA)
            if i in want:
                samples.append(np.array(f))
            n = i + 1
            if i % 50 == 0:
                report(f"checking frame {i}/{t_est}", i / t_est)
        store.flush()
        del store
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if n == 0:
        path.unlink(missing_ok=True)
        raise MediaError(f"No frames could be read from {clip.name}; the file seems damaged. Re-encode it.")
    return DecodedClip(path, n, scale, thumbs[:n], samples)
