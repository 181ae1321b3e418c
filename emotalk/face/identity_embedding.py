"""Identity embedding for evaluation: dlib's face-recognition ResNet (128-D descriptor) on faces aligned
by dlib's 5-point shape predictor, and the cosine similarity of two descriptors.

An emotion must keep the person: face-editing work measures this as the similarity of a recogniser's
embeddings of the edited and the original face. The face box handed to the 5-point predictor comes from
MediaPipe landmarks when they are given (the evaluation tracks every frame with MediaPipe anyway, and it
finds faces in tight render crops and off-frontal poses where dlib's HOG detector misses), mapped to the
box dlib's detector would draw (the predictor was trained on those boxes); without landmarks dlib's HOG
detector finds the box. Faces not found give NaN rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emotalk.errors import InputError, MediaError
from emotalk.face.landmarks import FACE_OVAL

ASSET = "dlib-face-recognition"  # registry name of the two model files
RECOGNITION_FILE = "dlib_face_recognition_resnet_model_v1.dat"
PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
DIM = 128  # descriptor length
# dlib's HOG box from the MediaPipe face-oval box (x0, y0, x1, y1): a square of side
# BOX_SIDE x oval width, centred on the oval box's centre moved BOX_SHIFT_X x its width. Fitted (median)
# on 51 frames of MEAD, shared clips and renders: side/width 1.055 (sd 0.07), x shift -0.019 (sd 0.04),
# y shift -0.005 x height (sd 0.05).
BOX_SIDE = 1.055
BOX_SHIFT_X = -0.02
DETECT_UPSAMPLE = 1  # dlib HOG detector upsampling (finds faces down to ~40 px)
CHIP_PADDING = 0.25  # dlib's default padding of the aligned 150x150 face chip


def box_from_landmarks(lmk: np.ndarray) -> tuple[int, int, int, int]:
    """dlib-style square face box (left, top, right, bottom) px from MediaPipe landmarks [478,2+] px."""
    if lmk.ndim != 2 or lmk.shape[0] < 468 or lmk.shape[1] < 2:
        raise InputError(f"Face landmarks must be MediaPipe's [478,2+] array, got shape {lmk.shape}.")
    o = lmk[FACE_OVAL, :2].astype(np.float64)
    (x0, y0), (x1, y1) = o.min(0), o.max(0)
    w = x1 - x0
    cx, cy, half = 0.5 * (x0 + x1) + BOX_SHIFT_X * w, 0.5 * (y0 + y1), 0.5 * BOX_SIDE * w
    return (int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half)))


class IdentityEmbedder:
    """dlib's ResNet face descriptor on 5-point-aligned faces (CPU; dlib-bin has no CUDA)."""

    def __init__(self, jitters: int = 0):
        try:
            import dlib
        except ImportError as e:
            raise MediaError(
                "The identity measure needs dlib (the dlib-bin wheel). Install it with: "
                "pip install -r requirements.txt (or bash scripts/setup.sh)."
            ) from e
        from emotalk.assets import fetch

        folder = fetch(ASSET)
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(folder / PREDICTOR_FILE))
        self._net = dlib.face_recognition_model_v1(str(folder / RECOGNITION_FILE))
        self._detector = None
        self.jitters = jitters  # extra randomly jittered copies averaged per face (0: one pass)

    def detect_box(self, image: np.ndarray) -> tuple[int, int, int, int] | None:
        """The largest face's dlib HOG box (left, top, right, bottom) in image [H,W,3] uint8, or None."""
        if self._detector is None:
            self._detector = self._dlib.get_frontal_face_detector()
        dets = self._detector(np.ascontiguousarray(image[..., :3]), DETECT_UPSAMPLE)
        if not len(dets):
            return None
        r = max(dets, key=lambda d: d.width() * d.height())
        return (r.left(), r.top(), r.right(), r.bottom())

    def embed_one(self, image: np.ndarray, box: Sequence[float] | None) -> np.ndarray:
        """Descriptor [128] float32 of the face in box (left, top, right, bottom) of image [H,W,3] uint8
        (box None: dlib's detector finds it); NaN when no face is found."""
        img = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
        if box is None:
            box = self.detect_box(img)
            if box is None:
                return np.full(DIM, np.nan, np.float32)
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._predictor(img, rect)
        d = self._net.compute_face_descriptor(img, shape, self.jitters, CHIP_PADDING)
        return np.asarray(d, np.float32)

    def embed(self, images: np.ndarray, boxes: np.ndarray | None = None,
              landmarks: np.ndarray | None = None) -> np.ndarray:
        """Descriptors [B,128] float32 of images [B,H,W,3] uint8 (NaN rows where no face).

        boxes [B,4] (left, top, right, bottom) px, or landmarks [B,478,2+] px (MediaPipe; NaN rows =
        face lost), or neither (dlib's detector)."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] < 3 or images.dtype != np.uint8:
            raise InputError(f"Images must be uint8 [B,H,W,3], got {images.dtype} {images.shape}.")
        n = len(images)
        for name, x in (("boxes", boxes), ("landmarks", landmarks)):
            if x is not None and len(x) != n:
                raise InputError(f"{name} has {len(x)} rows for {n} images; give one per image.")
        out = np.full((n, DIM), np.nan, np.float32)
        for i in range(n):
            if landmarks is not None:
                lm = np.asarray(landmarks[i])
                if not np.isfinite(lm[:, :2]).all():
                    continue
                box = box_from_landmarks(lm)
            elif boxes is not None:
                if not np.isfinite(np.asarray(boxes[i], np.float64)).all():
                    continue
                box = tuple(boxes[i])
            else:
                box = None
            out[i] = self.embed_one(images[i], box)
        return out


_default: IdentityEmbedder | None = None


def default_embedder() -> IdentityEmbedder:
    """One embedder per process (loading the two model files takes ~0.5 s)."""
    global _default
    if _default is None:
        _default = IdentityEmbedder()
    return _default


def embed(images: np.ndarray, boxes: np.ndarray | None = None, landmarks: np.ndarray | None = None
          ) -> np.ndarray:
    """Descriptors [B,128] of images [B,H,W,3] uint8 (see IdentityEmbedder.embed)."""
    return default_embedder().embed(images, boxes, landmarks)


def identity_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of descriptors a [...,128] and b [...,128] -> [...] (NaN where either is NaN)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    return (a * b).sum(-1) / np.maximum(na * nb, 1e-12)


def mean_similarity(a: np.ndarray, b: np.ndarray, paired: bool = False, skip_same: bool = False) -> float:
    """Mean cosine similarity of descriptor sets a [n,128] and b [m,128], faces lost (NaN rows) left out.

    paired: row i of a with row i of b (n == m; same frames of two renders); else every pair (a x b).
    skip_same: leave out the diagonal of a x b (a and b are the same frames: a set against itself).
    NaN when no pair is left."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if paired:
        if len(a) != len(b):
            raise InputError(f"Paired similarity needs as many rows in both sets ({len(a)} vs {len(b)}).")
        s = identity_similarity(a, b)
    else:
        s = identity_similarity(a[:, None, :], b[None, :, :])
        if skip_same:
            s = s[~np.eye(len(a), len(b), dtype=bool)]
    s = s[np.isfinite(s)]
    return float(s.mean()) if s.size else float("nan")


def sample_indices(n_frames: int, k: int) -> np.ndarray:
    """k frame indices [k] spread evenly over n_frames (all of them when n_frames <= k)."""
    if n_frames <= k:
        return np.arange(n_frames)
    return np.round(np.linspace(0, n_frames - 1, k + 2)[1:-1]).astype(int)
