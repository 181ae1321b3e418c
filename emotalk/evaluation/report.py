"""The whole metric table of a trained identity on its dataset's held-out frames.

`evaluate_identity(identity, dataset)` renders the held-out frames (the dataset's own head poses, body
frames, upper-face codes and audio code, neutral emotion) and compares them with the real frames:

- **image**: PSNR, SSIM, ST-LPIPS, full frame and face box (`emotalk.metrics.image_metrics`).
- **lips**: LMD (mouth landmarks, px at the evaluation size) with MediaPipe run the same way on the
  renders and on the real frames, and the correlation of the two mouth-opening tracks.
- **sync**: AV offset, confidence and phone contrast (`emotalk.avsync.lipsync`) of the rendered held-out
  run against the clip's audio, next to the real frames' own numbers on the same run. The split holds
  out the clip's tail, so the held-out frames are one contiguous run; if a dataset splits otherwise,
  the longest contiguous run is used (and said so).
- **emotion**: a few held-out frames rendered at each category's (valence, arousal): recogniser
  accuracy, V/A-RMSE, V/A sign agreement (`emotalk.evaluation.emotion`), and the inner-lip gap of each
  category's render over the neutral render's (1 = the emotion keeps the mouth opening).

The sections are computed in `emotalk.evaluation.sections` and `emotalk.evaluation.emotion_renders`;
`emotalk.evaluation.tables` writes the result as markdown.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from emotalk.errors import DatasetError, EmoTalkError, InputError
from emotalk.evaluation.emotion_renders import emotion_from_renders, render_emotions
from emotalk.evaluation.render_tracking import track_frames
from emotalk.evaluation.sections import image_section, lips_section, sync_section

Progress = Callable[[str, float], None]
SECTIONS = ("image", "lips", "sync", "emotion")


def longest_run(idx: np.ndarray) -> np.ndarray:
    """The longest run of consecutive frame indices in idx (sorted first)."""
    idx = np.unique(np.asarray(idx, np.int64))
    if len(idx) == 0:
        return idx
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    runs = np.split(idx, breaks)
    return max(runs, key=len)


# -- inputs ----------------------------------------------------------------------------------------

def _open(identity, dataset, device: str):
    from emotalk.dataset.format import load_dataset
    from emotalk.identity.checkpoint import Identity, load_identity

    if isinstance(identity, Identity):
        ident = identity
    else:
        p = Path(identity)
        if not p.is_dir() and "/" not in str(identity):  # a name: shipped or installed identity
            from emotalk.identity.store import resolve_identity

            try:
                p = resolve_identity(str(identity))
            except EmoTalkError:
                pass
        if not p.is_dir():
            raise InputError(f"No identity folder at {p}. Give a trained identity (a folder with "
                             "identity.json, model.safetensors, body.mp4), e.g. checkpoints/obama.")
        ident = load_identity(p, device=device)
    if isinstance(dataset, (str, os.PathLike)):
        p = Path(dataset)
        if not p.is_dir():
            raise InputError(f"No dataset folder at {p}. Give the identity's preprocessed dataset "
                             "(python -m emotalk preprocess CLIP --out DIR), e.g. out/datasets/obama.")
        ds = load_dataset(p)
    else:
        ds = dataset
    return ident, ds


def check_match(ident, ds) -> list[str]:
    """DatasetError when the dataset cannot be what the identity was trained on; notes otherwise."""
    notes = []
    m = ident.meta.get("model", {})
    if int(m.get("upper_dim", ds.upper_face.shape[1])) != ds.upper_face.shape[1]:
        raise DatasetError(f"{ds.root} has {ds.upper_face.shape[1]} upper-face channels, the identity "
                           f"{ident.root} {m.get('upper_dim')}: they come from different EmoTalk versions. "
                           "Evaluate on the dataset the identity was trained on.")
    src_i = (ident.meta.get("source") or {}).get("sha256")
    src_d = (ds.meta.get("source") or {}).get("sha256") if isinstance(ds.meta.get("source"), dict) else None
    if src_i and src_d and src_i != src_d:
        name_i = (ident.meta.get("source") or {}).get("name") or (ident.meta.get("source") or {}).get("clip")
        name_d = ds.meta["source"].get("name") or ds.meta["source"].get("path")
        raise DatasetError(f"{ds.root} was made from another clip ({name_d}) than the identity {ident.root} "
                           f"({name_i}): its held-out frames are not the identity's. Give the identity's "
                           "own dataset.")
    if not src_i or not src_d:
        notes.append("source clip checksums missing: could not check that the dataset is the identity's")
    if abs(float(ident.fps) - float(ds.fps)) > 1e-3:
        raise DatasetError(f"{ds.root} is {ds.fps:g} fps, the identity {ident.fps:g} fps: not its dataset.")
    return notes


def nan_to_none(x):
    if isinstance(x, dict):
        return {k: nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [nan_to_none(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


# -- the evaluation --------------------------------------------------------------------------------

def evaluate_identity(identity, dataset, size: int | None = None, device: str = "cpu",
                      sections: Sequence[str] = SECTIONS, progress: Progress | None = None,
                      emotion_frames: int = 3, phones: bool = True, backend: str = "auto",
                      sync_clip: bool = False) -> dict:
    """Every metric of an identity (folder or Identity) on a dataset's (folder or IdentityDataset)
    held-out frames, at `size` px (default: the identity's). Returns a JSON-ready dict (NaN -> None).

    sections: any of image, lips, sync, emotion. phones: transcribe + align the held-out speech for the
    phone contrast (Whisper and pocketsphinx; off: no contrast). sync_clip: the sync section renders the
    whole clip instead (training frames included, so it is in-sample; the held-out run is short).
    progress(stage, fraction) is called as stages start.
    """
    import torch

    from emotalk.training.data import dataset_audio_code, load_train_data
    from emotalk.training.loop import evaluate

    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise InputError(f"Unknown section(s) {', '.join(bad)}; choose from {', '.join(SECTIONS)}.")
    if not sections:
        raise InputError(f"No section to evaluate; choose from {', '.join(SECTIONS)}.")
    weights = {"load": 1.0, "render": 1.0, "image": 1.0, "track": 2.0, "sync": 10.0 if sync_clip else 2.0,
               "emotion": 3.0}
    plan = ["load", "render"] + (["image"] if "image" in sections else []) \
        + (["track"] if {"lips", "sync"} & set(sections) else []) \
        + (["sync"] if "sync" in sections else []) + (["emotion"] if "emotion" in sections else [])
    total = sum(weights[p] for p in plan)
    done = [0.0]
    times: dict[str, float] = {}
    t_stage = [time.time(), None]

    def stage(name: str, text: str) -> None:
        now = time.time()
        if t_stage[1] is not None:
            times[t_stage[1]] = round(now - t_stage[0], 2)
            done[0] += weights[t_stage[1]]
        t_stage[:] = [now, name]
        if progress:
            progress(text, done[0] / total)

    stage("load", "loading the identity and the dataset")
    ident, ds = _open(identity, dataset, device)
    notes = check_match(ident, ds)
    S = int(size or ident.size)
    if S % 2 or S < 16:
        raise InputError(f"The evaluation size must be an even number of pixels >= 16, got {S}.")
    kind = ident.meta.get("model", {}).get("audio_kind", "whisper")
    code = dataset_audio_code(ds, kind)
    if tuple(code.shape[1:]) != tuple(ident.model.audio_shape):
        raise DatasetError(f"The audio code of {ds.root} ({kind}) has shape {code.shape[1:]}, the identity "
                           f"needs {tuple(ident.model.audio_shape)}: the identity was trained on other "
                           "features. Delete the dataset's audio_code_* files or evaluate on its own "
                           "dataset.")
    if len(ds.val_idx) == 0:
        raise DatasetError(f"{ds.root} holds out no frames (split val = 0): nothing to evaluate on.")
    data = load_train_data(ds, S, code, device)
    run = longest_run(ds.val_idx)
    if len(run) < len(ds.val_idx):
        notes.append(f"held-out frames are not contiguous: the longest run ({len(run)} of {len(ds.val_idx)}) "
                     "is evaluated")
    model = ident.model.to(device)
    res: dict = {
        "identity": str(ident.root), "identity_name": ident.name, "dataset": str(ds.root), "size": S,
        "identity_size": ident.size, "dataset_size": ds.size, "device": str(device), "audio_kind": kind,
        "heldout": {"first": int(run[0]), "last": int(run[-1]), "frames": int(len(run)),
                    "seconds": round(len(run) / ds.fps, 2), "fps": ds.fps},
        "sections": list(sections), "notes": notes,
    }

    stage("render", f"rendering {len(run)} held-out frames at {S} px")
    renders, _ = evaluate(model, data, run, backend=backend)
    gt = data.frames[torch.as_tensor(run, device=data.frames.device)].cpu().numpy()
    lmk_ds = ds.lmk2d[run] * (S / ds.size)

    if "image" in sections:
        stage("image", "image metrics (PSNR, SSIM, ST-LPIPS)")
        res["image"] = image_section(renders, gt, lmk_ds, S, notes)

    if {"lips", "sync"} & set(sections):
        stage("track", "tracking the mouth in renders and real frames (MediaPipe)")
        lmk_r, mouth_r = track_frames(renders, fps=ds.fps)
        lmk_g, mouth_g = track_frames(gt, fps=ds.fps)
        if "lips" in sections:
            res["lips"] = lips_section(lmk_r, mouth_r, lmk_g, mouth_g, S)
        if "sync" in sections:
            srun = run
            if sync_clip:
                stage("sync", f"rendering the whole clip ({ds.n_frames} frames) for lip sync")
                srun = np.arange(ds.n_frames)
                ren = evaluate(model, data, srun, backend=backend)[0]
                lmk_r, mouth_r = track_frames(ren, fps=ds.fps)
                del ren
                lmk_g, mouth_g = track_frames(data.frames.cpu().numpy(), fps=ds.fps)
            else:
                stage("sync", "lip sync (AV offset, confidence, phone contrast)")
            res["sync"] = sync_section(ds, srun, mouth_r, mouth_g, lmk_r, lmk_g, phones)
            res["sync"]["scope"] = ("whole clip (training frames included: in-sample)" if sync_clip
                                    else "held-out run")

    if "emotion" in sections:
        stage("emotion", "rendering the emotion categories and recognising them")
        n = max(1, min(emotion_frames, len(run)))
        picks = run[np.linspace(0, len(run) - 1, n).round().astype(int)]
        frames, _, cats, fidx = render_emotions(model, data, picks, backend=backend)
        res["emotion"] = {"frames": [int(i) for i in picks], **emotion_from_renders(frames, cats, fidx)}

    stage("done", "done")
    res["timings_s"] = times
    return nan_to_none(res)


