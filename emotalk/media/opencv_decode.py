"""Video decoding with OpenCV's bundled decoder, for hosts without an ffmpeg binary (GPU hosts).

Same output as the ffmpeg path: RGB [H,W,3] uint8 frames at a constant rate, resized with area
averaging. Output frame k shows the source frame whose time, rounded to the output grid, is the last at
or before k (ffmpeg's fps filter); source times are index / nominal rate, so variable-rate files are
only approximated here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from emotalk.errors import MediaError


def iter_frames(path: Path, fps: float = 25.0, size: tuple[int, int] | None = None,
                max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield RGB frames [H,W,3] uint8 of `path` at a constant `fps` (`size=(W,H)` resizes)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise MediaError(f"{path.name} could not be opened: there is no ffmpeg binary here and OpenCV cannot "
                         "read it either. Re-encode it as H.264 mp4, or install imageio-ffmpeg.")
    src_fps = cap.get(cv2.CAP_PROP_FPS)
    src_fps = src_fps if src_fps and src_fps > 0 else fps
    limit = float("inf") if max_frames is None else int(max_frames)

    def out(frame: np.ndarray) -> np.ndarray:
        rgb = frame[..., ::-1]
        if size and (rgb.shape[1], rgb.shape[0]) != tuple(size):
            rgb = cv2.resize(rgb, tuple(size), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(rgb)

    k = i = 0  # output frames given, source frames read
    held = None  # the latest source frame, converted
    try:
        while k < limit:
            ok, frame = cap.read()
            if not ok:
                break
            slot = int(round(i * fps / src_fps))
            while held is not None and k < min(slot, limit):
                yield held
                k += 1
            held = out(frame)
            i += 1
        end = int(round(i * fps / src_fps))  # the last source frame lasts until the clip's end
        while held is not None and k < min(max(end, 1), limit):
            yield held
            k += 1
    finally:
        cap.release()
    if i == 0:
        raise MediaError(f"No frames could be decoded from {path.name} (OpenCV; no ffmpeg binary here). "
                         "The file is damaged or not a video: re-export it.")
