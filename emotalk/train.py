"""Train an identity's talking head from its dataset.

Stages (as TalkingGaussian does): `face` (face branch; the inside of the mouth is left transparent),
`mouth` (inside-mouth branch on the mouth-interior pixels), `fuse` (everything, on the composite).
Loss: L1 + D-SSIM with extra weight on lips and mouth, plus ST-LPIPS on the face box after a warm-up.
Gaussians are densified (clone / split by screen-space gradient) and pruned (low opacity).
State is saved every `checkpoint_every` steps (safetensors + JSON, atomically) and training resumes
from it after a crash; frame sampling and splitting are seeded per step, so a resumed run is the same.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from emotalk.errors import EmoTalkError
from emotalk.gaussians.model import (
    BRANCHES,
    LIP_CLASSES,
    MOUTH_CLASS,
    Frames,
    ModelSettings,
    TalkingGaussians,
    build_model,
)
from emotalk.gaussians.raster import quat_to_rotmat, rasterize
from emotalk.metrics import psnr, ssim

Progress = Callable[[str, float], None]  # (stage, fraction of the whole run done)
STAGES = ("face", "mouth", "fuse")
GAUSS_KEYS = ("means", "quats", "scales", "opacities", "sh0", "shN")


class TrainingError(EmoTalkError):
    """Training could not go on (diverged, out of memory); the message says which setting to change."""


@dataclass
class TrainSettings:
    """Everything that shapes a training run (saved in the identity)."""

    steps: int = 6000  # optimisation steps over all stages
    stage_frac: tuple[float, float, float] = (0.4, 0.15, 0.45)  # share of steps for face, mouth, fuse
    batch: int = 4  # frames per step
    size: int | None = None  # train / render side in px (None: the dataset's)
    audio_kind: str = "whisper"  # audio code kind (emotalk.speech.features)
    model: ModelSettings = field(default_factory=lambda: ModelSettings(lip_code=True))
    lip_driver: str | None = None  # lip-code models: the LipDriver file (None: the shipped one)
    lip_adapt_steps: int = 100  # lip-code models: steps fitting the driver to this speaker first (0: none)
    lr_means: float = 1.6e-4  # position learning rate, times the head size
    lr_scales: float = 5e-3  # log-scale learning rate
    lr_quats: float = 1e-3  # rotation learning rate
    lr_opacity: float = 2.5e-2  # opacity-logit learning rate
    lr_sh: float = 2.5e-3  # colour (SH band 0) learning rate; higher bands 1/20 of it
    lr_fields: float = 2e-3  # deformation networks and tri-planes
    ssim_weight: float = 0.2  # weight of D-SSIM against L1
    mouth_weight: float = 1.0  # extra L1 weight on lips and mouth interior
    lpips_weight: float = 0.05  # ST-LPIPS on the face box (fuse stage, after the warm-up)
    lpips_after: float = 0.3  # fraction of the fuse stage before ST-LPIPS switches on
    lpips_size: int = 128  # side of the face crop fed to ST-LPIPS
    alpha_weight: float = 0.05  # face transparency inside the mouth (face stage)
    densify_every: int = 100  # steps between densification rounds
    densify_from: int = 200  # first step that densifies
    densify_until: float = 0.7  # fraction of the steps after which the set is fixed
    grad_threshold: float = 2e-4  # mean screen-space gradient that triggers clone/split
    split_scale: float = 0.01  # Gaussians larger than this × head size are split, smaller cloned
    prune_opacity: float = 0.005  # Gaussians below this opacity are removed
    max_gaussians: int = 60000  # densification stops growing a branch's share beyond this total
    rare_upper_boost: float = 2.0  # unusual upper-face codes (blinks) are drawn up to 1+this as often
    respeak_prob: float = 0.3  # share of sampled frames driven by a re-spoken version of their words
    # (dataset's respoken/, `python -m emotalk sync --respeak DATASET`); 0 or none there: own voice only;
    # unused by lip-code models (their fields never see the audio code: the driver was trained on voices)
    respeak_from: float = 0.1  # fraction of the steps trained on the own voice before re-spoken codes mix in
    checkpoint_every: int = 500  # steps between resumable state saves
    seed: int = 0  # frame sampling, splitting and initialisation
    lpips: bool = True  # use ST-LPIPS at all (needs the alex_shift_tolerant.pth asset)


PRESETS: dict[str, TrainSettings] = {
    "fast": TrainSettings(steps=3000, batch=4, max_gaussians=40000,
                          model=ModelSettings(n_face_init=15000, n_mouth_init=1500, sh_degree=1,
                                              lip_code=True)),
    "quality": TrainSettings(steps=8000, batch=4, max_gaussians=60000,
                             model=ModelSettings(n_face_init=25000, n_mouth_init=2500, sh_degree=2,
                                                 lip_code=True)),
    "test": TrainSettings(steps=40, batch=2, size=64, max_gaussians=1500, densify_from=10, densify_every=10,
                          checkpoint_every=20, lpips=False, lr_fields=5e-3, audio_kind="mel",
                          model=ModelSettings(n_face_init=400, n_mouth_init=80, sh_degree=1)),
}


@dataclass
class TrainStatus:
    """One progress report for the CLI and app."""

    stage: str  # face | mouth | fuse | eval
    step: int  # steps done
    steps: int  # total steps
    loss: float  # current loss (smoothed)
    psnr: float  # PSNR of the current batch (dB)
    n_gaussians: int  # face + mouth
    eta_s: float  # seconds left (estimate)


# -- data on the device ---------------------------------------------------------------------------

@dataclass
class TrainData:
    """The dataset's arrays at the training size, on the training device."""

    frames: Tensor  # [T,S,S,3] uint8
    body: Tensor  # [T,S,S,3] uint8
    parsing: Tensor  # [T,S,S] uint8
    viewmats: Tensor  # [T,4,4]
    K: Tensor  # [3,3] at S
    audio: Tensor  # [T,W,C]
    upper: Tensor  # [T,U]
    lmk2d: Tensor  # [T,478,2] at S
    size: int
    train_idx: np.ndarray
    val_idx: np.ndarray
    alt_audio: Tensor | None = None  # [V,T,W,C] the same words re-spoken by V other voices, or None
    lips: Tensor | None = None  # [T,M] tracked lip code of every frame (emotalk.lips), None without one


