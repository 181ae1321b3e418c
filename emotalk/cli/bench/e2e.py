"""The GPU benchmark: render FPS, end-to-end latency, training and preprocessing time, in one JSON.

    python -m emotalk bench [--out out/bench] [--identity checkpoints/obama] [--dataset DIR]
                            [--train] [--preprocess CLIP] [--device auto] [--size N] [--seconds S]
    (the same as `python -m emotalk bench e2e [options]` and `python bench/bench_e2e.py [options]`)

- render: FPS of batched rendering (deform + raster + composite, frames left on the device / copied to
  the host, and the bare raster) at batch 1 and 64, at the identity's size (bench.model.time_render).
- e2e: text -> speech (offline TTS) -> audio code -> rendered frames -> encoded mp4, each stage timed
  one after another (the app overlaps encoding with rendering, so its wall time is a little lower).
  A stage that cannot run here is replaced by a stand-in and flagged (`stand_in` in its entry):
  no TTS engine -> the dataset's speech (or a tone); no speech-feature stack -> the dataset's stored
  audio code (or random numbers of the right shape: render timing only); no ffmpeg -> OpenCV's
  VideoWriter (MPEG-4 part 2, not H.264, no audio track).
- train (--train, needs --dataset; ~1.5 min on an H100): the `fast` preset, fresh, with held-out PSNR.
- preprocess (--preprocess CLIP): dataset building time by stage (needs MediaPipe; skipped with the
  reason where it is missing).
Without CUDA everything runs on the CPU at a small size (64 px, few frames) and the JSON says "no GPU".
Writes OUT/bench.json atomically, with the machine, GPU, torch version, git commit and date.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np

from emotalk.cli.bench.model import time_render
from emotalk.folders import atomic_write_text
from emotalk.identity.store import REPO_ROOT, SHIPPED_DIR
from emotalk.media import SR, ffmpeg_status

DEFAULT_OUT = REPO_ROOT / "out" / "bench"  # where bench.json goes
DEFAULT_IDENTITY = SHIPPED_DIR / "obama"  # the identity rendered for FPS and latency
TEXT = ("People of every background come to this country to build a better life for their families. "
        "Maybe we should move the big meeting to Monday, but please bring the papers by five.")


def machine_info(device: str) -> dict:
    import torch

    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    cuda = device.startswith("cuda")
    ff, what = ffmpeg_status()
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit,
            "machine": f"{platform.node()}: {platform.machine()}, {os.cpu_count()} CPU cores, "
                       f"{platform.system()}, Python {platform.python_version()}",
            "gpu": torch.cuda.get_device_name() if cuda else "no GPU",
            "no_gpu": not cuda, "device": device, "torch": torch.__version__,
            "cuda": torch.version.cuda if cuda else None, "ffmpeg": what if ff else None,
            "ffmpeg_missing": None if ff else what}


def _identity_at(ident, size: int):
    """The identity rendered at another side (K scaled; body frames are read at that size)."""
    if size == ident.size:
        return ident
    K = ident.K.copy()
    K[:2] *= size / ident.size
    return replace(ident, size=size, K=K)


def _audio_code_for(ident, ds, n: int) -> np.ndarray:
    """An audio code of n frames for render timing: the dataset's, else random of the right shape."""
    if ds is not None:
        from emotalk.training.data import dataset_audio_code

        try:
            code = dataset_audio_code(ds, ident.meta["model"].get("audio_kind", "whisper"))
            if tuple(code.shape[1:]) == tuple(ident.model.audio_shape):
                return np.resize(code, (n, *code.shape[1:])).astype(np.float32)
        except Exception:
            pass
    return np.random.default_rng(0).standard_normal((n, *ident.model.audio_shape)).astype(np.float32)


def bench_render(ident, ds, device: str, size: int, batches: tuple[int, ...],
                 n_frames: dict[int, int]) -> dict:
    idn = _identity_at(ident, size)
    out = {"size": size, "n_gaussians": ident.model.n_gaussians()}
    for b in batches:
        n = n_frames[b]
        r = time_render(idn, _audio_code_for(ident, ds, n), device, batch=b, n_frames=n)
        out[f"batch{b}"] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
    return out


def _tts(seconds: float) -> tuple[np.ndarray | None, dict]:
    """Offline TTS of about `seconds` of speech -> (wav or None, entry)."""
    t = time.time()
    try:
        from emotalk.speech.tts import TTSSettings, text_to_speech

        words = TEXT.split()
        text = " ".join(words[:max(3, int(round(seconds * 2.6)))])  # ~2.6 words a second
        res = text_to_speech(text, TTSSettings(engines=("piper", "espeak")))
        return res.wav, {"s": round(time.time() - t, 3), "engine": res.engine, "voice": res.voice,
                         "text": res.text, "stand_in": None}
    except Exception as e:
        return None, {"s": None, "skipped": f"{type(e).__name__}: {e}"}


