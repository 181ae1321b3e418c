"""Time `preprocess` on one clip: stage times, frames per second, dataset size and quality numbers.

    python bench/bench_preprocess.py CLIP [--size 512] [--out DIR]

Prints one JSON object. The machine's load matters (note it with the numbers).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--out", default=None, help="dataset folder (default: a temporary one)")
    ap.add_argument("--min-seconds", type=float, default=4.0)
    a = ap.parse_args()

    import torch

    from emotalk.data import PRESETS, preprocess

    out = a.out or os.path.join(tempfile.mkdtemp(prefix="bench-pre-"), "ds")
    s = dataclasses.replace(PRESETS["default"], size=a.size, min_seconds=a.min_seconds)
    load0 = os.getloadavg()[0]
    t0 = time.time()
    ds = preprocess(a.clip, out, s)
    wall = time.time() - t0
    print(json.dumps({
        "clip": os.path.basename(a.clip), "size": a.size, "frames": ds.n_frames, "wall_s": round(wall, 1),
        "frames_per_s": round(ds.n_frames / wall, 2), "stages_s": ds.meta["timings_s"],
        "dataset_mb": round(sum(ds.meta["bytes"].values()) / 1e6, 2), "quality": ds.meta["quality"],
        "av": {k: ds.meta["audio"][k] for k in ("av_offset_frames", "av_confidence", "shift_applied_frames")},
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "load_avg_start": round(load0, 2), "load_avg_end": round(os.getloadavg()[0], 2),
        "cuda": torch.cuda.is_available(),
    }, indent=1))


if __name__ == "__main__":
    main()
