"""The renderer's mouth at the extremes: held-out frames rendered from their tracked lip code and from the
audio-predicted lip code, against the real frames, split by how open the real mouth is.

Why: the image metrics of an evaluation average over all held-out frames, most of them half-open; a
mouth that blurs when wide open (teeth, tongue) or does not close shows there only weakly.

Each held-out frame is rendered twice with its own camera, upper-face code, body frame and neutral
emotion, so only the lip code differs from the real frame:
- **tracked**: the frame's tracked lip parameters (`emotalk.lips.lip_params`), z-scored with the model's
  lip_mean / lip_std and clamped to its trained range (lip_lo, lip_hi): the best the renderer can do;
- **audio**: `emotalk.render.speech_lips.lip_track` on the clip's own audio (source "audio": the
  identity's LipDriver alone; "auto": phone-aware lips as the app gives a recording): what users get.
Per frame, in the lip box of the real frame's landmarks (`mouth_metrics.lip_box`, one box for all three
images): ST-LPIPS of each render against the real frame (box resampled to LPIPS_CROP); the mouth
sharpness (`mouth_metrics.mouth_sharpness`: Laplacian variance of the grey box at CROP_SIZE) of the real
frame and both renders; and the mouth opening MediaPipe finds in each image alone (do closed lips close,
do open ones open as wide). PSNR of each render in the whole frame, the face box and the lip box
(`region_psnr`): a change that sharpens the mouth can cost pixels elsewhere (the head's outline).
Classes by the real frame's tracked inner-lip gap (`face.landmarks.mouth_opening` of the dataset's
landmarks): "open" the top CLASS_SHARE of held-out frames, "closed" the bottom CLASS_SHARE, and "all".
Tables give medians per class (PSNR: means over all frames); a sharpness ratio is the median over frames
of render / real.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from emotalk.errors import DatasetError, InputError
from emotalk.evaluation.mouth_metrics import lip_box, mouth_crop, mouth_sharpness

Progress = Callable[[str, float], None]  # (stage text with frame counts, fraction 0..1)
CLASS_SHARE = 0.25  # "open" / "closed": this share of the held-out frames with the widest / narrowest gap
LPIPS_CROP = (128, 64)  # (w, h) the lip box is resampled to for ST-LPIPS (AlexNet needs more than 64x32)
SHEET_FRAMES = 4  # the contact sheet shows this many most open and most closed frames
SHEET_CELL = (288, 144)  # (w, h) px of one mouth crop on the sheet (nearest-neighbour upscaled)
KINDS = ("real", "tracked", "audio")  # the sheet's columns
REGIONS = ("frame", "face", "lips")  # where `region_psnr` compares: whole frame, face box, lip box
TABLE_COLUMNS = ("gap", "open_real", "open_tracked", "open_audio", "gap_code_tracked", "gap_code_audio",
                 "stlpips_tracked", "stlpips_audio", "sharp_real", "sharp_tracked", "sharp_audio",
                 "ratio_tracked", "ratio_audio")  # the markdown table's medians, after class and n


# -- lip codes -------------------------------------------------------------------------------------

def tracked_lips(model, ds, idx: np.ndarray) -> tuple[np.ndarray, int]:
    """The tracked lip code [N,M] of dataset frames idx, z-scored with the model's own statistics and
    clamped to its trained range (as training and the renderer see it); and how many rows were clamped."""
    from emotalk.lips import LipStats, lip_params

    raw = lip_params(ds.lmk2d[idx], ds.blendshapes[idx], ds.blendshape_names)  # [N,M]
    mean, std, lo, hi = (getattr(model, k).detach().cpu().numpy()
                         for k in ("lip_mean", "lip_std", "lip_lo", "lip_hi"))
    z = LipStats(mean, std).code(raw)
    clamped = np.clip(z, lo, hi).astype(np.float32)
    return clamped, int(np.any(clamped != z, axis=1).sum())


def lip_stats_note(model, ds) -> str:
    """Whether the dataset's lip statistics (over its training frames) are the model's: they differ when
    the dataset is not the one the identity was trained on (then "tracked" is not the training code)."""
    from emotalk.lips import dataset_lips

    st = dataset_lips(ds)[0]
    mean, std = (getattr(model, k).detach().cpu().numpy() for k in ("lip_mean", "lip_std"))
    d = float(np.max(np.abs(st.mean - mean) / std))
    r = float(np.max(np.abs(np.log(st.std / std))))
    ok = "match" if d < 0.05 and r < 0.05 else "DIFFER from"
    return (f"the dataset's lip statistics {ok} the model's (mean off by <= {d:.3f} std, std by <= "
            f"{100 * r:.1f}%)")


def clip_phones(ds, source: str) -> tuple[list | None, list[str]]:
    """Phone timings of the clip's audio for source "auto" (its transcript aligned if the dataset has one,
    else Whisper + aligner, as the app does for a recording); None for "audio". -> (phones, notes)."""
    if source == "audio":
        return None, ["audio lips: the identity's LipDriver alone (source 'audio'; no phones)"]
    from emotalk.render.speech_lips import speech_phones

    notes: list[str] = []
    text = ds.meta.get("transcript") if isinstance(ds.meta, dict) else None
    phones = speech_phones(ds.audio(), text=text, max_seconds=600.0, notes=notes)
    how = "the dataset's transcript aligned" if text else "Whisper transcript aligned"
    notes.insert(0, f"audio lips: source 'auto', {len(phones or [])} phones ({how})")
    return phones, notes


def audio_lips(ident, ds, code: np.ndarray, idx: np.ndarray, source: str = "audio",
               phones=None) -> np.ndarray:
    """The lip code [N,M] users get for the clip's own audio (code [T,W,C]), rows idx: `lip_track` runs on
    the whole clip (phone context and pauses need it), as a render of that recording would."""
    from emotalk.render.speech_lips import lip_track

    lips = lip_track(ident, ds.audio(), code, phones, source=source)  # [T,M]
    return np.asarray(lips[idx], np.float32)


# -- rendering -------------------------------------------------------------------------------------

def render_lips(model, data, idx: np.ndarray, lips: np.ndarray, batch: int = 8, backend: str = "auto",
                progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Render dataset frames idx (TrainData rows: camera, upper face, body, neutral emotion) with lip code
    lips [N,M] -> [N,S,S,3] uint8. progress(frames done)."""
    import torch

    from emotalk.gaussians.fused_kernels import to_uint8
    from emotalk.gaussians.model import BRANCHES
    from emotalk.training.data import frames_at

    dev = data.frames.device
    out = []
    with torch.no_grad():
        caches = {b: model.precompute(b) for b in BRANCHES}
        for i in range(0, len(idx), batch):
            t = torch.as_tensor(idx[i:i + batch], device=dev)
            z = torch.as_tensor(lips[i:i + batch]).to(dev)  # [b,M]
            fr = replace(frames_at(data, t, tracked_lips=False), lips=z)
            img = model.render(fr, data.size, data.size, data.body[t].float() / 255, caches=caches,
                               backend=backend).rgb
            out.append(to_uint8(img).cpu().numpy())  # [b,S,S,3]
            if progress:
                progress(min(i + batch, len(idx)))
    return np.concatenate(out)


