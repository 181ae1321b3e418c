"""Fit a trained lip-code identity's render-time opening gain, writing a new identity folder.

    python scripts/fit_lip_opening.py DATASET IDENTITY OUT [--device cuda]

DATASET is the identity's own dataset (`python -m emotalk preprocess CLIP --out DATASET`), IDENTITY its
folder (e.g. checkpoints/obama). Identities trained now get the gain when they are trained
(`identity.fit.fit_lip_opening`); this gives one to an identity trained before. `--gain G --why "..."`
sets G instead (chosen on audio-driven renders), keeping the fitted gain and the reason. Only identity.json
changes (settings.model.lip_open_gain and metrics.lip_opening); OUT gets IDENTITY's other files as they
are. Prints the rendered / real opening per candidate gain.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def main() -> int:
    from emotalk.dataset.format import load_dataset
    from emotalk.identity.checkpoint import load_identity, save_identity_variant
    from emotalk.identity.fit import fit_lip_opening
    from emotalk.training.data import dataset_audio_code, load_train_data

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("identity", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--gain", type=float, default=None,
                    help="set this gain instead of the fitted one (the fit is still measured and kept)")
    ap.add_argument("--why", default="", help="with --gain: the reason kept in identity.json")
    args = ap.parse_args()
    if args.gain is not None and not (1.0 <= args.gain <= 3.0 and args.why.strip()):
        print("--gain must be in [1, 3] and come with --why (the reason identity.json keeps)",
              file=sys.stderr)
        return 2
    ident = load_identity(args.identity, args.device)
    if not ident.model.settings.lip_code:
        print(f"{args.identity} is not a lip-code identity: it has no lip code to open", file=sys.stderr)
        return 2
    ds = load_dataset(args.dataset)
    code = dataset_audio_code(ds, ident.meta["model"].get("audio_kind", "whisper"))
    data = load_train_data(ds, ident.size, code, args.device)
    rec = fit_lip_opening(ident.model, data, None if args.gain is None else (args.gain, args.why.strip()))
    print("rendered / real opening per gain: " + ", ".join(f"{g}: {r}" for g, r in rec["ratio"].items()))
    print(f"lip_open_gain {rec['gain']}" + (f" ({rec['note']})" if "note" in rec else "")
          + (f" (fitted {rec['fitted_gain']}; set: {rec['chosen']})" if "chosen" in rec else "")
          + (f"; held-out PSNR {rec['val_psnr']} dB (trained: {ident.meta['metrics'].get('val_psnr')})"
             if "val_psnr" in rec else ""))
    save_identity_variant(args.identity, args.out, ident.model, {"lip_opening": rec}, weights=False)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
