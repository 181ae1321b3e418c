"""Decoded (and cropped) frames kept as a raw array on disk, so slow stages never stall the decoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emotalk import media
from emotalk.dataset.progress import Progress
from emotalk.errors import MediaError


def decode_crops(video: Path, crop, S: int, fps: float, T: int, dst: Path, report: Progress,
                 writer: media.VideoWriter | None = None) -> np.ndarray:
    """Decode a video (cutting `crop`, a stages.crop.Crop, when given) into a raw [T,S,S,3] array at
    `dst`, as fast as the decoder goes; frames also go to `writer` when given. MediaError when the video
    now decodes to another number of frames than T."""
    arr = np.lib.format.open_memmap(dst, mode="w+", dtype=np.uint8, shape=(T, S, S, 3))
    n = 0
    for i, f in enumerate(media.iter_frames(video, fps=fps, max_frames=T)):
        arr[i] = crop.apply(f, S) if crop is not None else f
        if writer is not None:
            writer.write(arr[i])
        n += 1
        if i % 25 == 0:
            report(f"decoding frame {i}/{T}", i / T)
    if n != T:
        raise MediaError(f"{video.name} decoded to {n} frames now but {T} before; the file seems damaged. "
                         "Re-encode it and try again.")
    return arr
