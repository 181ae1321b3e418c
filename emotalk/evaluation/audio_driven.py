"""The audio-driven evaluation (issue 17 "measure what users see", issue 16's drive table): renders of
speech the identity never heard, at every emotion category, measured against the neutral render of the
same speech.

Input: a render folder ROOT/<variant>/<identity>/<drive>/<category>.mp4 (written by
`python -m emotalk bench emotion-audio render`) and the drive pack it was rendered from. Each render is
tracked with MediaPipe (one video-mode track), read by the recogniser frame by frame, and measured:
lip-box sharpness, mouth opening, eye-box sharpness and eye opening (`evaluation.eye_metrics`), lip sync
against the drive's speech (offset, confidence, peak correlation, phone contrast), and for neutral renders
the open-vowel opening and rest in pauses.

Aggregation over drives, per identity x category:
- Acc: fraction of drives whose render the recogniser reads as the category (clip verdict = argmax of
  the mean probability, `evaluation.emotion`); the identity's summary (Acc, V/A-RMSE, V/A-SA*) is
  `evaluation.emotion.summarise` over all renders of the 7 recogniser categories;
- sharpness ratio (and the contrast-normalised "detail" ratio), opening ratio, and the eyes' sharpness and
  opening ratios: per drive emotional / neutral, then the geometric mean over drives;
- opening MAE: mean |emotional - neutral| opening over speech frames, mean over drives;
- sync offset: median |offset| over drives, and how many drives are within +-1 frame;
- peak-corr ratio: mean peak correlation of the category's renders / the neutral renders' (same drives);
- identity similarity (when dlib is installed): cosine of dlib face descriptors of ID_FRAMES frames of
  the render against the same frames of the drive's neutral render ("same frames") and against all of
  its sampled frames ("all pairs", comparable with the MEAD actors' bar); mean over drives.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from emotalk.emotion import CATEGORIES, FER_CLASSES
from emotalk.errors import InputError
from emotalk.evaluation import eye_metrics as em
from emotalk.evaluation import mouth_metrics as mm
from emotalk.evaluation.drive_pack import Drive

Progress = Callable[[str, float], None]
FPS = 25.0
RENDER_INDEX = "render.json"  # what the render stage wrote
CATEGORY_ORDER = ("neutral", "happy", "surprised", "fear", "angry", "disgusted", "sad", "contempt", "calm")
ID_FRAMES = 8  # frames per render embedded for the identity similarity (same indices in every category)


def find_renders(root: str | Path) -> dict[str, dict[str, dict[str, dict[str, Path]]]]:
    """{variant: {identity: {drive: {category: mp4}}}} of a render folder."""
    root = Path(root)
    out: dict = {}
    for p in sorted(root.glob("*/*/*/*.mp4")):
        cat, drive, ident, var = p.stem, p.parent.name, p.parent.parent.name, p.parent.parent.parent.name
        if cat in CATEGORIES:
            out.setdefault(var, {}).setdefault(ident, {}).setdefault(drive, {})[cat] = p
    if not out:
        raise InputError(
            f"No renders under {root} (expected VARIANT/IDENTITY/DRIVE/CATEGORY.mp4); run the "
            "render stage first (python -m emotalk bench emotion-audio render)."
        )
    return out


def track_render(path: Path, keep_frames: bool = False, recognizer=None, embedder=None) -> dict:
    """Track one render and measure what needs no reference: landmarks, opening, sharpness, recogniser,
    and (embedder given) identity descriptors "id_emb" [ID_FRAMES,128] of frames "id_idx"."""
    from emotalk.evaluation.render_tracking import track_frames
    from emotalk.media import read_frames

    frames = read_frames(path, fps=FPS)
    lmk, opening = track_frames(frames, video=True, fps=FPS)
    found = np.isfinite(lmk[:, 0, 0])
    res = {
        "frames": int(len(frames)),
        "found": found,
        "lmk": lmk,
        "opening": opening,
        "sharpness": mm.mouth_sharpness(frames, lmk, found),
        "detail": mm.mouth_sharpness(frames, lmk, found, per_contrast=True),
        "eye_sharpness": em.eye_sharpness(frames, lmk, found),
        "eye_opening": em.eye_opening(lmk, found),
    }
    if recognizer is not None:
        probs = np.full((len(frames), 7), np.nan, np.float32)
        for i in np.flatnonzero(found):
            probs[i] = recognizer.probs(frames[i], lmk[i])
        res["probs"] = probs
    if embedder is not None:
        from emotalk.face.identity_embedding import sample_indices

        res["id_idx"] = sample_indices(len(frames), ID_FRAMES)
        res["id_emb"] = embedder.embed(frames[res["id_idx"]], landmarks=lmk[res["id_idx"]])
    if keep_frames:
        res["images"] = frames
    return res


def _speech(drive: Drive, n: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """The drive's wav [N] and its speech intervals (phones when known, else the speech envelope)."""
    from emotalk.media import read_audio

    wav = read_audio(drive.wav_path, 16000)
    iv = mm.speech_intervals_from_phones(drive.phones) if drive.phones else mm.speech_intervals_from_wav(wav)
    return wav, iv


