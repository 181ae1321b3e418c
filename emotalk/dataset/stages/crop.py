"""One fixed square crop for the whole clip: the head moves inside it, neck and shoulders below."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emotalk.face.landmarks import face_height_px


@dataclass
class CropSettings:
    """Where the square goes, relative to the face mesh (forehead-to-chin height h)."""

    side_over_face: float = 2.5  # crop side / median face height (AD-NeRF-like framing)
    face_centre_y: float = 0.42  # the face centre's height in the crop, from the top (0..1)
    motion_margin: float = 0.35  # the face's box over the clip, grown by this fraction of h, must fit


@dataclass
class Crop:
    """Square in source pixels."""

    x0: int
    y0: int
    side: int

    def to_crop(self, pts: np.ndarray, size: int) -> np.ndarray:
        """Source px [...,2 or 3] -> crop px at `size` (z scaled like x)."""
        s = size / self.side
        out = pts.astype(np.float32).copy()
        out[..., 0] = (out[..., 0] - self.x0) * s
        out[..., 1] = (out[..., 1] - self.y0) * s
        if out.shape[-1] > 2:
            out[..., 2] *= s
        return out

    def apply(self, frame: np.ndarray, size: int) -> np.ndarray:
        """Cut the square from a source frame [H,W,3] and resize it to [size,size,3]."""
        import cv2

        f = frame[self.y0:self.y0 + self.side, self.x0:self.x0 + self.side]
        interp = cv2.INTER_AREA if self.side > size else cv2.INTER_CUBIC
        return cv2.resize(f, (size, size), interpolation=interp) if self.side != size else f.copy()


def choose_crop(lmk: np.ndarray, found: np.ndarray, width: int, height: int,
                s: CropSettings = CropSettings()) -> Crop:
    """lmk [T,478,2+] source px -> the clip's square (inside the frame; the frame's short side at most)."""
    L = lmk[found]
    h = float(np.median(face_height_px(L)))
    cx = float(np.median((L[:, :, 0].min(1) + L[:, :, 0].max(1)) / 2))
    cy = float(np.median((L[:, :, 1].min(1) + L[:, :, 1].max(1)) / 2))
    bx0, bx1 = L[:, :, 0].min() - s.motion_margin * h, L[:, :, 0].max() + s.motion_margin * h
    by0, by1 = L[:, :, 1].min() - s.motion_margin * h, L[:, :, 1].max() + s.motion_margin * h
    side = max(s.side_over_face * h, bx1 - bx0, (by1 - by0) / 0.8)
    side = int(round(min(side, width, height)))
    x0 = cx - side / 2
    y0 = cy - s.face_centre_y * side
    # keep the moving face box inside when possible, then the square inside the frame
    x0 = min(max(x0, bx1 - side), bx0)
    y0 = min(max(y0, by1 - side), by0)
    x0 = int(round(min(max(x0, 0), width - side)))
    y0 = int(round(min(max(y0, 0), height - side)))
    return Crop(x0, y0, side)
