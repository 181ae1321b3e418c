"""The lip code: a few speaker-independent mouth parameters between the speech and the renderer.

Why: an identity learns its mouth from one short clip. Driven straight by the audio code, its speech
fields memorise that clip's frames and, on any other audio (even held-out audio of the same voice),
regress to a half-open mouth (measured: held-out inner-lip gap ~0.34x as wide in range as the truth,
phone contrast ~1). With the lip code the renderer is trained on the **tracked** lip parameters of
each frame (their full range), and a small `LipDriver`, trained once on many speakers and voice
perturbations (`scripts/train_lip_driver.py`), predicts them from any speech's audio code.

Parameters (`LIP_NAMES`), from FaceLandmarker landmarks [T,478,2+] (px) and blendshapes [T,52]:
inner-lip gap and mouth width over the outer-eye distance, jawOpen, rounding (funnel + pucker),
lip press (press + roll), lower-lip drop. Each identity z-scores its own (`LipStats`); the driver
predicts z-scores, scaled by a per-parameter gain that undoes its regression to the mean. Each identity
carries its own copy of the driver, first adapted to its speaker (`adapt_driver`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from emotalk.errors import AssetError, EmoTalkError
from emotalk.face.landmarks import eye_distance, mouth_opening, mouth_width_px

LIP_NAMES = ("gap", "width", "jaw", "round", "press", "lower")
OPENING_NAMES = ("gap", "jaw", "lower")  # the parameters that open the mouth (scaled by `scale_opening`)
# blendshapes averaged into each blendshape-based parameter
_BS_PARTS = {
    "jaw": ("jawOpen",),
    "round": ("mouthFunnel", "mouthPucker"),
    "press": ("mouthPressLeft", "mouthPressRight", "mouthRollLower", "mouthRollUpper"),
    "lower": ("mouthLowerDownLeft", "mouthLowerDownRight"),
}
DRIVER = Path(__file__).resolve().parents[1] / "models" / "lip_driver.safetensors"


def lip_params(lmk: np.ndarray, blendshapes: np.ndarray, names) -> np.ndarray:
    """Raw lip parameters [T,len(LIP_NAMES)] from landmarks [T,478,2+] (px) and blendshapes [T,52]."""
    lmk = np.asarray(lmk, np.float64)
    bs = np.asarray(blendshapes, np.float64)
    names = [str(n) for n in names]
    gap = mouth_opening(lmk)  # the lip-sync metric's mouth opening, so both measure the same thing
    width = mouth_width_px(lmk) / np.maximum(eye_distance(lmk), 1e-6)
    cols = {"gap": gap, "width": width}
    for k, parts in _BS_PARTS.items():
        missing = [p for p in parts if p not in names]
        if missing:
            raise EmoTalkError(f"blendshapes lack {missing}: track the clip again with FaceLandmarker "
                               f"(blendshapes on) to get lip parameters.")
        cols[k] = bs[:, [names.index(p) for p in parts]].mean(1)
    return np.stack([cols[k] for k in LIP_NAMES], 1).astype(np.float32)


@dataclass
class LipStats:
    """One identity's lip-parameter statistics: its code is (raw - mean) / std."""

    mean: np.ndarray  # [M] over its training frames
    std: np.ndarray  # [M] (floored, so a parameter that never moves does not blow up)

    @classmethod
    def of(cls, raw: np.ndarray) -> LipStats:
        raw = np.asarray(raw, np.float64)
        std = raw.std(0)
        floor = 1e-3 + 0.05 * std.max()
        return cls(raw.mean(0).astype(np.float32), np.maximum(std, floor).astype(np.float32))

    def code(self, raw: np.ndarray) -> np.ndarray:
        """z-scored lip code [T,M] of raw parameters [T,M]."""
        return ((np.asarray(raw, np.float32) - self.mean) / self.std).astype(np.float32)


def dataset_lips(ds) -> tuple[LipStats, np.ndarray]:
    """An identity dataset's lip statistics (over its training frames) and lip code [T,M] (all frames)."""
    raw = lip_params(ds.lmk2d, ds.blendshapes, ds.blendshape_names)
    stats = LipStats.of(raw[np.asarray(ds.train_idx)])
    return stats, stats.code(raw)