def _resize(x: np.ndarray, S: int, nearest: bool = False) -> np.ndarray:
    import cv2

    if x.shape[1] == S:
        return x
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA
    return np.stack([cv2.resize(f, (S, S), interpolation=interp) for f in x])


def dataset_audio_code(ds, kind: str = "whisper") -> np.ndarray:
    """The clip's audio code [T,W,C]: precomputed in the dataset folder, else computed.

    Precomputed forms: `audio_code_{kind}.npy` ([T,W,C]) or `audio_code_{kind}.npz` with the distinct
    feature rows `rows` [R,C] and `index` [T,W] (windows overlap, so this is several times smaller).
    """
    code = getattr(ds, "audio_code", None)
    if code is not None:
        return np.asarray(code, np.float32)
    p = Path(ds.root) / f"audio_code_{kind}.npy"
    pz = p.with_suffix(".npz")
    if pz.is_file():
        with np.load(pz) as z:
            code = z["rows"][z["index"]]
    elif p.is_file():
        code = np.load(p)
    else:
        from emotalk.speech.features import compute_audio_code

        code = compute_audio_code(ds.audio(), 16000, n_frames=ds.n_frames, fps=ds.fps, kind=kind)
    if code.shape[0] != ds.n_frames:
        raise EmoTalkError(f"audio code of {ds.root} has {code.shape[0]} frames, the clip {ds.n_frames}; "
                           f"delete {p} and train again.")
    return np.asarray(code, np.float32)


