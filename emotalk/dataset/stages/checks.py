"""Early refusal of clips that cannot make an identity dataset, from a cheap look at the whole clip.

One decode pass keeps a thumbnail of every frame (scene cuts) and a few full frames (faces: count,
size, frame edge, yaw). Each failed check raises InputError saying what is wrong and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emotalk.errors import InputError
from emotalk.face import landmarks, tracking


@dataclass
class CheckSettings:
    """Thresholds of the early checks."""

    sample_frames: int = 16  # full frames looked at for faces
    min_face_px: float = 120.0  # forehead-to-chin height of the face mesh in source px
    max_yaw_deg: float = 45.0  # head turned further than this counts as turned away
    most: float = 0.5  # "most of the time": fraction of sampled frames
    multi_face_frac: float = 0.4  # two or more faces in this fraction of samples = refused
    edge_margin: float = 0.04  # face cut when landmarks pass the frame edge by this fraction of its height
    cut_ratio: float = 6.0  # a scene cut: thumbnail change this many times the clip's typical change...
    cut_min_diff: float = 25.0  # ...and at least this mean absolute difference (0..255)
    thumb: int = 32  # thumbnail side for the scene-cut check


@dataclass
class CheckReport:
    """What the early checks measured (saved in meta.json)."""

    n_frames: int
    face_height_px: float
    faces_per_sample: list[int]
    yaw_deg: list[float]
    scene_cut_frames: list[int] = field(default_factory=list)


def scene_cuts(thumbs: np.ndarray, s: CheckSettings) -> list[int]:
    """Frame indices t where frame t starts a new shot: thumbs [T,h,w] float32 grey."""
    if len(thumbs) < 3:
        return []
    d = np.abs(np.diff(thumbs, axis=0)).mean((1, 2))  # [T-1]
    typical = np.median(d) + 1.0
    return [int(i + 1) for i in np.flatnonzero((d > s.cut_ratio * typical) & (d > s.cut_min_diff))]


def check_faces(samples: list[np.ndarray], s: CheckSettings,
                name: str) -> tuple[float, list[int], list[float]]:
    """Refuse a clip by its sampled frames; returns (median face height, faces per sample, yaw per sample)."""
    faces = tracking.detect_faces(samples, max_faces=3)
    H, W = samples[0].shape[:2]
    return judge_faces(faces, W, H, s, name)


def judge_faces(faces: list[list[np.ndarray]], W: int, H: int, s: CheckSettings,
                name: str) -> tuple[float, list[int], list[float]]:
    """The decisions of check_faces, given per sample the detected faces' landmarks [478,3] in px."""
    counts = [len(f) for f in faces]
    n = len(faces)
    with_face = [i for i in range(n) if counts[i] > 0]
    if len(with_face) < (1 - s.most) * n:
        raise InputError(f"No face found in most of {name} ({len(with_face)} of {n} sampled frames). "
                         "Use a clip where one person faces the camera for the whole time.")
    multi = sum(c >= 2 for c in counts)
    if multi >= s.multi_face_frac * n:
        raise InputError(f"{name} shows two or more faces in {multi} of {n} sampled frames. "
                         "Use a clip with a single person (crop the video to them first).")
    heights, yaws, cut = [], [], 0
    for i in with_face:
        # the largest face is the speaker
        lm = max(faces[i], key=lambda a: float(landmarks.face_height_px(a)))
        h = float(landmarks.face_height_px(lm))
        heights.append(h)
        yaws.append(float(landmarks.yaw_deg(lm)))
        m = s.edge_margin * h
        x, y = lm[:, 0], lm[:, 1]
        if x.min() < -m or y.min() < -m or x.max() > W - 1 + m or y.max() > H - 1 + m:
            cut += 1
    med_h = float(np.median(heights))
    if med_h < s.min_face_px:
        raise InputError(f"The face in {name} is too small: about {med_h:.0f} px from forehead to chin, "
                         f"needs at least {s.min_face_px:.0f}. Use a higher-resolution or closer shot.")
    if cut > s.most * len(with_face):
        raise InputError(f"The face in {name} is cut by the frame edge in {cut} of {len(with_face)} sampled "
                         "frames. Use a shot where the whole head is inside the picture.")
    away = sum(abs(y) > s.max_yaw_deg for y in yaws)
    if away > s.most * len(with_face):
        raise InputError(f"The head in {name} is turned away (more than {s.max_yaw_deg:.0f} deg) in {away} "
                         f"of {len(with_face)} sampled frames. Use a clip where the person faces the camera.")
    return med_h, counts, yaws
