"""Per-identity emotion strengths: how far the generator must move this face for each emotion to read.

One strength for every face reads on some and not on others (obama at the stage's gain: happy 0 of 6
targets, sad 6 of 6). Before the emotion stage makes its targets, each category is generated from a few of
the identity's training frames at a small grid of factors on the generator's warp gain and texture
strength; the recogniser reads every image (its crop placed by the generator's moved landmarks) and dlib's
descriptor compares it with its original frame. A category takes the candidate with the highest mean
p(category) among those that keep the person (identity similarity no more than `identity_slack` below real
MEAD actors' for that category), if it beats the stage's own strength by `min_lift`; otherwise, or when
the stage's strength already reads on `enough` of the frames, it keeps that strength.
Categories the recogniser has no class for (contempt) keep it too.
A face whose own frames already read as an emotion (a news anchor resting with a smile reads happy) keeps
that reading under every other emotion: then that emotion's change is also taken out away from it
(`ExpressionModel.weights`, key "rest_<category>"), by the factor that reads best, if it lifts the other
categories' mean p(category) by `min_lift` and keeps the person.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from emotalk.emotion import CATEGORIES, FER_CLASSES
from emotalk.face.expression import REST_PREFIX
from emotalk.face.generator import EmotionalFaceGenerator, GeneratorSettings
from emotalk.training.settings import CalibrationSettings

MEAD_IDENTITY_BAR = Path(__file__).resolve().parents[1] / "models" / "identity_similarity_mead.json"
Progress = Callable[[str, float], None]
REST_SLACK = 0.01  # taking the resting expression out may cost a category already below its identity floor
# this much more (german_anchor's fear: 0.946 -> 0.944 at 0.5, its floor 0.949; angry then read 0.40 -> 0.72)


@dataclass
class Candidate:
    """One strength of one category, as read on the identity's frames."""

    gain_factor: float  # factor on the generator's gain
    texture_factor: float  # factor on its texture strength
    p_target: float  # mean recogniser probability of the category over the frames
    accuracy: float  # share of frames whose top class is the category
    identity: float  # mean dlib similarity of each image to its original frame


@dataclass
class Calibration:
    """The chosen factors per category and every candidate's reading (for the fit report)."""

    category_gain: dict[str, float]  # factor on the generator's gain, per category (1 where unchanged)
    category_texture: dict[str, float]  # factor on its texture strength, per category
    candidates: dict[str, list[Candidate]]  # category -> every candidate tried, in grid order
    frames: list[int]  # dataset frames the candidates were made from
    rest: dict = field(default_factory=dict)  # the frames' own reading and the resting expression taken
    # out: {"reads": category, "share": s, "factor": f (0: none), "p_others": [before, after]}; {} = not tried

    def summary(self) -> dict:
        """JSON-ready: the chosen factors and, per category, the base's and the chosen candidate's reading."""
        out = {"category_gain": self.category_gain, "category_texture": self.category_texture,
               "frames": self.frames, "categories": {}, "rest": self.rest}
        for c, cands in self.candidates.items():
            base, pick = cands[0], chosen(cands, self.category_gain[c], self.category_texture[c])
            out["categories"][c] = {k: {"p": round(x.p_target, 3), "accuracy": round(x.accuracy, 3),
                                        "identity": round(x.identity, 4)}
                                    for k, x in (("base", base), ("chosen", pick))}
        return out


def chosen(cands: list[Candidate], gain: float, texture: float) -> Candidate:
    """The candidate with these factors."""
    return next(x for x in cands if x.gain_factor == gain and x.texture_factor == texture)


def identity_bar(path: Path = MEAD_IDENTITY_BAR) -> dict[str, float]:
    """Real MEAD actors' mean identity similarity, emotional vs neutral frames, per category."""
    return {c: float(d["mean"]) for c, d in json.loads(path.read_text())["categories"].items()}


def pick(cands: list[Candidate], floor: float, min_lift: float, enough: float = 1.0) -> Candidate:
    """The best-reading candidate that keeps the person (identity ≥ floor), if it beats the base (the
    first candidate) by min_lift; else the base, which also stays if it reads on `enough` of the frames."""
    base = cands[0]
    if base.accuracy >= enough:
        return base
    ok = [x for x in cands if x.identity >= floor]
    best = max(ok, key=lambda x: x.p_target, default=base)
    return best if best.p_target >= base.p_target + min_lift else base


def grid(settings: CalibrationSettings) -> list[tuple[float, float]]:
    """Candidate (gain factor, texture factor) pairs, the base (1, 1) first."""
    pairs = [(g, t) for g in settings.gain_factors for t in settings.texture_factors]
    return [(1.0, 1.0)] + [p for p in pairs if p != (1.0, 1.0)]


def read_category(gen: EmotionalFaceGenerator, category: str, frames: np.ndarray, lmk: np.ndarray,
                  parsing: np.ndarray | None, rec, emb, e0: np.ndarray) -> tuple[float, float, float]:
    """Generate `category` from every frame and read it: (mean p(category), share of frames whose top class
    it is, mean dlib similarity to the original frames with descriptors e0 [N,128]; NaN if no face)."""
    from emotalk.face.identity_embedding import identity_similarity

    j = FER_CLASSES.index(category)
    out = [gen(frames[k], lmk[k], None if parsing is None else parsing[k], *CATEGORIES[category])
           for k in range(len(frames))]
    p = np.stack([rec.probs(g.image, g.lmk) for g in out])  # [N,7]
    sim = identity_similarity(e0, emb.embed(np.stack([g.image for g in out]),
                                            landmarks=np.stack([g.lmk for g in out])))  # [N] (NaN: no face)
    return (float(p[:, j].mean()), float(np.mean(p.argmax(1) == j)),
            float(np.nanmean(sim)) if np.isfinite(sim).any() else float("nan"))