def load_train_data(ds, size: int | None, audio_code: np.ndarray, device: str,
                    alt_codes: list[np.ndarray] | None = None) -> TrainData:
    """Decode and resize the dataset once; everything stays on `device` during training.
    alt_codes: re-spoken codes [T,W,C] of the same frames (`emotalk.speech.respeak.load_respoken`)."""
    S = int(size or ds.size)
    sc = S / ds.size
    K = ds.K.astype(np.float32).copy()
    K[:2] *= sc
    dev = torch.device(device)

    def t(x, dtype=None):
        return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype).to(dev)

    from emotalk.lips import dataset_lips

    try:
        lips = dataset_lips(ds)[1]
    except EmoTalkError:  # a dataset without mouth blendshapes: only audio-code models train on it
        lips = None

    return TrainData(
        frames=t(_resize(ds.frames(), S)), body=t(_resize(ds.body(), S)),
        parsing=t(_resize(ds.parsing(), S, nearest=True)),
        viewmats=t(ds.world_to_cam, torch.float32), K=t(K), audio=t(audio_code, torch.float32),
        upper=t(ds.upper_face, torch.float32), lmk2d=t(ds.lmk2d * sc, torch.float32), size=S,
        train_idx=np.asarray(ds.train_idx), val_idx=np.asarray(ds.val_idx),
        alt_audio=t(np.stack(alt_codes), torch.float32) if alt_codes else None,
        lips=None if lips is None else t(lips, torch.float32))


def frames_at(data: TrainData, idx: Tensor, emotion: Tensor | None = None, audio: Tensor | None = None,
              tracked_lips: bool = True) -> Frames:
    """Conditions and cameras of dataset frames `idx` [B] (emotion: neutral unless given; audio [B,W,C]:
    the frames' own code unless given). tracked_lips: give lip-code models the frames' tracked lip code
    (training); False: they predict it from the audio, as when rendering new speech (held-out scores)."""
    B = len(idx)
    emo = emotion if emotion is not None else data.audio.new_zeros(B, 2)
    aud = audio if audio is not None else data.audio[idx]
    lips = data.lips[idx] if tracked_lips and data.lips is not None else None
    return Frames(data.viewmats[idx], data.K[None].expand(B, 3, 3), aud, data.upper[idx], emo, lips)


def respoken_audio(data: TrainData, idx: Tensor, rng: np.random.Generator, prob: float) -> tuple[Tensor, int]:
    """Audio codes [B,W,C] of frames idx [B], each replaced with probability `prob` by the same frame's
    code in a random re-spoken voice; and how many were replaced."""
    aud = data.audio[idx]
    if data.alt_audio is None or prob <= 0:
        return aud, 0
    swap = rng.random(len(idx)) < prob
    if not swap.any():
        return aud, 0
    voice = torch.as_tensor(rng.integers(0, data.alt_audio.shape[0], int(swap.sum())), device=idx.device)
    sel = torch.as_tensor(np.flatnonzero(swap), device=idx.device)
    aud = aud.clone()
    aud[sel] = data.alt_audio[voice, idx[sel]]
    return aud, int(swap.sum())


# -- optimiser and densification -------------------------------------------------------------------

def make_optimizer(model: TalkingGaussians, s: TrainSettings, head_size: float) -> torch.optim.Adam:
    """Adam with one named group per Gaussian attribute and branch, and one for the networks."""
    lrs = {"means": s.lr_means * head_size, "quats": s.lr_quats, "scales": s.lr_scales,
           "opacities": s.lr_opacity, "sh0": s.lr_sh, "shN": s.lr_sh / 20}
    groups = [{"params": [model.branches[b][k]], "lr": lrs[k], "name": f"{b}.{k}"}
              for b in BRANCHES for k in GAUSS_KEYS]
    groups.append({"params": [p for n, p in model.named_parameters()
                              if not n.startswith("branches.") and p.requires_grad],
                   "lr": s.lr_fields, "name": "nets"})
    return torch.optim.Adam(groups, eps=1e-15)


def _group(opt: torch.optim.Optimizer, name: str) -> dict:
    return next(g for g in opt.param_groups if g["name"] == name)


