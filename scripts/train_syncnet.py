"""Train the audio-to-mouth sync model (`emotalk/avsync/syncnet.py`) on the shared real clips, and check it.

    .venv/bin/python scripts/train_syncnet.py [--data ../shared/data] [--cache out/sync_cache]
                                              [--out emotalk/models/sync_mouth_ridge.safetensors]
                                              [--report out/sync_cache/loo.json]

1. Every clip in DATA/clips (mp4 and grid/*.mpg) is decoded at 25 fps, tracked with FaceLandmarker
   (mouth opening = inner-lip gap / eye distance); English clips get phone timings (Whisper +
   pocketsphinx). All of it is cached in CACHE (never committed: it is derived from the shared data).
   Loading, shifting and the held-out estimate are in `emotalk.cli.bench.sync_clips` (the lip-sync
   benchmark uses them too).
2. Round 1, leave-one-clip-out: for each clip a model trained on the others measures its AV offset
   (with the other signals of `emotalk.avsync.lipsync.estimate_sync`). Clips with a clear peak at
   |offset| >= 2 are out-of-sync sources: they are left out of training.
3. Round 2: leave-one-out again on the kept clips (the held-out scores stored with the weights), a
   shift test (audio moved by k = +-2..+-6 frames must move the offset by k, +-1), then the final fit
   on all kept clips.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from emotalk.avsync import syncnet
from emotalk.cli.bench.sync_clips import LAMBDA, SHIFTS, clips, evaluate, features, load_clip

REPO = Path(__file__).resolve().parents[1]  # the checkout: default paths only


def loo(data: list[dict], feats: dict, train_names: list[str], shifts=()) -> dict:
    res = {}
    for c in data:
        others = [feats[n] for n in train_names if n != c["name"]]
        m = syncnet.fit(others, LAMBDA)
        est = evaluate(c, m)
        row = {"offset": est.offset, "confidence": round(est.confidence, 3), "peak": round(est.peak_corr, 3),
               "margin": round(est.margin, 3), "clear": est.clear, "signals": est.signals,
               "corr0": round(est.corr0, 3)}
        if shifts:
            row["shift_test"] = {k: evaluate(c, m, k).offset for k in shifts}
        res[c["name"]] = row
        print(f"  {c['name'][:34]:34s} off {est.offset:+3d} conf {est.confidence:.3f} "
              f"peak {est.peak_corr:.3f} "
              f"margin {est.margin:+.3f} {est.signals}" + (f" shifts {row['shift_test']}" if shifts else ""),
              flush=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--cache", type=Path, default=REPO / "out" / "sync_cache")
    ap.add_argument("--out", type=Path, default=syncnet.WEIGHTS)
    ap.add_argument("--report", type=Path, default=REPO / "out" / "sync_cache" / "loo.json")
    ap.add_argument("--no-shift-test", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    data = [load_clip(p, args.cache) for p in clips(args.data)]
    if not data:
        print(f"no clips under {args.data / 'clips'}", file=sys.stderr)
        return 1
    feats = {c["name"]: features(c) for c in data}
    names = [c["name"] for c in data]
    print("round 1: leave-one-out on all clips")
    r1 = loo(data, feats, names)
    out_of_sync = {n: r["offset"] for n, r in r1.items() if abs(r["offset"]) >= 2 and r["clear"]}
    kept = [n for n in names if n not in out_of_sync]
    print(f"out-of-sync sources (left out of training): {out_of_sync}")
    print("round 2: leave-one-out on the kept clips"
          + ("" if args.no_shift_test else ", with the shift test"))
    r2 = loo(data, feats, kept, () if args.no_shift_test else SHIFTS)
    ok = [n for n in kept if abs(r2[n]["offset"]) <= 1]
    info = {"clips": kept, "out_of_sync": out_of_sync, "loo_offset_within_1": f"{len(ok)}/{len(kept)}",
            "data": "shared/data/clips (see MANIFEST.md)"}
    model = syncnet.fit([feats[n] for n in kept], LAMBDA, info=info)
    model.save(args.out)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps({"round1": r1, "round2": r2, "info": info}, indent=1))
    print(f"saved {args.out} ({len(kept)} clips); report {args.report}; {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
