"""Emotion metrics: Emotion Accuracy, V/A-RMSE, V/A sign agreement, expression fidelity, lip preservation.

Definitions (used everywhere in the project's emotion tables):
- A clip's prediction is the argmax of its **mean class probability** over frames (not a majority vote:
  the mean uses the recogniser's confidence and has no ties); its predicted (v, a) is the mean of the
  per-frame probability-weighted category coordinates (equal to the coordinates of the mean
  probabilities).
- **V-RMSE / A-RMSE**: root mean square of predicted minus target valence / arousal over clips.
- **V-SA / A-SA** (sign agreement): the fraction of clips with s(pred) == sign(target), where
  s(x) = 0 when |x| < SIGN_DEADZONE, else sign(x). A neutral target (0) agrees only with a prediction
  inside the dead zone; a non-neutral target needs a prediction of its sign beyond the dead zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotalk.emotion import CATEGORIES, FER_CLASSES, FER_VA
from emotalk.face.landmarks import eye_distance, lip_gap_px

SIGN_DEADZONE = 0.1  # |v| or |a| below this counts as sign 0 (neutral)


@dataclass
class ClipResult:
    """The recogniser's verdict on one clip (or one generated image / render) with a known target."""

    name: str  # clip or image name
    target: str  # target category
    target_va: tuple[float, float]  # target (valence, arousal)
    probs: np.ndarray  # [7] mean class probabilities over frames (fer order)
    va: np.ndarray  # [2] predicted (valence, arousal)
    n_frames: int  # frames that had a face

    @property
    def predicted(self) -> str:
        return FER_CLASSES[int(np.argmax(self.probs))]


def clip_result(name: str, target: str, frame_probs: np.ndarray,
                target_va: tuple[float, float] | None = None) -> ClipResult:
    """Aggregate per-frame probabilities [T,7] (rows of NaN = no face) into a ClipResult."""
    ok = np.isfinite(frame_probs).all(1)
    p = frame_probs[ok].mean(0) if ok.any() else np.full(7, np.nan, np.float32)
    tva = target_va if target_va is not None else CATEGORIES[target]
    return ClipResult(name, target, (float(tva[0]), float(tva[1])), p.astype(np.float32),
                      (p @ FER_VA).astype(np.float32), int(ok.sum()))


def sign_agreement(pred: np.ndarray, target: np.ndarray, deadzone: float = SIGN_DEADZONE) -> float:
    """Fraction of s(pred) == sign(target) (see the module docstring) over arrays [N]."""
    s = np.where(np.abs(pred) < deadzone, 0.0, np.sign(pred))
    return float((s == np.sign(target)).mean())


def _strict_sa(pred: np.ndarray, target: np.ndarray) -> float:
    nz = target != 0
    return float((np.sign(pred[nz]) == np.sign(target[nz])).mean()) if nz.any() else float("nan")


def summarise(results: list[ClipResult]) -> dict:
    """Emotion Accuracy, V/A-RMSE, V/A-SA, per-category accuracy and the confusion counts."""
    res = [r for r in results if r.n_frames > 0]
    pred = np.array([r.va for r in res], np.float64).reshape(-1, 2)
    tgt = np.array([r.target_va for r in res], np.float64).reshape(-1, 2)
    correct = np.array([r.predicted == r.target for r in res])
    cats = sorted({r.target for r in res}, key=lambda c: list(CATEGORIES).index(c))
    return {
        "n": len(res),
        "accuracy": float(correct.mean()) if len(res) else float("nan"),
        "v_rmse": float(np.sqrt(((pred[:, 0] - tgt[:, 0]) ** 2).mean())) if len(res) else float("nan"),
        "a_rmse": float(np.sqrt(((pred[:, 1] - tgt[:, 1]) ** 2).mean())) if len(res) else float("nan"),
        "v_sa": sign_agreement(pred[:, 0], tgt[:, 0]) if len(res) else float("nan"),
        "a_sa": sign_agreement(pred[:, 1], tgt[:, 1]) if len(res) else float("nan"),
        # strict sign (no dead zone) over the non-neutral targets only, for comparison with other papers
        "v_sa_strict": _strict_sa(pred[:, 0], tgt[:, 0]),
        "a_sa_strict": _strict_sa(pred[:, 1], tgt[:, 1]),
        "per_category_accuracy": {c: float(np.mean([r.predicted == c for r in res if r.target == c]))
                                  for c in cats},
        "confusion": {c: {p: int(sum(r.predicted == p for r in res if r.target == c)) for p in FER_CLASSES}
                      for c in cats},
    }


