"""The image, lips and sync sections of an identity's evaluation: renders of the held-out run against
the real frames (metrics from `emotalk.metrics` and `emotalk.avsync.lipsync`).
"""

from __future__ import annotations

import numpy as np

from emotalk.errors import EmoTalkError
from emotalk.face.landmarks import eye_distance

SHORT_RUN_FRAMES = 100  # sync numbers on fewer frames than this are flagged as noisy


def image_section(renders: np.ndarray, gt: np.ndarray, lmk: np.ndarray, S: int, notes: list[str]) -> dict:
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


def lips_section(lmk_r, mouth_r, lmk_g, mouth_g, S: int) -> dict:
    from emotalk.metrics import lmd

    found_r, found_g = np.isfinite(lmk_r[:, 0, 0]), np.isfinite(lmk_g[:, 0, 0])
    both = found_r & found_g
    d = lmd(lmk_r, lmk_g)
    eye = eye_distance(lmk_g)
    return {"lmd_px": d, "lmd_px_at_512": d * 512 / S if np.isfinite(d) else float("nan"),
            "lmd_over_eye_distance": d / float(np.nanmean(eye)) if both.any() else float("nan"),
            "mouth_open_corr": _corr(np.where(found_r, mouth_r, np.nan), np.where(found_g, mouth_g, np.nan)),
            "mouth_open_mean_render": float(np.nanmean(mouth_r)) if found_r.any() else float("nan"),
            "mouth_open_mean_real": float(np.nanmean(mouth_g)) if found_g.any() else float("nan"),
            "faces_found_render": f"{int(found_r.sum())}/{len(found_r)}",
            "faces_found_real": f"{int(found_g.sum())}/{len(found_g)}"}


def sync_section(ds, run: np.ndarray, mouth_r, mouth_g, lmk_r, lmk_g, phones: bool) -> dict:
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
