"""Build the cross-speaker per-phone lip table (`emotalk/models/phone_lips.json`); measure phone-aware lips.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/build_phone_lips.py [--data ../shared/data]
        [--cache out/phone_lips_cache] [--out emotalk/models/phone_lips.json]
        [--report out/phone_lips/report.json]
        [--stage cache|all]
    OMP_NUM_THREADS=1 .venv/bin/python scripts/build_phone_lips.py --identity checkpoints/obama --dataset DS
        (one identity's own table, IDENTITY/phone_lips.json, from its dataset: emotalk.lips.own_phones)

1. Every clip of DATA/clips (mp4 + grid) and DATA/clips_more is tracked at 25 fps (FaceLandmarker landmarks +
   blendshapes; cached), its lip parameters (`emotalk.lips.lip_params`) z-scored by the clip's own mean/std
   (an identity's units: an identity is one clip). English clips get phone timings (Whisper transcript +
   pocketsphinx alignment, `emotalk.avsync.lipsync.phones_for`; cached); the AV offset of each clip is
   measured and phones are moved into video time (a clip with no clear offset away from 0 +- 1 is left out).
2. Per phone (ARPAbet, stress removed): mean z-code [M] at the phone's centre, its spread and count; the rest
   pose: mean code inside pauses >= 0.3 s. Whole speakers of clips_more are held out (`HELD_OUT`).
3. On the held-out speakers (the shipped LipDriver never saw any clips_more speaker): per-parameter
   correlation
   with the tracked code of (a) the driver alone, (b) phones only, (c) the phones + driver blend
   (`emotalk.lips.phones`), phone contrast of the gap and its open-vowel 95th percentile, and the pause rest
   on non-English clips (energy pauses). Blend weights are chosen by speaker folds on the training speakers.

The cache holds data derived from the shared clips: never commit it (out/ is ignored).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]  # the checkout: default paths only
FPS = 25.0
MAX_SIDE = 512  # frames are decoded at most this large for tracking
# whole clips_more speakers held out of the table (and of the blend tuning): sexes, sizes, sources mixed
HELD_OUT = ("hdtf_rdradio2", "hdtf_edmarkey", "trump_address", "styletalk_kristinoem", "latentsync_youngman",
            "vox2_00104", "kim_presenter", "retalking_woman")
# other-language clips for the energy-pause rest check
NON_ENGLISH_HELD = ("latentsync_woman_ru", "latentsync_man_pt", "joygen_woman_zh", "liveportrait_youngman_zh")
CLIPS_LANG = {"macron": "fr", "german": "de"}  # clips/ prefixes in other languages


# --- clips ---------------------------------------------------------------------------------------------

def clip_list(data: Path) -> list[dict]:
    """Every clip: path, name, speaker (hold-out unit), language, set ("clips"/"grid"/"more")."""
    out = []
    for p in sorted((data / "clips").glob("*.mp4")):
        first = p.stem.split("_")[0]
        spk = "_".join(p.stem.split("_")[:2]) if first in ("hdtf", "retalking") else first
        out.append({"path": p, "name": p.stem, "speaker": spk, "lang": CLIPS_LANG.get(first, "en"),
                    "set": "clips"})
    for p in sorted((data / "clips" / "grid").glob("*.mpg")):
        out.append({"path": p, "name": p.stem, "speaker": "grid_" + p.stem, "lang": "en", "set": "grid"})
    for p in sorted((data / "clips_more").glob("*.mp4")) + sorted((data / "clips_more").glob("*.mkv")):
        parts = p.stem.split("_")  # source_speaker[_more]_language_...
        i = next(k for k, x in enumerate(parts) if k > 0 and len(x) == 2 and x.isalpha())
        out.append({"path": p, "name": p.stem, "speaker": "_".join(parts[:i]), "lang": parts[i],
                    "set": "more"})
    return out


def track_cached(c: dict, cache: Path) -> dict:
    """Landmarks, found, blendshapes and 16 kHz speech of a clip (tracked once, then from the cache)."""
    from emotalk import media
    from emotalk.media import SR

    f = cache / f"{c['name']}.npz"
    if not f.is_file():
        from emotalk.face.tracking import track_video
        from emotalk.folders import atomic_write_bytes

        info = media.probe(c["path"])
        size = None
        if max(info.width, info.height) > MAX_SIDE:
            k = MAX_SIDE / max(info.width, info.height)
            size = (2 * round(info.width * k / 2), 2 * round(info.height * k / 2))
        tr = track_video(media.iter_frames(c["path"], fps=FPS, size=size), fps=FPS)
        wav = media.read_audio(c["path"], SR)
        import io

        buf = io.BytesIO()
        np.savez_compressed(buf, lmk=tr.lmk, found=tr.found, bs=tr.blendshapes, wav=wav.astype(np.float32))
        atomic_write_bytes(f, buf.getvalue())
    z = np.load(f)
    return {k: z[k] for k in ("lmk", "found", "bs", "wav")}


def phones_cached(c: dict, wav: np.ndarray, cache: Path) -> tuple[list, str]:
    """Phone timings (audio time) of an English clip, [] for other languages; cached as JSON."""
    from emotalk.avsync.lipsync import phones_for
    from emotalk.speech.align import Phone

    if c["lang"] != "en":
        return [], ""
    f = cache / f"{c['name']}.phones.json"
    if not f.is_file():
        ph, text, notes = phones_for(wav)
        f.write_text(json.dumps({"text": text, "notes": notes, "phones": [p.__dict__ for p in ph]}))
    d = json.loads(f.read_text())
    return [Phone(**p) for p in d["phones"]], d["text"]


def audio_code_cached(c: dict, wav: np.ndarray, T: int, offset: int, cache: Path) -> np.ndarray:
    """Whisper audio code [T,W,C] (float16) of the clip's speech moved into sync by `offset` frames."""
    from emotalk.cli.bench.sync_clips import shift_wav
    from emotalk.speech.features import compute_audio_code

    f = cache / f"{c['name']}.code_o{offset:+d}.npy"
    if not f.is_file():
        code = compute_audio_code(shift_wav(wav, -offset), 16000, n_frames=T, fps=FPS, kind="whisper")
        np.save(f, code.astype(np.float16))
    return np.load(f)