def _sync(tr: dict, wav: np.ndarray, drive: Drive) -> dict:
    from emotalk.avsync.lipsync import measure

    found = float(tr["found"].mean()) if len(tr["found"]) else 0.0
    rep = measure(tr["opening"], wav, drive.name, drive.phone_objects() or None, drive.transcript, found)
    pc = rep.contrast
    return {
        "offset": rep.sync.offset,
        "confidence": round(rep.sync.confidence, 4),
        "peak_corr": round(rep.sync.peak_corr, 4),
        "clear": rep.sync.clear,
        "contrast": None if pc is None or not np.isfinite(pc.ratio) else round(pc.ratio, 3),
        "notes": rep.notes,
    }


def measure_drive(renders: dict[str, Path], drive: Drive, recognizer=None, keep_frames: bool = False,
                  embedder=None) -> dict:
    """Every category's render of one drive: per-render numbers, and ratios against its neutral render."""
    from emotalk.evaluation.emotion import clip_result

    tracks = {c: track_render(p, keep_frames, recognizer, embedder) for c, p in renders.items()}
    n = min(t["frames"] for t in tracks.values())
    wav, iv = _speech(drive, n)
    mask = mm.speech_mask(iv, n, FPS)
    out: dict = {"drive": drive.name, "language": drive.language, "renders": {}, "tracks": tracks}
    neutral = tracks.get("neutral")
    for cat, tr in tracks.items():
        r: dict = {
            "frames": tr["frames"],
            "face_found": round(float(tr["found"].mean()), 3),
            "sharpness": round(tr["sharpness"], 2),
            "detail": round(tr["detail"], 4),
            "opening_speech": round(float(np.nanmean(tr["opening"][:n][mask])), 4) if mask.any() else None,
            "sync": _sync(tr, wav, drive),
        }
        if "probs" in tr and cat in FER_CLASSES:
            cr = clip_result(drive.name, cat, tr["probs"])
            r["recogniser"] = {
                "predicted": cr.predicted if cr.n_frames else None,
                "va": [round(float(x), 4) for x in cr.va],
                "frames": cr.n_frames,
                "probs": [round(float(x), 4) for x in cr.probs],
            }
            r["_clip"] = cr
        if neutral is not None:
            ratio, mae = mm.opening_ratio(tr["opening"], neutral["opening"], mask)
            r["sharpness_ratio"] = round(tr["sharpness"] / max(neutral["sharpness"], 1e-9), 4)
            r["detail_ratio"] = round(tr["detail"] / max(neutral["detail"], 1e-9), 4)
            r["eye_sharpness_ratio"] = round(tr["eye_sharpness"] / max(neutral["eye_sharpness"], 1e-9), 4)
            r["eye_opening_ratio"] = round(tr["eye_opening"] / max(neutral["eye_opening"], 1e-9), 4)
            r["opening_ratio"], r["opening_mae"] = round(ratio, 4), round(mae, 4)
            if "id_emb" in tr and "id_emb" in neutral:
                r["identity"] = identity_vs_neutral(tr, neutral, same=cat == "neutral")
        out["renders"][cat] = r
    if neutral is not None:
        out["neutral"] = neutral_drive_row(neutral, wav, iv, drive, out["renders"]["neutral"]["sync"])
    return out