def bench_e2e(ident, ds, device: str, size: int, seconds: float, work: Path) -> dict:
    """text -> speech -> audio code -> frames -> mp4, each stage timed."""
    import torch

    from emotalk.render.frames import render_frames

    stages: dict[str, dict] = {}
    wav, stages["tts"] = _tts(seconds)
    if wav is None:  # stand-in speech: the dataset's audio, else a tone
        try:  # a packed dataset (bench/pack_dataset.py) carries an empty audio.wav
            wav = ds.audio()[: int(seconds * SR)] if ds is not None else None
        except Exception:
            wav = None
        if wav is not None and len(wav) >= 0.2 * SR:
            stages["tts"]["stand_in"] = (f"no TTS here: {Path(ds.root).name}'s own speech "
                                         f"({len(wav) / SR:.1f} s)")
        else:
            tt = np.arange(int(seconds * SR)) / SR
            wav = (0.1 * np.sin(2 * np.pi * 150 * tt) * (np.sin(2 * np.pi * 3 * tt) > 0)).astype(np.float32)
            stages["tts"]["stand_in"] = "no TTS and no dataset speech here: a gated 150 Hz tone"
    wav = np.asarray(wav, np.float32)
    fps = ident.fps
    T = max(1, int(round(len(wav) / SR * fps)))
    kind = ident.meta["model"].get("audio_kind", "whisper")
    t = time.time()
    try:
        from emotalk.speech.features import compute_audio_code

        code = compute_audio_code(wav, SR, n_frames=T, fps=fps, kind=kind, device=device)
        stages["features"] = {"s": round(time.time() - t, 3), "kind": kind, "stand_in": None}
    except Exception as e:
        code = _audio_code_for(ident, ds, T)
        stages["features"] = {"s": None, "kind": kind,
                              "stand_in": f"audio features could not run ({type(e).__name__}: {e}); "
                                          + ("the dataset's stored audio code" if ds is not None else
                                             "random numbers of the right shape") + " (not timed)"}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.time()
    first = None
    batches = []
    for fr in render_frames(ident, code, (0.3, 0.2), batch=8, size=size, device=device):
        batches.append(fr)
        if first is None:
            first = time.time() - t
    frames = np.concatenate(batches)
    stages["render"] = {"s": round(time.time() - t, 3), "frames": int(len(frames)), "size": size, "batch": 8,
                        "first_batch_s": round(first, 3), "fps": round(len(frames) / (time.time() - t), 2),
                        "stand_in": None}
    ok, what = ffmpeg_status()
    dst = work / "e2e.mp4"
    t = time.time()
    if ok:
        from emotalk.media import VideoWriter

        with VideoWriter(dst, fps=fps, audio=wav, sr=SR) as w:
            w.write_batch(frames)
        stages["encode"] = {"s": round(time.time() - t, 3), "codec": "H.264 + AAC (ffmpeg)", "stand_in": None}
    else:
        import cv2

        vw = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                             (frames.shape[2], frames.shape[1]))
        for f in frames:
            vw.write(np.ascontiguousarray(f[..., ::-1]))
        vw.release()
        stages["encode"] = {"s": round(time.time() - t, 3), "codec": "MPEG-4 part 2 (OpenCV), no audio",
                            "stand_in": f"no ffmpeg here ({what}): OpenCV VideoWriter instead of H.264+AAC"}
    stages["encode"]["bytes"] = dst.stat().st_size if dst.is_file() else 0
    timed = [v["s"] for v in stages.values() if v.get("s") is not None]
    total = float(sum(timed))
    audio_s = len(wav) / SR
    return {"audio_s": round(audio_s, 2), "frames": int(T), "stages": stages,
            "total_s": round(total, 3), "realtime_factor": round(total / max(audio_s, 1e-6), 3),
            "first_frame_s": round(sum(stages[k]["s"] or 0 for k in ("tts", "features")) + first, 3),
            "stand_ins": [k for k, v in stages.items() if v.get("stand_in")],
            "untimed": [k for k, v in stages.items() if v.get("s") is None],
            "note": "stages timed one after another; total = sum of the timed stages"}


def bench_train(ds, device: str, cpu: bool) -> dict:
    import torch

    from emotalk.training.data import dataset_audio_code
    from emotalk.training.loop import train
    from emotalk.training.settings import PRESETS

    s = PRESETS["fast"]
    if cpu:  # no GPU: a few steps of the tiny preset, to show it runs
        s = replace(PRESETS["test"], audio_kind=s.audio_kind, steps=20)
    code = dataset_audio_code(ds, s.audio_kind)
    work = Path(tempfile.mkdtemp(prefix="emotalk_bench_train_"))
    try:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.time()
        _, summary = train(ds, s, work, device=device, audio_code=code)
        wall = time.time() - t
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"preset": "test (20 steps, CPU)" if cpu else "fast", "steps": s.steps,
            "size": summary["size"], "dataset": str(ds.root), "n_frames": int(ds.n_frames),
            "wall_minutes": round(wall / 60, 3), "train_minutes": round(summary["train_minutes"], 3),
            "n_gaussians": summary["n_face"] + summary["n_mouth"],
            "val_psnr": round(summary["val_psnr"], 3), "val_ssim": round(summary["val_ssim"], 4)}


