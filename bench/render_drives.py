"""The lip-sync renders table with the rendering done on a GPU host (no speech stack or ffmpeg there).

    python bench/render_drives.py prepare DRIVES                      # CPU: drives' wavs, texts, codes
    python bench/render_drives.py render DRIVES IDENTITY... --out OUT  # GPU: frames as JPEG npz
    python bench/render_drives.py measure DRIVES OUT/NAME.npz --reference CLIP --table DIR   # CPU: the table

prepare: the drives of bench_sync.py's renders table (every file in ../shared/data/audio and two TTS
engines) with their audio code computed as the render CLI does (normalised speech, Whisper code at 25 fps),
stored as distinct rows + index. render: each identity driven by each code at (0, 0) emotion, blinks on,
as `python -m emotalk render` would, written as OUT/<identity>.npz (one JPEG array per drive: few files
come back from the GPU host; without ffmpeg there, videos decode with OpenCV). measure: those frames muxed
with their speech into mp4s and measured as in `python -m emotalk bench sync` (offset, confidence,
phone contrast).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]  # the checkout: default paths only

FPS = 25.0


def prepare(drives_dir: Path, data: Path) -> list[dict]:
    from emotalk.cli.bench.sync import drive_list
    from emotalk.speech.features import compute_audio_code
    from emotalk.speech.normalize import load_speech

    drives_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, path, text in drive_list(data, drives_dir):
        wav = load_speech(path)
        n = int(round(len(wav) / 16000 * FPS))
        code = compute_audio_code(wav, 16000, n_frames=n, fps=FPS, kind="whisper")
        uniq, index = np.unique(code.reshape(-1, code.shape[-1]), axis=0, return_inverse=True)
        stem = Path(path).stem
        np.savez(drives_dir / f"{stem}.code.npz", rows=uniq.astype(np.float32),
                 index=index.reshape(code.shape[:2]).astype(np.int32))
        rows.append({"name": name, "stem": stem, "wav": str(path), "text": text, "n_frames": n})
    (drives_dir / "drives.json").write_text(json.dumps(rows, indent=1))
    return rows


def render(drives_dir: Path, identities: list[Path], out: Path, size: int, device: str,
           quality: int = 90) -> dict:
    import cv2

    from emotalk.identity.checkpoint import load_identity
    from emotalk.render.frames import render_frames

    drives = json.loads((drives_dir / "drives.json").read_text())
    times = {}
    out.mkdir(parents=True, exist_ok=True)
    for ip in identities:
        ident = load_identity(ip, device=device)
        per_drive = {}
        for d in drives:
            with np.load(drives_dir / f"{d['stem']}.code.npz") as z:
                code = z["rows"][z["index"]]
            t0 = time.time()
            frames = np.concatenate(list(render_frames(ident, code, batch=32, size=size, device=device)))
            times[f"{ip.name}/{d['stem']}"] = {"frames": len(frames), "seconds": round(time.time() - t0, 2)}
            enc = [cv2.IMWRITE_JPEG_QUALITY, quality]
            jpg = [cv2.imencode(".jpg", np.ascontiguousarray(f[..., ::-1]), enc)[1] for f in frames]
            per_drive[d["stem"]] = np.array([j.tobytes() for j in jpg], dtype=object)
        np.savez(out / f"{ip.name}.npz", **per_drive)
    (out / "render_times.json").write_text(json.dumps(times, indent=1))
    return times


def measure(drives_dir: Path, frames_npz: Path, data: Path, table: Path,
            reference: Path | None) -> list[dict]:
    import cv2

    from emotalk import media
    from emotalk.cli.bench.sync import bench_renders

    drives = json.loads((drives_dir / "drives.json").read_text())
    listed = [(d["name"], Path(d["wav"]), d["text"]) for d in drives]

    def from_frames(name: str, wav_path: Path, dst: Path) -> float:
        with np.load(frames_npz, allow_pickle=True) as z:
            jpgs = z[wav_path.stem]
        frames = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)[..., ::-1] for b in jpgs]
        media.write_video(dst, frames, FPS, audio=media.read_audio(wav_path, 16000))
        return 0.0

    return bench_renders(frames_npz, data, table, None, None, reference, render_fn=from_frames, drives=listed)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["prepare", "render", "measure"])
    ap.add_argument("drives", type=Path, help="folder of prepared drives")
    ap.add_argument("rest", nargs="*", type=Path, help="render: identity folders; measure: one frames npz")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, help="render: output folder")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quality", type=int, default=90, help="render: JPEG quality (files back are <= 16 MiB)")
    ap.add_argument("--reference", type=Path, help="measure: the identity's real clip")
    ap.add_argument("--table", type=Path, help="measure: where renders.md / renders.json go")
    a = ap.parse_args()
    if a.mode == "prepare":
        print(json.dumps(prepare(a.drives, a.data), indent=1))
    elif a.mode == "render":
        print(json.dumps(render(a.drives, a.rest, a.out, a.size, a.device, a.quality), indent=1))
    else:
        if len(a.rest) != 1 or a.table is None:
            ap.error("measure needs the frames npz of one identity and --table")
        measure(a.drives, a.rest[0], a.data, a.table, a.reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
