"""Compact, exact storage of per-frame label maps: chunks of frames, XOR-delta in time, in a zip npz.

Consecutive label maps differ only along moving borders, so the XOR with the previous frame is nearly all
zeros and deflates to a few KB; a chunk starts from a full frame, so any frame is reached by decoding
one chunk.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

CHUNK = 25  # frames per chunk


class LabelWriter:
    """Append label maps [S,S] uint8 one at a time; close() writes the npz."""

    def __init__(self, path: str | Path, chunk: int = CHUNK):
        self.path = Path(path)
        self.chunk = chunk
        self._zip = zipfile.ZipFile(self.path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6)
        self._buf: list[np.ndarray] = []
        self._n = 0
        self._k = 0
        self._shape: tuple[int, int] | None = None

    def write(self, lab: np.ndarray) -> None:
        self._shape = lab.shape
        self._buf.append(np.asarray(lab, np.uint8))
        self._n += 1
        if len(self._buf) == self.chunk:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        a = np.stack(self._buf)
        d = a.copy()
        d[1:] = np.bitwise_xor(a[1:], a[:-1])
        with self._zip.open(f"chunk_{self._k:05d}.npy", "w") as f:
            np.lib.format.write_array(f, d)
        self._k += 1
        self._buf = []

    def close(self) -> None:
        self._flush()
        info = np.array([self._n, self.chunk, *(self._shape or (0, 0))], np.int64)
        with self._zip.open("info.npy", "w") as f:
            np.lib.format.write_array(f, info)  # n_frames, chunk, S, S
        self._zip.close()


def _undelta(d: np.ndarray) -> np.ndarray:
    """XOR-deltas [n,S,S] -> label maps, in place: frame by frame (np.bitwise_xor.accumulate along axis 0
    gives the same but ~40x slower, element by element)."""
    for i in range(1, len(d)):
        np.bitwise_xor(d[i], d[i - 1], out=d[i])
    return d


def read_labels(path: str | Path, idx: np.ndarray | None = None) -> np.ndarray:
    """Label maps [N,S,S] uint8 for frame indices idx (all when None)."""
    with np.load(path) as z:
        n, chunk, h, w = (int(v) for v in z["info"])
        idx = np.arange(n) if idx is None else np.asarray(idx, np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"frame index out of range 0..{n - 1}")
        out = np.empty((len(idx), h, w), np.uint8)
        cache: dict[int, np.ndarray] = {}
        for j, i in enumerate(idx):
            k = int(i) // chunk
            if k not in cache:
                cache.clear()
                cache[k] = _undelta(z[f"chunk_{k:05d}"])
            out[j] = cache[k][int(i) % chunk]
        return out