def lip_preservation(lmk_ref: np.ndarray, lmk_new: np.ndarray, eye_dist: np.ndarray | None = None,
                     open_gap: float = 0.05) -> dict:
    """How well an emotional image keeps the reference's mouth opening, both landmark sets [T,478,2+].

    gap_ratio: median of new / reference inner-lip gap over frames with a clearly open mouth (reference
    gap > open_gap outer-eye distances: ratios of near-closed mouths are tracker noise); gap_mae: mean
    |Δ gap| in outer-eye-distance units over all frames.
    """
    eye = eye_distance(lmk_ref) if eye_dist is None else eye_dist
    g0, g1 = lip_gap_px(lmk_ref) / eye, lip_gap_px(lmk_new) / eye
    open_ = g0 > open_gap
    return {
        "gap_ratio": float(np.median(g1[open_] / g0[open_])) if open_.any() else float("nan"),
        "gap_mae": float(np.abs(g1 - g0).mean()),
        "n_open": int(open_.sum()),
        "n": int(len(np.atleast_1d(g0))),
    }


def expression_fidelity(measured_delta: np.ndarray, target_delta: np.ndarray) -> dict:
    """Agreement of a measured blendshape change with the target change, both [...,52] (same columns).

    cosine: direction agreement (1 = same mix of blendshapes); gain: projection of the measured change on
    the target's direction over the target's length (1 = full strength); mae: mean absolute difference.
    """
    m = np.asarray(measured_delta, np.float64).reshape(-1)
    t = np.asarray(target_delta, np.float64).reshape(-1)
    tn = np.linalg.norm(t)
    return {
        "cosine": float(m @ t / max(np.linalg.norm(m) * tn, 1e-12)),
        "gain": float(m @ t / max(tn**2, 1e-12)),
        "mae": float(np.abs(m - t).mean()),
    }


# ----------------------------------------------------------------------------------------------
# runners


