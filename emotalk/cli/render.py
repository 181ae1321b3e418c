"""Render an identity saying a speech recording, with an emotion, into an mp4 (H.264 + AAC)."""

from __future__ import annotations

import argparse

HELP = "render an identity saying an audio file"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("identity", help="identity folder (from 'python -m emotalk train')")
    p.add_argument("--audio", required=True, help="speech recording (wav, mp3, m4a, ...)")
    p.add_argument("--valence", type=float, default=0.0, help="valence in [-1, 1]")
    p.add_argument("--arousal", type=float, default=0.0, help="arousal in [-1, 1]")
    p.add_argument("-o", "--out", required=True, help="mp4 to write")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--size", type=int, default=None, help="output side in px (default: the identity's)")
    p.add_argument("--batch", type=int, default=8, help="frames rendered together")


def run(args: argparse.Namespace) -> int:
    import sys
    import time

    import torch

    from emotalk import media
    from emotalk.errors import InputError
    from emotalk.identity import load_identity
    from emotalk.speech.features import compute_audio_code
    from emotalk.synthesis import synthesize

    for name in ("valence", "arousal"):
        v = getattr(args, name)
        if not -1 <= v <= 1:
            raise InputError(f"--{name} must be in [-1, 1], got {v}.")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    ident = load_identity(args.identity, device=device)
    wav = media.read_audio(args.audio, sr=16000)
    n = max(1, int(round(len(wav) / 16000 * ident.fps)))
    kind = ident.meta["model"].get("audio_kind", "whisper")
    t0 = time.time()
    code = compute_audio_code(wav, 16000, n_frames=n, fps=ident.fps, kind=kind, device=device)

    def prog(stage: str, f: float) -> None:
        print(f"\r{stage} {100 * f:5.1f}%", end="", file=sys.stderr, flush=True)

    synthesize(ident, code, (args.valence, args.arousal), args.out, audio=wav, sr=16000, progress=prog,
               batch=args.batch, size=args.size, device=device)
    dt = time.time() - t0
    print(f"\nwrote {args.out}: {n} frames in {dt:.1f} s ({n / ident.fps / dt:.2f}× real time)",
          file=sys.stderr)
    return 0
