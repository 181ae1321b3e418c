"""Train an identity (a 3D Gaussian talking head) from a preprocessed identity dataset.

Writes an identity folder (identity.json, model.safetensors, body.mp4, thumbnail.png). Training state
is saved every few hundred steps under OUT.work/; after a crash, running the same command again
resumes from it (the folder is removed once the identity is written).
"""

from __future__ import annotations

import argparse

HELP = "train an identity from a dataset (resumes after a crash)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dataset", help="identity dataset folder (from 'python -m emotalk preprocess')")
    p.add_argument("--out", required=True, help="identity folder to write")
    p.add_argument("--preset", choices=["fast", "quality", "test"], default="fast", help="training settings")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--steps", type=int, default=None, help="override the preset's number of steps")
    p.add_argument("--batch", type=int, default=None, help="frames per step (lower it if the GPU runs out)")
    p.add_argument("--size", type=int, default=None,
                   help="train / render side in px (default: the dataset's)")
    p.add_argument("--seed", type=int, default=None, help="random seed")
    p.add_argument("--name", default=None, help="identity name (default: the folder name)")
    p.add_argument("--emotion-steps", type=int, default=None,
                   help="emotion-stage steps (default 3000 on a GPU; 0 on a CPU: emotions render neutral)")


def run(args: argparse.Namespace) -> int:
    import sys
    import time
    from dataclasses import replace
    from pathlib import Path

    import torch

    from emotalk.dataset.format import load_dataset
    from emotalk.errors import InputError
    from emotalk.identity.checkpoint import identity_size_mb
    from emotalk.identity.fit import train_identity
    from emotalk.training.settings import PRESETS, TrainStatus

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but no CUDA GPU is visible. Use --device cpu.")
    s = PRESETS[args.preset]
    over = {k: getattr(args, k) for k in ("steps", "batch", "size", "seed") if getattr(args, k) is not None}
    for k, v in over.items():
        if v <= 0 and k != "seed":
            raise InputError(f"--{k} must be positive, got {v}.")
    s = replace(s, **over)
    ds = load_dataset(args.dataset)
    out = Path(args.out)
    work = out.with_name(out.name + ".work")
    t0 = time.time()

    def status(st: TrainStatus) -> None:
        print(f"\r[{st.stage:5s}] step {st.step}/{st.steps} loss {st.loss:.4f} psnr {st.psnr:5.2f} dB "
              f"gaussians {st.n_gaussians} eta {st.eta_s / 60:4.1f} min", end="", file=sys.stderr, flush=True)

    print(f"training {ds.root} on {device} with preset {args.preset} ({s.steps} steps)", file=sys.stderr)
    if device == "cpu" and (s.size or ds.size) > 128:
        print(f"note: on a CPU, training at {s.size or ds.size}² px takes hours; --size 128 and --steps "
              "1000 give a rough preview identity, a GPU the real one.", file=sys.stderr)
    _, summary, _ = train_identity(ds, s, out, work, device=device, on_status=status, name=args.name,
                                   emotion_steps=args.emotion_steps)
    print(file=sys.stderr)
    import shutil

    shutil.rmtree(work, ignore_errors=True)  # finished: the resumable state is no longer needed
    print(f"wrote {out} ({identity_size_mb(out):.1f} MB) in {(time.time() - t0) / 60:.1f} min: "
          f"held-out PSNR {summary['val_psnr']:.2f} dB, SSIM {summary['val_ssim']:.3f}, "
          f"{summary['n_face']} + {summary['n_mouth']} Gaussians")
    return 0