class LipDriver(nn.Module):
    """Audio code [B,W,C] -> lip code [B,M] (z-scores): per-step projection, then an MLP over the window.

    Inputs are standardised per channel with the training set's statistics (`in_mean`, `in_std`),
    outputs multiplied by `gain` (1 / the spread of its held-out predictions), so the predicted code
    spans the range real lips do instead of hugging the mean.
    """

    def __init__(self, window: int, channels: int, n_out: int = len(LIP_NAMES), step_dim: int = 24,
                 hidden: int = 96, dropout: float = 0.5):
        super().__init__()
        self.window, self.channels, self.n_out = window, channels, n_out
        self.register_buffer("in_mean", torch.zeros(channels))  # [C]
        self.register_buffer("in_std", torch.ones(channels))  # [C]
        self.register_buffer("gain", torch.ones(n_out))  # [M]
        self.step = nn.Linear(channels, step_dim)
        self.mlp = nn.Sequential(nn.GELU(), nn.Flatten(), nn.Dropout(dropout),
                                 nn.Linear(window * step_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, n_out))

    def raw(self, code: Tensor) -> Tensor:
        """Prediction before the gain: code [B,W,C] -> [B,M]."""
        x = (code - self.in_mean) / self.in_std
        return self.mlp(self.step(x))

    def forward(self, code: Tensor) -> Tensor:
        return self.raw(code) * self.gain


def adapt_driver(driver: LipDriver, code: Tensor, lips: Tensor, steps: int = 100, lr: float = 3e-4,
                 batch: int = 64, seed: int = 0) -> float:
    """Speaker adaptation, in place: fine-tune the driver on one identity's frames, audio code [N,W,C]
    against tracked lip code [N,M]; returns the last batch loss. Measured (scripts/train_lip_driver.py data):
    100 steps raise the held-out-sentence correlation of macron's inner-lip gap from 0.52 to 0.83 and leave
    the driver's correlation on speakers it never saw unchanged (0.57 -> 0.56 on obama)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(driver.parameters(), lr=lr)
    was = [p.requires_grad for p in driver.parameters()]
    driver.requires_grad_(True).train()
    loss = torch.zeros(())
    try:
        for _ in range(steps):
            b = torch.randint(0, len(code), (min(batch, len(code)),), generator=g).to(code.device)
            loss = F.mse_loss(driver.raw(code[b]), lips[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        for p, r in zip(driver.parameters(), was):
            p.requires_grad_(r)
        driver.eval()
    return float(loss.detach())


def driver_meta(driver: LipDriver, **info) -> dict[str, str]:
    return {"window": str(driver.window), "channels": str(driver.channels), "names": json.dumps(LIP_NAMES),
            **{k: json.dumps(v) for k, v in info.items()}}


def save_driver(driver: LipDriver, path: str | Path = DRIVER, **info) -> Path:
    """Weights + shape metadata (safetensors), written atomically."""
    from safetensors.torch import save

    from emotalk.folders import atomic_write_bytes

    tensors = {k: v.detach().contiguous().cpu() for k, v in driver.state_dict().items()}
    return atomic_write_bytes(path, save(tensors, metadata=driver_meta(driver, **info)))


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[dict, dict]:
    from safetensors import safe_open

    p = Path(path)
    if not p.is_file():
        raise AssetError(f"The lip driver {p} is missing: reinstall the package (it ships in emotalk/models) "
                         f"or train one with scripts/train_lip_driver.py.")
    with safe_open(str(p), "pt") as f:
        meta = dict(f.metadata() or {})
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return meta, tensors


def load_driver(path: str | Path = DRIVER) -> LipDriver:
    """The shipped (or given) lip driver, on the CPU, in eval mode."""
    meta, tensors = _load(str(path))
    if json.loads(meta.get("names", "[]")) != list(LIP_NAMES):
        raise AssetError(f"The lip driver {path} predicts {meta.get('names')}, this version needs "
                         f"{list(LIP_NAMES)}: train it again with scripts/train_lip_driver.py.")
    d = LipDriver(int(meta["window"]), int(meta["channels"]))
    d.load_state_dict(tensors)
    return d.eval()


def driver_info(path: str | Path = DRIVER) -> dict:
    """The metadata written with the driver (training clips, held-out scores)."""
    meta, _ = _load(str(path))
    return {k: (json.loads(v) if k not in ("window", "channels") else int(v)) for k, v in meta.items()}


def scale_opening(lips: Tensor, closed: Tensor, gain: float) -> Tensor:
    """Lip code [B,M] with the part of its opening parameters (`OPENING_NAMES`) above closed [M] moved
    `gain` times as far; values at or below it stay. Why: a renderer draws a code's opening smaller than the
    frames it learnt it from (shipped obama: 0.8x on held-out frames), and a per-identity gain (fitted by
    `emotalk.training.opening`) undoes that at render time. closed: a p/b/m closure
    (`TalkingGaussians.opening_floor`), so closures stay as closed as the phones and the driver make them
    (scaled from the most closed trained code instead, p/b/m frames opened too: BENCHMARKS.md, twelfth
    session)."""
    if gain == 1.0:
        return lips
    opening = {LIP_NAMES.index(n) for n in OPENING_NAMES}
    cols = [lips[:, j:j + 1] for j in range(lips.shape[1])]  # slices only: capturable in a CUDA graph
    for j in opening:
        cols[j] = cols[j] + (gain - 1.0) * torch.relu(cols[j] - closed[j:j + 1])
    return torch.cat(cols, 1)
