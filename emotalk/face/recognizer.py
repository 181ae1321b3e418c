"""Facial emotion recognition for evaluation: fer's 7-class FER2013 model on landmark-aligned face crops.

The crop is made from MediaPipe landmarks: the image is rotated so the eye line is horizontal, and a
square box around the face (centred between the brows' top and the chin, side a multiple of the
forehead-to-chin height) is cut, turned to grey and resized to the model's 64×64 input. The 7 class
probabilities (fer order: angry, disgust, fear, happy, sad, surprise, neutral) map to (valence, arousal)
as the probability-weighted category coordinates.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from emotalk.emotion import FER_CLASSES, FER_VA
from emotalk.errors import InputError, MediaError
from emotalk.face.landmarks import CHIN, EYE_OUTER, FACE_OVAL, FACE_TOP


@dataclass
class CropSettings:
    """Where the square face crop lies, relative to the aligned face."""

    # defaults chosen by the lowest frame-level NLL of the true class on the 21 MEAD ceiling clips over a
    # 3x3 grid (in-sample; see BENCHMARKS.md, Emotion for the plain box 1.0 / 0.5 and a held-out actor)
    scale: float = 0.95  # crop side / forehead-to-chin height of the mesh
    centre_y: float = 0.45  # crop centre between mesh top (0) and chin (1), along the face's vertical
    size: int = 64  # model input side, px


def align_crop(image: np.ndarray, lmk: np.ndarray, settings: CropSettings = CropSettings()) -> np.ndarray:
    """Eye-line-aligned square grey crop [size,size] uint8 of the face in image [H,W,3], lmk [478,2+] px."""
    import cv2

    if lmk.ndim != 2 or lmk.shape[0] != 478 or lmk.shape[1] < 2:
        raise InputError(f"Face landmarks must be MediaPipe's [478,2+] array, got shape {lmk.shape}.")
    p = lmk[:, :2].astype(np.float64)
    d = p[EYE_OUTER[1]] - p[EYE_OUTER[0]]
    angle = np.degrees(np.arctan2(d[1], d[0]))
    up = p[FACE_TOP]
    down = p[CHIN]
    h = float(np.linalg.norm(down - up))
    # centre: along the forehead-chin line; horizontally at the face oval's middle
    centre = up + settings.centre_y * (down - up)
    oval = p[FACE_OVAL]
    c_oval = 0.5 * (oval.min(0) + oval.max(0))
    x_axis = d / np.linalg.norm(d)
    centre = centre + x_axis * ((c_oval - centre) @ x_axis)
    side = settings.scale * h
    s = settings.size / side
    M = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), s)
    M[:, 2] += settings.size / 2.0 - centre
    grey = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    return cv2.warpAffine(grey, M, (settings.size, settings.size), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REPLICATE)


class EmotionRecognizer:
    """fer's FER2013 classifier (TFLite, run with ai-edge-litert) on aligned face crops."""

    def __init__(self, crop: CropSettings = CropSettings()):
        from ai_edge_litert.interpreter import Interpreter

        from emotalk.assets import fetch

        self.crop = crop
        self._it = Interpreter(model_path=str(fetch("emotion_model_quantized.tflite")), num_threads=1)
        self._it.allocate_tensors()
        inp = self._it.get_input_details()[0]
        self._in, self._out = inp["index"], self._it.get_output_details()[0]["index"]
        shape = tuple(int(x) for x in inp["shape"])
        if shape != (1, crop.size, crop.size, 1):
            raise MediaError(f"Unexpected emotion model input {shape}; "
                             f"expected (1, {crop.size}, {crop.size}, 1). Re-fetch the model file.")

    def probs_crop(self, crop: np.ndarray) -> np.ndarray:
        """7 class probabilities [7] of one grey crop [64,64] uint8 (fer scaling: x/255 to [-1, 1])."""
        x = (crop.astype(np.float32) / 255.0 - 0.5) * 2.0
        self._it.set_tensor(self._in, x[None, :, :, None])
        self._it.invoke()
        p = self._it.get_tensor(self._out)[0].astype(np.float64)
        return (p / max(p.sum(), 1e-12)).astype(np.float32)

    def probs(self, image: np.ndarray, lmk: np.ndarray) -> np.ndarray:
        """Class probabilities [7] of the face in image [H,W,3] uint8 given its landmarks [478,2+] px."""
        return self.probs_crop(align_crop(image, lmk, self.crop))

    def probs_frames(self, frames: Iterable[np.ndarray], lmk: np.ndarray) -> np.ndarray:
        """Per-frame probabilities [T,7] for frames with landmarks [T,478,2+]."""
        return np.stack([self.probs(f, lm) for f, lm in zip(frames, lmk)])


def probs_to_va(probs: np.ndarray) -> np.ndarray:
    """Probability-weighted category coordinates: probs [...,7] -> (valence, arousal) [...,2]."""
    return probs @ FER_VA


def class_name(index: int) -> str:
    """Our category name of a fer class index."""
    return FER_CLASSES[index]


def recognise_video(frames: np.ndarray, recognizer: EmotionRecognizer | None = None, fps: float = 25.0
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Track faces in frames [T,H,W,3] and classify each: (probs [T,7], found [T] bool; lost frames = nan)."""
    from emotalk.face.tracking import track_video

    tr = track_video(frames, len(frames), fps=fps)
    if not tr.found.any():
        raise MediaError("No face was found in the video; the emotion recogniser needs a visible face.")
    rec = recognizer or EmotionRecognizer()
    out = np.full((len(frames), 7), np.nan, np.float32)
    for i in np.flatnonzero(tr.found):
        out[i] = rec.probs(frames[i], tr.lmk[i])
    return out, tr.found
