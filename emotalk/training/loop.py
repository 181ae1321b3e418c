"""Train an identity's talking head from its dataset.

Stages (as TalkingGaussian does): `face` (face branch; the inside of the mouth is left transparent),
`mouth` (inside-mouth branch on the mouth-interior pixels), `fuse` (everything, on the composite).
Loss: L1 + D-SSIM with extra weight on lips and mouth, plus ST-LPIPS on the face box after a warm-up.
Gaussians are densified (clone / split by screen-space gradient) and pruned (low opacity) by the
`DensityControl` strategy (densify.py). State is saved every `checkpoint_every` steps (safetensors + JSON,
atomically) and training resumes from it after a crash; frame sampling and splitting are seeded per step,
so a resumed run is the same. A `SampleHook` gets a held-out render every few hundred steps.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from emotalk.errors import EmoTalkError
from emotalk.gaussians.model import (
    BRANCHES,
    LIP_CLASSES,
    TalkingGaussians,
    build_model,
)
from emotalk.gaussians.raster import rasterize
from emotalk.gaussians.seeding import MOUTH_CLASS
from emotalk.metrics import psnr, ssim
from emotalk.training.data import (
    TrainData,
    dataset_audio_code,
    frames_at,
    head_size_of,
    load_train_data,
    render_batch,
    respoken_audio,
)
from emotalk.training.densify import GAUSS_KEYS, DensityControl
from emotalk.training.settings import PRESETS, STAGES, Progress, TrainSettings, TrainStatus
from emotalk.training.state import load_state, save_state


class TrainingError(EmoTalkError):
    """Training could not go on (diverged, out of memory); the message says which setting to change."""


@dataclass
class SampleHook:
    """Held-out renders during training, for a live view of its progress (the app's sample gallery)."""

    every: int  # steps between renders (the last step gets none: the caller renders the finished model)
    fn: Callable[[TrainStatus, np.ndarray], None]  # gets the status then and the frame [S,S,3] uint8


# -- optimiser ---------------------------------------------------------------------------------------

def make_optimizer(model: TalkingGaussians, s: TrainSettings, head_size: float) -> torch.optim.Adam:
    """Adam with one named group per Gaussian attribute and branch, and one for the networks."""
    lr = s.lr
    lrs = {"means": lr.means * head_size, "quats": lr.quats, "scales": lr.scales,
           "opacities": lr.opacity, "sh0": lr.sh, "shN": lr.sh / 20}
    groups = [{"params": [model.branches[b][k]], "lr": lrs[k], "name": f"{b}.{k}"}
              for b in BRANCHES for k in GAUSS_KEYS]
    groups.append({"params": [p for n, p in model.named_parameters()
                              if not n.startswith("branches.") and p.requires_grad],
                   "lr": lr.fields, "name": "nets"})
    return torch.optim.Adam(groups, eps=1e-15)


# -- losses -------------------------------------------------------------------------------------

def _dilate(mask: Tensor, r: int) -> Tensor:
    return F.max_pool2d(mask.float()[:, None], 2 * r + 1, 1, r)[:, 0] > 0


def _face_crops(img: Tensor, lmk2d: Tensor, S: int, out: int) -> Tensor:
    """Differentiable square crops around each frame's landmarks: img [B,H,W,3] -> [B,3,out,out]."""
    lo, hi = lmk2d.amin(1), lmk2d.amax(1)  # [B,2]
    c = (lo + hi) / 2
    half = (hi - lo).amax(-1) / 2 * 1.15
    theta = torch.zeros(len(img), 2, 3, device=img.device)
    theta[:, 0, 0] = theta[:, 1, 1] = half / (S / 2)
    theta[:, :, 2] = c / (S / 2) - 1
    grid = F.affine_grid(theta, [len(img), 3, out, out], align_corners=False)
    return F.grid_sample(img.permute(0, 3, 1, 2), grid, align_corners=False)


def _image_loss(pred: Tensor, gt: Tensor, weight: Tensor, s: TrainSettings) -> Tensor:
    l1 = ((pred - gt).abs().mean(-1) * weight).sum() / weight.sum().clamp_min(1)
    w = s.loss.ssim_weight
    if w > 0:
        l1 = (1 - w) * l1 + w * (1 - ssim(pred, gt).mean())
    return l1


def _stage_loss(stage: str, frac: float, layers: dict, gt: Tensor, body: Tensor, mouth_in: Tensor,
                weight: Tensor, lmk2d: Tensor, lp, s: TrainSettings, S: int) -> tuple[Tensor, Tensor]:
    """The composite image of a stage's branches and its loss -> (pred [B,S,S,3], loss)."""
    if stage == "face":  # the face over the body; the inside of the mouth is left to the mouth branch
        f = layers["face"]
        pred = f.rgb + (1 - f.alpha) * body
        w = weight * (~_dilate(mouth_in, 1)).float()
        loss = _image_loss(pred, torch.where(mouth_in[..., None], pred.detach(), gt), w, s)
        leak = (f.alpha[..., 0] * mouth_in).sum() / mouth_in.sum().clamp_min(1)
        return pred, loss + s.loss.alpha_weight * leak
    if stage == "mouth":  # the inside of the mouth only
        m = layers["mouth"]
        pred = m.rgb + (1 - m.alpha) * body
        region = _dilate(mouth_in, max(1, S // 128)).float()
        return pred, ((pred - gt).abs().mean(-1) * region).sum() / region.sum().clamp_min(1)
    f, m = layers["face"], layers["mouth"]
    pred = f.rgb + (1 - f.alpha) * (m.rgb + (1 - m.alpha) * body)
    loss = _image_loss(pred, gt, weight, s)
    if lp is not None and frac >= s.loss.lpips_after:
        n = s.loss.lpips_size
        crops = _face_crops(pred, lmk2d, S, n), _face_crops(gt, lmk2d, S, n)
        loss = loss + s.loss.lpips_weight * lp(*crops).mean()
    return pred, loss


def stage_at(step: int, s: TrainSettings) -> tuple[str, float]:
    """Stage of a step and the fraction of that stage done."""
    bounds = np.cumsum(np.asarray(s.stage_frac) / sum(s.stage_frac)) * s.steps
    start = 0.0
    for name, end in zip(STAGES, bounds):
        if step < end:
            return name, (step - start) / max(1.0, end - start)
        start = end
    return STAGES[-1], 1.0


# -- the loop -------------------------------------------------------------------------------------

def _oom_message(s: TrainSettings, n: int, S: int) -> str:
    return (f"GPU out of memory while training ({n} Gaussians, batch {s.batch}, {S}² px). "
            f"Lower the batch (--batch / TrainSettings.batch), the image size (--size) or "
            f"TrainSettings.densify.max_gaussians (preset 'fast' uses "
            f"{PRESETS['fast'].densify.max_gaussians}).")


def evaluate(model: TalkingGaussians, data: TrainData, idx: np.ndarray, batch: int = 8,
             backend: str = "auto") -> tuple[np.ndarray, dict[str, float]]:
    """Render frames idx (e.g. held out) -> (uint8 frames [N,S,S,3], mean PSNR/SSIM on them)."""
    outs, ps, ss = [], [], []
    with torch.no_grad():
        for i in range(0, len(idx), batch):
            t = torch.as_tensor(idx[i:i + batch], device=data.frames.device)
            img = render_batch(model, data, t, backend).rgb.clamp(0, 1)
            gt = data.frames[t].float() / 255
            ps.append(psnr(img, gt))
            ss.append(ssim(img, gt))
            outs.append((img * 255 + 0.5).to(torch.uint8).cpu().numpy())
    return np.concatenate(outs), {"psnr": float(torch.cat(ps).mean()), "ssim": float(torch.cat(ss).mean())}


def train(ds, settings: TrainSettings, work_dir: str | os.PathLike, device: str = "cpu",
          progress: Progress | None = None, on_status: Callable[[TrainStatus], None] | None = None,
          audio_code: np.ndarray | None = None, backend: str = "auto",
          samples: SampleHook | None = None) -> tuple[TalkingGaussians, dict]:
    """Train (or resume training in `work_dir`) a talking head from dataset `ds`.

    Returns the model (in eval mode) and a summary: steps, minutes, Gaussian counts, held-out PSNR/SSIM.
    Raises TrainingError when the loss stops being finite (the last good state is kept) or on GPU OOM.
    """
    s = settings
    work = Path(work_dir)
    state_dir = work / "train_state"
    code = audio_code if audio_code is not None else dataset_audio_code(ds, s.audio_kind)
    alt = []
    if s.respeak.prob > 0 and not s.model.lip_code:
        from emotalk.training.respeak import load_respoken

        alt = [a for a in load_respoken(ds, kind=s.audio_kind) if a.shape == code.shape]
    torch.manual_seed(s.seed)
    np.random.seed(s.seed)
    data = load_train_data(ds, s.size, code, device, alt)
    S = data.size
    head = head_size_of(ds)
    if s.model.lip_code and data.lips is None:
        raise TrainingError(f"{ds.root} has no mouth blendshapes, which lip-code models train on: preprocess "
                            f"the clip again, or train with ModelSettings.lip_code off.")
    driver = None
    if s.model.lip_code and s.lips.driver:
        from emotalk.lips import load_driver

        driver = load_driver(s.lips.driver)
    model = build_model(ds, s.model, tuple(code.shape[1:]), seed=s.seed, lip_driver=driver).to(device)
    opt = make_optimizer(model, s, head)
    density = DensityControl(s.densify, model, s.steps, head, s.seed)
    step0 = 0
    elapsed0 = 0.0
    if (state_dir / "state.json").is_file():  # resuming: the saved model holds the adapted driver
        info = load_state(state_dir, model, opt, density.stats)
        step0, elapsed0 = int(info["step"]), float(info.get("elapsed_s", 0.0))
    elif s.model.lip_code and s.lips.adapt_steps > 0:
        from emotalk.lips import adapt_driver

        tr_t = torch.as_tensor(data.train_idx, device=data.audio.device)
        adapt_driver(model.lip_driver, data.audio[tr_t], data.lips[tr_t], s.lips.adapt_steps, seed=s.seed)
    lp = None
    if s.loss.lpips and s.loss.lpips_weight > 0:
        from emotalk.metrics import stlpips_model

        lp = stlpips_model(str(torch.device(device)))
    tr = data.train_idx
    up = data.upper[torch.as_tensor(tr, device=data.upper.device)].cpu().numpy()
    rare = np.linalg.norm(up - np.median(up, 0), axis=1) if up.size else np.zeros(len(tr))
    rare = np.clip(rare / max(float(np.percentile(rare, 95)), 1e-6), 0, 1)
    p_frame = 1 + s.rare_upper_boost * rare
    p_frame = p_frame / p_frame.sum()
    held_out = data.val_idx[:1] if len(data.val_idx) else data.train_idx[:1]
    t_start = time.time()
    smooth = None
    last_saved = step0
    step = step0
    n_swapped = 0
    for step in range(step0, s.steps):
        stage, frac = stage_at(step, s)
        rng = np.random.default_rng([s.seed, step])
        idx = torch.as_tensor(rng.choice(tr, size=min(s.batch, len(tr)), replace=False, p=p_frame),
                              device=device)
        gt = data.frames[idx].float() / 255
        body = data.body[idx].float() / 255
        parse = data.parsing[idx]
        mouth_in = parse == MOUTH_CLASS
        lips = _dilate(torch.isin(parse, torch.as_tensor(LIP_CLASSES, device=parse.device)), max(1, S // 128))
        weight = 1 + s.loss.mouth_weight * lips.float()
        audio = None
        if data.alt_audio is not None and step >= s.respeak.start * s.steps:
            audio, k = respoken_audio(data, idx, rng, s.respeak.prob)
            n_swapped += k
        fr = frames_at(data, idx, audio=audio)
        try:
            branches = {"face": ("face",), "mouth": ("mouth",), "fuse": BRANCHES}[stage]
            layers = {b: rasterize(*model.deform(b, fr), fr.viewmats, fr.Ks, S, S, backend=backend)
                      for b in branches}
            density.retain_grads(layers)
            pred, loss = _stage_loss(stage, frac, layers, gt, body, mouth_in, weight, data.lmk2d[idx], lp,
                                     s, S)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"The training loss became {loss.item()} at step {step} (stage {stage}). Nothing "
                    f"was written after step {last_saved}; the state saved there is in {state_dir}. "
                    f"Lower the learning rates (e.g. TrainSettings.lr.fields, lr.means) or change --seed.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            density.after_backward(layers, S)
            if stage != "fuse":  # freeze the other branch's Gaussians and field
                for name in BRANCHES:
                    if name not in branches:
                        for p in list(model.branches[name].values()) + list(model.fields[name].parameters()):
                            p.grad = None
            opt.step()
        except torch.cuda.OutOfMemoryError as e:
            raise TrainingError(_oom_message(s, model.n_gaussians(), S)) from e
        with torch.no_grad():
            for b in BRANCHES:  # keep rotations normalised
                q = model.branches[b]["quats"]
                q.data = F.normalize(q.data, dim=-1)
        density.after_step(step, model, opt, branches)
        lv = loss.item()
        smooth = lv if smooth is None else 0.95 * smooth + 0.05 * lv
        done = step + 1
        el = elapsed0 + time.time() - t_start
        eta = (time.time() - t_start) / max(1, done - step0) * (s.steps - done)
        if progress:
            progress(stage, done / s.steps)
        want_sample = samples is not None and done % max(1, samples.every) == 0 and done < s.steps
        if (on_status and (done % 25 == 0 or done == s.steps)) or want_sample:
            with torch.no_grad():
                bp = float(psnr(pred.clamp(0, 1), gt).mean())
            st = TrainStatus(stage, done, s.steps, smooth, bp, model.n_gaussians(), eta)
            if on_status and (done % 25 == 0 or done == s.steps):
                on_status(st)
            if want_sample:
                samples.fn(st, evaluate(model, data, held_out, backend=backend)[0][0])
        if done % s.checkpoint_every == 0 and done < s.steps:
            save_state(state_dir, model, opt, done, {"elapsed_s": el, "settings": asdict(s)}, density.stats)
            last_saved = done
    minutes = (elapsed0 + time.time() - t_start) / 60
    model.eval()
    val = data.val_idx if len(data.val_idx) else data.train_idx[-1:]
    if progress:
        progress("eval", 1.0)
    _, m = evaluate(model, data, val, backend=backend)
    summary = {"steps": s.steps, "train_minutes": minutes, "device": str(device),
               "n_face": model.n_gaussians("face"), "n_mouth": model.n_gaussians("mouth"),
               "val_psnr": m["psnr"], "val_ssim": m["ssim"], "size": S,
               "respoken_voices": 0 if data.alt_audio is None else int(data.alt_audio.shape[0]),
               "respoken_frames": n_swapped}
    return model, summary