def edit_gaussians(model: TalkingGaussians, opt: torch.optim.Optimizer, branch: str, keep: Tensor,
                   new: dict[str, Tensor] | None) -> None:
    """Keep Gaussians `keep` [N] bool of a branch and append `new` ones; Adam moments follow (new: zeros)."""
    for k in GAUSS_KEYS:
        old = model.branches[branch][k]
        add = new[k] if new is not None else old[:0]
        p = torch.nn.Parameter(torch.cat([old.detach()[keep], add.detach()]))
        g = _group(opt, f"{branch}.{k}")
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
    if s.ssim_weight > 0:
        l1 = (1 - s.ssim_weight) * l1 + s.ssim_weight * (1 - ssim(pred, gt).mean())
    return l1


def stage_at(step: int, s: TrainSettings) -> tuple[str, float]:
    """Stage of a step and the fraction of that stage done."""
    bounds = np.cumsum(np.asarray(s.stage_frac) / sum(s.stage_frac)) * s.steps
    start = 0.0
    for name, end in zip(STAGES, bounds):
        if step < end:
            return name, (step - start) / max(1.0, end - start)
        start = end
    return STAGES[-1], 1.0


# -- state files ----------------------------------------------------------------------------------

def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


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
    _atomic_write(path / "state.safetensors", save(tensors))
    _atomic_write(path / "state.json", json.dumps({"step": step, **extra}, indent=1).encode())


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
            _group(opt, f"{b}.{k}")["params"] = [model.branches[b][k]]
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


# -- the loop -------------------------------------------------------------------------------------

def _oom_message(s: TrainSettings, n: int, S: int) -> str:
    return (f"GPU out of memory while training ({n} Gaussians, batch {s.batch}, {S}² px). "
            f"Lower the batch (--batch / TrainSettings.batch), the image size (--size) or "
            f"TrainSettings.max_gaussians (preset 'fast' uses {PRESETS['fast'].max_gaussians}).")


def head_size_of(ds) -> float:
    """Size of the head in head-frame units (width of the tracked landmarks)."""
    return float(np.ptp(ds.lmk3d[ds.train_idx[0]][:, 0]))


def render_frames(model: TalkingGaussians, data: TrainData, idx: Tensor, backend: str = "auto",
                  emotion: Tensor | None = None):
    """Render dataset frames idx [B] over their body frames, driven by their audio as new speech would be
    (lip-code models predict the lips from it) -> RenderOut."""
    fr = frames_at(data, idx, emotion, tracked_lips=False)
    body = data.body[idx].float() / 255
    return model.render(fr, data.size, data.size, body, backend=backend)


def evaluate(model: TalkingGaussians, data: TrainData, idx: np.ndarray, batch: int = 8,
             backend: str = "auto") -> tuple[np.ndarray, dict[str, float]]:
    """Render frames idx (e.g. held out) -> (uint8 frames [N,S,S,3], mean PSNR/SSIM on them)."""
    outs, ps, ss = [], [], []
    with torch.no_grad():
        for i in range(0, len(idx), batch):
            t = torch.as_tensor(idx[i:i + batch], device=data.frames.device)
            img = render_frames(model, data, t, backend).rgb.clamp(0, 1)
            gt = data.frames[t].float() / 255
            ps.append(psnr(img, gt))
            ss.append(ssim(img, gt))
            outs.append((img * 255 + 0.5).to(torch.uint8).cpu().numpy())
    return np.concatenate(outs), {"psnr": float(torch.cat(ps).mean()), "ssim": float(torch.cat(ss).mean())}


