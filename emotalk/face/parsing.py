"""Face parsing: BiSeNet (CelebAMask-HQ, 19 labels) on face-centred crops, then cleaned labels.

Cleaning removes what the network gets wrong frame by frame: temporal flicker (class probabilities
averaged over neighbouring frames before the argmax), stray islands (small components of a class
given to their surroundings) and holes (small background pockets inside the person).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

LABELS = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eyeglasses", "l_ear", "r_ear",
          "earring", "nose", "mouth", "u_lip", "l_lip", "neck", "necklace", "cloth", "hair", "hat")
BG, SKIN, NECK, NECKLACE, CLOTH, HAIR = 0, 1, 14, 15, 16, 17
MOUTH, U_LIP, L_LIP = 11, 12, 13
HEAD_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17, 18)  # removed from body frames
BODY_CLASSES = (14, 15, 16)  # neck, necklace, cloth
FACE_CLASSES = (1, 2, 3, 4, 5, 6, 10, 11, 12, 13)  # the face proper (no hair, ears, neck)

# An overlay colour per label (RGB), for contact sheets.
PALETTE = np.array([
    [0, 0, 0], [255, 204, 153], [102, 51, 0], [153, 76, 0], [0, 128, 255], [0, 64, 255], [200, 200, 200],
    [255, 128, 128], [255, 96, 160], [255, 255, 0], [255, 153, 51], [80, 0, 80], [255, 0, 0],
    [180, 0, 60], [204, 255, 153], [0, 255, 255], [0, 153, 76], [153, 0, 204], [96, 96, 255]], np.uint8)

_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass
class ParsingSettings:
    """Network input and cleaning."""

    input_size: int = 512  # BiSeNet input side (its training size)
    batch: int = 4  # frames per forward pass on a CPU
    batch_cuda: int = 16  # frames per forward pass on a GPU
    frame_step: int = 1  # the network sees every k-th frame; the ones between get blended probabilities
    frame_step_cpu: int = 2  # frame_step on a CPU (half the forward passes; see docs in parse.py)
    temporal_weights: tuple[float, float, float] = (0.25, 0.5, 0.25)  # prob. averaging over t-1, t, t+1
    min_island_frac: float = 2e-4  # components smaller than this fraction of the image are reassigned
    max_hole_frac: float = 0.01  # background pockets not touching the border, up to this size, are filled


class FaceParser:
    """BiSeNet wrapper: RGB uint8 crops -> class probabilities at the crops' own size."""

    def __init__(self, settings: ParsingSettings = ParsingSettings(), device: str = "cpu"):
        import torch

        from emotalk.assets import fetch
        from emotalk.face.bisenet import load_bisenet

        self.settings = settings
        self.device = device
        self.net = load_bisenet(str(fetch("79999_iter.pth")), device).to(memory_format=torch.channels_last)
        if device.startswith("cuda"):
            torch.backends.cudnn.benchmark = True

    def _probs_t(self, frames: np.ndarray):
        """frames [B,S,S,3] uint8 -> probabilities [B,19,S,S] float16 torch tensor on the device."""
        import torch
        import torch.nn.functional as F

        S = frames.shape[1]
        n = self.settings.input_size
        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device).permute(0, 3, 1, 2).float() / 255
        if S != n:
            x = F.interpolate(x, size=(n, n), mode="bilinear", align_corners=False, antialias=S > n)
        mean = torch.as_tensor(_MEAN, device=self.device).view(1, 3, 1, 1)
        std = torch.as_tensor(_STD, device=self.device).view(1, 3, 1, 1)
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            logits = self.net(x)
            if S != n:
                logits = F.interpolate(logits, size=(S, S), mode="bilinear", align_corners=False)
            return torch.softmax(logits, 1).to(torch.float16)

    def probs(self, frames: np.ndarray) -> np.ndarray:
        """frames [B,S,S,3] uint8 -> probabilities [B,19,S,S] float16."""
        return self._probs_t(frames).cpu().numpy()

    def _prob_stream(self, frames: Iterable[np.ndarray]) -> Iterator:
        """Probabilities [19,S,S] (float16 tensors on the device) per frame, in order. With frame_step
        k > 1 the network sees every k-th frame and the last; a frame between two it saw gets their
        probabilities blended by its distance to each (k times fewer forward passes)."""
        k = max(1, self.settings.frame_step)
        keys: list[tuple[int, np.ndarray]] = []  # (index, frame) waiting for the network
        prev: tuple[int, object] | None = None  # the latest (index, probabilities) computed
        last: tuple[int, np.ndarray] | None = None  # the latest frame seen

        def run():
            nonlocal prev
            idx = [i for i, _ in keys]
            for j, p in zip(idx, self._probs_t(np.stack([f for _, f in keys]))):
                if prev is not None:
                    i0, p0 = prev
                    for i in range(i0 + 1, j):  # the frames between: blended
                        w = (i - i0) / (j - i0)
                        yield (p0.float() * (1 - w) + p.float() * w).to(p.dtype)
                yield p
                prev = (j, p)
            keys.clear()

        for i, f in enumerate(frames):
            last = (i, f)
            if i % k == 0:
                keys.append((i, f))
                if len(keys) == self.settings.batch:
                    yield from run()
        if last is not None and last[0] % k:
            keys.append(last)
        if keys:
            yield from run()

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Labels [S,S] uint8 per frame, temporally smoothed (one frame of look-ahead), not yet cleaned."""
        import torch

        w_prev, w_cur, w_next = self.settings.temporal_weights
        prev = cur = None

        def emit(nxt):
            with torch.inference_mode():
                acc = cur.float() * w_cur
                acc += (prev if prev is not None else cur).float() * w_prev
                acc += (nxt if nxt is not None else cur).float() * w_next
                return acc.argmax(0).to(torch.uint8).cpu().numpy()

        with torch.inference_mode():
            for p in self._prob_stream(frames):
                if cur is not None:
                    yield emit(p)
                    prev = cur
                cur = p
            if cur is not None:
                yield emit(None)


def clean_labels(lab: np.ndarray, settings: ParsingSettings = ParsingSettings()) -> np.ndarray:
    """Remove stray islands and fill small holes in one label map [S,S] uint8 (returns a new map)."""
    import cv2
    from scipy.ndimage import distance_transform_edt

    S = lab.shape[0]
    min_area = max(4, int(settings.min_island_frac * lab.size))
    bad = np.zeros(lab.shape, bool)
    for c in np.unique(lab):
        if c == BG:
            continue
        m = (lab == c).astype(np.uint8)
        n, cc, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        if n <= 2:
            if n == 2 and stats[1, cv2.CC_STAT_AREA] < min_area:
                bad |= m.astype(bool)
            continue
        lut = stats[:, cv2.CC_STAT_AREA] < min_area
        lut[0] = False
        if lut.any():
            bad |= lut[cc]
    # background pockets inside the person
    m = (lab == BG).astype(np.uint8)
    n, cc, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=4)
    if n > 2:
        x0, y0 = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
        x1 = x0 + stats[1:, cv2.CC_STAT_WIDTH]
        y1 = y0 + stats[1:, cv2.CC_STAT_HEIGHT]
        inner = (x0 > 0) & (y0 > 0) & (x1 < S) & (y1 < S)
        lut = np.zeros(n, bool)
        lut[1:] = inner & (stats[1:, cv2.CC_STAT_AREA] < settings.max_hole_frac * lab.size)
        if lut.any():
            bad |= lut[cc]
    if not bad.any():
        return lab.copy()
    _, (iy, ix) = distance_transform_edt(bad, return_indices=True)
    return lab[iy, ix]


def overlay(frame: np.ndarray, lab: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Frame [S,S,3] with labels blended over it, class borders drawn (for contact sheets)."""
    import cv2

    col = PALETTE[lab]
    out = (frame.astype(np.float32) * (1 - alpha) + col.astype(np.float32) * alpha).astype(np.uint8)
    edges = cv2.morphologyEx(lab, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    out[edges] = 255
    return out


def contact_sheet(tiles: list[np.ndarray], cols: int = 4) -> np.ndarray:
    """Tile same-sized images [H,W,3] into one grid image."""
    h, w = tiles[0].shape[:2]
    rows = (len(tiles) + cols - 1) // cols
    sheet = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = t
    return sheet
