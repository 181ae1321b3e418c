"""Adaptive density control: clone, split and prune Gaussians from their screen-space gradients.

`DensityControl` is a strategy object in the spirit of gsplat's `strategy/`: it owns the gradient
statistics of each branch, and the training loop calls it at fixed points of every step
(`retain_grads` after rendering, `after_backward`, `after_step`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from emotalk.gaussians.model import (
    BRANCHES,
    TalkingGaussians,
)
from emotalk.gaussians.raster import RasterOut, quat_to_rotmat
from emotalk.training.settings import DensifySettings

GAUSS_KEYS = ("means", "quats", "scales", "opacities", "sh0", "shN")


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

    @classmethod
    def zeros(cls, n: int, device) -> GradStats:
        return cls(torch.zeros(n, device=device), torch.zeros(n, device=device))


class DensityControl:
    """Clone small / split large Gaussians with a high mean screen-space gradient, prune transparent ones.

    Holds `stats` (branch -> GradStats), which the resumable training state saves and restores.
    """

    def __init__(self, settings: DensifySettings, model: TalkingGaussians, steps: int, head_size: float,
                 seed: int):
        self.s = settings
        self.steps = steps  # the run's total steps (the schedule is in fractions of them)
        self.head_size = head_size
        self.seed = seed
        self.device = model.branches["face"]["means"].device
        self.stats = {b: GradStats.zeros(model.n_gaussians(b), self.device) for b in BRANCHES}

    def retain_grads(self, layers: dict[str, RasterOut]) -> None:
        """After rendering: keep the gradient of each branch's screen-space means."""
        for out in layers.values():
            if out.means2d is not None and out.means2d.requires_grad:
                out.means2d.retain_grad()

    def after_backward(self, layers: dict[str, RasterOut], size: int) -> None:
        """After the backward pass: add each rendered branch's screen-space gradients to its statistics."""
        for b, out in layers.items():
            if out.means2d is None or out.means2d.grad is None:
                continue
            st = self.stats[b]
            g = out.means2d.grad.detach().reshape(out.radii.shape + (2,)) * (size / 2)  # [B,N,2]
            vis = out.radii > 0
            st.grad += (g.norm(dim=-1) * vis).sum(0)
            st.count += vis.sum(0)

    def after_step(self, step: int, model: TalkingGaussians, opt: torch.optim.Optimizer,
                   branches: tuple[str, ...]) -> dict[str, dict[str, int]]:
        """After the optimiser step: densify the branches being trained when a round is due.
        Returns per densified branch how many Gaussians were cloned, split and pruned."""
        s = self.s
        done = {}
        if step >= s.start and (step + 1) % s.every == 0 and step < self.steps * s.stop_at:
            grow = step < s.grow_until * self.steps
            gen = torch.Generator().manual_seed(self.seed * 1000003 + step)
            for b in branches:
                done[b] = self._densify(model, opt, b, gen, grow)
        for b in BRANCHES:  # statistics restored from an older state may not match the Gaussians
            if self.stats[b].grad.shape[0] != model.n_gaussians(b):
                self.stats[b] = GradStats.zeros(model.n_gaussians(b), self.device)
        return done

    def _densify(self, model: TalkingGaussians, opt: torch.optim.Optimizer, branch: str,
                 gen: torch.Generator, allow_grow: bool) -> dict[str, int]:
        s, stats, p = self.s, self.stats[branch], model.branches[branch]
        with torch.no_grad():
            avg = stats.grad / stats.count.clamp_min(1)
            opac = torch.sigmoid(p["opacities"])
            big = torch.exp(p["scales"]).amax(-1) > s.split_scale * self.head_size
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
            self.stats[branch] = GradStats.zeros(model.n_gaussians(branch), avg.device)
        return {"clone": int(clone.sum()), "split": int(split.sum()), "prune": int((prune & ~split).sum())}
