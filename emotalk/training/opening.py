"""Fit a lip-code identity's render-time opening gain (`ModelSettings.lip_open_gain`).

Why: given the frames' own tracked lip code, a trained model draws the mouth less open than the frames
it learnt from (shipped obama: inner-lip gap 0.87x of the real frames on training frames, 0.80x held
out; german_anchor 1.00x / 0.91x), so speech that should open wide under-articulates. Here a few
training frames are rendered with their tracked code, the code's opening scaled by each gain of a grid
(`emotalk.lips.scale_opening`), and the mouth opening that MediaPipe sees on the renders is compared with
what it sees on the real frames (the same detector on both, each image on its own). The smallest gain
whose open frames come within `target` of the real ones is kept; where the opening levels off before
that (reagan: 0.89 at gain 1, 0.91 at 1.1, 0.94 at 1.6 for 0.9 dB of held-out PSNR), the gain after
which it stops rising. Lips at or below a p/b/m closure are unchanged by any gain.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from emotalk.errors import EmoTalkError
from emotalk.face.landmarks import mouth_opening
from emotalk.training.settings import OpeningSettings


@dataclass
class OpeningFit:
    """The fitted gain and what it was fitted on."""

    gain: float  # the chosen lip_open_gain
    ratio: dict[float, float]  # per candidate gain: mean rendered / real opening over the open frames
    n_frames: int  # open frames measured (0: the fit could not run, gain 1)
    note: str = ""  # why the gain was left at 1, if it was


def _openings(frames: np.ndarray) -> np.ndarray:
    """MediaPipe's mouth opening [N] of each image [N,H,W,3] on its own (nan where no face was found)."""
    from emotalk.face.tracking import detect_faces

    out = np.full(len(frames), np.nan)
    for i, faces in enumerate(detect_faces(list(frames), max_faces=1)):
        if faces:
            out[i] = float(mouth_opening(faces[0][None, :, :2])[0])
    return out


def choose_gain(ratio: dict[float, float], target: float, min_slope: float = 0.0) -> float:
    """The smallest candidate whose rendered / real opening ratio reaches `target`. None does: the first
    after which a larger gain raises the ratio by less than `min_slope` per unit of gain (the mouth has
    stopped following the code, and more gain only costs fidelity), else the one that comes closest."""
    gains = sorted(ratio)
    reach = [g for g in gains if ratio[g] >= target]
    if reach:
        return reach[0]
    for g, nxt in zip(gains, gains[1:]):
        if (ratio[nxt] - ratio[g]) / (nxt - g) < min_slope:
            return g
    return max(ratio, key=ratio.get)


def fit_opening_gain(model, data, settings: OpeningSettings = OpeningSettings(), backend: str = "auto",
                     measure: Callable[[np.ndarray], np.ndarray] = _openings) -> OpeningFit:
    """Fit `model`'s lip_open_gain on TrainData `data` (tracked lip codes; the model is left as given).

    measure: images [N,S,S,3] uint8 -> mouth openings [N] (nan: no face); MediaPipe unless given.
    """
    from emotalk.training.data import frames_at

    if not model.settings.lip_code or data.lips is None:
        return OpeningFit(1.0, {}, 0, "not a lip-code identity")
    pool = np.asarray(data.train_idx)
    n = min(settings.n_frames, len(pool))
    idx = pool[np.unique(np.linspace(0, len(pool) - 1, n).round().astype(int))]
    try:
        real = measure(data.frames[torch.as_tensor(idx, device=data.frames.device)].cpu().numpy())
    except (ImportError, EmoTalkError) as e:  # no face detector here: the identity renders as trained
        return OpeningFit(1.0, {}, 0, f"no mouth measure: {e}")
    ok = np.isfinite(real)
    if ok.sum() < settings.min_found:
        return OpeningFit(1.0, {}, 0, f"faces found on {int(ok.sum())} of {len(idx)} training frames")
    open_ = ok & (real >= np.quantile(real[ok], 1 - settings.open_share))
    idx, real = idx[open_], real[open_]
    was_settings, was_training = model.settings, model.training
    model.eval()
    ratio: dict[float, float] = {}
    try:
        for g in settings.gains:
            model.settings = replace(was_settings, lip_open_gain=float(g))
            imgs = []
            with torch.no_grad():
                for c in range(0, len(idx), 8):
                    t = torch.as_tensor(idx[c:c + 8], device=data.frames.device)
                    rgb = model.render(frames_at(data, t), data.size, data.size, data.body[t].float() / 255,
                                       backend=backend).rgb
                    imgs.append((rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy())
            got = measure(np.concatenate(imgs))
            both = np.isfinite(got)
            if both.sum() < settings.min_found // 2:
                return OpeningFit(1.0, ratio, 0, f"faces found on {int(both.sum())} of {len(idx)} renders")
            ratio[float(g)] = float(got[both].mean() / max(real[both].mean(), 1e-9))
            if ratio[float(g)] >= settings.target:  # larger gains only open further
                break
            if choose_gain(ratio, settings.target, settings.min_slope) != float(g):  # levelled off before g
                break
    finally:
        model.settings = was_settings
        model.train(was_training)
    return OpeningFit(choose_gain(ratio, settings.target, settings.min_slope), ratio, int(len(idx)))
