"""A sequence lip driver: the audio code of a whole clip [T,W,C] -> its lip code [T,M], seeing ±0.5 s.

Why: the per-frame `LipDriver` sees one 0.32 s window and is trained by MSE per frame, so on speakers it never
saw it regresses to the mean (small openings, no real closures). This driver embeds each frame's window, then
runs dilated temporal convolutions over the frames (receptive field `receptive_field` frames, ±0.48 s at
25 fps with the defaults) and is trained on position, velocity and closures (`sequence_loss`), with silence
pulled to the clip's rest pose (`rest_targets`).

Contract: unlike `LipDriver` (forward(code [B,W,C]) -> [B,M], any frames), `forward` takes frames **in time
order** - code [T,W,C] -> [T,M] (one clip) or [B,T,W,C] -> [B,T,M] - so a caller must pass a whole clip (or
contiguous crops), never shuffled frames. `is_sequence_driver` tells the two apart; `load_any_driver` loads
either kind from its file's metadata ("kind": "sequence"); `adapt_sequence_driver` is the speaker adaptation
(contiguous crops instead of random frames).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from emotalk.errors import AssetError, InputError
from emotalk.lips import LIP_NAMES, LipDriver, load_driver

KIND = "sequence"  # the "kind" metadata of a saved sequence driver


@dataclass(frozen=True)
class SequenceSettings:
    """Shape of a SequenceDriver."""

    step_dim: int = 16  # per-step projection of the audio code (per window step)
    frame_dim: int = 32  # per-frame embedding fed to the temporal convolutions (64 overfits: 35 speakers)
    kernel: int = 5  # temporal kernel (frames)
    dilations: tuple[int, ...] = (1, 2, 3)  # one residual conv block each; field 1 + (k-1)*sum(d) frames
    dropout: float = 0.5  # on the frame embedding and inside each block (training only)
    causal: bool = False  # True: frame t sees only frames <= t (streaming); False: centred (lips anticipate)


@dataclass(frozen=True)
class LossWeights:
    """Terms of `sequence_loss`."""

    velocity: float = 0.3  # MSE of frame-to-frame differences, relative to the position MSE
    closure: float = 2.0  # extra position weight on closure frames (1 + closure there)
    closure_q: float = 0.15  # closure frames: true gap in the clip's lowest closure_q fraction


class _Block(nn.Module):
    """Residual dilated conv over time: x [B,D,T] -> [B,D,T], padded so the length is kept."""

    def __init__(self, dim: int, kernel: int, dilation: int, dropout: float, causal: bool):
        super().__init__()
        span = (kernel - 1) * dilation
        self.pad = (span, 0) if causal else (span // 2, span - span // 2)
        self.conv = nn.Conv1d(dim, dim, kernel, dilation=dilation)
        self.mix = nn.Conv1d(dim, dim, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv(F.pad(F.gelu(x), self.pad, mode="replicate"))
        return x + self.drop(self.mix(F.gelu(h)))


class SequenceDriver(nn.Module):
    """Audio code [T,W,C] (or [B,T,W,C]) in time order -> lip code [T,M] (z-scores, times `gain`)."""

    sequence = True  # marks the time-ordered contract (see `is_sequence_driver`)

    def __init__(self, window: int, channels: int, n_out: int = len(LIP_NAMES),
                 settings: SequenceSettings = SequenceSettings()):
        super().__init__()
        if settings.kernel < 1 or settings.kernel % 2 == 0:
            raise InputError(f"SequenceSettings.kernel must be odd and >= 1, got {settings.kernel}.")
        self.window, self.channels, self.n_out, self.settings = window, channels, n_out, settings
        self.register_buffer("in_mean", torch.zeros(channels))  # [C]
        self.register_buffer("in_std", torch.ones(channels))  # [C]
        self.register_buffer("gain", torch.ones(n_out))  # [M]
        s = settings
        self.step = nn.Linear(channels, s.step_dim)
        self.frame = nn.Sequential(nn.GELU(), nn.Flatten(), nn.Dropout(s.dropout),
                                   nn.Linear(window * s.step_dim, s.frame_dim))
        self.blocks = nn.ModuleList(_Block(s.frame_dim, s.kernel, d, s.dropout, s.causal)
                                    for d in s.dilations)
        self.head = nn.Conv1d(s.frame_dim, n_out, 1)

    @property
    def receptive_field(self) -> int:
        """Frames one output sees (the window of each frame adds ±W/2 feature steps on top)."""
        return 1 + (self.settings.kernel - 1) * sum(self.settings.dilations)

    def raw(self, code: Tensor) -> Tensor:
        """Prediction before the gain: code [T,W,C] -> [T,M] or [B,T,W,C] -> [B,T,M]."""
        single = code.dim() == 3
        x = code[None] if single else code
        if x.dim() != 4 or tuple(x.shape[2:]) != (self.window, self.channels):
            raise InputError(f"The sequence driver needs audio code [T,{self.window},{self.channels}] "
                             f"(or [B,T,W,C]) in time order, got {tuple(code.shape)}.")
        B, T = x.shape[:2]
        x = (x.float() - self.in_mean) / self.in_std
        h = self.frame(self.step(x).reshape(B * T, self.window, -1)).reshape(B, T, -1).transpose(1, 2)
        for blk in self.blocks:  # h [B,D,T]
            h = blk(h)
        out = self.head(h).transpose(1, 2)  # [B,T,M]
        return out[0] if single else out

    def forward(self, code: Tensor) -> Tensor:
        return self.raw(code) * self.gain


def is_sequence_driver(driver: nn.Module) -> bool:
    """True for a driver whose forward wants whole clips in time order (not shuffled frames)."""
    return bool(getattr(driver, "sequence", False))


# --- targets and loss -------------------------------------------------------------------------------------

def closure_mask(gap: np.ndarray, q: float = LossWeights.closure_q) -> np.ndarray:
    """Closure frames [T] bool: the clip's true gap [T] at or below its q-quantile."""
    gap = np.asarray(gap, np.float64)
    return gap <= np.quantile(gap, q)