def load_all(data: Path, cache: Path, need_code: bool) -> list[dict]:
    """Every usable clip: z-code [T,M], phones in video time, offset, speech; audio codes of clips_more."""
    from emotalk.avsync.lipsync import estimate_sync
    from emotalk.face.landmarks import mouth_opening
    from emotalk.face.tracking import BLENDSHAPE_NAMES, fill_gaps
    from emotalk.lips import LipStats, lip_params

    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for c in clip_list(data):
        t0 = time.time()
        z = track_cached(c, cache)
        if z["found"].mean() < 0.9:
            print(f"  skip {c['name']}: face in {100 * z['found'].mean():.0f} % of frames", flush=True)
            continue
        lmk, bs = fill_gaps(z["lmk"], z["found"]), fill_gaps(z["bs"], z["found"])
        raw = lip_params(lmk, bs, BLENDSHAPE_NAMES)
        phones, text = phones_cached(c, z["wav"], cache)
        est = estimate_sync(mouth_opening(lmk), z["wav"], phones or None)
        usable = est.clear or abs(est.offset) <= 1
        off = est.offset if est.clear else 0
        row = {**c, "raw": raw, "code_z": LipStats.of(raw).code(raw), "wav": z["wav"], "offset": off,
               "usable": usable, "text": text,
               "phones": [(p.phone, p.start - off / FPS, p.end - off / FPS) for p in phones]}
        if need_code and c["set"] == "more" and usable:
            row["code"] = audio_code_cached(c, z["wav"], len(raw), off, cache)
        rows.append(row)
        print(f"  {c['name']}: {len(raw)} frames, {len(phones)} phones, offset {est.offset:+d}"
              f"{'' if est.clear else ' (not clear)'}{'' if usable else ' -> left out'}, "
              f"{time.time() - t0:.0f} s",
              flush=True)
    return rows


# --- the table ------------------------------------------------------------------------------------------

def at(code: np.ndarray, t: float) -> np.ndarray:
    """Code [T,M] linearly interpolated at time t (s)."""
    x = np.clip(t * FPS, 0, len(code) - 1)
    i = int(np.floor(x))
    j = min(i + 1, len(code) - 1)
    return (1 - (x - i)) * code[i] + (x - i) * code[j]


