"""Train the sequence lip driver (`emotalk.lips.sequence_driver`) on many speakers; whole-speaker folds.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/train_sequence_driver.py [--data ../shared/data]
        [--cache out/phone_lips_cache] [--own-cache out/seqdriver/cache] [--out out/seqdriver]
        [--folds 5] [--steps 400] [--stage codes|all] [--device cpu]

1. Clips: DATA/clips (+ grid; offsets and the usable list from the shipped LipDriver's metadata) and every
   DATA/clips_more clip whose audio code scripts/build_phone_lips.py cached (its file name holds the measured
   AV offset). Tracks (landmarks, blendshapes, speech) come from that script's cache; audio codes missing
   there are computed once into --own-cache. Lip code = lip parameters z-scored per clip.
2. Speakers (obama's two clips are one speaker; all GRID clips one group) go into --folds whole-speaker folds;
   fold 0 holds the 8 clips_more speakers build_phone_lips.py held out, so its numbers compare with that.
3. Per fold, on the training speakers only: the SequenceDriver (position + velocity + closure loss,
   silence pulled to the clip's rest) and, for comparison, a per-frame LipDriver fit as
   scripts/train_lip_driver.py does (every voice version). Each held-out clip is predicted by the models of
   the fold that never saw its speaker.
4. Report (pooled over held-out clips): per-parameter correlation, spread (pred std / true std, before gain),
   open-vowel 95th-percentile gap ratio (with a gain cross-fitted on the other folds); the shipped LipDriver
   on the clips_more speakers (it never saw them). The final sequence driver is fit on every speaker, its gain
   = 1 / mean held-out spread, and saved to --out (report.json beside it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from emotalk.lips import LIP_NAMES, LipDriver, LipStats, driver_info, lip_params, save_driver
from emotalk.lips.sequence_driver import (
    LossWeights,
    SequenceDriver,
    SequenceSettings,
    closure_mask,
    crops,
    predict_clip,
    rest_targets,
    save_sequence_driver,
    sequence_loss,
)

REPO = Path(__file__).resolve().parents[1]  # the checkout: default paths only
FPS = 25.0
FOLD0 = ("hdtf_rdradio2", "hdtf_edmarkey", "trump_address", "styletalk_kristinoem", "latentsync_youngman",
         "vox2_00104", "kim_presenter", "retalking_woman")  # build_phone_lips.HELD_OUT
CLIPS_LANG = {"macron": "fr", "german": "de"}


# --- data ----------------------------------------------------------------------------------------------

def clip_specs(data: Path, cache: Path) -> list[dict]:
    """name, path, speaker, language, set, AV offset (frames) of every usable clip."""
    info = driver_info()
    offs = info.get("offsets", {})
    out = []
    for name in info["clips"]:  # the shipped driver's usable clips of DATA/clips (+ grid)
        grid = not (data / "clips" / f"{name}.mp4").is_file()
        first = name.split("_")[0]
        spk = "grid" if grid else ("_".join(name.split("_")[:2]) if first in ("hdtf", "retalking") else first)
        out.append({"name": name, "speaker": spk, "lang": CLIPS_LANG.get(first, "en"), "set": "clips",
                    "offset": int(offs.get(name, 0))})
    for p in sorted((data / "clips_more").glob("*.mp4")) + sorted((data / "clips_more").glob("*.mkv")):
        codes = sorted(cache.glob(f"{p.stem}.code_o*.npy"))
        if not codes:
            continue  # build_phone_lips.py found no clear AV offset: its timing is unknown
        parts = p.stem.split("_")
        i = next(k for k, x in enumerate(parts) if k > 0 and len(x) == 2 and x.isalpha())
        offsets = [int(c.name.split(".code_o")[1][:-4]) for c in codes]
        out.append({"name": p.stem, "speaker": "_".join(parts[:i]), "lang": parts[i], "set": "more",
                    "offset": offsets[0], "offsets": offsets})
    return out


def load_rows(specs: list[dict], cache: Path, own: Path, tones: tuple[float, ...] = ()) -> list[dict]:
    """Lip code [T,M], raw params, audio code [T,W,C] f16 (+ one per perturbed voice in `tones`), rest weight
    [T], phones (video time) per clip."""
    from dataclasses import replace

    from emotalk.avsync.lipsync import estimate_sync
    from emotalk.cli.bench.sync_clips import shift_wav
    from emotalk.face.landmarks import mouth_opening
    from emotalk.face.tracking import BLENDSHAPE_NAMES, fill_gaps
    from emotalk.lips import phones as pl
    from emotalk.speech.align import Phone
    from emotalk.speech.features import compute_audio_code
    from emotalk.speech.voices import VOICES, perturb

    own.mkdir(parents=True, exist_ok=True)
    rows = []
    for s in specs:
        z = np.load(cache / f"{s['name']}.npz")
        lmk, bs = fill_gaps(z["lmk"], z["found"]), fill_gaps(z["bs"], z["found"])
        raw = lip_params(lmk, bs, BLENDSHAPE_NAMES)
        T, wav = len(raw), z["wav"]
        pf = cache / f"{s['name']}.phones.json"
        phones = [Phone(**p) for p in json.loads(pf.read_text())["phones"]] if pf.is_file() else []
        off = s["offset"]
        if len(s.get("offsets", [])) > 1:  # several cached codes: measure which offset is the clip's
            est = estimate_sync(mouth_opening(lmk), wav, phones or None)
            off = est.offset if est.offset in s["offsets"] else off
        f = cache / f"{s['name']}.code_o{off:+d}.npy"
        if not f.is_file():
            f = own / f.name
            if not f.is_file():
                code = compute_audio_code(shift_wav(wav, -off), 16000, n_frames=T, fps=FPS, kind="whisper")
                np.save(f, code.astype(np.float16))
        synced = shift_wav(wav, -off)
        versions = [np.load(f)]
        for tone in tones:  # perturbed voices (pitch + formants), same timing: training input only
            ft = own / f"{s['name']}.code_t{tone:.2f}_o{off:+d}.npy"
            if not ft.is_file():
                pw = perturb(synced, replace(VOICES["orig-tone125"], tone=tone, rate=0.0))
                pc = compute_audio_code(pw, 16000, n_frames=T, fps=FPS, kind="whisper")
                np.save(ft, pc.astype(np.float16))
            versions.append(np.load(ft))
        level = pl.speech_level(synced, T, FPS)
        rest_w = pl.rest_weight(pl.pauses_from_energy(level, FPS), T, FPS)
        zc = LipStats.of(raw).code(raw)
        rows.append({**s, "offset": off, "raw": raw, "code_z": zc, "code": versions[0], "codes": versions,
                     "rest_w": rest_w,
                     "target": rest_targets(zc, rest_w), "closure": closure_mask(zc[:, 0]),
                     "phones": [(p.phone, p.start - off / FPS, p.end - off / FPS) for p in phones]})
        print(f"  {s['name']}: {T} frames, speaker {s['speaker']} ({s['lang']}), offset {off:+d}, "
              f"rest {rest_w.mean():.2f}", flush=True)
    return rows


def speaker_folds(rows: list[dict], k: int) -> list[set]:
    """k sets of whole speakers: fold 0 = FOLD0's speakers, the rest dealt out by total frames."""
    spk: dict[str, int] = {}
    for r in rows:
        spk[r["speaker"]] = spk.get(r["speaker"], 0) + len(r["code_z"])
    folds = [{s for s in spk if s.startswith(FOLD0)}] + [set() for _ in range(k - 1)]
    size = [sum(spk[s] for s in folds[0])] + [0] * (k - 1)
    for s in sorted((s for s in spk if s not in folds[0]), key=lambda s: -spk[s]):
        i = 1 + int(np.argmin(size[1:]))
        folds[i].add(s)
        size[i] += spk[s]
    return folds