# -- measures --------------------------------------------------------------------------------------

def mouth_classes(gap: np.ndarray, share: float = CLASS_SHARE) -> dict[str, np.ndarray]:
    """Frame positions by inner-lip gap [N]: "open" (widest `share`), "closed" (narrowest), "all";
    ranks, so each extreme class has round(share * N) frames (at least 1), ties broken by position."""
    n = len(gap)
    order = np.argsort(np.asarray(gap, np.float64), kind="stable")
    k = max(1, int(round(share * n))) if n else 0
    return {"open": np.sort(order[n - k:]), "closed": np.sort(order[:k]), "all": np.arange(n)}


def crop_stlpips(pred: np.ndarray, real: np.ndarray, lmk: np.ndarray, size: tuple[int, int] = LPIPS_CROP,
                 batch: int = 16) -> np.ndarray:
    """Per-frame ST-LPIPS [N] of the lip box of pred vs real ([N,H,W,3] uint8), the box from lmk
    [N,478,2] (the real frame's landmarks), resampled to size (w, h)."""
    import torch

    from emotalk.metrics import stlpips

    a = np.stack([mouth_crop(f, lm, size, grey=False) for f, lm in zip(pred, lmk)])  # [N,h,w,3] uint8
    b = np.stack([mouth_crop(f, lm, size, grey=False) for f, lm in zip(real, lmk)])  # [N,h,w,3] uint8
    with torch.no_grad():
        d = [stlpips(torch.as_tensor(a[i:i + batch]), torch.as_tensor(b[i:i + batch]))
             for i in range(0, len(a), batch)]
    return torch.cat(d).cpu().numpy().astype(np.float64)


