"""Emotion stage: teach a trained talking head's deformation field what (valence, arousal) means.

A short identity clip is nearly all one emotion, so the field's emotion input never learns anything
from it. This stage makes targets with the lip-aligned emotional face generator (the identity's own
training frames, warped and re-shaded to emotions sampled over the disc) and trains the model's additive
emotion field on them (`TalkingGaussians.add_emotion_field`: position, rotation, scale and colour of the
face Gaussians). Everything else is frozen, and the field's output is exactly zero at (0, 0), so the
neutral face, the audio-driven mouth and held-out quality at (0, 0) stay as trained. With
`settings.mouth_mask` the field is faded out at the lips and the lips are left out of the loss: the
emotional mouth comes from the lip-code offset at render time (emotalk.lips.emotion), which the stage does
not apply (its targets are the frames' own mouths warped by the generator, not a lip code).
It calls emotalk.training's public helpers and does not change how the main stages train.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from emotalk.emotion import CATEGORIES
from emotalk.face.generator import EmotionalFaceGenerator
from emotalk.face.landmarks import EYE_CORNERS, EYE_RINGS, INNER_LIP_PAIRS, MOUTH_CORNERS, MOUTH_LANDMARKS
from emotalk.gaussians.emotion import EmotionSwitches, mouth_keep
from emotalk.training.settings import EmotionStageSettings

Progress = Callable[[str, float], None]


@dataclass
class EmotionTargets:
    """Generated training targets at the training size."""

    frame_idx: np.ndarray  # [M] dataset frame of each target
    va: np.ndarray  # [M,2] float32 (valence, arousal)
    images: np.ndarray  # [M,S,S,3] uint8 warped frames
    masks: np.ndarray  # [M,S,S] float32 generator face mask (where the warp may move pixels)
    lip_zone: np.ndarray | None = None  # [M,S,S] float32 the lips of the frame and of its target, with a
    # margin (1 inside): left out of the loss when the emotion field has a mouth mask (it cannot move them)


def sample_emotions(n_random: int, rng: np.random.Generator) -> np.ndarray:
    """The 7 emotional categories and calm, plus n_random points uniform over the disc: [8+n,2]."""
    cats = np.array([v for k, v in CATEGORIES.items() if k != "neutral"], np.float32)
    r = np.sqrt(rng.uniform(0, 1, n_random))
    th = rng.uniform(-np.pi, np.pi, n_random)
    return np.concatenate([cats, np.stack([r * np.cos(th), r * np.sin(th)], 1).astype(np.float32)])


def make_targets(ds, size: int, settings: EmotionStageSettings, progress: Progress | None = None
                 ) -> EmotionTargets:
    """Warp n_frames training frames to the sampled emotions (CPU; about 0.1-0.6 s per image)."""
    import cv2

    rng = np.random.default_rng(settings.seed)
    gen = EmotionalFaceGenerator(settings=settings.generator)
    pool = np.asarray(ds.train_idx)
    n = min(settings.n_frames, len(pool))
    idx = pool[np.unique(np.linspace(0, len(pool) - 1, n).round().astype(int))]
    frames, parsing = ds.frames(idx), ds.parsing(idx)
    out_idx, out_va, out_img, out_mask, out_zone = [], [], [], [], []
    for k, i in enumerate(idx):
        for v, a in sample_emotions(settings.n_random, rng):
            g = gen(frames[k], ds.lmk2d[i], parsing[k], float(v), float(a))
            img, m = g.image, g.mask
            zone = lip_zone(img.shape[:2], np.stack([ds.lmk2d[i][:, :2], g.lmk[:, :2]]))
            if img.shape[0] != size:
                img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
                m = cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA)
                zone = cv2.resize(zone, (size, size), interpolation=cv2.INTER_AREA)
            out_idx.append(int(i))
            out_va.append((g.valence, g.arousal))
            out_img.append(img)
            out_mask.append(m.astype(np.float32))
            out_zone.append(zone)
        if progress:
            progress(f"emotion targets: frame {k + 1}/{len(idx)}", (k + 1) / len(idx))
    return EmotionTargets(np.array(out_idx), np.array(out_va, np.float32), np.stack(out_img),
                          np.stack(out_mask), np.stack(out_zone))


def lip_zone(shape: tuple[int, int], lmk: np.ndarray, margin: float = 0.15) -> np.ndarray:
    """[H,W] float32: 1 inside the convex hull of the lip landmarks of every face in lmk [F,478,2] (px),
    grown by `margin` × the mouth width, feathered over the same distance."""
    import cv2

    pts = lmk[:, list(MOUTH_LANDMARKS)].reshape(-1, 2)
    width = float(np.linalg.norm(lmk[0, MOUTH_CORNERS[0]] - lmk[0, MOUTH_CORNERS[1]]))
    z = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(z, cv2.convexHull(np.round(pts).astype(np.int32)), 1)
    r = max(1, int(round(margin * width)))
    z = cv2.dilate(z, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return cv2.GaussianBlur(z.astype(np.float32), (0, 0), r / 2 + 0.5)


def mouth_distance(means: np.ndarray, lmk3d: np.ndarray) -> np.ndarray:
    """Distance [N] of face Gaussians means [N,3] to the nearest lip landmark (inner and outer lips) of the
    median head-frame face of lmk3d [T,478,3], in mouth widths (corner to corner)."""
    L = head_face(lmk3d)  # [478,3]
    P = L[list(MOUTH_LANDMARKS)]  # [K,3]
    width = max(float(np.linalg.norm(L[MOUTH_CORNERS[0]] - L[MOUTH_CORNERS[1]])), 1e-6)
    d2 = ((means[:, None, :] - P[None]) ** 2).sum(-1)  # [N,K]
    return np.sqrt(d2.min(1)) / width


def head_face(lmk3d: np.ndarray) -> np.ndarray:
    """The identity's face landmarks [478,3] in the head frame: the median over frames lmk3d [T,478,3]."""
    return np.median(np.asarray(lmk3d, np.float32)[:, :478], 0).astype(np.float32)