def identity_vs_neutral(tr: dict, neutral: dict, same: bool = False) -> dict:
    """Identity similarity of a render's sampled frames to its drive's neutral render: "same_frames"
    (frame i with frame i) and "all_pairs" (every pair; the neutral render against itself leaves out
    identical frames, so it shows what talking alone costs)."""
    from emotalk.face.identity_embedding import mean_similarity

    _, ia, ib = np.intersect1d(tr["id_idx"], neutral["id_idx"], return_indices=True)
    a, b = tr["id_emb"][ia], neutral["id_emb"][ib]
    paired = mean_similarity(a, b, paired=True)
    pairs = mean_similarity(tr["id_emb"], neutral["id_emb"], skip_same=same)
    return {
        "same_frames": None if not np.isfinite(paired) else round(paired, 4),
        "all_pairs": None if not np.isfinite(pairs) else round(pairs, 4),
        "frames": int(np.isfinite(a).all(1).sum()),
    }


def _mean_identity(rs: list[dict], key: str) -> float | None:
    v = [r["identity"][key] for r in rs if r.get("identity") and r["identity"][key] is not None]
    return float(np.mean(v)) if v else None


def neutral_drive_row(
    tr: dict, wav: np.ndarray, iv: list[tuple[float, float]], drive: Drive, sync: dict
) -> dict:
    """Issue 16's drive-table row of a neutral render: sync, phone contrast, open-vowel opening, rest."""
    dur = len(wav) / 16000
    rest = mm.rest_in_pauses(tr["opening"], mm.pauses(iv, dur), FPS)
    ph = drive.phone_objects()
    return {
        "drive": drive.name,
        "language": drive.language,
        "abs_offset": abs(sync["offset"]),
        "offset": sync["offset"],
        "confidence": sync["confidence"],
        "peak_corr": sync["peak_corr"],
        "contrast": sync["contrast"],
        "open_vowel_p95": round(mm.open_vowel_opening(tr["opening"], ph, FPS), 4) if ph else None,
        "pauses": rest["n"],
        "pauses_at_rest": rest["at_rest"],
        "rest_fraction": None if not rest["n"] else round(rest["fraction"], 3),
        "rest_level": round(rest["level"], 4),
        "pause_detail": rest["pauses"],
        "pauses_from": "phones" if drive.phones else "speech envelope",
    }


def _gmean(x: list[float]) -> float:
    v = np.array([a for a in x if a is not None and np.isfinite(a) and a > 0], np.float64)
    return float(np.exp(np.log(v).mean())) if len(v) else float("nan")