# --- fitting -------------------------------------------------------------------------------------------

def input_stats(rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    C = rows[0]["code"].shape[-1]
    flat = np.concatenate([r["code"][:, ::4].reshape(-1, C) for r in rows]).astype(np.float32)
    return torch.as_tensor(flat.mean(0)), torch.as_tensor(flat.std(0) + 1e-3)


def fit_sequence(rows: list[dict], steps: int, seed: int = 0, device: str = "cpu", length: int = 64,
                 batch: int = 16, weights: LossWeights = LossWeights(),
                 settings: SequenceSettings = SequenceSettings(), log: bool = False) -> SequenceDriver:
    """A SequenceDriver fit on contiguous crops of rows (clips drawn by length); loss on the crop's inner
    frames only (the outer receptive_field//2 frames are context)."""
    torch.manual_seed(seed)
    W, C = rows[0]["code"].shape[1:]
    d = SequenceDriver(W, C, settings=settings)
    d.in_mean.copy_(input_stats(rows)[0])
    d.in_std.copy_(input_stats(rows)[1])
    d.to(device)
    m = d.receptive_field // 2
    g = torch.Generator().manual_seed(seed)
    p = torch.as_tensor([len(r["code_z"]) for r in rows], dtype=torch.float)
    opt = torch.optim.AdamW(d.parameters(), lr=2e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps, pct_start=0.1)
    d.train()
    L = length + 2 * m
    for it in range(steps):
        pick = torch.multinomial(p, batch, replacement=True, generator=g).tolist()
        Lb = min(L, min(len(rows[i]["code_z"]) for i in pick))
        xs, ys, cs = [], [], []
        for i in pick:
            r = rows[i]
            (a, b), = crops(len(r["code_z"]), Lb, 1, g)
            v = int(torch.randint(0, len(r["codes"]), (1,), generator=g))  # a random voice version
            xs.append(torch.as_tensor(r["codes"][v][a:b]))
            ys.append(torch.as_tensor(r["target"][a:b]))
            cs.append(torch.as_tensor(r["closure"][a:b]))
        x, y, c = (torch.stack(v).to(device) for v in (xs, ys, cs))
        inner = slice(m, Lb - m) if Lb > 2 * m + 1 else slice(0, Lb)
        loss = sequence_loss(d.raw(x)[:, inner], y[:, inner], c[:, inner], weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if log and (it + 1) % 200 == 0:
            print(f"    step {it + 1}: loss {loss.item():.3f}", flush=True)
    return d.cpu().eval()


def fit_frame(rows: list[dict], epochs: int = 10, seed: int = 0) -> LipDriver:
    """The per-frame LipDriver as scripts/train_lip_driver.py fits it (plain MSE, every voice version)."""
    torch.manual_seed(seed)
    X = torch.as_tensor(np.concatenate([c for r in rows for c in r["codes"]]))
    Y = torch.as_tensor(np.concatenate([r["code_z"] for r in rows for _ in r["codes"]]))
    d = LipDriver(*X.shape[1:])
    d.in_mean.copy_(input_stats(rows)[0])
    d.in_std.copy_(input_stats(rows)[1])
    opt = torch.optim.AdamW(d.parameters(), lr=2e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    g = torch.Generator().manual_seed(seed)
    d.train()
    for _ in range(epochs):
        perm = torch.randperm(len(X), generator=g)
        for i in range(0, len(perm), 256):
            b = perm[i:i + 256]
            loss = torch.nn.functional.mse_loss(d.raw(X[b].float()), Y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return d.eval()


# --- scores --------------------------------------------------------------------------------------------

def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 1e-9 and b.std() > 1e-9 else 0.0


def p95_open(r: dict, pred: np.ndarray) -> float:
    """Open-vowel 95th-percentile gap of pred [T,M] (the clip's raw units) over the truth's; nan without
    phones."""
    from emotalk.avsync.lipsync import OPEN_VOWELS

    if not r["phones"]:
        return float("nan")
    st = LipStats.of(r["raw"])
    t = np.arange(len(pred)) / FPS
    ov = np.zeros(len(pred), bool)
    for n, s, e in r["phones"]:
        if n in OPEN_VOWELS:
            ov |= (t >= s) & (t < e)
    if not ov.any():
        return float("nan")
    def p95(z):
        return float(np.percentile(z[ov, 0] * st.std[0] + st.mean[0], 95))
    return p95(pred) / p95(r["code_z"])


def summary(rows: list[dict], key: str, gain: np.ndarray | None = None) -> dict:
    """Pooled correlation and spread per parameter, mean per-clip correlation, median p95-open ratio."""
    y = np.concatenate([r["code_z"] for r in rows])
    p = np.concatenate([r[key] for r in rows])
    out = {"pooled_corr": {k: round(corr(p[:, i], y[:, i]), 3) for i, k in enumerate(LIP_NAMES)},
           "mean_clip_corr": {k: round(float(np.mean([corr(r[key][:, i], r["code_z"][:, i])
                                                      for r in rows])), 3) for i, k in enumerate(LIP_NAMES)},
           "spread": {k: round(float(p[:, i].std() / y[:, i].std()), 3) for i, k in enumerate(LIP_NAMES)},
           "clips": len(rows), "frames": len(y)}
    g = np.ones(len(LIP_NAMES)) if gain is None else gain
    ratios = [p95_open(r, r[key] * (r.get(key + "_gain", g))) for r in rows]
    ok = np.isfinite(ratios).any()
    out["p95_open_ratio_median"] = round(float(np.nanmedian(ratios)), 3) if ok else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=REPO / "out" / "phone_lips_cache")
    ap.add_argument("--own-cache", type=Path, default=REPO / "out" / "seqdriver" / "cache")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "seqdriver")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--stage", choices=("codes", "all"), default="all")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--tones", type=float, nargs="*", default=[],
                    help="perturbed voice versions for training, e.g. 1.25 0.8 (as train_lip_driver.py)")
    ap.add_argument("--no-final", action="store_true", help="folds and report only, no final fit")
    ap.add_argument("--save-frame", action="store_true",
                    help="also fit the per-frame LipDriver on every clip, save lip_driver_frame.safetensors")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dilations", type=int, nargs="+", default=list(SequenceSettings.dilations))
    ap.add_argument("--dropout", type=float, default=SequenceSettings.dropout)
    ap.add_argument("--frame-dim", type=int, default=SequenceSettings.frame_dim)
    ap.add_argument("--velocity", type=float, default=LossWeights.velocity)
    ap.add_argument("--closure", type=float, default=LossWeights.closure)
    args = ap.parse_args()
    shape = SequenceSettings(frame_dim=args.frame_dim, dropout=args.dropout, dilations=tuple(args.dilations))
    lw = LossWeights(velocity=args.velocity, closure=args.closure)
    if not (args.data / "clips_more").is_dir() or not args.cache.is_dir():
        print(f"need {args.data}/clips_more and the cache {args.cache} (scripts/build_phone_lips.py "
              f"--stage cache)", file=sys.stderr)
        return 1
    t0 = time.time()
    rows = load_rows(clip_specs(args.data, args.cache), args.cache, args.own_cache, tuple(args.tones))
    print(f"{len(rows)} clips, {len({r['speaker'] for r in rows})} speakers, "
          f"{sum(len(r['code_z']) for r in rows)} frames, {time.time() - t0:.0f} s", flush=True)
    if args.stage == "codes":
        return 0
    folds = speaker_folds(rows, args.folds)
    fold_of = {s: i for i, f in enumerate(folds) for s in f}
    spreads = {"seq": [], "frame": []}
    for i, held in enumerate(folds):
        train = [r for r in rows if r["speaker"] not in held]
        test = [r for r in rows if r["speaker"] in held]
        t1 = time.time()
        seq = fit_sequence(train, args.steps, args.seed, args.device, weights=lw, settings=shape)
        frm = fit_frame(train, seed=args.seed)
        for r in test:
            r["seq"], r["frame"] = predict_clip(seq, r["code"]), predict_clip(frm, r["code"])
        for k in spreads:
            p = np.concatenate([r[k] for r in test])
            y = np.concatenate([r["code_z"] for r in test])
            spreads[k].append(p.std(0) / y.std(0))
        s = summary(test, "seq")
        print(f"fold {i} ({time.time() - t1:.0f} s) held out {sorted(held)}\n  seq   {s['pooled_corr']} "
              f"spread {s['spread']}\n  frame {summary(test, 'frame')['pooled_corr']}", flush=True)
    for r in rows:  # gains cross-fitted: from the held-out spreads of the other folds
        f = fold_of[r["speaker"]]
        for k in spreads:
            others = np.mean([sp for j, sp in enumerate(spreads[k]) if j != f], 0)
            r[k + "_gain"] = np.clip(1.0 / np.maximum(others, 1e-3), 1.0, 3.0)
    from emotalk.lips import DRIVER
    from emotalk.lips.sequence_driver import load_any_driver

    shipped = load_any_driver(DRIVER)
    more = [r for r in rows if r["set"] == "more"]
    for r in more:
        r["shipped"] = predict_clip(shipped, r["code"]) / shipped.gain.numpy()  # before its gain
        r["shipped_gain"] = shipped.gain.numpy()
    report = {"folds": [sorted(f) for f in folds], "steps": args.steps, "tones": args.tones,
              "settings": shape.__dict__,
              "loss": lw.__dict__, "all": {}, "clips_more": {},
              "fold0": {}, "non_english": {}}
    groups = {"all": rows, "clips_more": more, "fold0": [r for r in rows if fold_of[r["speaker"]] == 0],
              "non_english": [r for r in rows if r["lang"] != "en"]}
    for g, rs in groups.items():
        for k in ("seq", "frame", "shipped"):
            if all(k in r for r in rs):
                report[g][k] = summary(rs, k)
    report["per_clip"] = {r["name"]: {k: [round(corr(r[k][:, i], r["code_z"][:, i]), 3) for i in range(6)]
                                      for k in ("seq", "frame")} for r in rows}
    for g in groups:
        for k, v in report[g].items():
            print(f"{g:12s} {k:8s} corr {v['pooled_corr']} spread {v['spread']} p95-open "
                  f"{v['p95_open_ratio_median']}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    np.savez_compressed(args.out / "heldout.npz", **{f"{r['name']}.{k}": r[k] for r in rows
                                                    for k in ("code_z", "seq", "frame", "rest_w")})
    if args.no_final:
        return 0
    gain = np.clip(1.0 / np.maximum(np.mean(spreads["seq"], 0), 1e-3), 1.0, 3.0)
    print(f"final fit on {len(rows)} clips; gain {np.round(gain, 2)}", flush=True)
    final = fit_sequence(rows, args.steps, args.seed, args.device, weights=lw, settings=shape, log=True)
    final.gain.copy_(torch.as_tensor(gain, dtype=torch.float32))
    args.out.mkdir(parents=True, exist_ok=True)
    info = {"clips": [r["name"] for r in rows], "offsets": {r["name"]: r["offset"] for r in rows},
            "gain": [round(float(x), 3) for x in gain],
            "held_out": {g: report[g].get("seq", {}).get("pooled_corr") for g in groups},
            "data": "shared/data/clips + clips_more (see their MANIFEST.md); z-scored per clip"}
    path = save_sequence_driver(final, args.out / "lip_driver_seq.safetensors", **info)
    (args.out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    if args.save_frame:  # the per-frame driver on the same speakers, its gain from its own held-out spread
        fg = np.clip(1.0 / np.maximum(np.mean(spreads["frame"], 0), 1e-3), 1.0, 3.0)
        frm = fit_frame(rows, seed=args.seed)
        frm.gain.copy_(torch.as_tensor(fg, dtype=torch.float32))
        fi = {**info, "gain": [round(float(x), 3) for x in fg],
              "held_out": {g: report[g].get("frame", {}).get("pooled_corr") for g in groups}}
        fp = save_driver(frm, args.out / "lip_driver_frame.safetensors", **fi)
        print(f"saved {fp} ({fp.stat().st_size // 1024} kB); gain {np.round(fg, 2)}")
    print(f"saved {path} ({path.stat().st_size // 1024} kB), report {args.out / 'report.json'}; "
          f"{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
