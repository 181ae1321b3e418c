"""Deformation fields: tri-plane features at canonical positions, conditioned on speech, upper face, emotion.

A tri-plane is three multi-resolution 2-D feature grids (xy, yz, xz) sampled with `grid_sample`, so it
runs anywhere PyTorch runs. Region attention (as in ER-NeRF): each Gaussian's spatial feature gates the
channels of each condition, so each part of the face listens to the audio channels that move it.
Everything that depends only on canonical positions is computed once (`SpatialCache`) and reused for
every frame: per frame only small matrix products remain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


@dataclass
class FieldSettings:
    """Sizes of the deformation fields."""

    plane_res: tuple[int, ...] = (32, 64, 128)  # tri-plane resolutions, coarse to fine
    plane_ch: int = 8  # feature channels per plane and level
    audio_dim: int = 32  # audio feature width after the window attention
    upper_dim: int = 8  # upper-face (blink, brow) embedding width
    emo_dim: int = 8  # emotion (valence, arousal) embedding width
    hidden: int = 64  # MLP width


class TriPlane(nn.Module):
    """Multi-resolution tri-plane over an axis-aligned box: positions [N,3] -> features [N,3·L·ch]."""

    def __init__(self, lo: Tensor, hi: Tensor, res: tuple[int, ...], ch: int):
        super().__init__()
        self.register_buffer("lo", lo.float().clone())  # [3] box corner
        self.register_buffer("hi", hi.float().clone())  # [3] opposite corner
        self.planes = nn.ParameterList(
            [nn.Parameter(0.1 * torch.randn(3, ch, r, r)) for r in res])  # each [3,ch,r,r]
        self.out_dim = 3 * len(res) * ch

    def forward(self, x: Tensor) -> Tensor:
        u = ((x - self.lo) / (self.hi - self.lo) * 2 - 1).clamp(-1, 1)  # [N,3] in [-1,1]
        coords = torch.stack([u[:, [0, 1]], u[:, [1, 2]], u[:, [0, 2]]])  # [3,N,2]
        feats = []
        for p in self.planes:
            f = F.grid_sample(p, coords[:, None], mode="bilinear", padding_mode="border",
                              align_corners=True)  # [3,ch,1,N]
            feats.append(f[:, :, 0].permute(2, 0, 1).reshape(x.shape[0], -1))  # [N,3·ch]
        return torch.cat(feats, -1)


class AudioEncoder(nn.Module):
    """Audio window [B,W,C] -> [B,A]: per-step projection, then attention over the window's steps."""

    def __init__(self, in_ch: int, window: int, out_dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(in_ch, 64), nn.LeakyReLU(0.02), nn.Linear(64, out_dim))
        k = min(3, window) | 1
        self.score = nn.Sequential(nn.Conv1d(out_dim, 16, k, padding=k // 2), nn.LeakyReLU(0.02),
                                   nn.Conv1d(16, 1, k, padding=k // 2))
        self.in_ch, self.window = in_ch, window

    def forward(self, a: Tensor) -> Tensor:
        h = self.proj(a)  # [B,W,A]
        w = torch.softmax(self.score(h.transpose(1, 2))[:, 0], dim=-1)  # [B,W]
        return (w[..., None] * h).sum(1)


@dataclass
class SpatialCache:
    """Per-Gaussian terms of a field that depend only on canonical positions."""

    base: Tensor  # [N,H] first-layer contribution of the spatial feature
    att: list[Tensor]  # per condition: [N,D_k] region attention gates in (0,2)
    att_all: Tensor | None = None  # [N,ΣD_k] the gates side by side (filled by precompute)
    emotion: SpatialCache | None = None  # the face branch's additive emotion field, when the model has one


class DeformField(nn.Module):
    """Per-Gaussian offsets from tri-plane features and gated conditions.

    Conditions are given already embedded: a list of [B,D_k] tensors (audio, upper face, emotion...).
    """

    def __init__(self, lo: Tensor, hi: Tensor, cond_dims: list[int], n_out: int, s: FieldSettings):
        super().__init__()
        self.tri = TriPlane(lo, hi, s.plane_res, s.plane_ch)
        F_ = self.tri.out_dim
        self.spatial = nn.Linear(F_, s.hidden)
        self.gates = nn.ModuleList([nn.Linear(F_, d) for d in cond_dims])
        self.cond = nn.ModuleList([nn.Linear(d, s.hidden, bias=False) for d in cond_dims])
        self.mlp = nn.Sequential(nn.ReLU(), nn.Linear(s.hidden, s.hidden), nn.ReLU(),
                                 nn.Linear(s.hidden, n_out))
        nn.init.zeros_(self.mlp[-1].weight)  # start as the identity deformation
        nn.init.zeros_(self.mlp[-1].bias)
        for g in self.gates:
            nn.init.zeros_(g.bias)

    def precompute(self, x: Tensor) -> SpatialCache:
        """x [N,3] canonical positions -> the frame-independent terms."""
        f = self.tri(x)
        att = [2 * torch.sigmoid(g(f)) for g in self.gates]
        return SpatialCache(self.spatial(f), att, torch.cat(att, -1))

    def forward(self, cache: SpatialCache, conds: list[Tensor]) -> Tensor:
        """conds: list of [B,D_k] -> offsets [B,N,n_out].

        Fast form: sum_k (att_k ⊙ c_k) W_k = [att_1 .. att_K] @ [c_1ᵀ⊙W_1; ..; c_Kᵀ⊙W_K], one batched
        matmul per frame batch without the [B,N,D] gated products (`forward_reference` is the plain form).
        """
        att = cache.att_all if cache.att_all is not None else torch.cat(cache.att, -1)  # [N,D]
        M = torch.cat([c[:, :, None] * lin.weight.t()[None] for c, lin in zip(conds, self.cond)], 1)  # B,D,H
        h = torch.matmul(att[None], M) + cache.base[None]  # [B,N,H]
        return self.mlp(h)

    def forward_reference(self, cache: SpatialCache, conds: list[Tensor]) -> Tensor:
        """Plain form of `forward`: gate each condition per Gaussian, then project."""
        h = cache.base[None]
        for att, lin, c in zip(cache.att, self.cond, conds):
            h = h + lin(att[None] * c[:, None, :])  # [B,N,H]
        return self.mlp(h)

    def attention(self, x: Tensor, k: int = 0) -> Tensor:
        """Region attention gates of condition k at positions x [N,3] -> [N,D_k] (for inspection)."""
        return 2 * torch.sigmoid(self.gates[k](self.tri(x)))
