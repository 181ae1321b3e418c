"""A small synthetic identity dataset (same attributes as `emotalk.data.IdentityDataset`) for unit tests.

A head made of Gaussians (skin ellipsoid, dark eyes, red lips, an inside mouth that opens with a
'speech' signal) is rendered with the reference rasterizer from slowly turning head poses, together
with its parsing labels, 3-D landmarks and a per-frame audio code that drives the mouth opening.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from emotalk.face.landmarks import INNER_LIP_RING
from emotalk.face.tracking import BLENDSHAPE_NAMES
from emotalk.gaussians.raster import rasterize_torch


@dataclass
class SyntheticDataset:
    """Duck-typed stand-in for IdentityDataset (plus `audio_code`, which real datasets compute)."""

    root: Path
    meta: dict
    size: int
    fps: float
    n_frames: int
    K: np.ndarray
    world_to_cam: np.ndarray
    lmk2d: np.ndarray
    lmk3d: np.ndarray
    blendshapes: np.ndarray
    blendshape_names: list[str]
    upper_face: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    background: np.ndarray
    audio_code: np.ndarray  # [T,W,C]
    _frames: np.ndarray = field(repr=False, default=None)
    _parsing: np.ndarray = field(repr=False, default=None)
    _body: np.ndarray = field(repr=False, default=None)

    def frames(self, idx=None) -> np.ndarray:
        return self._frames if idx is None else self._frames[np.asarray(idx)]

    def parsing(self, idx=None) -> np.ndarray:
        return self._parsing if idx is None else self._parsing[np.asarray(idx)]

    def body(self, idx=None) -> np.ndarray:
        return self._body if idx is None else self._body[np.asarray(idx)]

    def audio(self) -> np.ndarray:
        t = np.arange(int(self.n_frames / self.fps * 16000)) / 16000
        return (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def make_synthetic(size: int = 64, n_frames: int = 40, seed: int = 0, window: int = 4,
                   channels: int = 8) -> SyntheticDataset:
    """Render a synthetic talking head: T frames of size² px with labels (takes ~1 s per 40 frames)."""
    rng = np.random.default_rng(seed)
    # Gaussians on an ellipsoid surface (front half), head frame: x right, y down, z towards the back.
    n = 1500
    u = rng.uniform(-np.pi * 0.55, np.pi * 0.55, n)
    v = rng.uniform(-np.pi * 0.45, np.pi * 0.45, n)
    ax = np.array([0.8, 1.0, 0.8])
    pts = np.stack([np.sin(u) * np.cos(v), np.sin(v), -np.cos(u) * np.cos(v)], -1) * ax
    cls = np.ones(n, np.int64)  # skin
    col = np.tile([0.85, 0.65, 0.55], (n, 1))
    eye = (np.abs(np.abs(pts[:, 0]) - 0.3) < 0.1) & (np.abs(pts[:, 1] + 0.25) < 0.07)
    col[eye], cls[eye] = [0.1, 0.1, 0.15], 4
    lips = (np.abs(pts[:, 0]) < 0.28) & (np.abs(pts[:, 1] - 0.45) < 0.07)
    col[lips], cls[lips] = [0.75, 0.2, 0.25], 12
    hair = pts[:, 1] < -0.65
    col[hair], cls[hair] = [0.2, 0.12, 0.05], 17
    # inside mouth: a dark patch behind the lips, shown when the lips part
    m = 200
    mouth = np.stack([rng.uniform(-0.22, 0.22, m), rng.uniform(0.4, 0.5, m),
                      rng.uniform(-0.72, -0.68, m)], -1)
    T = n_frames
    speech = 0.5 + 0.5 * np.sin(np.arange(T) * 0.9) * np.sin(np.arange(T) * 0.23)  # mouth opening [0,1]
    S = size
    K = np.array([[S * 1.6, 0, S / 2], [0, S * 1.6, S / 2], [0, 0, 1]], np.float32)
    w2c = np.zeros((T, 4, 4), np.float32)
    frames = np.zeros((T, S, S, 3), np.uint8)
    parsing = np.zeros((T, S, S), np.uint8)
    lmk_idx = rng.choice(n, 478, replace=False)
    lmk3d = np.zeros((T, 478, 3), np.float32)
    lmk2d = np.zeros((T, 478, 2), np.float32)
    bg = np.array([0.3, 0.35, 0.4])
    body = np.zeros((T, S, S, 3), np.uint8)
    onehot = np.eye(19)
    for t in range(T):
        R = _rot_y(0.25 * np.sin(t / T * 2 * np.pi))
        w2c[t, :3, :3], w2c[t, :3, 3], w2c[t, 3, 3] = R, [0, 0, 4.0], 1
        p = pts.copy()
        lower = lips & (pts[:, 1] > 0.45)
        p[lower, 1] += 0.12 * speech[t]  # lower lip drops
        jaw = pts[:, 1] > 0.52
        p[jaw, 1] += 0.12 * speech[t]
        mo = mouth.copy()
        mo[:, 1] = 0.45 + (mouth[:, 1] - 0.45) * (0.2 + 1.6 * speech[t])
        allp = np.concatenate([p, mo])
        allc = np.concatenate([col, np.tile([0.25, 0.05, 0.08], (m, 1))])
        allcls = np.concatenate([cls, np.full(m, 11)])
        feat = np.concatenate([allc, onehot[allcls]], 1)
        ms = torch.tensor(allp, dtype=torch.float32)
        out = rasterize_torch(ms, torch.tensor([[1.0, 0, 0, 0]]).repeat(len(ms), 1),
                              torch.full((len(ms), 3), 0.08), torch.full((len(ms),), 0.9),
                              torch.tensor(feat, dtype=torch.float32), torch.tensor(w2c[t:t + 1]),
                              torch.tensor(K[None]), S, S)
        img = out.rgb[0, ..., :3].numpy() + (1 - out.alpha[0].numpy()) * bg
        frames[t] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
        lab = out.rgb[0, ..., 3:].numpy()
        parsing[t] = np.where(out.alpha[0, ..., 0].numpy() > 0.5, lab.argmax(-1), 0)
        body[t] = np.clip(bg * 255 + 0.5, 0, 255).astype(np.uint8)
        lmk = p[lmk_idx].copy()
        ring = np.stack([np.linspace(-0.2, 0.2, 20), np.full(20, 0.47), np.full(20, -0.75)], -1)
        lmk[INNER_LIP_RING] = ring
        lmk3d[t] = lmk
        pc = lmk @ R.T + [0, 0, 4.0]
        lmk2d[t] = pc[:, :2] / pc[:, 2:] * K[0, 0] + K[:2, 2]
    t_ax = np.arange(T)[:, None, None]
    code = np.sin(speech[:, None, None] * np.arange(1, channels + 1)[None, None] + 0.1 * t_ax * 0
                  + np.arange(window)[None, :, None] * 0.01).astype(np.float32)
    blink = np.zeros((T, 2), np.float32)
    names = list(BLENDSHAPE_NAMES)
    bs = np.zeros((T, 52), np.float32)
    bs[:, [names.index("eyeBlinkLeft"), names.index("eyeBlinkRight")]] = blink
    bs[:, names.index("jawOpen")] = speech  # the mouth opening, as a tracker would report it
    n_val = max(1, T // 11)
    return SyntheticDataset(
        root=Path("synthetic"), meta={"units": "synthetic", "version": 0}, size=S, fps=25.0, n_frames=T,
        K=K, world_to_cam=w2c, lmk2d=lmk2d, lmk3d=lmk3d, blendshapes=bs, blendshape_names=names,
        upper_face=blink, train_idx=np.arange(T - n_val), val_idx=np.arange(T - n_val, T),
        background=np.full((S, S, 3), bg * 255, np.uint8), audio_code=code,
        _frames=frames, _parsing=parsing, _body=body)
