"""The identity dataset folder: its files, the loaded view of them, and its version."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotalk.errors import DatasetError
from emotalk.folders import read_folder_json
from emotalk.media import SR  # audio sample rate of every dataset

DATASET_VERSION = 1

FILES = ("meta.json", "frames.mp4", "body.mp4", "background.png", "tracks.npz", "parsing.npz", "audio.wav")


@dataclass
class IdentityDataset:
    """A preprocessed identity (see docs/DATASET.md). Arrays are loaded; videos decode on demand."""

    root: Path
    meta: dict
    size: int  # S
    fps: float
    n_frames: int  # T
    K: np.ndarray  # [3,3] float32 pinhole intrinsics at S×S px (OpenCV)
    world_to_cam: np.ndarray  # [T,4,4] float32 head frame -> camera (x right, y down, z forward)
    lmk2d: np.ndarray  # [T,478,2] float32 MediaPipe landmarks in crop px
    lmk3d: np.ndarray  # [T,478,3] float32 landmarks in the head frame (with expression), meta["units"]
    blendshapes: np.ndarray  # [T,52] float32
    blendshape_names: list[str]
    upper_face: np.ndarray  # [T,U] float32 eye-blink + brow blendshapes only
    upper_face_names: list[str]
    train_idx: np.ndarray  # int64
    val_idx: np.ndarray  # int64
    background: np.ndarray  # [S,S,3] uint8
    found: np.ndarray  # [T] bool: face detected (False = interpolated)
    head_template: np.ndarray  # [478,3] float32 rigid head shape in the head frame

    def _video(self, name: str, idx) -> np.ndarray:
        from emotalk import media

        sel = None if idx is None else np.asarray(idx, np.int64).reshape(-1)
        if sel is not None and len(sel) and (sel.min() < 0 or sel.max() >= self.n_frames):
            raise IndexError(f"frame index out of range 0..{self.n_frames - 1}")
        n = self.n_frames if sel is None or not len(sel) else int(sel.max()) + 1
        out = np.empty((n if sel is None else len(sel), self.size, self.size, 3), np.uint8)
        want = None if sel is None else {}
        if sel is not None:
            for j, i in enumerate(sel):
                want.setdefault(int(i), []).append(j)
        k = -1
        for k, f in enumerate(media.iter_frames(self.root / name, fps=self.fps, max_frames=n)):
            if want is None:
                out[k] = f
            else:
                for j in want.get(k, ()):
                    out[j] = f
        if k + 1 < n:
            raise DatasetError(f"{self.root / name} has {k + 1} frames, expected {n}: the dataset is "
                               "damaged; run preprocess again.")
        return out

    def frames(self, idx=None) -> np.ndarray:
        """[N,S,S,3] uint8 RGB crops (all when idx is None)."""
        return self._video("frames.mp4", idx)

    def body(self, idx=None) -> np.ndarray:
        """[N,S,S,3] uint8 head-removed body frames."""
        return self._video("body.mp4", idx)

    def parsing(self, idx=None) -> np.ndarray:
        """[N,S,S] uint8 CelebAMask-HQ labels, cleaned."""
        from emotalk.dataset.stages.store import read_labels

        return read_labels(self.root / "parsing.npz", idx)

    def audio(self) -> np.ndarray:
        """float32 16 kHz mono, shifted to correct the measured AV offset; n_frames/fps seconds long."""
        import soundfile as sf

        wav, sr = sf.read(str(self.root / "audio.wav"), dtype="float32")
        if sr != SR:
            raise DatasetError(f"{self.root / 'audio.wav'} is {sr} Hz, expected {SR}; run preprocess again.")
        return wav.reshape(-1)


def load_dataset(path: str | os.PathLike) -> IdentityDataset:
    """Open a dataset folder; DatasetError when a file is missing or it is another format version."""
    import cv2

    root = Path(path)
    meta = read_folder_json(root, FILES, "meta.json", "identity dataset",
                            f"python -m emotalk preprocess CLIP --out {root}", "Run preprocess again.")
    ver = meta.get("format_version")
    if ver != DATASET_VERSION:
        raise DatasetError(f"The dataset at {root} has format version {ver}; this EmoTalk reads version "
                           f"{DATASET_VERSION}. Run preprocess again on its source clip.")
    try:
        with np.load(root / "tracks.npz") as z:
            tr = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise DatasetError(f"{root / 'tracks.npz'} is unreadable ({e}). Run preprocess again.") from e
    bg = cv2.imread(str(root / "background.png"), cv2.IMREAD_COLOR)
    if bg is None:
        raise DatasetError(f"{root / 'background.png'} is unreadable. Run preprocess again.")
    T, S = int(meta["n_frames"]), int(meta["size"])
    ds = IdentityDataset(
        root=root, meta=meta, size=S, fps=float(meta["fps"]), n_frames=T,
        K=tr["K"].astype(np.float32), world_to_cam=tr["world_to_cam"].astype(np.float32),
        lmk2d=tr["lmk2d"].astype(np.float32), lmk3d=tr["lmk3d"].astype(np.float32),
        blendshapes=tr["blendshapes"].astype(np.float32),
        blendshape_names=[str(s) for s in tr["blendshape_names"]],
        upper_face=tr["upper_face"].astype(np.float32),
        upper_face_names=[str(s) for s in tr["upper_face_names"]],
        train_idx=tr["train_idx"].astype(np.int64), val_idx=tr["val_idx"].astype(np.int64),
        background=np.ascontiguousarray(bg[..., ::-1]), found=tr["found"].astype(bool),
        head_template=tr["head_template"].astype(np.float32),
    )
    shapes = {"world_to_cam": (T, 4, 4), "lmk2d": (T, 478, 2), "lmk3d": (T, 478, 3), "background": (S, S, 3)}
    for k, shp in shapes.items():
        if getattr(ds, k).shape != shp:
            raise DatasetError(f"{root}: {k} has shape {getattr(ds, k).shape}, expected {shp}. "
                               "The dataset is damaged; run preprocess again.")
    if ds.blendshapes.shape[0] != T or ds.upper_face.shape[0] != T:
        raise DatasetError(f"{root}: per-frame arrays disagree with n_frames={T}. Run preprocess again.")
    return ds