def bench_preprocess(clip: Path, cpu: bool) -> dict:
    try:
        import mediapipe  # noqa: F401
    except ImportError as e:
        return {"skipped": f"MediaPipe is not installed here ({e}): preprocessing needs its face landmarker"}
    ok, what = ffmpeg_status()
    if not ok:
        return {"skipped": f"no ffmpeg here ({what}): preprocessing decodes the clip with it"}
    if not Path(clip).is_file():
        return {"skipped": f"no clip at {clip}"}
    from emotalk.dataset.build import preprocess
    from emotalk.training.settings import PREPROCESS_PRESETS as PRESETS

    s = replace(PRESETS["test"], size=64) if cpu else PRESETS["default"]
    work = Path(tempfile.mkdtemp(prefix="emotalk_bench_pre_"))
    try:
        t = time.time()
        ds = preprocess(clip, work / "ds", s)
        wall = time.time() - t
        return {"clip": str(clip), "seconds_of_video": round(ds.n_frames / ds.fps, 2), "size": ds.size,
                "wall_s": round(wall, 2), "stages_s": ds.meta.get("timings_s", {}),
                "preset": "test (64 px, CPU)" if cpu else "default"}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_json(path: Path, doc: dict) -> None:
    atomic_write_text(path, json.dumps(doc, indent=1, default=str))


def run_bench(out: Path, identity: Path | None, dataset: Path | None, train: bool, clip: Path | None,
              device: str = "auto", size: int | None = None, seconds: float | None = None,
              log=print) -> dict:
    """Run every benchmark that can run here; a failing one is recorded (error) and the rest go on."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but torch sees no CUDA GPU here.")
    cpu = not device.startswith("cuda")
    doc: dict = {"header": machine_info(device), "results": {}}
    if cpu:
        doc["header"]["note"] = ("no GPU: what can run ran on the CPU at a small size; these numbers are not "
                                 "the GPU benchmark")
    res = doc["results"]
    path = out / "bench.json"
    ds = ident = None
    if dataset is not None:
        from emotalk.dataset.format import load_dataset

        try:
            ds = load_dataset(dataset)
        except Exception as e:
            res["dataset"] = {"error": f"{type(e).__name__}: {e}"}
    if identity is not None:
        from emotalk.identity.checkpoint import load_identity

        try:
            ident = load_identity(identity, device=device)
        except Exception as e:
            res["identity"] = {"error": f"{type(e).__name__}: {e}"}
    if ident is not None:
        doc["header"]["identity"] = {"path": str(identity), "size": ident.size,
                                     "n_gaussians": ident.model.n_gaussians()}
    jobs = []
    if ident is not None:
        S = int(size or (64 if cpu else ident.size))
        nb = (1, 2) if cpu else (1, 64)  # the CPU rasterizer takes seconds a frame: a token run
        nf = {1: 2, 2: 2} if cpu else {1: 128, 64: 512}
        secs = float(seconds or (0.4 if cpu else 10.0))
        jobs += [("render", lambda: bench_render(ident, ds, device, S, nb, nf)),
                 ("e2e", lambda: bench_e2e(ident, ds, device, S, secs, Path(tempfile.mkdtemp())))]
    elif "identity" not in res:
        res["render"] = res["e2e"] = {"skipped": "no identity (--identity FOLDER)"}
    if train:
        jobs.append(("train", (lambda: bench_train(ds, device, cpu)) if ds is not None else None))
    else:
        res["train"] = {"skipped": "not asked for (--train, with --dataset)"}
    if clip is not None:
        jobs.append(("preprocess", lambda: bench_preprocess(clip, cpu)))
    else:
        res["preprocess"] = {"skipped": "not asked for (--preprocess CLIP)"}
    for name, fn in jobs:
        log(f"[bench] {name} ...")
        t = time.time()
        if fn is None:
            res[name] = {"skipped": "needs --dataset"}
            continue
        try:
            res[name] = fn()
        except Exception as e:
            traceback.print_exc()
            res[name] = {"error": f"{type(e).__name__}: {e}"}
        res[name]["bench_wall_s"] = round(time.time() - t, 2)
        log(f"[bench] {name}: {json.dumps(res[name], default=str)[:400]}")
        _write_json(path, doc)  # partial results survive a later crash
    _write_json(path, doc)
    log(f"wrote {path}")
    return doc


def add_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for bench.json")
    p.add_argument("--identity", type=Path, default=DEFAULT_IDENTITY,
                   help="identity for render FPS and end-to-end latency")
    p.add_argument("--dataset", type=Path, default=None,
                   help="dataset: its audio code / speech stand in where the speech stack is missing; "
                        "trained on with --train")
    p.add_argument("--train", action="store_true", help="also time training (fast preset) on --dataset")
    p.add_argument("--preprocess", type=Path, default=None, metavar="CLIP", help="also time preprocessing")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu")
    p.add_argument("--size", type=int, default=None, help="render side (default: identity's; 64 on CPU)")
    p.add_argument("--seconds", type=float, default=None, help="speech length for the end-to-end run")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emotalk bench e2e", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(ap)
    a = ap.parse_args(argv)
    run_bench(a.out, a.identity, a.dataset, a.train, a.preprocess, a.device, a.size, a.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
