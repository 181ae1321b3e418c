"""Copy a dataset into a folder to carry to the GPU host (which has no speech stack): the files
training reads, the audio code precomputed as distinct rows + index (`audio_code_<kind>.npz`, read by
`emotalk.train.dataset_audio_code`), and the re-spoken sequences (not old stored codes or wavs).
audio.wav is left empty (it must exist; training there reads the precomputed code) to stay under the
64 MiB a GPU call may carry.

    python bench/pack_dataset.py DATASET DEST [--kind whisper]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

FILES = ("meta.json", "frames.mp4", "body.mp4", "parsing.npz", "tracks.npz", "background.png")


def pack(src: Path, dest: Path, kind: str = "whisper") -> Path:
    from emotalk.dataset.format import load_dataset
    from emotalk.training.data import dataset_audio_code

    dest.mkdir(parents=True, exist_ok=True)
    for f in FILES:
        if (src / f).is_file():
            shutil.copy2(src / f, dest / f)
    (dest / "audio.wav").write_bytes(b"")
    code = dataset_audio_code(load_dataset(src), kind)  # [T,W,C]
    rows, index = np.unique(code.reshape(-1, code.shape[-1]), axis=0, return_inverse=True)
    np.savez(dest / f"audio_code_{kind}.npz", rows=rows.astype(np.float32),
             index=index.reshape(code.shape[:2]).astype(np.int32))
    rs = src / "respoken"
    if (rs / "index.json").is_file():
        (dest / "respoken").mkdir(exist_ok=True)
        for f in [rs / "index.json", *rs.glob("*.npz")]:
            shutil.copy2(f, dest / "respoken" / f.name)
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("dest", type=Path)
    ap.add_argument("--kind", default="whisper")
    a = ap.parse_args()
    out = pack(a.dataset, a.dest, a.kind)
    mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20
    print(f"{out}: {mb:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
