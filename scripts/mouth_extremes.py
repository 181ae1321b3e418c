"""The renderer's mouth at the extremes (issue 16, item 3): an identity's held-out frames rendered on the
CPU from their tracked lip code and from the audio-predicted lip code, against the real frames, for the
widest-open and the closed mouths: mouth-region ST-LPIPS and sharpness (emotalk.evaluation.mouth_extremes).

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python scripts/mouth_extremes.py \
        checkpoints/obama out/datasets/obama [--size 512] [--lips audio|auto] [--out out/mouth_extremes]

Writes OUT/mouth_extremes.json (results per identity: a run adds or replaces its identity's entry),
OUT/mouth_extremes.md (the tables of every identity in the JSON) and OUT/mouth_extremes_<identity>.png
(the 4 most open and 4 most closed held-out frames: real | tracked-code | audio-code mouth crops).
--lips audio (default): the identity's LipDriver alone; auto: phone-aware lips with the clip's phones
(its transcript if the dataset has one, else Whisper + aligner), as the app renders a recording.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import cv2

    from emotalk.dataset.format import load_dataset
    from emotalk.evaluation.mouth_extremes import contact_sheet, markdown, measure_mouth_extremes
    from emotalk.folders import atomic_write_text
    from emotalk.identity.checkpoint import load_identity

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("identity", type=Path, help="identity folder, e.g. checkpoints/obama")
    ap.add_argument("dataset", type=Path, help="its dataset folder, e.g. out/datasets/obama")
    ap.add_argument("--size", type=int, default=None, help="render size in px (default: the identity's)")
    ap.add_argument("--lips", choices=("audio", "auto"), default="audio", help="source of the audio lip code")
    ap.add_argument("--batch", type=int, default=4, help="frames rendered at once")
    ap.add_argument("--out", type=Path, default=Path("out/mouth_extremes"))
    a = ap.parse_args(argv)

    t0 = time.time()

    def say(text: str, frac: float) -> None:
        print(f"[{time.time() - t0:6.1f}s {frac:4.0%}] {text}", file=sys.stderr, flush=True)

    ident = load_identity(a.identity)
    ds = load_dataset(a.dataset)
    res, arrays = measure_mouth_extremes(ident, ds, a.size, a.lips, a.batch, progress=say)
    name = ident.name
    a.out.mkdir(parents=True, exist_ok=True)
    jp = a.out / "mouth_extremes.json"
    allres = json.loads(jp.read_text()) if jp.is_file() else {}
    allres[name] = res
    atomic_write_text(jp, json.dumps(allres, indent=1))
    atomic_write_text(a.out / "mouth_extremes.md", markdown(allres))
    sheet = contact_sheet(arrays, f"{name}: {res['size']} px, held-out frames, audio lips '{a.lips}'")
    png = a.out / f"mouth_extremes_{name}.png"
    if not cv2.imwrite(str(png), sheet[..., ::-1]):
        raise OSError(f"could not write {png}")
    say(f"wrote {jp}, {a.out / 'mouth_extremes.md'}, {png}", 1.0)
    print(markdown({name: allres[name]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
