"""The whole metric table of a trained identity on its dataset's held-out frames.

`evaluate_identity(identity, dataset)` renders the held-out frames (the dataset's own head poses, body
frames, upper-face codes and audio code, neutral emotion) and compares them with the real frames:

- **image**: PSNR, SSIM, ST-LPIPS, full frame and face box (`emotalk.metrics.image_metrics`).
- **lips**: LMD (mouth landmarks, px at the evaluation size) with MediaPipe run the same way on the
  renders and on the real frames, and the correlation of the two mouth-opening tracks.
- **sync**: AV offset, confidence and phone contrast (`emotalk.lipsync`) of the rendered held-out run
  against the clip's audio, next to the real frames' own numbers on the same run. The split holds out
  the clip's tail, so the held-out frames are one contiguous run; if a dataset splits otherwise, the
  longest contiguous run is used (and said so).
- **emotion**: a few held-out frames rendered at each category's (valence, arousal): recogniser
  accuracy, V/A-RMSE, V/A sign agreement (`emotalk.emotion_metrics`), and the inner-lip gap of each
  category's render over the neutral render's (1 = the emotion keeps the mouth opening).

The emotion part is shared with `bench/ship_identity.py` (`render_emotions`, `emotion_from_renders`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from emotalk.errors import DatasetError, EmoTalkError, InputError

Progress = Callable[[str, float], None]
SECTIONS = ("image", "lips", "sync", "emotion")
# categories rendered for the emotion section; contempt (no recogniser class) and calm are rendered for
# the lip-gap check only, as on MEAD
EMOTION_CATS = ("neutral", "happy", "surprised", "fear", "angry", "disgusted", "contempt", "sad", "calm")
NO_CLASS = ("contempt", "calm")
TRACK_MIN_SIDE = 256  # frames smaller than this are upscaled before MediaPipe (it misses small faces)
SHORT_RUN_FRAMES = 100  # sync numbers on fewer frames than this are flagged as noisy


# -- shared helpers --------------------------------------------------------------------------------

def longest_run(idx: np.ndarray) -> np.ndarray:
    """The longest run of consecutive frame indices in idx (sorted first)."""
    idx = np.unique(np.asarray(idx, np.int64))
    if len(idx) == 0:
        return idx
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    runs = np.split(idx, breaks)
    return max(runs, key=len)


def _upscale(frames: np.ndarray) -> tuple[np.ndarray, int]:
    import cv2

    k = int(np.ceil(TRACK_MIN_SIDE / max(1, min(frames.shape[1:3]))))
    if k <= 1:
        return frames, 1
    return np.stack([cv2.resize(f, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC) for f in frames]), k


def track_frames(frames: np.ndarray, video: bool = True, fps: float = 25.0):
    """MediaPipe on uint8 RGB frames [T,H,W,3] (small frames upscaled first).

    video=True: one video-mode track (temporal smoothing, as for real clips) -> (lmk [T,478,2] px with
    NaN where lost, mouth opening [T] with gaps filled); video=False: each frame on its own (renders of
    different emotions) -> (lmk [T,478,3] px, found [T]).
    """
    from emotalk.face.tracking import track_video

    big, k = _upscale(np.asarray(frames))
    if video:
        from emotalk.avsync.lipsync import track_mouth

        lmk, mouth = track_mouth(list(big), fps, n_frames=len(big))
        return lmk / k, mouth
    tracks = [track_video([f], n_frames=1) for f in big]
    found = np.array([bool(t.found[0]) for t in tracks])
    lmk = np.stack([t.lmk[0] for t in tracks]).astype(np.float32)
    lmk[..., :2] /= k
    return lmk, found


def render_emotions(model, data, picks: np.ndarray, cats: Sequence[str] = EMOTION_CATS,
                    backend: str = "auto") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Render dataset frames `picks` (TrainData indices) at each category's (v, a).

    Returns (frames [C*P,S,S,3] uint8, (v,a) [C*P,2], category names [C*P], frame indices [C*P]).
    """
    import torch

    from emotalk.emotion import CATEGORIES
    from emotalk.training.data import frames_at

    dev = data.frames.device
    idx = torch.as_tensor(np.asarray(picks), device=dev)
    imgs, vas, names, fidx = [], [], [], []
    with torch.no_grad():
        for name in cats:
            va = torch.tensor(CATEGORIES[name], device=dev, dtype=torch.float32).expand(len(picks), 2)
            fr = frames_at(data, idx, emotion=va)
            img = model.render(fr, data.size, data.size, data.body[idx].float() / 255, backend=backend).rgb
            imgs.append((img.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy())
            vas += [CATEGORIES[name]] * len(picks)
            names += [name] * len(picks)
            fidx += [int(i) for i in picks]
    return (np.concatenate(imgs), np.array(vas, np.float32), np.array(names), np.array(fidx))


def emotion_from_renders(frames: np.ndarray, cats: np.ndarray, fidx: np.ndarray, recognizer=None) -> dict:
    """Recogniser on emotional renders (per category) and lip preservation against the neutral render.

    frames [N,S,S,3] uint8, cats [N] category names, fidx [N] the dataset frame each was rendered at
    (every frame needs a "neutral" render). Each render is tracked on its own.
    """
    from emotalk.evaluation.emotion import clip_result, lip_preservation, summarise
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
            "per_category_pred": {r.target: r.predicted for r in results},
            "lip_gap_ratio_vs_neutral": {k: v["gap_ratio"] for k, v in lips.items()},
            "lip_gap_mae": {k: v["gap_mae"] for k, v in lips.items()}}


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


