"""Evaluate an identity (image, lips, sync, emotion) or the emotion models.

IDENTITY --dataset DIR: the whole metric table of a trained identity on its dataset's held-out frames
(`emotalk.evaluation`): image (PSNR, SSIM, ST-LPIPS, full frame and face box), lips (LMD, mouth-opening
correlation), sync (AV offset, confidence, phone contrast of the render next to the real frames'),
emotion with tracked lips (held-out frames rendered with their tracked lip code at each category:
recogniser accuracy, V/A-RMSE, V/A-SA, lip gap vs neutral). Written
to --out FILE.json (and FILE.md; default out/eval/<identity>_<dataset>_<size>.json).

Each section adds a markdown block and a JSON entry to one report. --ceiling: the emotion recogniser on
the 21 labelled MEAD clips (its ceiling on real faces). --video FILE with --emotion NAME or --valence V
--arousal A: the recogniser on any video or render against that target. --generator DATASET: the
lip-aligned emotional face generator on an identity dataset's frames (readability per category, mouth
opening kept; --grid PNG also draws it). --generator-mead: the generator on neutral MEAD frames.
--audio-driven RENDERS (with --audio-drives PACK): what users see, renders of unheard speech at every
category (`python -m emotalk bench emotion-audio render`): recogniser, mouth sharpness and opening vs
neutral, sync, and the per-drive lip table (`evaluation.audio_driven`). The
report goes to stdout and to OUT/eval.md and OUT/eval.json, with the date, machine and commit.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotalk.errors import InputError
from emotalk.folders import atomic_write_text

HELP = ("evaluate an identity on its dataset (image, lips, sync, emotion), or the emotion recogniser / "
        "generator")
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Section:
    """One block of the evaluation report."""

    name: str  # JSON key
    markdown: str  # human-readable block
    data: dict = field(default_factory=dict)  # machine-readable numbers


# a section runner: (args) -> Section, or None when the section was not asked for
Runner = Callable[[argparse.Namespace], "Section | None"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    from emotalk.evaluation.report import SECTIONS as ID_SECTIONS

    p.add_argument("identity", nargs="?", type=Path, help="identity folder to evaluate (with --dataset)")
    p.add_argument("--dataset", type=Path, help="the identity's dataset folder (held-out frames)")
    p.add_argument("--size", type=int, default=None, help="evaluation size in px (default: the identity's)")
    p.add_argument("--sections", nargs="+", choices=ID_SECTIONS, default=list(ID_SECTIONS),
                   help="identity evaluation: which sections")
    p.add_argument("--device", default="cpu", help="render device for the identity evaluation")
    p.add_argument("--emotion-frames", type=int, default=3, help="held-out frames rendered per emotion")
    p.add_argument("--sync-clip", action="store_true",
                   help="identity evaluation: lip sync on the whole clip rendered (in-sample; the held-out "
                        "run is short), not only the held-out run")
    p.add_argument("--no-phones", action="store_true",
                   help="identity evaluation: skip the transcript + alignment (no phone contrast)")
    p.add_argument("--ceiling", action="store_true", help="recogniser on the labelled MEAD clips")
    p.add_argument("--video", type=Path, help="a video or render to classify")
    p.add_argument("--emotion", help="target category for --video (e.g. happy)")
    p.add_argument("--valence", type=float, help="target valence for --video")
    p.add_argument("--arousal", type=float, help="target arousal for --video")
    p.add_argument("--generator", type=Path, metavar="DATASET",
                   help="identity dataset folder: evaluate the emotional face generator on its frames")
    p.add_argument("--frames", type=int, default=8, help="frames sampled from the dataset for --generator")
    p.add_argument("--gain", type=float, default=None, help="generator gain (default: GeneratorSettings)")
    p.add_argument("--grid", type=Path, default=None,
                   help="with --generator: also save a frames x emotions grid image here (PNG)")
    p.add_argument("--generator-mead", action="store_true",
                   help="the generator on neutral MEAD frames (no images are written)")
    p.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                   help="shared data folder (holds emotion/mead_video)")
    p.add_argument("--max-frames", type=int, default=None, help="at most this many frames per clip")
    p.add_argument("--audio-driven", type=Path, default=None, metavar="RENDERS",
                   help="audio-driven renders (VARIANT/IDENTITY/DRIVE/CATEGORY.mp4, from `python -m emotalk "
                        "bench emotion-audio render`): emotion, mouth and sync per identity x category")
    p.add_argument("--audio-drives", type=Path, default=REPO / "out" / "emotion_audio" / "drives",
                   help="with --audio-driven: the drive pack the renders were made from")
    p.add_argument("--out", type=Path, default=None,
                   help="report folder (default out/eval); for IDENTITY a FILE.json (or a folder for it)")


def _progress(msg: str, frac: float) -> None:
    print(f"  [{frac * 100:5.1f}%] {msg}", file=sys.stderr, flush=True)


def section_ceiling(args: argparse.Namespace) -> Section | None:
    if not args.ceiling:
        return None
    from emotalk.evaluation.emotion import confusion_markdown, mead_ceiling, summary_markdown

    t = time.time()
    summary, results = mead_ceiling(args.data, max_frames=args.max_frames, progress=_progress)
    md = "\n\n".join([
        "### Recogniser ceiling on real MEAD clips",
        "fer FER2013 model on landmark-aligned crops; 3 actors (M030, W009, W011) x 7 emotions (level 3; "
        "neutral level 1; contempt has no fer class). Clip verdict = argmax of the mean probability.",
        summary_markdown(summary, "MEAD ceiling"),
        confusion_markdown(summary),
        f"({time.time() - t:.0f} s)"])
    per_clip = [{"clip": r.name, "target": r.target, "predicted": r.predicted,
                 "va": [round(float(x), 4) for x in r.va], "frames": r.n_frames,
                 "probs": [round(float(x), 4) for x in r.probs]} for r in results]
    return Section("ceiling", md, {"summary": summary, "clips": per_clip})


def _target(args: argparse.Namespace) -> tuple[str, tuple[float, float], list[str]]:
    """Target category and (v, a) from --emotion or --valence/--arousal (nearest fer category)."""
    from emotalk.emotion import FER_CLASSES, FER_VA, category_va, clamp_to_disc

    notes = []
    if args.emotion:
        name = args.emotion.strip().lower()
        va = category_va(name)
        if name not in FER_CLASSES:
            raise InputError(f"'{name}' has no class in the recogniser; use one of {', '.join(FER_CLASSES)} "
                             "or give --valence/--arousal.")
        return name, va, notes
    if args.valence is None or args.arousal is None:
        raise InputError("--video needs a target: --emotion NAME, or both --valence and --arousal.")
    v, a, note = clamp_to_disc(args.valence, args.arousal)
    if note:
        notes.append(note)
    k = int(np.argmin(((FER_VA - np.array([v, a])) ** 2).sum(1)))
    notes.append(f"target class = nearest category to ({v:.2f}, {a:.2f}): {FER_CLASSES[k]}")
    return FER_CLASSES[k], (v, a), notes


def section_video(args: argparse.Namespace) -> Section | None:
    if args.video is None:
        return None
    from emotalk.emotion import FER_CLASSES, FER_VA
    from emotalk.evaluation.emotion import clip_result, recognise_clip

    target, va, notes = _target(args)
    probs = recognise_clip(args.video, max_frames=args.max_frames)
    ok = np.isfinite(probs).all(1)
    r = clip_result(args.video.name, target, probs, va)
    frame_acc = float((np.argmax(probs[ok], 1) == FER_CLASSES.index(target)).mean()) if ok.any() else 0.0
    fva = probs[ok] @ FER_VA  # [T',2] per-frame (v, a)
    data = {"video": str(args.video), "target": target, "target_va": list(va), "frames": int(len(probs)),
            "frames_with_face": int(ok.sum()), "clip_predicted": r.predicted,
            "clip_correct": r.predicted == target, "frame_accuracy": frame_acc,
            "va_mean": [float(x) for x in r.va], "v_error": float(r.va[0] - va[0]),
            "a_error": float(r.va[1] - va[1]),
            "frame_v_rmse": float(np.sqrt(((fva[:, 0] - va[0]) ** 2).mean())) if ok.any() else None,
            "frame_a_rmse": float(np.sqrt(((fva[:, 1] - va[1]) ** 2).mean())) if ok.any() else None,
            "mean_probs": {c: float(p) for c, p in zip(FER_CLASSES, r.probs)}, "notes": notes}
    args.out.mkdir(parents=True, exist_ok=True)
    csv = args.out / f"{args.video.stem}_frames.csv"
    with open(csv, "w") as f:
        f.write("frame," + ",".join(FER_CLASSES) + ",valence,arousal\n")
        for i, p in enumerate(probs):
            vv = p @ FER_VA
            f.write(f"{i}," + ",".join(f"{x:.4f}" for x in p) + f",{vv[0]:.4f},{vv[1]:.4f}\n")
    md = "\n".join([
        f"### Recogniser on {args.video.name} (target {target}, v={va[0]:.2f}, a={va[1]:.2f})", "",
        "| frames (face) | clip verdict | frame acc | mean v | mean a | V err | A err |",
        "|---|---|---|---|---|---|---|",
        f"| {len(probs)} ({ok.sum()}) | {r.predicted} | {frame_acc:.2f} | {r.va[0]:.2f} | {r.va[1]:.2f} | "
        f"{data['v_error']:+.2f} | {data['a_error']:+.2f} |",
        *[f"- {n}" for n in notes], f"- per-frame probabilities: {csv}"])
    return Section("video", md, data)


def section_generator(args: argparse.Namespace) -> Section | None:
    if args.generator is None:
        return None
    from emotalk.evaluation.emotion import evaluate_generator, generator_markdown

    res = evaluate_generator(args.generator, n_frames=args.frames, settings=_gen_settings(args),
                             progress=_progress)
    md = generator_markdown(res)
    if args.grid:
        _write_grid(args)
        md += f"\n\nGrid: {args.grid}"
    return Section("generator", md, res)


def _gen_settings(args: argparse.Namespace):
    from emotalk.face.generator import GeneratorSettings

    return GeneratorSettings() if args.gain is None else GeneratorSettings(gain=args.gain)


def _write_grid(args: argparse.Namespace) -> None:
    """frames x 9 emotions of the dataset, zoomed on the face (only for identities you may publish)."""
    import cv2

    from emotalk.dataset.format import load_dataset
    from emotalk.face.generator import EmotionalFaceGenerator, emotion_grid

    ds = load_dataset(args.generator)
    pool = ds.train_idx
    idx = pool[np.linspace(0, len(pool) - 1, 3).round().astype(int)]
    grid = emotion_grid(ds.frames(idx), ds.lmk2d[idx], ds.parsing(idx),
                        EmotionalFaceGenerator(settings=_gen_settings(args)), zoom=1.6)
    args.grid.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.grid), grid[..., ::-1])


def section_generator_mead(args: argparse.Namespace) -> Section | None:
    if not args.generator_mead:
        return None
    from emotalk.evaluation.emotion import generator_markdown, mead_generator

    res = mead_generator(args.data, settings=_gen_settings(args), progress=_progress)
    return Section("generator_mead", generator_markdown(res), res)


def section_audio_driven(args: argparse.Namespace) -> Section | None:
    """The audio-driven table (what users see): renders of unheard speech at every category, measured."""
    if args.audio_driven is None:
        return None
    from emotalk.evaluation.audio_driven import measure_renders, to_json
    from emotalk.evaluation.audio_driven_report import report_markdown, write_images
    from emotalk.evaluation.drive_pack import load_drive_pack

    drives = load_drive_pack(args.audio_drives)
    strip = next((d.name for d in drives if d.name.startswith("tts_piper")), drives[0].name)
    res = measure_renders(args.audio_driven, drives, strip_drive=strip, progress=_progress)
    args.out.mkdir(parents=True, exist_ok=True)
    write_images(res, args.out)
    return Section("audio_driven", report_markdown(res), json.loads(to_json(res)))


# Sections in report order; other evaluations (image, lips) append their runner here.
SECTIONS: list[Runner] = [section_ceiling, section_video, section_generator, section_generator_mead,
                          section_audio_driven]


def _header() -> dict:
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    import os

    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit or "unknown",
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}, "
                       f"Python {platform.python_version()}"}


def identity_report_path(args: argparse.Namespace, identity_name: str, dataset_name: str, size: int) -> Path:
    """--out FILE.json as given; a folder (or nothing: out/eval) gets <identity>_<dataset>_<size>.json."""
    name = f"{identity_name}_{dataset_name}_{size}.json"
    if args.out is None:
        return REPO / "out" / "eval" / name
    return args.out if args.out.suffix.lower() == ".json" else args.out / name


def run_identity(args: argparse.Namespace) -> int:
    """IDENTITY --dataset DIR: the whole metric table, printed and written (JSON + markdown)."""
    from emotalk.evaluation.report import evaluate_identity
    from emotalk.evaluation.tables import markdown, write_report

    if args.dataset is None:
        raise InputError(f"Give the identity's dataset: python -m emotalk eval {args.identity} --dataset DIR "
                         "(the folder written by python -m emotalk preprocess).")
    if args.size is not None and (args.size < 16 or args.size % 2):
        raise InputError(f"--size must be an even number of pixels >= 16, got {args.size}.")
    if args.emotion_frames < 1:
        raise InputError("--emotion-frames must be at least 1.")
    t = time.time()
    res = evaluate_identity(args.identity, args.dataset, size=args.size, device=args.device,
                            sections=tuple(args.sections), progress=_progress,
                            emotion_frames=args.emotion_frames, phones=not args.no_phones,
                            sync_clip=args.sync_clip)
    res["wall_s"] = round(time.time() - t, 1)
    head = _header()
    path = identity_report_path(args, res["identity_name"], Path(res["dataset"]).name, res["size"])
    js, md = write_report(res, path, head)
    print(f"_{head['date']}, {head['machine']}, commit {head['commit']}_\n\n{markdown(res)}\n")
    print(f"wrote {js} and {md}", file=sys.stderr)
    return 0


OTHER_SECTIONS = ("ceiling", "video", "generator", "generator_mead", "audio_driven")  # args beside IDENTITY


def run(args: argparse.Namespace) -> int:
    if args.identity is None and args.dataset is not None:
        raise InputError("--dataset goes with an IDENTITY folder: "
                         "python -m emotalk eval IDENTITY --dataset DIR.")
    if args.identity is not None:
        if args.out is not None and args.out.suffix.lower() == ".json" and any(
                getattr(args, k) for k in OTHER_SECTIONS):
            raise InputError("--out FILE.json is for an identity alone; give a folder to combine sections.")
        rc = run_identity(args)
        if not any(getattr(args, k) for k in OTHER_SECTIONS):
            return rc
    if args.out is None or args.out.suffix.lower() == ".json":
        args.out = REPO / "out" / "eval"
    sections = [s for s in (r(args) for r in SECTIONS) if s is not None]
    if not sections:
        raise InputError("Nothing to evaluate: give IDENTITY --dataset DIR, --ceiling, --video FILE, "
                         "--generator DATASET, --generator-mead or --audio-driven RENDERS.")
    head = _header()
    md = "\n\n".join([f"_{head['date']}, {head['machine']}, commit {head['commit']}_"]
                     + [s.markdown for s in sections]) + "\n"
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "eval.md", md)
    doc = {"header": head, **{s.name: s.data for s in sections}}
    atomic_write_text(args.out / "eval.json", json.dumps(doc, indent=1, default=float))
    print(f"wrote {args.out / 'eval.md'} and eval.json", file=sys.stderr)
    return 0
