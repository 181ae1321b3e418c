"""Train the lip driver (`emotalk/lips/`): speech audio code -> the lip code, on many speakers.

    .venv/bin/python scripts/train_lip_driver.py [--data ../shared/data] [--cache out/sync_cache]
        [--out emotalk/models/lip_driver.safetensors] [--without obama ...] [--report out/lip_driver.json]

1. Every clip in DATA/clips is tracked at 25 fps (landmarks + blendshapes; the cache of
   scripts/train_syncnet.py is reused, through emotalk.cli.bench.sync_clips) and its lip parameters
   z-scored per clip.
2. Its AV offset is measured (`emotalk.lipsync.estimate_sync`); a clip with a clear peak is moved into
   sync, one with no clear peak away from 0 +- 1 is left out (its true timing is unknown).
3. Each clip's speech is also perturbed (pitch and formants x1.25 and x0.8, same timing), and every
   version is turned into the Whisper audio code the renderer gets.
4. Leave-one-clip-out folds on the longer clips report the held-out correlation per parameter and the
   spread of the held-out predictions; the gain is 1 / that spread. The final driver is fit on every
   clip not named in --without (e.g. --without obama to benchmark an obama identity fairly).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from emotalk.avsync import lipsync
from emotalk.cli.bench import sync_clips as ts
from emotalk.lips import LIP_NAMES, LipDriver, LipStats, lip_params, save_driver

REPO = Path(__file__).resolve().parents[1]  # the checkout: default paths only

FPS = 25.0
TONES = (1.0, 1.25, 0.8)  # voice versions of each clip: original, then pitch+formants changed
FOLDS = ("obama_address", "reagan_address", "macron_address", "german_anchor", "obama_styletalk",
         "retalking_face2")  # clips held out in turn for the report


def clip_rows(data: Path, cache: Path) -> list[dict]:
    """Per clip: name, lip code [T,M], synced 16 kHz speech, measured offset (or skipped with a reason)."""
    from emotalk.face.tracking import BLENDSHAPE_NAMES, fill_gaps

    rows = []
    for path in ts.clips(data):
        c = ts.load_clip(path, cache)  # tracks and caches when needed
        z = np.load(cache / f"{path.stem}.npz")
        found = z["found"]
        if found.mean() < 0.9:
            print(f"  skip {path.stem}: face in {100 * found.mean():.0f} % of frames")
            continue
        raw = lip_params(fill_gaps(z["lmk"], found), fill_gaps(z["bs"], found), BLENDSHAPE_NAMES)
        est = lipsync.estimate_sync(c["mouth"], c["wav"], c["phones"] or None)
        if not est.clear and abs(est.offset) > 1:
            print(f"  skip {path.stem}: no clear AV offset (peak at {est.offset:+d})")
            continue
        off = est.offset if est.clear else 0
        rows.append({"name": path.stem, "code_z": LipStats.of(raw).code(raw),
                     "wav": ts.shift_wav(c["wav"], -off), "offset": off})
    return rows


def audio_codes(rows: list[dict], cache: Path) -> None:
    """Whisper audio code [T,W,C] (float16) of every voice version of every clip, cached by offset."""
    from emotalk.speech.features import compute_audio_code
    from emotalk.speech.voices import VOICES, perturb

    base = VOICES["orig-tone125"]
    for r in rows:
        T = len(r["code_z"])
        r["codes"] = []
        for tone in TONES:
            f = cache / f"{r['name']}.lipcode_t{tone:.2f}_o{r['offset']:+d}.npy"
            if not f.is_file():
                wav = r["wav"] if tone == 1.0 else perturb(r["wav"], replace(base, tone=tone, rate=0.0))
                code = compute_audio_code(wav, 16000, n_frames=T, fps=FPS, kind="whisper")
                np.save(f, code.astype(np.float16))
            r["codes"].append(np.load(f))


def fit(rows: list[dict], epochs: int = 10, seed: int = 0, log: bool = False) -> LipDriver:
    """A driver fit on rows (every voice version), gain 1."""
    torch.manual_seed(seed)
    X = np.concatenate([c for r in rows for c in r["codes"]])  # [N,W,C] float16
    Y = np.concatenate([r["code_z"] for r in rows for _ in r["codes"]])  # [N,M]
    W, C = X.shape[1:]
    d = LipDriver(W, C)
    flat = X.reshape(-1, C).astype(np.float32)
    d.in_mean.copy_(torch.as_tensor(flat.mean(0)))
    d.in_std.copy_(torch.as_tensor(flat.std(0) + 1e-3))
    del flat
    Xt, Yt = torch.as_tensor(X), torch.as_tensor(Y)
    opt = torch.optim.AdamW(d.parameters(), lr=2e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    g = torch.Generator().manual_seed(seed)
    d.train()
    for ep in range(epochs):
        perm = torch.randperm(len(Xt), generator=g)
        tot = 0.0
        for i in range(0, len(perm), 256):
            b = perm[i:i + 256]
            loss = torch.nn.functional.mse_loss(d.raw(Xt[b].float()), Yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += loss.item() * len(b)
        sched.step()
        if log and (ep + 1) % 5 == 0:
            print(f"    epoch {ep + 1}: train mse {tot / len(perm):.3f}", flush=True)
    return d.eval()


def predict(d: LipDriver, code: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        parts = [d.raw(torch.as_tensor(code[i:i + 512]).float()) for i in range(0, len(code), 512)]
    return torch.cat(parts).numpy()


def fold_report(rows: list[dict], held: dict, d: LipDriver) -> dict:
    """Held-out scores of one clip: per-parameter correlation and prediction spread (original voice)."""
    p = predict(d, held["codes"][0])
    y = held["code_z"]
    corr = {k: round(float(np.corrcoef(p[:, i], y[:, i])[0, 1]), 3) for i, k in enumerate(LIP_NAMES)}
    from emotalk.avsync.syncnet import bandpass

    gap_bp = float(np.corrcoef(bandpass(p[:, 0], FPS), bandpass(y[:, 0], FPS))[0, 1])
    return {"corr": corr, "gap_corr_bandpassed": round(gap_bp, 3),
            "pred_std": [round(float(s), 3) for s in p.std(0)], "frames": len(y)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=REPO / "out" / "sync_cache")
    ap.add_argument("--out", type=Path, default=None, help="driver file (default: the shipped one)")
    ap.add_argument("--without", nargs="*", default=[], help="clip name prefixes left out of the final fit")
    ap.add_argument("--folds", nargs="*", default=list(FOLDS), help="clips held out in turn for the report")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--report", type=Path, default=REPO / "out" / "lip_driver.json")
    args = ap.parse_args()
    if not (args.data / "clips").is_dir():
        print(f"no clips under {args.data / 'clips'}: pass --data", file=sys.stderr)
        return 1
    t0 = time.time()
    print("tracking / loading clips")
    rows = clip_rows(args.data, args.cache)
    print("audio codes (3 voice versions per clip)")
    audio_codes(rows, args.cache)
    print(f"{len(rows)} clips, {sum(len(r['code_z']) for r in rows)} frames, {time.time() - t0:.0f} s")
    folds = {}
    for name in args.folds:
        held = next((r for r in rows if r["name"].startswith(name)), None)
        if held is None:
            continue
        spk = name.split("_")[0]  # leave the whole speaker out (obama has two clips)
        d = fit([r for r in rows if not r["name"].startswith(spk)], args.epochs)
        folds[held["name"]] = fold_report(rows, held, d)
        print(f"  held out {held['name']}: {folds[held['name']]}", flush=True)
    spread = np.mean([f["pred_std"] for f in folds.values()], 0) if folds else np.ones(len(LIP_NAMES))
    gain = np.clip(1.0 / np.maximum(spread, 1e-3), 1.0, 3.0)
    keep = [r for r in rows if not r["name"].startswith(tuple(args.without))]
    print(f"final fit on {len(keep)} clips (without {args.without or 'none'}); gain {np.round(gain, 2)}")
    d = fit(keep, args.epochs, log=True)
    d.gain.copy_(torch.as_tensor(gain, dtype=torch.float32))
    info = {"clips": [r["name"] for r in keep],
            "offsets": {r["name"]: r["offset"] for r in rows if r["offset"]},
            "voices": list(TONES), "held_out": folds, "gain": [round(float(x), 3) for x in gain],
            "data": "shared/data/clips (see MANIFEST.md)"}
    out = args.out or (REPO / "emotalk" / "models" / "lip_driver.safetensors")
    save_driver(d, out, **info)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(info, indent=1))
    print(f"saved {out} ({out.stat().st_size // 1024} kB); report {args.report}; {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
