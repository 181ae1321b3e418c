"""Evaluation metrics: PSNR, SSIM, ST-LPIPS on images (full frame or face box) and LMD on mouth landmarks.

Images are float tensors in [0,1], [B,H,W,3] (channels last, as rendered) unless said otherwise.
Other metric families (lip sync, emotion) live beside these.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from emotalk.face.landmarks import MOUTH_LANDMARKS


def as_float(img) -> Tensor:
    """uint8 arrays or tensors -> float tensor in [0,1]; floats are passed through."""
    t = torch.as_tensor(np.asarray(img)) if not isinstance(img, Tensor) else img
    return t.float() / 255.0 if t.dtype == torch.uint8 else t.float()


def psnr(pred, gt, mask: Tensor | None = None) -> Tensor:
    """Per-image PSNR (dB) of [B,H,W,C] images in [0,1]; `mask` [B,H,W] restricts the pixels."""
    p, g = as_float(pred), as_float(gt)
    se = (p - g) ** 2
    if mask is None:
        mse = se.flatten(1).mean(1)
    else:
        m = mask.float()[..., None].expand_as(se)
        mse = (se * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp_min(1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


def _gauss_window(size: int = 11, sigma: float = 1.5, device=None) -> Tensor:
    x = torch.arange(size, device=device, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_map(pred: Tensor, gt: Tensor) -> Tensor:
    """SSIM map (Wang et al. 2004, 11×11 Gaussian σ=1.5, valid region) of [B,C,H,W] images in [0,1]."""
    C = pred.shape[1]
    g = _gauss_window(device=pred.device).to(pred.dtype)
    wx = g.view(1, 1, 1, -1).repeat(C, 1, 1, 1)
    wy = g.view(1, 1, -1, 1).repeat(C, 1, 1, 1)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(x, wx, groups=C), wy, groups=C)

    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(pred), blur(gt)
    sxx = blur(pred * pred) - mu_x**2
    syy = blur(gt * gt) - mu_y**2
    sxy = blur(pred * gt) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))


def ssim(pred, gt) -> Tensor:
    """Per-image SSIM of [B,H,W,3] images in [0,1] (differentiable)."""
    p, g = as_float(pred).permute(0, 3, 1, 2), as_float(gt).permute(0, 3, 1, 2)
    return ssim_map(p, g).flatten(1).mean(1)


class _Blur(nn.Module):
    """Anti-aliasing [1,2,1]² blur + stride-2 subsampling with reflect padding (shift-tolerant AlexNet)."""

    def __init__(self, ch: int):
        super().__init__()
        self.register_buffer("filt", torch.zeros(ch, 1, 3, 3))

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), self.filt, stride=2, groups=x.shape[1])


class STLPIPS(nn.Module):
    """ST-LPIPS (Ghildyal & Liu 2022): LPIPS on a shift-tolerant, anti-aliased AlexNet.

    Weights (backbone and linear heads) come from the `alex_shift_tolerant.pth` asset; lower is closer.
    """

    def __init__(self):
        super().__init__()
        conv = nn.Conv2d
        self.c1, self.b1 = conv(3, 64, 11, stride=1, padding=2), _Blur(64)
        self.b2, self.c2 = _Blur(64), conv(64, 192, 5, padding=2)
        self.b3, self.c3 = _Blur(192), conv(192, 384, 3, padding=1)
        self.c4, self.c5 = conv(384, 256, 3, padding=1), conv(256, 256, 3, padding=1)
        self.lins = nn.ModuleList([nn.Conv2d(c, 1, 1, bias=False) for c in (64, 192, 384, 256, 256)])
        self.register_buffer("shift", torch.zeros(1, 3, 1, 1))
        self.register_buffer("scale", torch.ones(1, 3, 1, 1))

    @classmethod
    def from_asset(cls) -> STLPIPS:
        from emotalk.assets import fetch

        sd = torch.load(fetch("alex_shift_tolerant.pth"), map_location="cpu", weights_only=True)
        m = cls()
        names = {"net.slice1.0": "c1", "net.slice1.1": "b1", "net.slice2.4": "b2", "net.slice2.5": "c2",
                 "net.slice3.8": "b3", "net.slice3.9": "c3", "net.slice4.11": "c4", "net.slice5.13": "c5"}
        new = {}
        for k, v in sd.items():
            if k.startswith("scaling_layer."):
                new[k.split(".", 1)[1]] = v
            elif k.startswith("lin"):
                new[f"lins.{k[3]}.weight"] = v
            else:
                pre, leaf = k.rsplit(".", 1)
                new[f"{names[pre]}.{leaf}"] = v
        m.load_state_dict(new, strict=True)
        return m.eval().requires_grad_(False)

    def features(self, x: Tensor) -> list[Tensor]:
        x = (x - self.shift) / self.scale
        h1 = self.b1(self.c1(x)).relu()
        h2 = self.c2(self.b2(F.max_pool2d(h1, 3, 1))).relu()
        h3 = self.c3(self.b3(F.max_pool2d(h2, 3, 1))).relu()
        h4 = self.c4(h3).relu()
        h5 = self.c5(h4).relu()
        return [h1, h2, h3, h4, h5]

    def forward(self, pred: Tensor, gt: Tensor) -> Tensor:
        """[B,3,H,W] images in [0,1] -> [B] distances."""
        fa, fb = self.features(pred * 2 - 1), self.features(gt * 2 - 1)
        d = 0
        for lin, a, b in zip(self.lins, fa, fb):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            d = d + lin((a - b) ** 2).mean((2, 3))
        return d[:, 0]


@lru_cache(maxsize=4)
def stlpips_model(device: str = "cpu") -> STLPIPS:
    """A cached ST-LPIPS network on a device."""
    return STLPIPS.from_asset().to(device)


def stlpips(pred, gt) -> Tensor:
    """Per-image ST-LPIPS of [B,H,W,3] images in [0,1]."""
    p, g = as_float(pred), as_float(gt)
    net = stlpips_model(str(p.device))
    return net(p.permute(0, 3, 1, 2), g.permute(0, 3, 1, 2))


def face_box(lmk2d: np.ndarray, size: int, margin: float = 0.1) -> tuple[int, int, int, int]:
    """Square box (x0, y0, x1, y1) around landmarks [L,2] or [T,L,2] (their union), grown by `margin`."""
    p = np.asarray(lmk2d).reshape(-1, 2)
    lo, hi = p.min(0), p.max(0)
    c, half = (lo + hi) / 2, (hi - lo).max() / 2 * (1 + margin)
    x0, y0 = (np.floor(c - half)).astype(int).clip(0, size - 1)
    x1, y1 = (np.ceil(c + half)).astype(int).clip(x0 + 1, size)
    return int(x0), int(y0), int(x1), int(y1)


def lmd(pred_lmk: np.ndarray, gt_lmk: np.ndarray, idx=MOUTH_LANDMARKS) -> float:
    """Landmark distance (px): mean Euclidean distance of mouth landmarks [T,478,2+] over frames.

    Frames where either side has no detection (NaN) are skipped; NaN when none is left.
    """
    a, b = np.asarray(pred_lmk)[:, idx, :2], np.asarray(gt_lmk)[:, idx, :2]
    d = np.linalg.norm(a - b, axis=-1).mean(1)
    d = d[np.isfinite(d)]
    return float(d.mean()) if len(d) else float("nan")


def detect_landmarks(frames: np.ndarray) -> np.ndarray:
    """MediaPipe landmarks [T,478,2] (px) of uint8 RGB frames [T,H,W,3]; NaN where no face is found."""
    from emotalk.face.tracking import detect_faces

    out = np.full((len(frames), 478, 2), np.nan, np.float32)
    for i, faces in enumerate(detect_faces(list(frames), max_faces=1)):
        if faces:
            out[i] = faces[0][:, :2]
    return out


def image_metrics(pred, gt, box: tuple[int, int, int, int] | None = None, lpips: bool = True,
                  batch: int = 8) -> dict[str, float]:
    """Mean PSNR, SSIM, ST-LPIPS of frames [T,H,W,3] (full frame, and in `box` as *_face)."""
    P, G = as_float(pred), as_float(gt)
    res: dict[str, list[float]] = {}
    crops = [("", None)] + ([("_face", box)] if box is not None else [])
    for i in range(0, len(P), batch):
        p, g = P[i:i + batch], G[i:i + batch]
        for suffix, bx in crops:
            sl = (slice(None),) if bx is None else (slice(None), slice(bx[1], bx[3]), slice(bx[0], bx[2]))
            pp, gg = p[sl], g[sl]
            res.setdefault("psnr" + suffix, []).extend(psnr(pp, gg).tolist())
            res.setdefault("ssim" + suffix, []).extend(ssim(pp, gg).tolist())
            if lpips:
                with torch.no_grad():
                    res.setdefault("stlpips" + suffix, []).extend(stlpips(pp, gg).tolist())
    return {k: float(np.mean(v)) for k, v in res.items()}
