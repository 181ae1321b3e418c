"""Adaptive density control: clone, split and prune Gaussians from their screen-space gradients."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from emotalk.gaussians.model import (
    TalkingGaussians,
)
from emotalk.gaussians.raster import quat_to_rotmat
from emotalk.training.settings import TrainSettings


def param_group(opt: torch.optim.Optimizer, name: str) -> dict:
    return next(g for g in opt.param_groups if g["name"] == name)


def edit_gaussians(model: TalkingGaussians, opt: torch.optim.Optimizer, branch: str, keep: Tensor,
                   new: dict[str, Tensor] | None) -> None:
    """Keep Gaussians `keep` [N] bool of a branch and append `new` ones; Adam moments follow (new: zeros)."""
    for k in GAUSS_KEYS:
        old = model.branches[branch][k]
        add = new[k] if new is not None else old[:0]
        p = torch.nn.Parameter(torch.cat([old.detach()[keep], add.detach()]))
        g = param_group(opt, f"{branch}.{k}")
        st = opt.state.pop(old, None)
        if st:
            for key in ("exp_avg", "exp_avg_sq"):
                st[key] = torch.cat([st[key][keep], torch.zeros_like(add)])
            opt.state[p] = st
        g["params"] = [p]
        model.branches[branch][k] = p


@dataclass
class GradStats:
    """Screen-space gradient accumulators of one branch, between densification rounds."""

    grad: Tensor  # [N] summed norm of d loss / d means2d (in NDC-like units)
    count: Tensor  # [N] number of renders where the Gaussian was visible


def accumulate(stats: GradStats, means2d: Tensor, radii: Tensor, S: int) -> None:
    if means2d.grad is None:
        return
    g = means2d.grad.detach().reshape(radii.shape + (2,)) * (S / 2)  # [B,N,2]
    vis = radii > 0
    stats.grad += (g.norm(dim=-1) * vis).sum(0)
    stats.count += vis.sum(0)


def densify(model: TalkingGaussians, opt: torch.optim.Optimizer, branch: str, stats: GradStats,
            s: TrainSettings, head_size: float, gen: torch.Generator, allow_grow: bool) -> dict[str, int]:
    """Clone small / split large Gaussians with high screen-space gradient; prune transparent ones."""
    p = model.branches[branch]
    with torch.no_grad():
        avg = stats.grad / stats.count.clamp_min(1)
        opac = torch.sigmoid(p["opacities"])
        big = torch.exp(p["scales"]).amax(-1) > s.split_scale * head_size
        hot = (avg > s.grad_threshold) & allow_grow
        room = max(0, s.max_gaussians - model.n_gaussians())
        hot_idx = torch.nonzero(hot)[:, 0]
        if len(hot_idx) > room:  # keep the hottest ones within the budget
            hot_idx = hot_idx[torch.argsort(avg[hot_idx], descending=True)[:room]]
        hot = torch.zeros_like(hot)
        hot[hot_idx] = True
        clone, split = hot & ~big, hot & big
        prune = (opac < s.prune_opacity) | ~torch.isfinite(p["means"]).all(-1)
        new = {k: torch.cat([p[k][clone], p[k][split], p[k][split]]) for k in GAUSS_KEYS}
        if split.any():
            sc = torch.exp(p["scales"][split])
            R = quat_to_rotmat(p["quats"][split])
            ns = int(split.sum())
            off = torch.randn(2, ns, 3, generator=gen, device="cpu").to(sc.device) * sc
            moved = p["means"][split][None] + (R[None] @ off[..., None])[..., 0]  # [2,ns,3]
            nc = int(clone.sum())
            new["means"][nc:] = moved.reshape(-1, 3)
            new["scales"][nc:] = torch.log(sc / 1.6).repeat(2, 1)
        keep = ~(split | prune)
        edit_gaussians(model, opt, branch, keep, new)
        n = model.n_gaussians(branch)
        stats.grad = torch.zeros(n, device=avg.device)
        stats.count = torch.zeros(n, device=avg.device)
    return {"clone": int(clone.sum()), "split": int(split.sum()), "prune": int((prune & ~split).sum())}


GAUSS_KEYS = ("means", "quats", "scales", "opacities", "sh0", "shN")
