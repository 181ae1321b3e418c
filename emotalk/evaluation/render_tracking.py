"""MediaPipe on rendered and real frames for the evaluation: one video-mode track, or each frame alone.

MediaPipe misses small faces, so frames smaller than TRACK_MIN_SIDE are upscaled first; and its face
detector can miss a face that fills the whole image (a tight head crop, as renders are), so a frame
tracked on its own where no face is found is tried again padded with its edge pixels. Landmarks are
mapped back to the frames' pixels.
"""

from __future__ import annotations

import numpy as np

from emotalk.media import resize_frames

TRACK_MIN_SIDE = 256  # frames smaller than this are upscaled before MediaPipe (it misses small faces)
SINGLE_FRAME_PAD = 0.5  # a lone frame with no face found is retried with this fraction of its side added
# on every side (edge pixels): on the tiny test identity's 64 px emotion renders the detector found 2
# faces of 9 as they are, 9 of 9 padded (only the misses are retried: found faces keep their landmarks)


def _upscale(frames: np.ndarray) -> tuple[np.ndarray, int]:
    k = int(np.ceil(TRACK_MIN_SIDE / max(1, min(frames.shape[1:3]))))
    if k <= 1:
        return frames, 1
    return resize_frames(frames, (frames.shape[2] * k, frames.shape[1] * k), "cubic"), k


def track_frames(frames: np.ndarray, video: bool = True, fps: float = 25.0):
    """MediaPipe on uint8 RGB frames [T,H,W,3] (small frames upscaled first).

    video=True: one video-mode track (temporal smoothing, as for real clips) -> (lmk [T,478,2] px with
    NaN where lost, mouth opening [T] with gaps filled); video=False: each frame on its own (renders of
    different emotions; retried padded where no face is found) -> (lmk [T,478,3] px, found [T]).
    """
    from emotalk.face.tracking import track_video

    big, k = _upscale(np.asarray(frames))
    if video:
        from emotalk.avsync.lipsync import track_mouth

        lmk, mouth = track_mouth(list(big), fps, n_frames=len(big))
        return lmk / k, mouth
    p = int(round(SINGLE_FRAME_PAD * max(big.shape[1:3])))
    lmk = np.zeros((len(big), 478, 3), np.float32)
    found = np.zeros(len(big), bool)
    for i, f in enumerate(big):
        for pad in (0, p):
            t = track_video([np.pad(f, ((pad, pad), (pad, pad), (0, 0)), mode="edge")], n_frames=1)
            if t.found[0]:
                lmk[i], found[i] = t.lmk[0], True
                lmk[i, :, :2] -= pad
                break
    lmk[..., :2] /= k
    return lmk, found
