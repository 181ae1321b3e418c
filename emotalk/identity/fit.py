"""An identity from a clip or a dataset folder: preprocess (a clip), train, the emotion stage, save.

`fit_identity` runs one fine-tune recipe (emotalk.training.settings.RECIPES). The app's Fine-tune tab and
the train CLI both reach it through emotalk.pipeline, so they run the same code: the same recipe, emotion
stage, sample renders during training, and resumption from the work folder after a crash. A clip is
checked first (emotalk.dataset.clip_check), before any preprocessing; a failed or stopped fit removes
what it made that cannot be resumed.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from emotalk.dataset import clip_check
from emotalk.emotion import FER_CLASSES
from emotalk.identity.store import IdentityInfo
from emotalk.training.data import dataset_audio_code, load_train_data
from emotalk.training.emotion_calibration import grid
from emotalk.training.emotion_stage import EmotionStageSettings
from emotalk.training.loop import SampleHook, evaluate, train
from emotalk.training.settings import Recipe, TrainSettings, TrainStatus

Progress = Callable[[str, float], None]  # (stage text, fraction of the whole run 0..1)
OnSample = Callable[[list[float], "np.ndarray | None"], None]  # (loss history, frame or None)
KEPT_REPORTS = 16  # clip check reports remembered (the latest)

@dataclass
class Speed:
    """Measured speeds of one kind of device, for the up-front time estimate of a fit."""

    preprocess: float  # seconds per second of clip
    train_step: float  # seconds per training step at `train_ref` pixels x batch
    train_ref: int  # pixels x batch of that measurement (steps scale with it, never below a third)
    emotion_target: float  # seconds per generated emotion target
    emotion_step: float  # seconds per emotion-stage step at `emotion_ref` pixels x batch
    emotion_ref: int  # pixels x batch of that measurement
    calibration_image: float = 0.45  # seconds per candidate image of the strength calibration (generate,
    # recognise, dlib; german_anchor's 512 px frames, "cpu" preset: 138 images in 67 s on the idle 2-core
    # dev CPU, 2026-11-29)


SPEEDS = {
    # the "cpu" recipe on the 5 s shared clip, wall time on the idle 2-core dev machine (2026-11-27):
    # preprocess 23 s, 600 steps 62 s, 80 targets 5 s, 300 emotion steps 28 s: 2 min in all (shared with
    # other work at load 4-8, the same run took 10-20 times as long)
    "cpu": Speed(5.0, 0.11, 128 * 128 * 2, 0.07, 0.1, 96 * 96 * 2),
    # H100 (BENCHMARKS.md): fast preset 1.4 min for 3000 steps, emotion stage 0.8 min for 3000 steps;
    # tracking and the generator's targets run on the host's CPU
    "cuda": Speed(10.0, 0.028, 512 * 512 * 4, 0.3, 0.016, 512 * 512 * 4),
}


@dataclass
class FitResult:
    """What `fit_identity` made."""

    path: Path  # the identity folder
    summary: dict  # training summary (identity.json "metrics"), with the recipe and the emotion stage
    thumbnail: np.ndarray  # [S,S,3] uint8 held-out render of the finished identity
    notice: str | None = None  # for the user: the clip check's warnings and fixes (None: none)


@dataclass
class FittedIdentity(IdentityInfo):
    """A fine-tuned identity as the app lists it, with what its recipe made of it."""

    recipe: dict = field(default_factory=dict)  # the recipe's summary (Recipe.summary)
    notice: str | None = None  # for the user: what a preview is and how to get the full identity
    report: list[str] = field(default_factory=list)  # what the fit made of it (identity.report.fit_report)


def estimate_parts(recipe: Recipe, clip_seconds: float | None, device: str) -> dict[str, float]:
    """Expected seconds of each part of a fit (preprocess: 0 for a dataset, clip_seconds None)."""
    sp = SPEEDS["cuda" if str(device).startswith("cuda") else "cpu"]
    t, e = recipe.train, recipe.emotion
    step = sp.train_step * max(1 / 3, recipe.size ** 2 * t.batch / sp.train_ref)
    emo = 0.0
    if recipe.emotions:
        n_targets = e.n_frames * (8 + e.n_random)  # 7 categories and calm, and the random points
        e_step = sp.emotion_step * max(1 / 3, (e.size or recipe.size) ** 2 * e.batch / sp.emotion_ref)
        emo = n_targets * sp.emotion_target + e.steps * e_step
        cal = e.calibration
        if cal.enabled and not e.generator.category_gain:  # each candidate at every recogniser category,
            # and at most the resting expression's factors at the others (training.emotion_calibration)
            n_cat = len(FER_CLASSES) - 1  # neutral is not generated
            per_frame = len(grid(cal)) * n_cat + len(cal.rest_factors) * (n_cat - 1)
            emo += cal.n_frames * per_frame * sp.calibration_image
    return {"preprocess": sp.preprocess * (clip_seconds or 0.0), "train": t.steps * step, "emotion": emo}


def train_identity(ds, settings: TrainSettings, out: str | os.PathLike, work_dir: str | os.PathLike,
                   device: str = "cpu", on_status: Callable[[TrainStatus], None] | None = None,
                   audio_code: np.ndarray | None = None, name: str | None = None,
                   source_clip: str | None = None, emotion: EmotionStageSettings | None = None,
                   samples: SampleHook | None = None, emotion_progress: Progress | None = None,
                   notes: dict | None = None) -> tuple[Path, dict, np.ndarray]:
    """Train (resumably, in work_dir), run the emotion stage (`emotion`; None: none, and the identity
    renders every emotion as neutral), render a held-out thumbnail and write the identity folder `out`.

    notes: added to the summary saved in identity.json (the recipe). Returns (identity folder, training
    summary, thumbnail [S,S,3] uint8).
    """
    from emotalk.identity.checkpoint import save_identity

    code = audio_code if audio_code is not None else dataset_audio_code(ds, settings.audio_kind)
    model, summary = train(ds, settings, work_dir, device=device, on_status=on_status, audio_code=code,
                           samples=samples)
    data = load_train_data(ds, settings.size, code, device)
    if model.settings.lip_code:  # the renderer's opening matched to the clip's (emotalk.training.opening)
        summary["lip_opening"] = fit_lip_opening(model, data)
    if emotion is not None and emotion.steps > 0:
        from emotalk.training.emotion_stage import rounded, run_emotion_stage

        es = run_emotion_stage(model, ds, emotion, device=device, size=settings.size, audio_code=code,
                               progress=emotion_progress)
        summary["emotion_stage"] = {"steps": emotion.steps, "minutes": round(es["minutes"], 2),
                                    "targets": es["n_targets"], "size": emotion.size or settings.size,
                                    "fidelity": rounded(es["fidelity"])}
        if es["strengths"] is not None:
            summary["emotion_stage"]["strengths"] = es["strengths"]
        summary["emotion_stage"]["eye_shrink"] = {k: round(v, 3) for k, v in es["eye_shrink"].items()}
    summary.update(notes or {})
    thumb_idx = data.val_idx[:1] if len(data.val_idx) else data.train_idx[:1]
    model.eval()  # as it renders for users (the fitted opening gain on)
    thumb, _ = evaluate(model, data, thumb_idx)
    path = save_identity(out, model, ds, settings, summary, name=name, source_clip=source_clip,
                         size=data.size, thumbnail=thumb[0])
    from emotalk.lips.own_phones import write_identity_phone_lips  # this person's phone targets (English)
    write_identity_phone_lips(path, ds)  # optional phone_lips.json; never raises
    return path, summary, thumb[0]


def fit_lip_opening(model, data, chosen: tuple[float, str] | None = None) -> dict:
    """Fit and set `model`'s lip_open_gain; -> what identity.json keeps of it (the gain, the rendered /
    real opening per candidate gain, and held-out PSNR with the gain, beside training's without it).
    `chosen` (gain, why): measure as usual but set this gain, keeping the fitted one and the reason (the fit
    sees only the renderer, tracked code -> pixels; a gain chosen on audio-driven renders also makes up for
    a lip driver that opens this person's mouth too little on other voices)."""
    from emotalk.training.opening import fit_opening_gain

    fit = fit_opening_gain(model, data)
    gain = fit.gain if chosen is None else float(chosen[0])
    model.settings = replace(model.settings, lip_open_gain=gain)
    out = {"gain": gain, "ratio": {str(g): round(r, 3) for g, r in fit.ratio.items()},
           "frames": fit.n_frames}
    if fit.note:
        out["note"] = fit.note
    if chosen is not None:
        out["fitted_gain"], out["chosen"] = fit.gain, chosen[1]
    if gain != 1.0 and len(data.val_idx):
        model.eval()
        out["val_psnr"] = round(evaluate(model, data, data.val_idx)[1]["psnr"], 3)
    return out


DATASET_STAGES = ("prepare", "parse", "finish")  # a clip's dataset, each stage resumable on its own


def _source_sha(work: Path) -> str | None:
    """sha256 of the clip the work folder's dataset (finished or partial) was made from (None: none)."""
    import json

    for f in (work / "dataset" / "meta.json", work / "dataset.partial" / "state.json"):
        try:
            return json.loads(f.read_text())["source"]["sha256"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def resumes_clip(work: Path, clip: Path) -> bool:
    """Whether `work` holds a dataset (finished or partial) of this very clip (same sha256)."""
    from emotalk.folders import sha256_file

    old = _source_sha(work)
    return old is not None and old == sha256_file(clip)


def forget_other_clip(work: Path, clip: Path) -> bool:
    """Remove what `work` holds of another clip (a dataset or a training state made from a file with
    another sha256), so a new fit under the same name starts fresh. True when something was removed."""
    from emotalk.folders import sha256_file

    old = _source_sha(work)
    if old is None or old == sha256_file(clip):
        return False
    for name in ("dataset", "dataset.partial", "train"):
        shutil.rmtree(work / name, ignore_errors=True)
    return True


def _dataset(source: Path, recipe: Recipe, work: Path, say: Progress, until: str | None = None):
    """The dataset of `source`: itself if it is a folder (a dataset), else the clip preprocessed into
    work/dataset, stage by stage in work/dataset.partial (each finished stage is kept: a fit that crashed
    resumes after the last one). `until`: stop after that stage of DATASET_STAGES (returns None)."""
    from emotalk.dataset.format import load_dataset

    if source.is_dir():
        return load_dataset(source)
    ds_dir = work / "dataset"
    if (ds_dir / "meta.json").is_file():
        return load_dataset(ds_dir)
    from emotalk.dataset import build

    return build.preprocess(source, ds_dir, recipe.preprocess, lambda m, f: say(f"preprocess: {m}", f),
                            work=work / "dataset.partial", until=None if until == "finish" else until)


def _file_key(path: Path) -> tuple | None:
    """(resolved path, size, mtime): one version of a file (None when it cannot be read)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path.resolve()), st.st_size, st.st_mtime_ns


_REPORTS: dict[tuple, clip_check.ClipReport] = {}  # clip check reports by _file_key, oldest first
_REPORTS_LOCK = threading.Lock()


def remembered_report(clip: str | os.PathLike) -> clip_check.ClipReport | None:
    """The clip check's report of this version of `clip` if it was checked in this process, else None."""
    key = _file_key(Path(clip))
    with _REPORTS_LOCK:
        return _REPORTS.get(key) if key else None


def check_clip(clip: str | os.PathLike) -> clip_check.ClipReport:
    """The clip check's report of `clip`, remembered per file version: the app checks a clip as it is
    uploaded, and the fine-tune that follows reuses that report rather than checking again."""
    rep = remembered_report(clip)
    if rep is None:
        rep = clip_check.check_clip(clip)
        key = _file_key(Path(clip))
        with _REPORTS_LOCK:
            if key:
                _REPORTS[key] = rep
            while len(_REPORTS) > KEPT_REPORTS:
                _REPORTS.pop(next(iter(_REPORTS)))
    return rep


def check_notice(rep: clip_check.ClipReport) -> str | None:
    """The report's warnings with their fixes, as one line for a notice (None: no warnings)."""
    warned = [f"{f.topic}: {f.text} {f.fix}".strip() for f in rep.findings if f.level == "warning"]
    return ("The clip check warned: " + " ".join(warned)) if warned else None


def _resumable(work: Path) -> bool:
    """Whether `work` holds a preprocessed dataset or a saved training state (a new fit resumes there)."""
    return ((work / "dataset" / "meta.json").is_file() or (work / "dataset.partial" / "state.json").is_file()
            or any((work / "train").glob("**/state.json")))


def _clean_up(work: Path, made: list[Path], before: set[str], out: Path) -> None:
    """After a failed or stopped fit: remove the half-written identity (save_identity's temporary
    sibling of `out`) and, unless `work` holds something resumable, the folders the fit made there
    (`made`: work and its parents that did not exist, deepest first; `before`: what work held)."""
    shutil.rmtree(out.with_name(f"{out.name}.tmp{os.getpid()}"), ignore_errors=True)
    if _resumable(work):
        return
    if work in made:
        shutil.rmtree(work, ignore_errors=True)
    else:  # a folder the caller gave: only what this fit added to it
        for p in work.iterdir():
            if p.name in ("dataset", "dataset.partial", "train") and p.name not in before:
                shutil.rmtree(p, ignore_errors=True)
    for d in made:  # its parents, deepest first, while they are empty
        if d != work and d.is_dir() and not any(d.iterdir()):
            d.rmdir()


def fit_identity(source: str | os.PathLike, out: str | os.PathLike, recipe: Recipe,
                 work_dir: str | os.PathLike, device: str = "cpu", name: str | None = None,
                 progress: Progress | None = None, on_sample: OnSample | None = None,
                 on_status: Callable[[TrainStatus], None] | None = None,
                 clip_seconds: float | None = None, until: str | None = None,
                 check: bool = True) -> FitResult | None:
    """A clip (checked, then preprocessed) or a dataset folder -> the identity folder `out`, by `recipe`.

    A clip the check refuses raises InputError with every reason and its fix, before any folder is made;
    its warnings are the result's notice. Resumes from work_dir after a crash (the preprocessed dataset
    and the training state are kept there); a failed or stopped fit with nothing resumable leaves no
    folder behind, and never half an identity. `on_sample(loss_history, frame)` gets the loss curve as it
    grows (frame None, at most every 2 s) and, every recipe.sample_every steps and at the end, a held-out
    render with it. Progress fractions follow the expected time of each part (clip_seconds: the clip's
    length, for that split). A work folder holding another clip's dataset (another sha256) is cleared
    first, so the same name with a new upload starts fresh. `until`: stop after that stage of
    DATASET_STAGES and return None (benchmarks run the stages as separate invocations). `check` False:
    no clip check here (a benchmark runs and times it as a stage of its own).
    """
    src, work = Path(source), Path(work_dir)
    if until is not None and until not in DATASET_STAGES:
        from emotalk.errors import InputError

        raise InputError(f"until must be one of {', '.join(DATASET_STAGES)}, got {until!r}.")
    notice = None
    if not src.is_dir():
        say = progress or (lambda m, f: None)
        if check:
            say("checking the clip", 0.0)
            rep = check_clip(src)
            rep.raise_if_refused()
            notice = check_notice(rep)
        if work.is_dir() and forget_other_clip(work, src):
            say("another clip had this name before: starting fresh", 0.0)
        elif resumes_clip(work, src):
            say("resuming the fine-tune of this clip", 0.0)
    made = [d for d in (work, *work.parents) if not d.exists()]
    before = {p.name for p in work.iterdir()} if work.is_dir() else set()
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _fit(src, Path(out), recipe, work, device, name, progress, on_sample, on_status,
                    clip_seconds, notice, until)
    except BaseException:
        _clean_up(work, made, before, Path(out))
        raise


def _fit(src: Path, out: Path, recipe: Recipe, work: Path, device: str, name: str | None,
         progress: Progress | None, on_sample: OnSample | None,
         on_status: Callable[[TrainStatus], None] | None, clip_seconds: float | None,
         notice: str | None, until: str | None = None) -> FitResult | None:
    """`fit_identity` once the clip is checked and the work folder made."""
    is_dataset = src.is_dir()
    parts = estimate_parts(recipe, None if is_dataset else (clip_seconds or 10.0), device)
    total = max(1e-6, sum(parts.values()))
    p_end = parts["preprocess"] / total
    t_end = p_end + parts["train"] / total
    say = progress or (lambda s, f: None)
    ds = _dataset(src, recipe, work, lambda m, f: say(m, p_end * f), until)
    if until is not None:  # stopped after a preprocessing stage
        return None
    s = recipe.train
    code = dataset_audio_code(ds, s.audio_kind)
    losses: list[float] = []
    seen = [0]
    last_curve = [0.0]  # monotonic time of the last curve-only report (they come at most every 2 s)

    def record(st: TrainStatus) -> None:
        if st.step > seen[0]:
            seen[0] = st.step
            losses.append(float(st.loss))

    def status(st: TrainStatus) -> None:
        record(st)
        say(f"train [{st.stage}] step {st.step}/{st.steps}, loss {st.loss:.4f}, "
            f"{st.n_gaussians} Gaussians, ETA {st.eta_s / 60:.1f} min",
            p_end + (t_end - p_end) * st.step / max(1, st.steps))
        if on_sample and time.monotonic() - last_curve[0] >= 2.0:
            last_curve[0] = time.monotonic()
            on_sample(list(losses), None)
        if on_status:
            on_status(st)

    def sample(st: TrainStatus, frame: np.ndarray) -> None:
        record(st)
        if on_sample:
            on_sample(list(losses), frame)

    def emotion_progress(msg: str, f: float) -> None:
        half = 0.0 if msg.startswith("emotion targets") else 0.5
        say(msg, t_end + (1 - t_end) * 0.97 * (half + 0.5 * f))

    every = min(recipe.sample_every, max(1, s.steps // 4))
    path, summary, thumb = train_identity(
        ds, s, out, work / "train", device=device, on_status=status, audio_code=code, name=name,
        source_clip=None if is_dataset else str(src), emotion=recipe.emotion,
        samples=SampleHook(every, sample), emotion_progress=emotion_progress,
        notes={"recipe": recipe.summary(), **({"clip_check": notice} if notice else {})})
    if on_sample:
        on_sample(list(losses), thumb)
    say("done", 1.0)
    return FitResult(path, summary, thumb, notice)