def _nan_to_none(x):
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
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
        res["image"] = _image(renders, gt, lmk_ds, S, notes)

    if {"lips", "sync"} & set(sections):
        stage("track", "tracking the mouth in renders and real frames (MediaPipe)")
        lmk_r, mouth_r = track_frames(renders, fps=ds.fps)
        lmk_g, mouth_g = track_frames(gt, fps=ds.fps)
        if "lips" in sections:
            res["lips"] = _lips(lmk_r, mouth_r, lmk_g, mouth_g, S)
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
            res["sync"] = _sync(ds, srun, mouth_r, mouth_g, lmk_r, lmk_g, phones)
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
    return _nan_to_none(res)


def _image(renders: np.ndarray, gt: np.ndarray, lmk: np.ndarray, S: int, notes: list[str]) -> dict:
    from emotalk.metrics import face_box, image_metrics

    box = face_box(lmk, S)
    try:
        m = image_metrics(renders, gt, box=box, lpips=True)
    except (EmoTalkError, OSError) as e:  # the ST-LPIPS asset is not installed
        notes.append(f"no ST-LPIPS: {e}")
        m = image_metrics(renders, gt, box=box, lpips=False)
    return {**m, "face_box": list(box)}


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) < 1e-9 or np.std(b[ok]) < 1e-9:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def _lips(lmk_r, mouth_r, lmk_g, mouth_g, S: int) -> dict:
    from emotalk.metrics import lmd

    found_r, found_g = np.isfinite(lmk_r[:, 0, 0]), np.isfinite(lmk_g[:, 0, 0])
    both = found_r & found_g
    d = lmd(lmk_r, lmk_g)
    eye = np.linalg.norm(lmk_g[:, 263] - lmk_g[:, 33], axis=-1)
    return {"lmd_px": d, "lmd_px_at_512": d * 512 / S if np.isfinite(d) else float("nan"),
            "lmd_over_eye_distance": d / float(np.nanmean(eye)) if both.any() else float("nan"),
            "mouth_open_corr": _corr(np.where(found_r, mouth_r, np.nan), np.where(found_g, mouth_g, np.nan)),
            "mouth_open_mean_render": float(np.nanmean(mouth_r)) if found_r.any() else float("nan"),
            "mouth_open_mean_real": float(np.nanmean(mouth_g)) if found_g.any() else float("nan"),
            "faces_found_render": f"{int(found_r.sum())}/{len(found_r)}",
            "faces_found_real": f"{int(found_g.sum())}/{len(found_g)}"}


def _sync(ds, run: np.ndarray, mouth_r, mouth_g, lmk_r, lmk_g, phones: bool) -> dict:
    from emotalk.avsync import lipsync

    SR = lipsync.SR
    wav = ds.audio()
    a, b = int(round(run[0] / ds.fps * SR)), int(round((run[-1] + 1) / ds.fps * SR))
    seg = np.asarray(wav[a:b], np.float32)
    if len(seg) < b - a:
        seg = np.pad(seg, (0, b - a - len(seg)))
    settings = lipsync.SyncSettings(fps=ds.fps)
    ph, transcript, notes = lipsync.phones_for(seg) if phones else ([], "", ["phone contrast not asked for"])
    if len(run) < SHORT_RUN_FRAMES and run[-1] - run[0] + 1 < ds.n_frames:
        notes.append(f"only {len(run)} held-out frames ({len(run) / ds.fps:.1f} s): offsets within "
                     f"+-{settings.max_lag} frames on a short run are noisy; compare render with real")
    out = {"frames": int(len(run)), "transcript": transcript, "notes": notes}
    for name, mouth, lmk in (("render", mouth_r, lmk_r), ("real", mouth_g, lmk_g)):
        found = float(np.isfinite(lmk[:, 0, 0]).mean())
        if not np.isfinite(mouth).any():
            out[name] = {"offset": None, "confidence": None, "clear": False, "corr0": None,
                         "phone_contrast": None, "face_found": found}
            notes.append(f"{name}: no face found, no sync numbers")
            continue
        rep = lipsync.measure(np.nan_to_num(mouth, nan=float(np.nanmean(mouth))), seg, name, ph,
                              transcript, found, settings)
        out[name] = {"offset": rep.sync.offset, "confidence": rep.sync.confidence, "clear": rep.sync.clear,
                     "corr0": rep.sync.corr0, "peak_corr": rep.sync.peak_corr,
                     "phone_contrast": None if rep.contrast is None else rep.contrast.ratio,
                     "phone_contrast_n": None if rep.contrast is None else
                     [rep.contrast.n_open, rep.contrast.n_closed],
                     "face_found": found}
        notes += [f"{name}: {n}" for n in rep.notes]
        if rep.contrast is not None and not (rep.contrast.n_open and rep.contrast.n_closed):
            notes.append(f"{name}: no phone contrast ({rep.contrast.n_open} open-vowel, "
                         f"{rep.contrast.n_closed} p/b/m frames in the run)")
    return out