def colour_penalties(dcol: torch.Tensor, knn: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour deltas dcol [B,N,3] of the emotion field -> (mean squared size, mean squared difference from
    the mean of each Gaussian's k nearest neighbours knn [N,k]): the second penalises blotches."""
    size = (dcol ** 2).mean()
    if knn is None:
        return size, dcol.new_zeros(())
    return size, ((dcol - dcol[:, knn].mean(2)) ** 2).mean()


def shrink_penalty(dscale: torch.Tensor, allowance: float) -> torch.Tensor:
    """Mean squared shrink beyond `allowance` of the emotion field's log-scale deltas dscale [B,N,3]
    (averaged over the axes, as `eye_shrink` measures): Gaussians that shrink open holes through the face
    (white eyes), where moving them would have drawn the expression. Growth and anisotropy are free."""
    return ((-dscale.mean(-1) - allowance).clamp(min=0) ** 2).mean()


def neighbours(means: np.ndarray, k: int = 8) -> np.ndarray:
    """[N,k] indices of each point's k nearest other points (means [N,3])."""
    from scipy.spatial import cKDTree

    k = min(k, len(means) - 1)
    return cKDTree(means).query(means, k=k + 1)[1][:, 1:].astype(np.int64)


def lip_lock_weights(means: np.ndarray, lmk3d: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Lip-lock weight of face Gaussians means [N,3] (1 on the central inner lips, fading with distance;
    the two pairs next to each corner are left out so corners stay free) and the opening direction [3],
    from head-frame landmarks lmk3d [T,478,3]."""
    L = head_face(lmk3d)  # [478,3]
    u = L[INNER_LIP_PAIRS[:, 0]].mean(0) - L[INNER_LIP_PAIRS[:, 1]].mean(0)  # lower -> upper
    P = L[INNER_LIP_PAIRS[2:-2].ravel()]  # [K,3] the central pairs
    width = float(np.linalg.norm(L[MOUTH_CORNERS[0]] - L[MOUTH_CORNERS[1]]))
    d = np.sqrt(((means[:, None, :] - P[None]) ** 2).sum(-1)).min(1)  # [N]
    w = np.exp(-((d / (radius * max(width, 1e-6))) ** 2)).astype(np.float32)
    return w, (u / max(float(np.linalg.norm(u)), 1e-9)).astype(np.float32)


def emotion_parameters(model) -> list[torch.nn.Parameter]:
    """What the stage trains: the additive emotion field and its encoder (added if the model has none)."""
    model.add_emotion_field()
    return list(model.emotion_field.parameters()) + list(model.emotion_enc.parameters())


def emotion_stage(model, ds, data, targets: EmotionTargets, settings: EmotionStageSettings,
                  backend: str = "auto", progress: Progress | None = None) -> dict:
    """Fine-tune `model` (a trained TalkingGaussians) in place; returns loss history and timing.

    data: emotalk.training.data.TrainData of the same dataset at the training size (targets at that size too).
    """
    from emotalk.training.data import frames_at

    dev = data.frames.device
    S = data.size
    params = emotion_parameters(model)
    means = model.branches["face"]["means"].detach().cpu().numpy()
    lmk3d = ds.lmk3d[np.asarray(ds.train_idx)]
    if settings.lip_lock:
        w, u = lip_lock_weights(means, lmk3d, settings.lip_lock_radius)
        model.set_lip_lock(torch.as_tensor(w), torch.as_tensor(u))
    if settings.mouth_mask:
        keep = mouth_keep(mouth_distance(means, lmk3d), settings.mouth_mask_inner, settings.mouth_mask_outer)
        model.set_mouth_mask(torch.as_tensor(keep))
        if settings.mouth_warp:  # at the targets' strengths (the generator's gain and per-category factors)
            model.set_mouth_warp(torch.as_tensor(head_face(lmk3d)), settings.generator.gain)
            model.settings = replace(model.settings,
                                     emotion_category_gain=dict(settings.generator.category_gain),
                                     emotion_warp_region=settings.warp_region)
    model.settings = replace(model.settings,  # only a warp draws geometry when the field does not
                             emotion_field_colour_only=settings.colour_only and settings.mouth_mask
                             and settings.mouth_warp)
    knn = (torch.as_tensor(neighbours(means), device=dev)
           if settings.colour_smooth_weight > 0 and len(means) > 1 else None)
    zone = (torch.as_tensor(targets.lip_zone, device=dev)
            if settings.mouth_mask and targets.lip_zone is not None else None)
    train_ids = {id(p) for p in params}
    frozen = [p for p in model.parameters() if id(p) not in train_ids]
    was = [p.requires_grad for p in frozen]
    for p in frozen:
        p.requires_grad_(False)
    opt = torch.optim.Adam(params, lr=settings.lr)
    rng = np.random.default_rng(settings.seed + 1)
    tgt_img = torch.as_tensor(targets.images, device=dev)
    tgt_mask = torch.as_tensor(targets.masks, device=dev)
    tgt_va = torch.as_tensor(targets.va, device=dev)
    tgt_idx = torch.as_tensor(targets.frame_idx, device=dev)
    n_neu = int(round(settings.batch * settings.neutral_share))
    n_emo = settings.batch - n_neu
    hist_emo, hist_neu = [], []
    t0 = time.time()
    model.train()
    sw = stage_switches(model, settings)
    try:
        for step in range(settings.steps):
            j = torch.as_tensor(rng.choice(len(targets.va), size=n_emo, replace=False), device=dev)
            i_neu = torch.as_tensor(rng.choice(data.train_idx, size=n_neu, replace=False), device=dev)
            idx = torch.cat([tgt_idx[j], i_neu])
            emo = torch.cat([tgt_va[j], tgt_va.new_zeros(n_neu, 2)])
            gt = torch.cat([tgt_img[j], data.frames[i_neu]]).float() / 255
            face = torch.cat([tgt_mask[j], tgt_mask.new_zeros(n_neu, S, S)])
            w = 1.0 + settings.face_weight * face  # [B,S,S]
            if zone is not None:  # the lips are the speech fields' and the lip code's, not the field's
                w = w * (1 - torch.cat([zone[j], zone.new_zeros(n_neu, S, S)]))
            fr = frames_at(data, idx, emotion=emo)
            body = data.body[idx].float() / 255
            pred = model.render(fr, S, S, body, backend=backend).rgb
            err = (pred - gt).abs().mean(-1) * w  # [B,S,S]
            per = err.flatten(1).sum(1) / w.flatten(1).sum(1)  # [B]
            loss = per.mean()
            if settings.colour_weight > 0 or knn is not None or settings.shrink_weight > 0:
                delta = model.emotion_delta(None, tgt_va[j], warp=False)  # [b,N,13] the field's own
                size, blotch = colour_penalties(delta[..., 10:], knn)
                loss = loss + settings.colour_weight * size + settings.colour_smooth_weight * blotch
                if settings.shrink_weight > 0:
                    loss = loss + settings.shrink_weight * shrink_penalty(delta[..., 7:10],
                                                                          settings.shrink_allowance)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            per = per.detach()
            hist_emo.append(float(per[:n_emo].mean()))
            hist_neu.append(float(per[n_emo:].mean()) if n_neu else float("nan"))
            if progress and (step % 10 == 0 or step == settings.steps - 1):
                progress(f"emotion stage: step {step + 1}/{settings.steps}, loss {loss.item():.4f}",
                         (step + 1) / settings.steps)
    finally:
        for p, r in zip(frozen, was):
            p.requires_grad_(r)
        model.switches = sw
        model.eval()
    return {"steps": settings.steps, "minutes": (time.time() - t0) / 60, "loss_emotion": hist_emo,
            "loss_neutral": hist_neu, "n_targets": int(len(targets.va))}


def stage_switches(model, settings: EmotionStageSettings) -> EmotionSwitches:
    """Set the render switches the stage trains and measures with; returns the previous ones to restore."""
    sw = replace(model.switches)
    model.switches.lip_offset = False  # the targets keep the frame's own (generator-warped) mouth
    model.switches.jaw_drop = False  # ... and its own opening
    model.switches.mouth_mask = settings.mouth_mask  # off: the field is trained on the lips, as before
    return sw


EYE_REACH = 0.8  # eye widths from an eye's centre within which `eye_shrink` looks (the eye and its lids)
EYE_SHRINK_WARN = -0.1  # a mean log-scale change below this at the eyes renders holes (german_anchor:
# -0.14 ... -0.54 at every category, white eyes at angry, disgusted, happy and fear; obama, reagan and macron
# -0.055 ... +0.038)


def eye_distance(means: np.ndarray, lmk3d: np.ndarray) -> np.ndarray:
    """Distance [N] of face Gaussians means [N,3] to the nearer eye's centre (mean of its ring) of the median
    head-frame face of lmk3d [T,478,3], in that eye's widths (corner to corner)."""
    L = head_face(lmk3d)
    d = np.full(len(means), np.inf)
    for ring, (a, b) in zip(EYE_RINGS, EYE_CORNERS):
        width = max(float(np.linalg.norm(L[a] - L[b])), 1e-6)
        d = np.minimum(d, np.linalg.norm(means - L[ring].mean(0), axis=1) / width)
    return d


@torch.no_grad()
def eye_shrink(model, lmk3d: np.ndarray) -> dict[str, float]:
    """Mean log-scale change the emotion field gives the face Gaussians at the eyes, per category (0: none).

    A field can draw narrowed eyes by shrinking the eyes' Gaussians instead of moving the lids; shrunk
    Gaussians leave holes through the face, which render as white or background-coloured eyes."""
    means = model.branches["face"]["means"].detach()
    near = torch.as_tensor(eye_distance(means.cpu().numpy(), lmk3d) < EYE_REACH, device=means.device)
    if not bool(near.any()):
        return {}
    cats = [c for c in CATEGORIES if c != "neutral"]
    emo = torch.tensor([CATEGORIES[c] for c in cats], dtype=torch.float32, device=means.device)
    d = model.emotion_delta(None, emo, warp=False)[..., 7:10].mean(-1)  # [C,N] the field's own, per Gaussian
    return {c: float(d[k, near].mean()) for k, c in enumerate(cats)}


def target_fidelity(model, data, targets: EmotionTargets, settings: EmotionStageSettings,
                    backend: str = "auto", batch: int = 8) -> dict[str, dict[str, float]]:
    """How much of its targets' change the emotion field (with the warp) draws, per category, over the face
    mask with the lips left out (as in the stage's loss). The target's change is target - frame, the
    field's is render at the category's (v, a) - render at (0, 0), so reconstruction error cancels.

    Per category: "fidelity" = 1 - E|field's change - target's change| / E|target's change| (1: draws the
    target exactly; 0: no nearer than drawing nothing) and "amplitude" = the field's change projected on
    the target's, in units of the target's (1: full size; 0.5: half the expression). "mean" averages the
    categories. Measured on the stage's own targets: what training reached, not how well emotions read.
    """
    from emotalk.training.data import frames_at

    dev = data.frames.device
    cats = {k: np.asarray(v, np.float32) for k, v in CATEGORIES.items() if k != "neutral"}
    sw = stage_switches(model, settings)
    was_training = model.training
    model.eval()
    sums: dict[str, np.ndarray] = {}  # per category: [residual, |target change|, <field, target>, |target|^2]
    try:
        with torch.no_grad():
            for name, va in cats.items():
                sel = np.flatnonzero(np.abs(targets.va - va).max(1) < 1e-4)
                for c in range(0, len(sel), batch):
                    j = sel[c:c + batch]
                    idx = torch.as_tensor(targets.frame_idx[j], device=dev)
                    dt = (torch.as_tensor(targets.images[j], device=dev).float()
                          - data.frames[idx].float()) / 255  # [b,S,S,3]
                    w = torch.as_tensor(targets.masks[j], device=dev)[..., None]
                    if settings.mouth_mask and targets.lip_zone is not None:
                        w = w * (1 - torch.as_tensor(targets.lip_zone[j], device=dev)[..., None])
                    body = data.body[idx].float() / 255
                    emo = torch.as_tensor(targets.va[j], device=dev)
                    r = [model.render(frames_at(data, idx, emotion=em), data.size, data.size, body,
                                      backend=backend).rgb for em in (emo, torch.zeros_like(emo))]
                    dr = r[0] - r[1]
                    acc = torch.stack([((dr - dt).abs() * w).sum(), (dt.abs() * w).sum(),
                                       (dr * dt * w).sum(), (dt * dt * w).sum()]).double().cpu().numpy()
                    sums[name] = sums.get(name, 0) + acc
    finally:
        model.switches = sw
        model.train(was_training)
    out = {k: {"fidelity": float(1 - v[0] / max(v[1], 1e-12)), "amplitude": float(v[2] / max(v[3], 1e-12))}
           for k, v in sums.items()}
    if out:
        out["mean"] = {m: float(np.mean([d[m] for d in out.values()])) for m in ("fidelity", "amplitude")}
    return out


def rounded(fid: dict[str, dict[str, float]], digits: int = 3) -> dict[str, dict[str, float]]:
    """`target_fidelity`'s result rounded, for identity.json."""
    return {k: {m: round(v, digits) for m, v in d.items()} for k, d in fid.items()}


def fidelity_line(fid: dict[str, dict[str, float]]) -> str:
    """One line of `target_fidelity`'s result: category fidelity/amplitude ..."""
    return " ".join(f"{k} {d['fidelity']:.2f}/{d['amplitude']:.2f}" for k, d in fid.items())


def run_emotion_stage(model, ds, settings: EmotionStageSettings = EmotionStageSettings(), device: str = "cpu",
                      size: int | None = None, audio_code: np.ndarray | None = None, backend: str = "auto",
                      progress: Progress | None = None) -> dict:
    """After `emotalk.training.loop.train`: build the targets; fine-tune the emotion input of `model`.

    size: the training size (None: the dataset's), used unless settings.size is set; audio_code as given
    to train (None: computed/cached). With `settings.calibration` on, each category's strength is first
    chosen on the identity's frames (`emotion_calibration`). The result has the trained field's fidelity
    to its targets (`target_fidelity`), the strengths chosen, how much it shrinks the eyes (`eye_shrink`)
    and the settings as run besides the loss history.
    """
    from emotalk.training.data import dataset_audio_code, load_train_data

    code = audio_code if audio_code is not None else dataset_audio_code(ds)
    data = load_train_data(ds, settings.size or size, code, device)
    cal = None
    if settings.calibration.enabled and not settings.generator.category_gain:
        from emotalk.training.emotion_calibration import calibrate_dataset, calibrated

        cal = calibrate_dataset(ds, settings.generator, settings.calibration, progress=progress)
        settings = replace(settings, generator=calibrated(settings.generator, cal))
    targets = make_targets(ds, data.size, settings, progress)
    res = emotion_stage(model, ds, data, targets, settings, backend=backend, progress=progress)
    res["fidelity"] = target_fidelity(model, data, targets, settings, backend=backend)
    res["strengths"] = None if cal is None else cal.summary()
    res["eye_shrink"] = eye_shrink(model, ds.lmk3d[np.asarray(ds.train_idx)])
    res["settings"] = settings  # as run (with the calibrated strengths)
    return res