def build_table(rows: list[dict]) -> dict:
    """Per-phone mean z-code at phone centres, the rest pose, the closed level (JSON-ready)."""
    from emotalk.lips import LIP_NAMES
    from emotalk.lips.coarticulation import phone_class
    from emotalk.lips.phones import pauses_from_phones

    vals: dict[str, list] = {}
    rest_parts, closed_gap, closed_press = [], [], []
    for r in rows:
        z, T = r["code_z"], len(r["code_z"])
        for name, s, e in r["phones"]:
            if phone_class(name) == "pause":
                continue
            vals.setdefault(name, []).append(at(z, 0.5 * (s + e)))
            if phone_class(name) == "bilabial":  # the most closed frame of the closure
                a, b = max(int(np.floor(s * FPS)), 0), min(int(np.ceil(e * FPS)) + 1, T)
                if b > a:
                    k = a + int(np.argmin(z[a:b, 0]))
                    closed_gap.append(z[k, 0])
                    closed_press.append(z[k, 4])
        fr = []
        for s, e in pauses_from_phones(r["phones"], T, FPS, 0.3):
            a = int(np.ceil((s + (0.1 if s > 0 else 0)) * FPS))
            b = int(np.floor((e - (0.1 if e < T / FPS - 1e-6 else 0)) * FPS))
            fr += list(range(max(a, 0), min(b, T)))
        if fr:
            rest_parts.append((z[fr].mean(0), len(fr)))
    phones = {k: {"mean": np.round(np.mean(v, 0), 4).tolist(), "std": np.round(np.std(v, 0), 4).tolist(),
                  "count": len(v)} for k, v in sorted(vals.items())}
    w = np.array([n for _, n in rest_parts], np.float64)
    rest = (np.stack([m for m, _ in rest_parts]) * w[:, None]).sum(0) / w.sum()
    return {"names": list(LIP_NAMES), "fps": FPS, "phones": phones, "rest": np.round(rest, 4).tolist(),
            "rest_frames": int(w.sum()), "rest_clips": len(rest_parts),
            "closed": {"gap": round(float(np.mean(closed_gap)), 4),
                       "press": round(float(np.mean(closed_press)), 4),
                       "count": len(closed_gap)}}


# --- predictions and scores -------------------------------------------------------------------------------

def driver_pred(code: np.ndarray) -> np.ndarray:
    """The shipped LipDriver's code [T,M] (with its gain, unclamped) for audio code [T,W,C]."""
    import torch

    from emotalk.lips import load_driver

    d = load_driver()
    with torch.no_grad():
        parts = [d(torch.as_tensor(code[i:i + 256]).float()) for i in range(0, len(code), 256)]
    return torch.cat(parts).numpy()


def predict(r: dict, table, settings, phones: bool = True) -> np.ndarray:
    from emotalk.cli.bench.sync_clips import shift_wav
    from emotalk.lips.phones import phone_lips

    wav = shift_wav(r["wav"], -r["offset"])
    return phone_lips(r["drv"], FPS, r["phones"] if phones else None, wav, table, settings)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 1e-9 and b.std() > 1e-9 else 0.0


def gap_scores(r: dict, pred: np.ndarray) -> dict:
    """Phone contrast and open-vowel 95th-percentile gap (raw units: the clip's own stats undo the
    z-score)."""
    from emotalk.avsync.lipsync import OPEN_VOWELS, phone_contrast
    from emotalk.lips import LipStats
    from emotalk.speech.align import Phone

    st = LipStats.of(r["raw"])
    gap = pred[:, 0] * st.std[0] + st.mean[0]
    ph = [Phone(n, s, e) for n, s, e in r["phones"]]
    pc = phone_contrast(gap, ph, FPS)
    t = np.arange(len(gap)) / FPS
    ov = np.zeros(len(gap), bool)
    for n, s, e in r["phones"]:
        if n in OPEN_VOWELS:
            ov |= (t >= s) & (t < e)
    return {"contrast": pc.ratio, "p95_open": float(np.percentile(gap[ov], 95)) if ov.any() else float("nan")}


def pause_scores(r: dict, pred: np.ndarray, pauses: list) -> dict:
    """In pauses >= 0.4 s, from 0.2 s after their start to 0.12 s before speech resumes (the lips prepare
    the next sound): gap/jaw error against the truth, jaw drift (std)."""
    z, T = r["code_z"], len(r["code_z"])
    fr = []
    for s, e in pauses:
        b = e - (0.12 if e < T / FPS - 1e-6 else 0)
        fr += list(range(int(np.ceil((s + (0.2 if s > 0 else 0)) * FPS)), min(int(np.floor(b * FPS)) + 1, T)))
    if not fr:
        return {"frames": 0}
    return {"frames": len(fr), "gap_mae": float(np.abs(pred[fr, 0] - z[fr, 0]).mean()),
            "jaw_mae": float(np.abs(pred[fr, 2] - z[fr, 2]).mean()), "jaw_std": float(pred[fr, 2].std()),
            "true_jaw_std": float(z[fr, 2].std())}