def aggregate(per_drive: list[dict]) -> dict:
    """Per-category rows and the identity summary over the drives of one identity (see module docstring)."""
    from emotalk.evaluation.emotion import summarise

    cats = [c for c in CATEGORY_ORDER if any(c in d["renders"] for d in per_drive)]
    rows = {}
    for c in cats:
        ds = [d for d in per_drive if c in d["renders"]]
        rs = [d["renders"][c] for d in ds]
        offs = [abs(r["sync"]["offset"]) for r in rs]
        neu = [d["renders"]["neutral"]["sync"]["peak_corr"] for d in ds if "neutral" in d["renders"]]
        clips = [r["_clip"] for r in rs if "_clip" in r and r["_clip"].n_frames]
        rows[c] = {
            "drives": len(rs),
            "acc": float(np.mean([cl.predicted == c for cl in clips])) if clips else None,
            "predicted": {
                p: sum(cl.predicted == p for cl in clips)
                for p in FER_CLASSES
                if any(cl.predicted == p for cl in clips)
            },
            "sharpness_ratio": _gmean([r.get("sharpness_ratio") for r in rs]),
            "detail_ratio": _gmean([r.get("detail_ratio") for r in rs]),
            "eye_sharpness_ratio": _gmean([r.get("eye_sharpness_ratio") for r in rs]),
            "eye_opening_ratio": _gmean([r.get("eye_opening_ratio") for r in rs]),
            "opening_ratio": _gmean([r.get("opening_ratio") for r in rs]),
            "opening_mae": float(np.nanmean([r.get("opening_mae", np.nan) for r in rs])),
            "abs_offset_median": float(np.median(offs)),
            "offset_ok": f"{sum(o <= 1 for o in offs)}/{len(offs)}",
            "peak_corr": float(np.mean([r["sync"]["peak_corr"] for r in rs])),
            "peak_corr_ratio": (
                float(np.mean([r["sync"]["peak_corr"] for r in rs]) / np.mean(neu))
                if neu and np.mean(neu) > 0
                else float("nan")
            ),
        }
        if any("identity" in r for r in rs):
            rows[c]["identity_same_frames"] = _mean_identity(rs, "same_frames")
            rows[c]["identity_all_pairs"] = _mean_identity(rs, "all_pairs")
    clips = [
        d["renders"][c]["_clip"]
        for d in per_drive
        for c in FER_CLASSES
        if c in d["renders"] and "_clip" in d["renders"][c]
    ]
    summ = summarise(clips) if clips else None
    summary = (
        None
        if summ is None
        else {
            k: summ[k]
            for k in (
                "n",
                "accuracy",
                "v_rmse",
                "a_rmse",
                "v_sa",
                "a_sa",
                "v_sa_strict",
                "a_sa_strict",
                "confusion",
            )
        }
    )
    return {
        "categories": rows,
        "summary": summary,
        "drives": [d["neutral"] for d in per_drive if "neutral" in d],
    }


def measure_renders(
    root: str | Path,
    drives: list[Drive],
    recognise: bool = True,
    strip_drive: str | None = None,
    progress: Progress | None = None,
    identity: bool | None = None,
) -> dict:
    """Measure every render under root: {variant: {identity: {"per_drive": [...], **aggregate}}}.

    The strip drive's tracks (frames + landmarks) are kept under "_strip" for the images. identity:
    measure identity similarity (None: when dlib is installed)."""
    found = find_renders(root)
    by_name = {d.name: d for d in drives}
    rec = None
    if recognise:
        from emotalk.face.recognizer import EmotionRecognizer

        rec = EmotionRecognizer()
    emb = _identity_embedder(identity)
    jobs = [(v, i, d) for v in found for i in found[v] for d in found[v][i]]
    missing = sorted({d for _, _, d in jobs if d not in by_name})
    if missing:
        raise InputError(
            f"Renders of drives missing from the drive pack: {', '.join(missing)}; give the pack "
            "they were rendered from (--drives DIR)."
        )
    out: dict = {}
    for k, (var, ident, dname) in enumerate(jobs):
        keep = dname == strip_drive
        res = measure_drive(found[var][ident][dname], by_name[dname], rec, keep_frames=keep, embedder=emb)
        tracks = res.pop("tracks")
        slot = out.setdefault(var, {}).setdefault(ident, {"per_drive": []})
        slot["per_drive"].append(res)
        if keep:
            slot["_strip"] = {"drive": dname, "tracks": tracks}
        if progress:
            progress(f"{var}/{ident}/{dname}: {len(res['renders'])} renders", (k + 1) / len(jobs))
    for var in out:
        for ident in out[var]:
            out[var][ident].update(aggregate(out[var][ident]["per_drive"]))
    return out


def _identity_embedder(identity: bool | None):
    """The face-descriptor model when identity similarity is measured (None: only when dlib imports)."""
    if identity is False:
        return None
    if identity is None:
        import importlib.util

        if importlib.util.find_spec("dlib") is None:
            return None
    from emotalk.face.identity_embedding import IdentityEmbedder

    return IdentityEmbedder()


def to_json(results: dict) -> str:
    """The results without the in-memory parts (clip objects, frames)."""

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items() if not str(k).startswith("_")}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        if isinstance(x, np.generic):
            return x.item()
        if isinstance(x, float) and not np.isfinite(x):
            return None
        return x

    return json.dumps(clean(results), indent=1)
