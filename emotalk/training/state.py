"""Resumable training state: written atomically every few hundred steps, read back after a crash."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from emotalk.folders import atomic_write_bytes
from emotalk.gaussians.model import (
    BRANCHES,
    TalkingGaussians,
)
from emotalk.training.densify import GAUSS_KEYS, GradStats, param_group


def save_state(path: Path, model: TalkingGaussians, opt: torch.optim.Optimizer, step: int,
               extra: dict, stats: dict[str, GradStats] | None = None) -> None:
    """Resumable training state: model.safetensors-style tensors + JSON, both written atomically."""
    from safetensors.torch import save

    path.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    for g in opt.param_groups:
        for i, p in enumerate(g["params"]):
            st = opt.state.get(p)
            if st:
                for key in ("exp_avg", "exp_avg_sq"):
                    tensors[f"opt.{g['name']}.{i}.{key}"] = st[key].contiguous().cpu()
                tensors[f"opt.{g['name']}.{i}.step"] = torch.as_tensor(st["step"]).float().reshape(1).cpu()
    for b, st in (stats or {}).items():  # densification accumulators, so a resumed run densifies the same
        tensors[f"stats.{b}.grad"] = st.grad.detach().cpu()
        tensors[f"stats.{b}.count"] = st.count.detach().cpu()
    atomic_write_bytes(path / "state.safetensors", save(tensors))
    atomic_write_bytes(path / "state.json", json.dumps({"step": step, **extra}, indent=1).encode())


def load_state(path: Path, model: TalkingGaussians, opt: torch.optim.Optimizer,
               stats: dict[str, GradStats] | None = None) -> dict:
    """Restore what `save_state` wrote (Gaussian counts may differ from the fresh model's)."""
    from safetensors.torch import load_file

    info = json.loads((path / "state.json").read_text())
    t = load_file(str(path / "state.safetensors"))
    dev = next(model.parameters()).device
    for b in BRANCHES:
        for k in GAUSS_KEYS:
            model.branches[b][k] = torch.nn.Parameter(t[f"model.branches.{b}.{k}"].to(dev))
            param_group(opt, f"{b}.{k}")["params"] = [model.branches[b][k]]
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    opt.state.clear()
    for g in opt.param_groups:
        for i, p in enumerate(g["params"]):
            key = f"opt.{g['name']}.{i}"
            if f"{key}.exp_avg" in t:
                opt.state[p] = {"step": t[f"{key}.step"][0].to(dev),
                                "exp_avg": t[f"{key}.exp_avg"].to(dev),
                                "exp_avg_sq": t[f"{key}.exp_avg_sq"].to(dev)}
    if stats is not None:
        for b in BRANCHES:
            if f"stats.{b}.grad" in t:
                stats[b] = GradStats(t[f"stats.{b}.grad"].to(dev), t[f"stats.{b}.count"].to(dev))
    return info
