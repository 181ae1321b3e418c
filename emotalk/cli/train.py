"""Train an identity (a 3D Gaussian talking head) from a preprocessed identity dataset (or a clip).

Runs a fine-tune recipe through `emotalk.pipeline.fit_identity`, the same code as the app's Fine-tune
tab. Writes an identity folder (identity.json, model.safetensors, body.mp4, thumbnail.png). Training
state is saved every few hundred steps under OUT.work/; after a crash, running the same command again
resumes from it (the folder is removed once the identity is written).
"""

from __future__ import annotations

import argparse

HELP = "train an identity from a dataset (resumes after a crash)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="identity dataset folder (from 'python -m emotalk preprocess'), or a "
                                   "clip, preprocessed first by the preset")
    p.add_argument("--out", required=True, help="identity folder to write")
    p.add_argument("--preset", choices=["fast", "quality", "cpu", "test"], default="fast",
                   help="fine-tune recipe (training/settings.py RECIPES); cpu: a 128 px preview")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--steps", type=int, default=None, help="override the preset's number of steps")
    p.add_argument("--batch", type=int, default=None, help="frames per step (lower it if the GPU runs out)")
    p.add_argument("--size", type=int, default=None,
                   help="train / render side in px (default: the dataset's)")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--name", default=None, help="identity name (default: the folder name)")
    p.add_argument("--emotion-steps", type=int, default=None,
                   help="emotion-stage steps (default: the preset's; fast and quality skip it on a CPU, "
                        "where it takes hours, and emotions render neutral)")
    p.add_argument("--emotion-design", choices=["mouth", "face"], default=None,
                   help="how emotions are drawn: mouth (default) = a warp of the lower face, the emotion "
                        "field moves and shades the rest; face = a warp of the whole face, the field only "
                        "shades (sharper mouths, the person kept; reagan ships with it, obama's happy does "
                        "not read with it)")


def run(args: argparse.Namespace) -> int:
    import shutil
    import sys
    import time
    from pathlib import Path

    import torch

    from emotalk import pipeline
    from emotalk.errors import InputError
    from emotalk.identity.checkpoint import identity_size_mb
    from emotalk.identity.report import fit_report
    from emotalk.training.settings import GPU_RECIPES, RECIPES, TrainStatus, override

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but no CUDA GPU is visible. Use --device cpu.")
    for k in ("steps", "batch", "size", "emotion_steps"):
        v = getattr(args, k)
        if v is not None and (v < 0 or (v == 0 and k != "emotion_steps")):
            raise InputError(f"--{k.replace('_', '-')} must be positive, got {v}.")
    emotion_steps = args.emotion_steps
    on_cpu = not device.startswith("cuda")
    if emotion_steps is None and on_cpu and args.preset in GPU_RECIPES:
        emotion_steps = 0  # hours on a CPU; --preset cpu has a short emotion stage
    recipe = override(RECIPES[args.preset], steps=args.steps, batch=args.batch, size=args.size,
                      seed=args.seed, emotion_steps=emotion_steps, emotion_design=args.emotion_design)
    size = recipe.size
    if Path(args.dataset).is_dir():  # a dataset: checked now, and its own size is the default
        from emotalk.dataset.format import load_dataset

        size = recipe.train.size or load_dataset(args.dataset).size
    out = Path(args.out)
    work = out.with_name(out.name + ".work")
    t0 = time.time()

    def status(st: TrainStatus) -> None:
        print(f"\r[{st.stage:5s}] step {st.step}/{st.steps} loss {st.loss:.4f} psnr {st.psnr:5.2f} dB "
              f"gaussians {st.n_gaussians} eta {st.eta_s / 60:4.1f} min", end="", file=sys.stderr, flush=True)

    def progress(stage: str, frac: float) -> None:
        if not stage.startswith("train"):  # training reports through `status`
            print(f"\r[{100 * frac:5.1f}%] {stage[:70]:<70}", end="", file=sys.stderr, flush=True)

    emotion = f"an emotion stage of {recipe.emotion.steps} steps" if recipe.emotions else "no emotion stage"
    print(f"training {args.dataset} on {device} with preset {args.preset} ({recipe.train.steps} steps, "
          f"{emotion})", file=sys.stderr)
    if on_cpu and size > 128:
        print(f"note: on a CPU, training at {size}² px takes hours; --preset cpu gives a rough preview "
              "identity (128 px, with a short emotion stage), a GPU the real one.", file=sys.stderr)
    res = pipeline.fit_identity(args.dataset, out, recipe, work, device=device, name=args.name,
                                progress=progress, on_status=status)
    print(file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)  # finished: the resumable state is no longer needed
    print(f"wrote {out} ({identity_size_mb(out):.1f} MB) in {(time.time() - t0) / 60:.1f} min")
    for line in fit_report(res.summary, out):
        print(line)
    return 0