def pooled_corr(rows: list[dict], preds: list[np.ndarray]) -> list[float]:
    y = np.concatenate([r["code_z"] for r in rows])
    p = np.concatenate(preds)
    return [round(corr(p[:, m], y[:, m]), 3) for m in range(y.shape[1])]


def tune(evals: list[dict], table_rows: list[dict], folds: int = 4) -> dict:
    """Scores of blend settings (weight x phone gain x energy gate) by speaker folds: each fold's speakers of
    `evals` (clips_more, never seen by the driver) are predicted with a table built without them.
    -> {(gain, gate, w): (per-parameter correlation [M], prediction std / truth std [M], gap scores)}"""
    from dataclasses import replace

    from emotalk.lips import phones as pl

    spk = sorted({r["speaker"] for r in evals})
    grid = {(g, gate, w): replace(pl.DEFAULT, weight=(w,) * 6, phone_gain=(g,) * 6, energy_gate=gate)
            for g in (1.0, 1.3, 1.6, 2.0) for gate in (0.0, 0.5) for w in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)}
    preds: dict = {k: [] for k in grid}
    used = []
    for f in range(folds):
        held = set(spk[f::folds])
        table = pl.table_from_json(build_table([r for r in table_rows if r["speaker"] not in held]))
        for r in [r for r in evals if r["speaker"] in held]:
            used.append(r)
            for k, st in grid.items():
                preds[k].append(predict(r, table, st))
    y = np.concatenate([r["code_z"] for r in used])
    out = {}
    for k in grid:
        p = np.concatenate(preds[k])
        gs = [gap_scores(r, q) for r, q in zip(used, preds[k])]
        out[k] = ([corr(p[:, m], y[:, m]) for m in range(6)], (p.std(0) / y.std(0)).tolist(),
                  float(np.nanmedian([g["contrast"] for g in gs])),
                  float(np.nanmedian([g["p95_open"] / t["p95_open"] for g, t in
                                      zip(gs, [gap_scores(r, r["code_z"]) for r in used])])))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=REPO / "out" / "phone_lips_cache")
    ap.add_argument("--out", type=Path, default=REPO / "emotalk" / "models" / "phone_lips.json")
    ap.add_argument("--report", type=Path, default=REPO / "out" / "phone_lips" / "report.json")
    ap.add_argument("--stage", choices=("cache", "all"), default="all")
    ap.add_argument("--identity", type=Path, help="write this identity folder's own table instead")
    ap.add_argument("--dataset", type=Path, help="the identity's dataset (with --identity)")
    args = ap.parse_args()
    if args.identity is not None:
        from emotalk.dataset.format import load_dataset
        from emotalk.lips.own_phones import write_identity_phone_lips

        out = write_identity_phone_lips(args.identity, load_dataset(args.dataset))
        print(f"wrote {out}" if out else "no table written (see the log: not English, too short, ...)")
        return 0 if out else 1
    if not (args.data / "clips_more").is_dir():
        print(f"no clips under {args.data}: pass --data", file=sys.stderr)
        return 1
    t0 = time.time()
    rows = load_all(args.data, args.cache, need_code=True)
    print(f"{len(rows)} clips loaded, {time.time() - t0:.0f} s", flush=True)
    if args.stage == "cache":
        return 0
    from emotalk.folders import atomic_write_bytes
    from emotalk.lips import LIP_NAMES
    from emotalk.lips import phones as pl

    for r in rows:
        if "code" in r:
            r["drv"] = driver_pred(r["code"])
    english = [r for r in rows if r["lang"] == "en" and r["usable"] and r["phones"]]
    table_rows = [r for r in english if not r["speaker"].startswith(HELD_OUT)]
    test = [r for r in english if r["speaker"].startswith(HELD_OUT)]
    evals = [r for r in table_rows if "drv" in r]
    nonen = [r for r in rows if r["name"].startswith(NON_ENGLISH_HELD) and "drv" in r]
    print(f"table from {len(table_rows)} clips; tuning on {len(evals)} clips_more clips; "
          f"held out {len(test)} English + {len(nonen)} other-language clips", flush=True)
    t1 = time.time()
    res = tune(evals, table_rows)
    print(f"tuning {time.time() - t1:.0f} s: (gain, gate, w) -> corr per {LIP_NAMES} | std ratio | "
          f"median contrast | median p95-open ratio")
    for k, (c, sr, pc, p95) in sorted(res.items()):
        print(f"  {k}: {np.round(c, 3).tolist()} | {np.round(sr, 2).tolist()} | {pc:.2f} | {p95:.2f}")
    table_json = build_table(table_rows)
    table = pl.table_from_json(table_json)
    truth_gap = {r["name"]: gap_scores(r, r["code_z"]) for r in test}
    variants = {"driver": None, "driver+rest": pl.DEFAULT, "phones": pl.PHONES_ONLY, "blend": pl.DEFAULT}
    report: dict = {"held_out_speakers": sorted({r["speaker"] for r in test}), "variants": {}}
    for v, st in variants.items():
        preds = [r["drv"] if st is None else predict(r, table, st, phones=v != "driver+rest") for r in test]
        gs = [gap_scores(r, q) for r, q in zip(test, preds)]
        ps = [pause_scores(r, q, pl.pauses_from_phones(r["phones"], len(q), FPS, 0.4))
              for r, q in zip(test, preds)]
        per = {r["name"]: {"corr": [round(corr(q[:, m], r["code_z"][:, m]), 3) for m in range(6)], **g, **pz}
               for r, q, g, pz in zip(test, preds, gs, ps)}
        report["variants"][v] = {
            "pooled_corr": dict(zip(LIP_NAMES, pooled_corr(test, preds))),
            "mean_clip_corr": dict(zip(LIP_NAMES, np.round(np.mean([p["corr"] for p in per.values()], 0), 3)
                                       .tolist())),
            "contrast_median": float(np.nanmedian([g["contrast"] for g in gs])),
            "contrast_at_truth_or_above": int(sum(g["contrast"] >= truth_gap[r["name"]]["contrast"]
                                                  for r, g in zip(test, gs))),
            "p95_open_ratio_median": float(np.nanmedian([g["p95_open"] / truth_gap[r["name"]]["p95_open"]
                                                         for r, g in zip(test, gs)])),
            "pause_gap_mae": float(np.mean([p["gap_mae"] for p in ps if p["frames"]])),
            "pause_jaw_std": float(np.mean([p["jaw_std"] for p in ps if p["frames"]])),
            "clips": per}
    report["truth"] = {"contrast_median": float(np.nanmedian([g["contrast"] for g in truth_gap.values()])),
                       "clips": truth_gap}
    non = {}
    for v, st in (("driver", None), ("auto", pl.DEFAULT)):
        for r in nonen:
            q = r["drv"] if st is None else predict(r, table, st, phones=False)
            from emotalk.cli.bench.sync_clips import shift_wav

            lv = pl.speech_level(shift_wav(r["wav"], -r["offset"]), len(q), FPS)
            pz = pause_scores(r, q, pl.pauses_from_energy(lv, FPS))
            non.setdefault(r["name"], {})[v] = {"corr": [round(corr(q[:, m], r["code_z"][:, m]), 3)
                                                         for m in range(6)], **pz}
    report["non_english"] = non
    for v, d in report["variants"].items():
        print(f"{v:12s} pooled corr {d['pooled_corr']} contrast median {d['contrast_median']:.2f} "
              f"(>= truth on {d['contrast_at_truth_or_above']}/{len(test)}) p95-open ratio "
              f"{d['p95_open_ratio_median']:.2f} pause gap MAE {d['pause_gap_mae']:.2f} "
              f"pause jaw std {d['pause_jaw_std']:.2f}")
    print(f"truth contrast median {report['truth']['contrast_median']:.2f}")
    for n, d in non.items():
        print(f"  {n}: " + "; ".join(f"{v}: corr {x['corr']} pause frames {x['frames']} gap MAE "
                                    f"{x.get('gap_mae', float('nan')):.2f} "
                                    f"jaw std {x.get('jaw_std', float('nan')):.2f}"
                                    for v, x in d.items()))
    table_json.update({"speakers": sorted({r["speaker"] for r in table_rows}),
                       "held_out": report["held_out_speakers"],
                       "held_out_pooled_corr": {v: report["variants"][v]["pooled_corr"] for v in variants},
                       "data": "shared/data/clips + clips_more (see their MANIFEST.md); z-scored per clip"})
    atomic_write_bytes(args.out, (json.dumps(table_json, indent=1) + "\n").encode())
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=1, default=float))
    print(f"saved {args.out} ({args.out.stat().st_size // 1024} kB), report {args.report}; "
          f"{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
