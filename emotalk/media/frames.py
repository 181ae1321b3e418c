"""Frame-stack helpers shared by every stage that changes the size of frames or label maps."""

from __future__ import annotations

import numpy as np

INTERPOLATIONS = ("area", "nearest", "cubic", "linear")  # names accepted by resize_frames


def resize_frames(frames: np.ndarray, size: int | tuple[int, int], interpolation: str = "area") -> np.ndarray:
    """Resize a stack [N,H,W(,C)] to `size` (a side for square frames, or (W,H)); returned unchanged
    (not copied) when it already has that size. "area" for shrinking images, "nearest" for label maps."""
    import cv2

    flags = {"area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST, "cubic": cv2.INTER_CUBIC,
             "linear": cv2.INTER_LINEAR}
    if interpolation not in flags:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    w, h = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if frames.shape[1:3] == (h, w):
        return frames
    return np.stack([cv2.resize(f, (w, h), interpolation=flags[interpolation]) for f in frames])


def even(n: int) -> int:
    """The largest even number <= n (at least 2): H.264 needs even frame sides."""
    return max(2, n - n % 2)