MEAD_CEILING_EMOTIONS = ("angry", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
MEAD_CEILING_ACTORS = ("M030", "W009", "W011")


def mead_clip_name(actor: str, emotion: str) -> str:
    """File stem of a frontal MEAD clip: level 3, neutral level 1 (the only neutral level)."""
    return f"{actor}_front_{emotion}_level{1 if emotion == 'neutral' else 3}_001"


def mead_actor_clips(data_dir: str | Path, emotions: tuple[str, ...] = MEAD_CEILING_EMOTIONS + ("contempt",)
                     ) -> dict[str, dict[str, Path]]:
    """{actor: {emotion: path}} of the ceiling actors' frontal clips that are there, for actors with a
    neutral clip (the reference of the real-actor bars, scripts/fit_identity_bar.py and fit_eye_bar.py)."""
    folder = Path(data_dir) / "emotion" / "mead_video"
    out = {}
    for actor in MEAD_CEILING_ACTORS:
        found = {e: folder / f"{mead_clip_name(actor, e)}.mp4" for e in emotions}
        found = {e: p for e, p in found.items() if p.is_file()}
        if "neutral" in found:
            out[actor] = found
    return out


def mead_ceiling_clips(data_dir: str | Path) -> list[tuple[str, str, Path]]:
    """The 21 labelled MEAD clips of the ceiling: (name, category, path); level 3 (neutral: level 1)."""
    from emotalk.errors import DatasetError

    folder = Path(data_dir) / "emotion" / "mead_video"
    out = []
    for actor in MEAD_CEILING_ACTORS:
        for emo in MEAD_CEILING_EMOTIONS:
            name = mead_clip_name(actor, emo)
            p = folder / f"{name}.mp4"
            if not p.is_file():
                raise DatasetError(f"MEAD clip missing: {p}. Point --data at the shared data folder "
                                   "(it holds emotion/mead_video/).")
            out.append((name, emo, p))
    return out


def recognise_clip(path: str | Path, recognizer=None, max_frames: int | None = None) -> np.ndarray:
    """Per-frame class probabilities [T,7] of a video file (NaN rows where no face was found)."""
    from emotalk.face.recognizer import recognise_video
    from emotalk.media import read_frames

    frames = read_frames(path, fps=25.0, max_frames=max_frames)
    return recognise_video(frames, recognizer)[0]


def mead_ceiling(data_dir: str | Path, recognizer=None, max_frames: int | None = None,
                 progress=None) -> tuple[dict, list[ClipResult]]:
    """The recogniser on the real MEAD ceiling clips: (summary, per-clip results)."""
    from emotalk.face.recognizer import EmotionRecognizer

    rec = recognizer or EmotionRecognizer()
    results = []
    clips = mead_ceiling_clips(data_dir)
    for k, (name, emo, path) in enumerate(clips):
        results.append(clip_result(name, emo, recognise_clip(path, rec, max_frames)))
        if progress:
            progress(f"{name}: {results[-1].predicted}", (k + 1) / len(clips))
    return summarise(results), results


def summary_markdown(summary: dict, title: str) -> str:
    """A markdown table of a summary (accuracy, RMSEs, sign agreement, per-category accuracy).

    SA uses the dead-zone definition of this module; SA* is the strict sign over non-neutral targets.
    """
    cats = list(summary["per_category_accuracy"])
    lines = [f"**{title}** (n = {summary['n']})", "",
             "| Emotion Acc | V-RMSE | A-RMSE | V-SA | A-SA | V-SA* | A-SA* | " + " | ".join(cats) + " |",
             "|---" * (7 + len(cats)) + "|",
             f"| {summary['accuracy']:.3f} | {summary['v_rmse']:.3f} | {summary['a_rmse']:.3f} | "
             f"{summary['v_sa']:.3f} | {summary['a_sa']:.3f} | "
             f"{summary['v_sa_strict']:.3f} | {summary['a_sa_strict']:.3f} | "
             + " | ".join(f"{summary['per_category_accuracy'][c]:.2f}" for c in cats) + " |"]
    return "\n".join(lines)


def confusion_markdown(summary: dict) -> str:
    """Confusion counts as a markdown table (rows: target, columns: predicted)."""
    cols = list(FER_CLASSES)
    lines = ["| target \\ predicted | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for t, row in summary["confusion"].items():
        lines.append(f"| {t} | " + " | ".join(str(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def evaluate_generator(dataset: str | Path, n_frames: int = 8, settings=None, progress=None) -> dict:
    """The emotional face generator on an identity dataset's training frames (see `evaluate_generator_on`)."""
    from emotalk.dataset.format import load_dataset

    ds = load_dataset(dataset)
    pool = ds.train_idx
    idx = pool[np.unique(np.linspace(0, len(pool) - 1, min(n_frames, len(pool))).round().astype(int))]
    res = evaluate_generator_on(ds.frames(idx), ds.lmk2d[idx], ds.parsing(idx), settings, progress)
    res.update(source=str(dataset), frames=[int(i) for i in idx])
    return res


def evaluate_generator_on(frames: np.ndarray, lmk: np.ndarray, parsing: np.ndarray | None,
                          settings=None, progress=None) -> dict:
    """The emotional face generator on frames [N,H,W,3] (landmarks [N,478,2+], parsing [N,S,S] or None).

    Each fer category (and calm) is generated from every frame; every image is tracked again from
    scratch by MediaPipe (landmarks, blendshapes) and classified. Reports readability (the summary over
    all generated images, and per category), how the original frames read, mouth-opening preservation
    (re-tracked inner-lip gap, generated vs original) and expression fidelity (re-tracked blendshape
    change vs the model's target change, expression blendshapes only).
    """
    from emotalk.face.expression import EXPRESSION_BLENDSHAPES
    from emotalk.face.generator import EmotionalFaceGenerator, GeneratorSettings
    from emotalk.face.recognizer import EmotionRecognizer
    from emotalk.face.tracking import track_video

    gen = EmotionalFaceGenerator(settings=settings or GeneratorSettings())
    rec = EmotionRecognizer()
    cats = [*FER_CLASSES, "calm"]
    expr_cols = np.array([n in EXPRESSION_BLENDSHAPES for n in gen.model.blendshape_names])
    idx = range(len(frames))

    def track(img):
        tr = track_video([img], 1)
        return (tr.lmk[0], tr.blendshapes[0]) if tr.found[0] else (None, None)

    originals, items = [], []
    lift: dict[str, list[float]] = {}  # p(target) of the generated image minus that of its original
    lmk_ref, lmk_new, fid = [], [], {c: [] for c in cats}
    tgt_ref, tgt_new = [], []  # the generator's own warped landmarks (the training targets)
    for k, i in enumerate(idx):
        lm0, bs0 = track(frames[k])
        if lm0 is None:
            continue
        originals.append(clip_result(f"frame{i}", "neutral", rec.probs(frames[k], lm0)[None]))
        for c in cats:
            g = gen(frames[k], lmk[i], None if parsing is None else parsing[k], *CATEGORIES[c])
            lm1, bs1 = track(g.image)
            if lm1 is None:
                continue
            if c in FER_CLASSES:
                items.append(clip_result(f"frame{i}_{c}", c, rec.probs(g.image, lm1)[None]))
                j = FER_CLASSES.index(c)
                lift.setdefault(c, []).append(float(items[-1].probs[j] - originals[-1].probs[j]))
            if c != "neutral":
                lmk_ref.append(lm0)
                lmk_new.append(lm1)
                tgt_ref.append(lmk[i][:478, :2])
                tgt_new.append(g.lmk)
                fid[c].append(((bs1 - bs0)[expr_cols], g.blendshape_delta[expr_cols]))
        if progress:
            progress(f"frame {i}", (k + 1) / len(idx))
    per_cat = {}
    for c in cats:
        mine = [r for r in items if r.target == c]
        f = fid.get(c) or []
        per_cat[c] = {
            "accuracy": float(np.mean([r.predicted == c for r in mine])) if mine else None,
            "p_target_lift": float(np.mean(lift[c])) if lift.get(c) else None,
            "mean_probs": {p: float(np.mean([r.probs[j] for r in mine])) for j, p in enumerate(FER_CLASSES)}
            if mine else None,
            "va": [float(x) for x in np.mean([r.va for r in mine], 0)] if mine else None,
            "fidelity": expression_fidelity(np.stack([m for m, _ in f]).mean(0),
                                            np.stack([t for _, t in f]).mean(0)) if f else None,
        }
    lips = lip_preservation(np.array(lmk_ref), np.array(lmk_new)) if lmk_ref else {}
    lips_targets = lip_preservation(np.array(tgt_ref), np.array(tgt_new)) if tgt_ref else {}
    return {"source": "frames", "frames": list(idx), "gain": gen.settings.gain,
            "summary": summarise(items), "original_frames": summarise(originals),
            "per_category": per_cat, "lips": lips, "lips_targets": lips_targets}


def generator_markdown(res: dict) -> str:
    """Markdown block of an evaluate_generator result."""
    s, o = res["summary"], res["original_frames"]
    lines = [f"### Emotional face generator on {Path(res['source']).name} "
             f"({len(res['frames'])} frames, gain {res['gain']:g})", "",
             "Every generated image is re-tracked by MediaPipe and classified by the recogniser.", "",
             summary_markdown(s, "Generated images at each category's (v, a)"), "",
             "Original (unwarped) frames are read as: "
             + ", ".join(f"{k} {v}" for k, v in o["confusion"]["neutral"].items() if v)
             + f" (of {o['n']}).", "",
             "| category | recognised as target | mean p(target) | p(target) lift vs original "
             "| pred v | pred a "
             "| fidelity cos | fidelity gain |",
             "|---|---|---|---|---|---|---|---|"]
    for c, d in res["per_category"].items():
        acc = "-" if d["accuracy"] is None else f"{d['accuracy']:.2f}"
        pt = "-" if d["mean_probs"] is None else f"{d['mean_probs'][c]:.2f}"
        va = ("-", "-") if d["va"] is None else (f"{d['va'][0]:+.2f}", f"{d['va'][1]:+.2f}")
        fd = ("-", "-") if d["fidelity"] is None else (f"{d['fidelity']['cosine']:.2f}",
                                                       f"{d['fidelity']['gain']:.2f}")
        lf = "-" if d.get("p_target_lift") is None else f"{d['p_target_lift']:+.2f}"
        lines.append(f"| {c} | {acc} | {pt} | {lf} | {va[0]} | {va[1]} | {fd[0]} | {fd[1]} |")
    lp = res["lips"]
    if lp:
        lines += ["", f"Mouth opening kept: re-tracked inner-lip gap, generated / original = "
                      f"{lp['gap_ratio']:.3f} (median over {lp['n_open']} open-mouth images), "
                      f"mean |Δgap| = {lp['gap_mae']:.4f} eye-distances over {lp['n']} images."]
    lt = res.get("lips_targets")
    if lt:
        lines += [f"Warped landmarks (the targets): gap ratio {lt['gap_ratio']:.3f}, "
                  f"mean |Δgap| = {lt['gap_mae']:.5f} eye-distances."]
    return "\n".join(lines)


def mead_generator(data_dir: str | Path, frames_per_actor: int = 3, settings=None, progress=None) -> dict:
    """The generator on neutral MEAD frames of the ceiling actors (faces the recogniser reads as neutral).

    These actors also fitted the expression model, so this is an in-sample readability check of the
    warp itself; no parsing is available, so the landmark face oval is the motion mask.
    """
    from emotalk.face.tracking import track_video
    from emotalk.media import read_frames

    frames, lmks = [], []
    for actor in MEAD_CEILING_ACTORS:
        p = Path(data_dir) / "emotion" / "mead_video" / f"{actor}_front_neutral_level1_001.mp4"
        if not p.is_file():
            from emotalk.errors import DatasetError

            raise DatasetError(f"MEAD clip missing: {p}. Point --data at the shared data folder.")
        fr = read_frames(p, fps=25.0)
        tr = track_video(fr, len(fr))
        pick = np.flatnonzero(tr.found)
        pick = pick[np.linspace(0, len(pick) - 1, frames_per_actor).round().astype(int)]
        frames += list(fr[pick])
        lmks += list(tr.lmk[pick])
    res = evaluate_generator_on(np.stack(frames), np.stack(lmks), None, settings, progress)
    res.update(source="MEAD neutral frames (M030, W009, W011)")
    return res