def rest_targets(code: np.ndarray, rest_w: np.ndarray) -> np.ndarray:
    """Targets [T,M]: the tracked code [T,M] pulled towards the clip's rest pose (its mean over silent frames,
    weighted by rest_w [T] in [0,1]) where rest_w > 0, so silence trains a still, resting mouth."""
    code = np.asarray(code, np.float32)
    w = np.clip(np.asarray(rest_w, np.float32), 0, 1)[:, None]
    if w.sum() < 1:
        return code
    rest = (code * w).sum(0) / w.sum()
    return ((1 - w) * code + w * rest).astype(np.float32)


def sequence_loss(pred: Tensor, target: Tensor, closure: Tensor | None = None,
                  weights: LossWeights = LossWeights()) -> Tensor:
    """Position + velocity + closure loss of pred/target [B,T,M]; closure [B,T] bool (or None)."""
    w = torch.ones(pred.shape[:2], device=pred.device)
    if closure is not None:
        w = w + weights.closure * closure.float()
    pos = (w[..., None] * (pred - target) ** 2).sum() / (w.sum() * pred.shape[-1])
    if pred.shape[1] < 2 or weights.velocity == 0:
        return pos
    vel = F.mse_loss(pred[:, 1:] - pred[:, :-1], target[:, 1:] - target[:, :-1])
    return pos + weights.velocity * vel


# --- use -------------------------------------------------------------------------------------------------

def predict_clip(driver: nn.Module, code: np.ndarray | Tensor, batch: int = 256) -> np.ndarray:
    """Either driver's code [T,M] (with its gain) for a clip's audio code [T,W,C]."""
    x = torch.as_tensor(np.asarray(code, np.float32) if isinstance(code, np.ndarray) else code).float()
    dev = next(driver.parameters()).device
    with torch.no_grad():
        if is_sequence_driver(driver):
            return driver(x.to(dev)).cpu().numpy()
        return torch.cat([driver(x[i:i + batch].to(dev)) for i in range(0, len(x), batch)]).cpu().numpy()