# -- report ----------------------------------------------------------------------------------------

def _f(x, spec: str = ".3f") -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def _median_gap(gaps: dict) -> float | None:
    v = [x for k, x in gaps.items() if k != "neutral" and x is not None and np.isfinite(x)]
    return float(np.median(v)) if v else None


def markdown(res: dict) -> str:
    """The evaluation as markdown tables (one per section present)."""
    h = res["heldout"]
    out = [f"### {res['identity_name']} on {Path(res['dataset']).name}: held-out frames "
           f"{h['first']}–{h['last']} ({h['frames']} frames, {h['seconds']} s) at {res['size']} px",
           "", f"Identity trained at {res['identity_size']} px, dataset {res['dataset_size']} px; "
           f"audio code {res['audio_kind']}; device {res['device']}."]
    if "image" in res:
        m = res["image"]
        out += ["", "**Image** (render vs real frame; face = landmark box)", "",
                "| PSNR | SSIM | ST-LPIPS | PSNR face | SSIM face | ST-LPIPS face |",
                "|---|---|---|---|---|---|",
                f"| {_f(m.get('psnr'), '.2f')} | {_f(m.get('ssim'))} | {_f(m.get('stlpips'))} | "
                f"{_f(m.get('psnr_face'), '.2f')} | {_f(m.get('ssim_face'))} | {_f(m.get('stlpips_face'))} |"]
    if "lips" in res:
        m = res["lips"]
        out += ["", "**Lips** (MediaPipe on renders and real frames alike)", "",
                "| LMD px | LMD px @512 | LMD / eye dist | mouth-opening corr | mean opening render / real "
                "| faces render / real |", "|---|---|---|---|---|---|",
                f"| {_f(m['lmd_px'], '.2f')} | {_f(m['lmd_px_at_512'], '.2f')} | "
                f"{_f(m['lmd_over_eye_distance'], '.4f')} | {_f(m['mouth_open_corr'])} | "
                f"{_f(m['mouth_open_mean_render'])} / {_f(m['mouth_open_mean_real'])} | "
                f"{m['faces_found_render']} / {m['faces_found_real']} |"]
    if "sync" in res:
        s = res["sync"]
        out += ["", f"**Sync** on the {s.get('scope', 'held-out run')} ({s['frames']} frames) "
                "with the clip's audio", "",
                "| frames | AV offset | clear | confidence | corr at 0 | phone contrast |",
                "|---|---|---|---|---|---|"]
        for name in ("render", "real"):
            r = s[name]
            off = "–" if r["offset"] is None else f"{r['offset']:+d}"
            out.append(f"| {name} | {off} | {'yes' if r['clear'] else 'no'} | {_f(r['confidence'])} | "
                       f"{_f(r['corr0'], '+.3f')} | {_f(r['phone_contrast'], '.2f')} |")
        out += [f"- {n}" for n in dict.fromkeys(s["notes"])]
        if s.get("transcript"):
            out.append(f"- heard: \"{s['transcript'].strip()}\"")
    if "emotion" in res:
        e = res["emotion"]
        sm = e["summary"]
        gaps = e["lip_gap_ratio_vs_neutral"]
        out += ["", f"**Emotion** ({len(e['frames'])} held-out frames x {len(EMOTION_CATS)} categories; "
                f"faces found {e['faces_found']})", "",
                "| Emotion Acc | V-RMSE | A-RMSE | V-SA | A-SA | lip gap vs neutral (median of categories) |",
                "|---|---|---|---|---|---|",
                f"| {_f(sm.get('accuracy'))} | {_f(sm.get('v_rmse'))} | {_f(sm.get('a_rmse'))} | "
                f"{_f(sm.get('v_sa'))} | {_f(sm.get('a_sa'))} | "
                f"{_f(_median_gap(gaps))} |",
                "", "| category | predicted | lip gap vs neutral |", "|---|---|---|"]
        for c in EMOTION_CATS:
            out.append(f"| {c} | {e['per_category_pred'].get(c, '–')} | {_f(gaps.get(c), '.2f')} |")
    if res.get("notes"):
        out += ["", *[f"- {n}" for n in res["notes"]]]
    t = res.get("timings_s", {})
    if t:
        out += ["", "Timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in t.items())]
    return "\n".join(out)


def write_report(res: dict, json_path: Path, header: dict | None = None) -> tuple[Path, Path]:
    """Write res as JSON and its markdown next to it (same stem, .md), each atomically."""
    import json

    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    md_path = json_path.with_suffix(".md")
    doc = {"header": header or {}, **res}
    md = (f"_{header['date']}, {header['machine']}, commit {header['commit']}_\n\n" if header else "") \
        + markdown(res) + "\n"
    for path, text in ((json_path, json.dumps(doc, indent=1, allow_nan=False)), (md_path, md)):
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    return json_path, md_path
