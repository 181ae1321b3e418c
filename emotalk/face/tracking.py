"""Face tracking: MediaPipe FaceLandmarker per frame (478 landmarks, 52 blendshapes), and lost frames.

MediaPipe gives landmarks with x, y normalised to the image and z in x's scale; we return them in
source pixels. Its own head pose is not used: `emotalk.face.head_pose` fits our camera to the landmarks.
Landmark indices and measures live in `emotalk.face.landmarks`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from emotalk.errors import MediaError

Progress = Callable[[str, float], None]

# FaceLandmarker's 52 blendshapes, in the order it returns them (caches store bare arrays)
BLENDSHAPE_NAMES = ("_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
                    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
                    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft",
                    "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
                    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward",
                    "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
                    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
                    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
                    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
                    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
                    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight")
UPPER_FACE_NAMES = ("eyeBlinkLeft", "eyeBlinkRight", "browDownLeft", "browDownRight", "browInnerUp",
                    "browOuterUpLeft", "browOuterUpRight")


@dataclass
class TrackerSettings:
    """MediaPipe FaceLandmarker options."""

    min_detection_confidence: float = 0.5  # face detector threshold
    min_presence_confidence: float = 0.5  # landmark model's face-present threshold
    min_tracking_confidence: float = 0.5  # below this the detector runs again


@dataclass
class RawTrack:
    """MediaPipe output for a clip, in source-image pixels."""

    lmk: np.ndarray  # [T,478,3] float32: x, y in source px; z in px (x's scale), smaller = nearer
    found: np.ndarray  # [T] bool: a face was found in that frame
    blendshapes: np.ndarray  # [T,52] float32 (zeros where not found)
    blendshape_names: list[str]
    width: int  # source frame width, px
    height: int  # source frame height, px


def _landmarker(mode: str, num_faces: int, settings: TrackerSettings):
    import mediapipe as mp  # noqa: F401  (heavy import kept local)
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    from emotalk.assets import fetch

    opts = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(fetch("face_landmarker.task"))),
        running_mode=getattr(vision.RunningMode, mode),
        num_faces=num_faces,
        min_face_detection_confidence=settings.min_detection_confidence,
        min_face_presence_confidence=settings.min_presence_confidence,
        min_tracking_confidence=settings.min_tracking_confidence,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=False,
    )
    return vision.FaceLandmarker.create_from_options(opts)


def _mp_image(frame: np.ndarray):
    import mediapipe as mp

    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))


def _faces_px(res, w: int, h: int) -> list[np.ndarray]:
    """Each detected face's landmarks [478,3] in px."""
    out = []
    for face in res.face_landmarks:
        a = np.array([(p.x, p.y, p.z) for p in face], np.float32)
        a[:, 0] *= w
        a[:, 1] *= h
        a[:, 2] *= w
        out.append(a)
    return out


def detect_faces(frames: Iterable[np.ndarray], max_faces: int = 3,
                 settings: TrackerSettings = TrackerSettings()) -> list[list[np.ndarray]]:
    """Independent per-image detection (for sampled frames): per frame, a list of [478,3] px arrays."""
    lm = _landmarker("IMAGE", max_faces, settings)
    try:
        out = []
        for f in frames:
            out.append(_faces_px(lm.detect(_mp_image(f)), f.shape[1], f.shape[0]))
        return out
    finally:
        lm.close()


def track_video(frames: Iterable[np.ndarray], n_frames: int | None = None, fps: float = 25.0,
                settings: TrackerSettings = TrackerSettings(), progress: Progress | None = None) -> RawTrack:
    """Run the landmarker in video mode over `frames` (RGB [H,W,3]); frames with no face are marked lost."""
    lm = _landmarker("VIDEO", 1, settings)
    lmks, found, bss = [], [], []
    names: list[str] = []
    w = h = 0
    try:
        for i, f in enumerate(frames):
            h, w = f.shape[:2]
            res = lm.detect_for_video(_mp_image(f), int(round(i * 1000.0 / fps)))
            faces = _faces_px(res, w, h)
            if faces:
                lmks.append(faces[0])
                found.append(True)
                cats = res.face_blendshapes[0]
                if not names:
                    names = [c.category_name for c in cats]
                bss.append(np.array([c.score for c in cats], np.float32))
            else:
                lmks.append(np.zeros((478, 3), np.float32))
                found.append(False)
                bss.append(None)
            if progress and n_frames and i % 25 == 0:
                progress(f"tracking frame {i}/{n_frames}", min(1.0, i / n_frames))
    finally:
        lm.close()
    if not lmks:
        raise MediaError("No frames could be read from the clip.")
    nb = len(names) or 52
    bs = np.stack([b if b is not None else np.zeros(nb, np.float32) for b in bss])
    return RawTrack(np.stack(lmks), np.array(found), bs, names, w, h)


# ----------------------------------------------------------------------------------------------
# gaps


def lost_runs(found: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of frames with no face."""
    runs, start = [], None
    for i, ok in enumerate(found):
        if not ok and start is None:
            start = i
        if ok and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(found)))
    return runs


def fill_gaps(x: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Linear interpolation over lost frames along axis 0 (edges hold the nearest found value)."""
    idx = np.flatnonzero(found)
    if len(idx) == len(found):
        return x
    flat = x.reshape(len(x), -1)
    out = np.empty_like(flat)
    t = np.arange(len(x))
    for j in range(flat.shape[1]):
        out[:, j] = np.interp(t, idx, flat[idx, j])
    return out.reshape(x.shape)