def crops(T: int, length: int, n: int, g: torch.Generator) -> list[tuple[int, int]]:
    """n random [a, b) frame ranges of at most `length` frames inside [0, T)."""
    L = min(length, T)
    starts = torch.randint(0, T - L + 1, (n,), generator=g).tolist()
    return [(a, a + L) for a in starts]


def adapt_sequence_driver(driver: SequenceDriver, code: Tensor, lips: Tensor, steps: int = 100,
                          lr: float = 3e-4, batch: int = 8, length: int = 64, seed: int = 0) -> float:
    """Speaker adaptation, in place (the sequence counterpart of `emotalk.lips.adapt_driver`): fine-tune on
    contiguous crops of one identity's frames, audio code [T,W,C] against tracked lip code [T,M] (time order);
    returns the last batch loss."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(driver.parameters(), lr=lr)
    was = [p.requires_grad for p in driver.parameters()]
    driver.requires_grad_(True).train()
    loss = torch.zeros(())
    try:
        for _ in range(steps):
            ab = crops(len(code), length, batch, g)
            x = torch.stack([code[a:b] for a, b in ab])
            y = torch.stack([lips[a:b] for a, b in ab]).to(x.device)
            loss = sequence_loss(driver.raw(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        for p, r in zip(driver.parameters(), was):
            p.requires_grad_(r)
        driver.eval()
    return float(loss.detach())


# --- files -----------------------------------------------------------------------------------------------

def save_sequence_driver(driver: SequenceDriver, path: str | Path, **info) -> Path:
    """Weights + shape/settings metadata (safetensors, "kind": "sequence"), written atomically."""
    from safetensors.torch import save

    from emotalk.folders import atomic_write_bytes

    meta = {"kind": KIND, "window": str(driver.window), "channels": str(driver.channels),
            "names": json.dumps(LIP_NAMES), "settings": json.dumps(asdict(driver.settings)),
            **{k: json.dumps(v) for k, v in info.items()}}
    tensors = {k: v.detach().contiguous().cpu() for k, v in driver.state_dict().items()}
    return atomic_write_bytes(path, save(tensors, metadata=meta))


def _read(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    if not path.is_file():
        raise AssetError(f"The lip driver {path} is missing: train one with scripts/train_sequence_driver.py "
                         f"or pass the path of an existing one.")
    with safe_open(str(path), "pt") as f:
        return dict(f.metadata() or {}), {k: f.get_tensor(k) for k in f.keys()}


def load_sequence_driver(path: str | Path) -> SequenceDriver:
    """A saved sequence driver, on the CPU, in eval mode."""
    meta, tensors = _read(Path(path))
    if meta.get("kind") != KIND:
        raise AssetError(f"{path} is not a sequence lip driver (no kind=sequence in its metadata): "
                         f"load it with emotalk.lips.load_driver.")
    if json.loads(meta.get("names", "[]")) != list(LIP_NAMES):
        raise AssetError(f"The lip driver {path} predicts {meta.get('names')}, this version needs "
                         f"{list(LIP_NAMES)}: train it again with scripts/train_sequence_driver.py.")
    s = json.loads(meta["settings"])
    s["dilations"] = tuple(s["dilations"])
    d = SequenceDriver(int(meta["window"]), int(meta["channels"]), settings=SequenceSettings(**s))
    d.load_state_dict(tensors)
    return d.eval()


def load_any_driver(path: str | Path) -> LipDriver | SequenceDriver:
    """Either kind of driver file, chosen by its metadata: the switch a loader needs to accept both."""
    meta, _ = _read(Path(path))
    return load_sequence_driver(path) if meta.get("kind") == KIND else load_driver(path)