def calibrate(frames: np.ndarray, lmk: np.ndarray, parsing: np.ndarray | None, base: GeneratorSettings,
              settings: CalibrationSettings = CalibrationSettings(), frame_ids: list[int] | None = None,
              recognizer=None, embedder=None, progress: Progress | None = None) -> Calibration:
    """Choose each category's strength on frames [N,H,W,3] uint8 (landmarks [N,478,2+] px, parsing
    [N,S,S] or None) around the generator settings `base`; see the module docstring."""
    from emotalk.face.identity_embedding import default_embedder
    from emotalk.face.recognizer import EmotionRecognizer

    rec = recognizer or EmotionRecognizer()
    emb = embedder or default_embedder()
    bar = identity_bar()
    e0 = emb.embed(frames, landmarks=lmk[:, :478])  # [N,128]
    cats = [c for c in FER_CLASSES if c != "neutral"]
    pairs = grid(settings)
    cands: dict[str, list[Candidate]] = {c: [] for c in cats}
    for n, (gf, tf) in enumerate(pairs):
        gen = EmotionalFaceGenerator(settings=replace(base, gain=base.gain * gf, texture=base.texture * tf))
        for c in cats:
            cands[c].append(Candidate(gf, tf, *read_category(gen, c, frames, lmk, parsing, rec, emb, e0)))
        if progress:
            progress(f"emotion strengths: candidate {n + 1}/{len(pairs)}", (n + 1) / len(pairs))
    gains, textures = {}, {}
    floors = {c: bar.get(c, bar["neutral"]) - settings.identity_slack for c in cats}
    for c in cats:
        best = pick(cands[c], floors[c], settings.min_lift, settings.enough)
        gains[c], textures[c] = best.gain_factor, best.texture_factor
    cal = Calibration(gains, textures, cands, list(frame_ids or range(len(frames))))
    if settings.rest_factors:
        cal.rest = rest_expression(frames, lmk, parsing, base, cal, floors, settings, rec, emb, e0)
        if cal.rest.get("factor"):
            cal.category_gain[REST_PREFIX + cal.rest["reads"]] = cal.rest["factor"]
    return cal


def rest_expression(frames, lmk, parsing, base: GeneratorSettings, cal: Calibration, floors: dict[str, float],
                    settings: CalibrationSettings, rec, emb, e0: np.ndarray) -> dict:
    """How the frames themselves read and, when mostly as one emotion, the factor (of settings.rest_factors,
    or 0) by which that emotion's change is taken out at the other categories (see the module docstring)."""
    p0 = np.stack([rec.probs(frames[k], lmk[k]) for k in range(len(frames))])  # [N,7]
    top = FER_CLASSES[int(p0.mean(0).argmax())]
    share = float(np.mean(p0.argmax(1) == FER_CLASSES.index(top)))
    out = {"reads": top, "share": round(share, 3), "factor": 0.0}
    if top == "neutral" or share < settings.rest_share:
        return out
    others = [c for c in cal.candidates if c != top]
    base_cands = {c: chosen(cal.candidates[c], cal.category_gain[c], cal.category_texture[c]) for c in others}
    before = float(np.mean([base_cands[c].p_target for c in others]))
    best, best_p = 0.0, before + settings.min_lift
    for f in settings.rest_factors:
        gen = EmotionalFaceGenerator(settings=replace(
            base, category_gain={**cal.category_gain, REST_PREFIX + top: f},
            category_texture=dict(cal.category_texture)))
        ps, kept = [], True
        for c in others:
            p, _, ident = read_category(gen, c, frames, lmk, parsing, rec, emb, e0)
            ps.append(p)
            kept = kept and ident >= min(floors[c], base_cands[c].identity - REST_SLACK)
        if kept and np.mean(ps) >= best_p:
            best, best_p = f, float(np.mean(ps))
    out.update(factor=best, p_others=[round(before, 3), round(best_p if best else before, 3)])
    return out


def calibrate_dataset(ds, base: GeneratorSettings, settings: CalibrationSettings = CalibrationSettings(),
                      progress: Progress | None = None, **kw) -> Calibration:
    """`calibrate` on settings.n_frames of a dataset's training frames, spread over the clip."""
    pool = np.asarray(ds.train_idx)
    n = min(settings.n_frames, len(pool))
    idx = pool[np.unique(np.linspace(0, len(pool) - 1, n).round().astype(int))]
    return calibrate(ds.frames(idx), ds.lmk2d[idx], ds.parsing(idx), base, settings,
                     [int(i) for i in idx], progress=progress, **kw)


def calibrated(base: GeneratorSettings, cal: Calibration) -> GeneratorSettings:
    """The generator settings with a calibration's per-category factors."""
    return replace(base, category_gain=dict(cal.category_gain), category_texture=dict(cal.category_texture))