def train(ds, settings: TrainSettings, work_dir: str | os.PathLike, device: str = "cpu",
          progress: Progress | None = None, on_status: Callable[[TrainStatus], None] | None = None,
          audio_code: np.ndarray | None = None, backend: str = "auto") -> tuple[TalkingGaussians, dict]:
    """Train (or resume training in `work_dir`) a talking head from dataset `ds`.

    Returns the model (in eval mode) and a summary: steps, minutes, Gaussian counts, held-out PSNR/SSIM.
    Raises TrainingError when the loss stops being finite (the last good state is kept) or on GPU OOM.
    """
    s = settings
    work = Path(work_dir)
    state_dir = work / "train_state"
    code = audio_code if audio_code is not None else dataset_audio_code(ds, s.audio_kind)
    alt = []
    if s.respeak_prob > 0 and not s.model.lip_code:
        from emotalk.speech.respeak import load_respoken

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
    if s.model.lip_code and s.lip_driver:
        from emotalk.lips import load_driver

        driver = load_driver(s.lip_driver)
    model = build_model(ds, s.model, tuple(code.shape[1:]), seed=s.seed, lip_driver=driver).to(device)
    opt = make_optimizer(model, s, head)
    step0 = 0
    elapsed0 = 0.0
    stats = {b: GradStats(torch.zeros(model.n_gaussians(b), device=device),
                          torch.zeros(model.n_gaussians(b), device=device)) for b in BRANCHES}
    if (state_dir / "state.json").is_file():  # resuming: the saved model holds the adapted driver
        info = load_state(state_dir, model, opt, stats)
        step0, elapsed0 = int(info["step"]), float(info.get("elapsed_s", 0.0))
    elif s.model.lip_code and s.lip_adapt_steps > 0:
        from emotalk.lips import adapt_driver

        tr_t = torch.as_tensor(data.train_idx, device=data.audio.device)
        adapt_driver(model.lip_driver, data.audio[tr_t], data.lips[tr_t], s.lip_adapt_steps, seed=s.seed)
    lp = None
    if s.lpips and s.lpips_weight > 0:
        from emotalk.metrics import stlpips_model

        lp = stlpips_model(str(torch.device(device)))
    tr = data.train_idx
    up = data.upper[torch.as_tensor(tr, device=data.upper.device)].cpu().numpy()
    rare = np.linalg.norm(up - np.median(up, 0), axis=1) if up.size else np.zeros(len(tr))
    rare = np.clip(rare / max(float(np.percentile(rare, 95)), 1e-6), 0, 1)
    p_frame = 1 + s.rare_upper_boost * rare
    p_frame = p_frame / p_frame.sum()
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
        weight = 1 + s.mouth_weight * lips.float()
        audio = None
        if data.alt_audio is not None and step >= s.respeak_from * s.steps:
            audio, k = respoken_audio(data, idx, rng, s.respeak_prob)
            n_swapped += k
        fr = frames_at(data, idx, audio=audio)
        try:
            layers = {}
            branches = {"face": ("face",), "mouth": ("mouth",), "fuse": BRANCHES}[stage]
            for b in branches:
                g = model.deform(b, fr)
                layers[b] = rasterize(*g, fr.viewmats, fr.Ks, S, S, backend=backend)
                if layers[b].means2d is not None and layers[b].means2d.requires_grad:
                    layers[b].means2d.retain_grad()
            if stage == "face":
                f = layers["face"]
                pred = f.rgb + (1 - f.alpha) * body
                w = weight * (~_dilate(mouth_in, 1)).float()
                loss = _image_loss(pred, torch.where(mouth_in[..., None], pred.detach(), gt), w, s)
                leak = (f.alpha[..., 0] * mouth_in).sum() / mouth_in.sum().clamp_min(1)
                loss = loss + s.alpha_weight * leak
            elif stage == "mouth":
                m = layers["mouth"]
                pred = m.rgb + (1 - m.alpha) * body
                region = _dilate(mouth_in, max(1, S // 128)).float()
                loss = ((pred - gt).abs().mean(-1) * region).sum() / region.sum().clamp_min(1)
            else:
                f, m = layers["face"], layers["mouth"]
                pred = f.rgb + (1 - f.alpha) * (m.rgb + (1 - m.alpha) * body)
                loss = _image_loss(pred, gt, weight, s)
                if lp is not None and frac >= s.lpips_after:
                    lm = data.lmk2d[idx]
                    loss = loss + s.lpips_weight * lp(_face_crops(pred, lm, S, s.lpips_size),
                                                      _face_crops(gt, lm, S, s.lpips_size)).mean()
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"The training loss became {loss.item()} at step {step} (stage {stage}). Nothing "
                    f"was written after step {last_saved}; the state saved there is in {state_dir}. "
                    f"Lower the learning rates (e.g. TrainSettings.lr_fields, lr_means) or change --seed.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for b in branches:
                if layers[b].means2d is not None:
                    accumulate(stats[b], layers[b].means2d, layers[b].radii, S)
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
        grow = step < s.densify_until * s.steps
        if step >= s.densify_from and (step + 1) % s.densify_every == 0 and step < s.steps * 0.9:
            gen = torch.Generator().manual_seed(s.seed * 1000003 + step)
            for b in branches:
                densify(model, opt, b, stats[b], s, head, gen, grow)
                stats[b] = GradStats(torch.zeros(model.n_gaussians(b), device=device),
                                     torch.zeros(model.n_gaussians(b), device=device))
            for b in BRANCHES:
                if stats[b].grad.shape[0] != model.n_gaussians(b):
                    stats[b] = GradStats(torch.zeros(model.n_gaussians(b), device=device),
                                         torch.zeros(model.n_gaussians(b), device=device))
        lv = loss.item()
        smooth = lv if smooth is None else 0.95 * smooth + 0.05 * lv
        done = step + 1
        el = elapsed0 + time.time() - t_start
        eta = (time.time() - t_start) / max(1, done - step0) * (s.steps - done)
        if progress:
            progress(stage, done / s.steps)
        if on_status and (done % 25 == 0 or done == s.steps):
            with torch.no_grad():
                bp = float(psnr(pred.clamp(0, 1), gt).mean())
            on_status(TrainStatus(stage, done, s.steps, smooth, bp, model.n_gaussians(), eta))
        if done % s.checkpoint_every == 0 and done < s.steps:
            save_state(state_dir, model, opt, done, {"elapsed_s": el, "settings": asdict(s)}, stats)
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


def settings_from_dict(d: dict) -> TrainSettings:
    """Inverse of dataclasses.asdict for TrainSettings (used when loading an identity)."""
    from emotalk.gaussians.fields import FieldSettings

    md = dict(d.get("model", {}))
    fd = dict(md.pop("field", {}))
    if "plane_res" in fd:
        fd["plane_res"] = tuple(fd["plane_res"])
    model = ModelSettings(**md, field=FieldSettings(**fd))
    rest = {k: v for k, v in d.items() if k != "model"}
    if "stage_frac" in rest:
        rest["stage_frac"] = tuple(rest["stage_frac"])
    return replace(TrainSettings(**rest), model=model)


def train_identity(ds, settings: TrainSettings, out: str | os.PathLike, work_dir: str | os.PathLike,
                   device: str = "cpu", on_status: Callable[[TrainStatus], None] | None = None,
                   audio_code: np.ndarray | None = None, name: str | None = None,
                   source_clip: str | None = None, emotion_steps: int | None = None
                   ) -> tuple[Path, dict, np.ndarray]:
    """Train (resumably, in work_dir), add the emotion field (emotion stage), render a held-out thumbnail
    and write the identity folder `out`.

    emotion_steps: emotion-stage steps (None: 3000 on a GPU, 0 on the CPU, where it would take hours;
    an identity without it renders every emotion as neutral). Returns (identity folder, training summary,
    thumbnail [S,S,3] uint8). The CLI and the app use this.
    """
    from emotalk.identity import save_identity

    code = audio_code if audio_code is not None else dataset_audio_code(ds, settings.audio_kind)
    model, summary = train(ds, settings, work_dir, device=device, on_status=on_status, audio_code=code)
    if emotion_steps is None:
        emotion_steps = 3000 if str(device).startswith("cuda") and settings.steps >= 1000 else 0
    if emotion_steps > 0:
        from emotalk.emotion_train import EmotionStageSettings, run_emotion_stage

        st = EmotionStageSettings(steps=emotion_steps, n_frames=12)
        es = run_emotion_stage(model, ds, st, device=device, size=settings.size, audio_code=code)
        summary["emotion_stage"] = {"steps": emotion_steps, "minutes": round(es["minutes"], 2),
                                    "targets": es["n_targets"]}
    data = load_train_data(ds, settings.size, code, device)
    thumb_idx = data.val_idx[:1] if len(data.val_idx) else data.train_idx[:1]
    thumb, _ = evaluate(model, data, thumb_idx)
    path = save_identity(out, model, ds, settings, summary, name=name, source_clip=source_clip,
                         size=data.size, thumbnail=thumb[0])
    return path, summary, thumb[0]
