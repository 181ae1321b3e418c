"""The emotion section of an evaluation: frames rendered at each category's (valence, arousal), read by
the recogniser, and their mouth opening against the neutral render's (an emotion must keep the lips).

Shared with `bench/ship_identity.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emotalk.evaluation.emotion import clip_result, lip_preservation, summarise
from emotalk.evaluation.render_tracking import track_frames

# categories rendered for the emotion section; contempt (no recogniser class) and calm are rendered for
# the lip-gap check only, as on MEAD
EMOTION_CATS = ("neutral", "happy", "surprised", "fear", "angry", "disgusted", "contempt", "sad", "calm")
NO_CLASS = ("contempt", "calm")


def render_emotions(model, data, picks: np.ndarray, cats: Sequence[str] = EMOTION_CATS,
                    backend: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Render dataset frames `picks` (TrainData indices) at each category's (v, a).

    Returns (frames [C*P,S,S,3] uint8, (v,a) [C*P,2], category names [C*P], frame indices [C*P]).
    """
    import torch

    from emotalk.emotion import CATEGORIES
    from emotalk.gaussians.fused_kernels import to_uint8
    from emotalk.training.data import frames_at

    dev = data.frames.device
    idx = torch.as_tensor(np.asarray(picks), device=dev)
    imgs, vas, names, fidx = [], [], [], []
    with torch.no_grad():
        for name in cats:
            va = torch.tensor(CATEGORIES[name], device=dev, dtype=torch.float32).expand(len(picks), 2)
            fr = frames_at(data, idx, emotion=va)
            img = model.render(fr, data.size, data.size, data.body[idx].float() / 255, backend=backend).rgb
            imgs.append(to_uint8(img).cpu().numpy())
            vas += [CATEGORIES[name]] * len(picks)
            names += [name] * len(picks)
            fidx += [int(i) for i in picks]
    return (np.concatenate(imgs), np.array(vas, np.float32), np.array(names), np.array(fidx))


def emotion_from_renders(frames: np.ndarray, cats: np.ndarray, fidx: np.ndarray, recognizer=None) -> dict:
    """Recogniser on emotional renders (per category) and lip preservation against the neutral render.

    frames [N,S,S,3] uint8, cats [N] category names, fidx [N] the dataset frame each was rendered at
    (every frame needs a "neutral" render). Each render is tracked on its own; a category with no face
    found in any of its renders is predicted as None.
    """
    from emotalk.face.recognizer import EmotionRecognizer

    cats = np.asarray(cats).astype(str)
    fidx = np.asarray(fidx)
    lmk, found = track_frames(frames, video=False)
    rec = recognizer or EmotionRecognizer()
    probs = np.stack([rec.probs(f, lm[:, :2]) if ok else np.full(7, np.nan, np.float32)
                      for f, lm, ok in zip(frames, lmk, found)])  # NaN rows: no face found
    results, lips = [], {}
    neutral = {int(i): k for k, i in enumerate(fidx) if cats[k] == "neutral"}
    for name in dict.fromkeys(cats):  # in render order
        m = np.flatnonzero(cats == name)
        if name not in NO_CLASS:
            results.append(clip_result(f"render-{name}", name, probs[m]))
        m = np.array([k for k in m if found[k] and int(fidx[k]) in neutral and found[neutral[int(fidx[k])]]],
                     int)
        if len(m):
            lips[name] = lip_preservation(np.stack([lmk[neutral[int(fidx[k])]] for k in m]), lmk[m])
    summ = summarise(results)
    return {"faces_found": f"{int(found.sum())}/{len(found)}",
            "summary": {k: v for k, v in summ.items() if not isinstance(v, np.ndarray)},
            "per_category_pred": {r.target: r.predicted if r.n_frames else None for r in results},
            "lip_gap_ratio_vs_neutral": {k: v["gap_ratio"] for k, v in lips.items()},
            "lip_gap_mae": {k: v["gap_mae"] for k, v in lips.items()}}