def crop_sharpness(frames: np.ndarray, lmk: np.ndarray) -> np.ndarray:
    """Per-frame mouth sharpness [N] of frames [N,H,W,3] uint8 in the lip box of lmk [N,478,2]
    (`mouth_sharpness` on each frame alone: the convention of the audio-driven tables)."""
    return np.array([mouth_sharpness(f[None], lm[None]) for f, lm in zip(frames, lmk)], np.float64)


def image_openings(frames: np.ndarray) -> np.ndarray:
    """Mouth opening [N] (inner-lip gap / eye distance) of frames [N,H,W,3] uint8, MediaPipe on each frame
    alone (renders and real frames alike); NaN where no face is found. Says whether closed lips close."""
    from emotalk.evaluation.render_tracking import track_frames
    from emotalk.face.landmarks import mouth_opening

    lmk, found = track_frames(frames, video=False)  # [N,478,3], [N]
    return np.where(found, mouth_opening(lmk), np.nan)


def region_psnr(pred: np.ndarray, real: np.ndarray, lmk: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame PSNR (dB) [N] of pred vs real ([N,S,S,3] uint8) in each of REGIONS: the whole frame, the
    face box of the real frame's landmarks lmk [N,478,2] (`metrics.face_box`, as the evaluation's face
    PSNR) and its lip box (`mouth_metrics.lip_box`)."""
    import torch

    from emotalk.metrics import face_box, psnr

    N, S = real.shape[:2]
    masks = {r: torch.zeros(N, S, S, dtype=torch.bool) for r in REGIONS[1:]}
    for i, lm in enumerate(lmk):
        x0, y0, x1, y1 = face_box(lm[:478, :2], S)
        masks["face"][i, y0:y1, x0:x1] = True
        x0, y0, x1, y1 = lip_box(lm)
        x0, y0 = min(S - 1, max(0, int(np.floor(x0)))), min(S - 1, max(0, int(np.floor(y0))))
        masks["lips"][i, y0:max(y0 + 1, int(np.ceil(y1))), x0:max(x0 + 1, int(np.ceil(x1)))] = True
    out = {"frame": psnr(pred, real)}
    out.update({r: psnr(pred, real, m) for r, m in masks.items()})
    return {r: v.double().numpy() for r, v in out.items()}


def frame_measures(real: np.ndarray, tracked: np.ndarray, audio: np.ndarray, lmk: np.ndarray) -> dict:
    """Per-frame arrays [N]: ST-LPIPS of both renders, sharpness and MediaPipe opening of all three, the
    sharpness ratios render / real, and both renders' PSNR per region (psnr_<region>_<render>).
    real / tracked / audio [N,S,S,3] uint8; lmk [N,478,2] px at S (the real frames')."""
    images = dict(zip(KINDS, (real, tracked, audio)))
    sharp = {k: crop_sharpness(x, lmk) for k, x in images.items()}
    floor = np.maximum(sharp["real"], 1e-9)
    psnr = {f"psnr_{r}_{k}": v for k in KINDS[1:] for r, v in region_psnr(images[k], real, lmk).items()}
    return {"stlpips_tracked": crop_stlpips(tracked, real, lmk),
            "stlpips_audio": crop_stlpips(audio, real, lmk), **{f"sharp_{k}": v for k, v in sharp.items()},
            "ratio_tracked": sharp["tracked"] / floor, "ratio_audio": sharp["audio"] / floor,
            **{f"open_{k}": image_openings(x) for k, x in images.items()}, **psnr}


def class_summary(per_frame: dict[str, np.ndarray], classes: dict[str, np.ndarray]) -> dict[str, dict]:
    """Median of every per-frame array over each class's frames: {class: {"n": .., name: median}}."""
    out = {}
    for c, m in classes.items():
        row = {"n": int(len(m))}
        for k, v in per_frame.items():
            x = np.asarray(v, np.float64)[m]
            x = x[np.isfinite(x)]
            row[k] = float(np.median(x)) if len(x) else None
        out[c] = row
    return out


# -- the whole measurement -------------------------------------------------------------------------

def heldout_frames(ds) -> np.ndarray:
    """The dataset's held-out frame indices, sorted; DatasetError when it holds none out."""
    idx = np.unique(np.asarray(ds.val_idx, np.int64))
    if not len(idx):
        raise DatasetError(f"{ds.root} holds out no frames (split val = 0): nothing to measure.")
    return idx


def _lip_code_model(ident) -> None:
    if not getattr(ident.model.settings, "lip_code", False):
        raise InputError(f"{ident.root} is driven by the audio code (an older identity): it has no lip code "
                         "to render tracked frames with. Use a lip-code identity.")


def measure_mouth_extremes(ident, ds, size: int | None = None, source: str = "audio", batch: int = 8,
                           backend: str = "auto", progress: Progress | None = None) -> tuple[dict, dict]:
    """Render and measure an identity's held-out frames (see the module docstring) on the CPU.

    Returns (result, arrays): result is JSON-ready (summary per class, per-frame rows, notes, timings);
    arrays holds what the contact sheet needs: real / tracked / audio [N,S,S,3] uint8, lmk [N,478,2],
    gap [N], frames [N] and the classes."""
    from emotalk.evaluation.report import check_match, nan_to_none
    from emotalk.face.landmarks import mouth_opening
    from emotalk.lips import LIP_NAMES
    from emotalk.training.data import dataset_audio_code, load_train_data

    say = progress or (lambda s, f: None)
    times: dict[str, float] = {}
    t0 = time.time()
    _lip_code_model(ident)
    notes = check_match(ident, ds)
    S = int(size or ident.size)
    if S % 2 or S < 16:
        raise InputError(f"The size must be an even number of pixels >= 16, got {S}.")
    idx = heldout_frames(ds)
    n = len(idx)
    say(f"loading {ds.n_frames} dataset frames at {S} px", 0.0)
    model = ident.model.to("cpu").eval()
    code = dataset_audio_code(ds, ident.meta.get("model", {}).get("audio_kind", "whisper"))  # [T,W,C]
    data = load_train_data(ds, S, code, "cpu")
    real = data.frames[idx].cpu().numpy()  # [N,S,S,3] uint8
    lmk = ds.lmk2d[idx] * (S / ds.size)  # [N,478,2] px at S
    gap = mouth_opening(ds.lmk2d[idx])  # [N] inner-lip gap / eye distance of the real frames
    lips_t, n_clamped = tracked_lips(model, ds, idx)
    notes += [lip_stats_note(model, ds),
              f"tracked lips: {n_clamped}/{n} held-out frames clamped into the trained range"]
    say(f"predicting the audio lip code ({source})", 0.05)
    phones, pnotes = clip_phones(ds, source)
    notes += pnotes
    lips_a = audio_lips(ident, ds, code, idx, source, phones)
    times["load"] = round(time.time() - t0, 2)
    renders = {}
    for k, (name, lips) in enumerate((("tracked", lips_t), ("audio", lips_a))):
        t = time.time()

        def tick(done: int, k=k, name=name) -> None:
            say(f"rendering {name}-code frames {done}/{n} at {S} px", 0.1 + 0.4 * (k + done / n))

        tick(0)
        renders[name] = render_lips(model, data, idx, lips, batch, backend, tick)
        times[f"render_{name}"] = round(time.time() - t, 2)
    t = time.time()
    say(f"measuring {n} frames x 3 (ST-LPIPS, sharpness, MediaPipe opening)", 0.9)
    per = frame_measures(real, renders["tracked"], renders["audio"], lmk)
    g = LIP_NAMES.index("gap")
    per.update(gap=gap, gap_code_tracked=lips_t[:, g], gap_code_audio=lips_a[:, g])
    classes = mouth_classes(gap)
    times["measure"] = round(time.time() - t, 2)
    times["total"] = round(time.time() - t0, 2)
    say("done", 1.0)
    result = {
        "identity": str(ident.root), "identity_name": ident.name, "dataset": str(ds.root), "size": S,
        "device": "cpu", "lips_source": source, "heldout_frames": n,
        "heldout_range": [int(idx[0]), int(idx[-1])], "class_share": CLASS_SHARE,
        "classes": class_summary(per, classes),
        "psnr": {k: {r: float(np.mean(per[f"psnr_{r}_{k}"])) for r in REGIONS} for k in KINDS[1:]},
        "per_frame": [{"frame": int(i), **{k: float(v[j]) for k, v in per.items()},
                       "class": next((c for c in ("open", "closed") if j in classes[c]), "")}
                      for j, i in enumerate(idx)],
        "notes": notes, "timings_s": times,
    }
    arrays = {"real": real, "tracked": renders["tracked"], "audio": renders["audio"], "lmk": lmk,
              "gap": gap, "frames": idx, "classes": classes, "per": per}
    return nan_to_none(result), arrays


# -- reports ---------------------------------------------------------------------------------------

def _fmt(x, d: int = 3) -> str:
    return "-" if x is None else f"{x:.{d}f}"


def markdown(results: dict[str, dict]) -> str:
    """Markdown tables, one per identity, of results {name: result of measure_mouth_extremes}."""
    out = ["# The renderer's mouth at the extremes", "",
           "Held-out frames rendered (CPU) from their tracked lip code and from the audio-predicted lip code "
           "(`scripts/mouth_extremes.py`). Medians per class; ST-LPIPS in the real frame's lip box "
           f"(resampled to {LPIPS_CROP[0]}x{LPIPS_CROP[1]}, lower is closer); sharpness = Laplacian variance "
           "of the grey lip box at 64x32; ratio = median of render / real per frame. open / closed = "
           f"widest / narrowest {CLASS_SHARE:.0%} of the real inner-lip gap; gap = the real frame's "
           "tracked inner-lip gap / eye distance (the dataset's landmarks, which define the classes); open = "
           "the same measure by MediaPipe on each image alone (real frame, tracked-code and audio-code "
           "render); gap z = the lip code's gap (z-score) fed to the renderer. PSNR (dB): mean over all "
           "held-out frames, in the whole frame, the face box (as eval's face PSNR) and the lip box.", ""]
    for name, r in results.items():
        out += [f"## {name} ({r['size']} px, {r['heldout_frames']} held-out frames "
                f"{r['heldout_range'][0]}-{r['heldout_range'][1]}, audio lips: {r['lips_source']})", "",
                "| class | n | gap | open real | open tracked | open audio | gap z tracked | gap z audio | "
                "ST-LPIPS tracked | ST-LPIPS audio | sharp real | sharp tracked | sharp audio | "
                "ratio tracked | ratio audio |", "|---" * 15 + "|"]
        for c in ("open", "closed", "all"):
            s = r["classes"][c]
            digits = {"gap_code_tracked": 2, "gap_code_audio": 2, "sharp_real": 0, "sharp_tracked": 0,
                      "sharp_audio": 0, "ratio_tracked": 2, "ratio_audio": 2}
            cells = [_fmt(s.get(k), digits.get(k, 3)) for k in TABLE_COLUMNS]
            out.append(f"| {c} | {s['n']} | " + " | ".join(cells) + " |")
        if r.get("psnr"):  # identities measured before it have none
            out += ["", "| renders | PSNR frame | PSNR face box | PSNR lip box |", "|---|---|---|---|"]
            out += [f"| {k} code | " + " | ".join(f"{r['psnr'][k][g]:.2f}" for g in REGIONS) + " |"
                    for k in KINDS[1:]]
        out += [""] + [f"- {n}" for n in r.get("notes", [])] + [""]
    return "\n".join(out)


def box_crop(frame: np.ndarray, lmk: np.ndarray, cell: tuple[int, int] = SHEET_CELL) -> np.ndarray:
    """The lip box of frame [H,W,3] uint8 cut at its own pixels (edges replicated), then upscaled to cell
    (w, h) nearest-neighbour, so the sheet shows the pixels the metrics saw -> [h,w,3] uint8."""
    import cv2

    x0, y0, x1, y1 = (int(round(v)) for v in lip_box(lmk))
    H, W = frame.shape[:2]
    pad = max(0, -x0, -y0, x1 - W, y1 - H)
    f = np.pad(frame[..., :3], ((pad, pad), (pad, pad), (0, 0)), mode="edge") if pad else frame[..., :3]
    crop = np.ascontiguousarray(f[y0 + pad:y1 + pad, x0 + pad:x1 + pad])
    return cv2.resize(crop, cell, interpolation=cv2.INTER_NEAREST)


def _text(img: np.ndarray, s: str, org: tuple[int, int], scale: float = 0.45) -> None:
    import cv2

    (w, h), _ = cv2.getTextSize(s, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = org
    img[max(0, y - h - 3):y + 4, max(0, x - 2):x + w + 2] //= 3
    cv2.putText(img, s, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def contact_sheet(arrays: dict, title: str, k: int = SHEET_FRAMES, cell: tuple[int, int] = SHEET_CELL
                  ) -> np.ndarray:
    """The k most open and k most closed frames, one row each: real | tracked-code | audio-code mouth
    crops, labelled with the frame, its gap, each crop's sharpness, MediaPipe opening and ST-LPIPS
    -> [H,W,3] uint8 RGB."""
    gap, per = arrays["gap"], arrays["per"]
    order = np.argsort(gap, kind="stable")
    picks = [("open", j) for j in order[::-1][:k]] + [("closed", j) for j in order[:k]]
    cw, ch = cell
    head = 28
    sheet = np.full((head * 2 + len(picks) * ch, 3 * cw, 3), 24, np.uint8)
    _text(sheet, title, (6, 19), 0.5)
    for c, kind in enumerate(("real frame", "tracked-code render", "audio-code render")):
        _text(sheet, kind, (c * cw + 6, head + 19), 0.5)
    for r, (cls, j) in enumerate(picks):
        y = head * 2 + r * ch
        for c, kind in enumerate(KINDS):
            tile = box_crop(arrays[kind][j], arrays["lmk"][j], cell)
            info = f"sharp {per[f'sharp_{kind}'][j]:.0f}  open {per[f'open_{kind}'][j]:.3f}"
            if kind != "real":
                info += f"  lpips {per[f'stlpips_{kind}'][j]:.3f}"
            else:
                info = f"{cls} #{int(arrays['frames'][j])} gap {gap[j]:.3f}  " + info
            _text(tile, info, (4, ch - 6), 0.42)
            sheet[y:y + ch, c * cw:(c + 1) * cw] = tile
        if r == k:  # a white line between the open and the closed rows
            sheet[y - 1:y + 1] = 255
    return sheet
