"""Per-drive real-clip bars for the audio-driven lip table: the lip-sync numbers of each drive's own source
video (its speaker's real mouth with its own sound), where the drive was cut from a video. A render driven by
that speech can hardly be more in sync than the real speaker was; the identity's own clip is the other bar.

    .venv/bin/python scripts/drive_bars.py out/s12/heldout --out out/s14/drive_bars.json

Measured on the whole source clip (the drive is its first seconds, silence trimmed), at 25 fps, with
`emotalk.avsync.lipsync.measure_video` (English: phones from Whisper and the aligner).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

VIDEO = (".mp4", ".mov", ".mkv", ".webm", ".avi")


def main() -> int:
    from emotalk.avsync.lipsync import measure_video
    from emotalk.evaluation.drive_pack import load_drive_pack

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("drives", type=Path, help="a drive pack (bench emotion-audio drives)")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    a = ap.parse_args()

    rows = {}
    for d in load_drive_pack(a.drives):
        src = Path(d.source)
        if src.suffix.lower() not in VIDEO or not src.is_file():
            print(f"{d.name}: no source video ({d.source}), skipped", flush=True)
            continue
        rep = measure_video(src, language=d.language)
        pc = rep.contrast
        rows[d.name] = {"source": src.name, "language": d.language, "offset": rep.sync.offset,
                        "confidence": round(rep.sync.confidence, 4),
                        "peak_corr": round(rep.sync.peak_corr, 4),
                        "contrast": None if pc is None else round(pc.ratio, 3),
                        "open_mean": None if pc is None else round(pc.open_mean, 4), "frames": rep.n_frames}
        print(d.name, rows[d.name], flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(rows, indent=1))
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
