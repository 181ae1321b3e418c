"""Benchmark the Gaussian talking head on a GPU: train identities, score held-out frames, time rendering.

    python -m emotalk bench model DATASET [DATASET ...] --out OUTDIR [--preset fast] [--device cuda]
    (or python bench/bench_model.py ...)

Per dataset: training minutes, Gaussian count, checkpoint MB, held-out PSNR / SSIM / ST-LPIPS (full
frame and face box), render FPS at the dataset size (batched: deformation + raster + composite), the
bare gsplat raster time of the same Gaussians (overhead ratio). Held-out renders are written as JPEGs
in an npz (for LMD on a host with a landmark detector: `--lmd OUTDIR` there). Results go to
OUTDIR/bench_<name>.json. Datasets may carry `audio_code_<kind>.npy` (the GPU host lacks the speech stack);
their videos decode with OpenCV where there is no ffmpeg binary (emotalk.media).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np


def encode_jpegs(frames: np.ndarray, quality: int = 95) -> np.ndarray:
    import cv2

    bufs = [cv2.imencode(".jpg", np.ascontiguousarray(f[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])[1]
            for f in frames]
    return np.array([b.tobytes() for b in bufs], dtype=object)


def decode_jpegs(arr: np.ndarray) -> np.ndarray:
    import cv2

    return np.stack([cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)[..., ::-1] for b in arr])


def time_render(ident, code: np.ndarray, device: str, batch: int, n_frames: int) -> dict:
    """FPS of batched rendering (deform + raster + composite, frames left on the GPU) and bare raster."""
    import torch

    from emotalk.gaussians.fused_kernels import to_uint8
    from emotalk.gaussians.model import BRANCHES, Frames
    from emotalk.gaussians.raster import rasterize

    model = ident.model.to(device)
    S = ident.size
    reps = int(np.ceil(n_frames / len(code)))
    code = np.concatenate([code] * reps)[:n_frames]
    body = torch.as_tensor(ident.body_frames()).to(device)
    L = min(len(body), len(ident.track_w2c))
    w2c = torch.as_tensor(ident.track_w2c[:L]).to(device)
    up = torch.as_tensor(ident.track_upper[:L]).to(device)
    K = torch.as_tensor(ident.K).to(device)
    code_t = torch.as_tensor(code).to(device)
    sched = torch.as_tensor(np.arange(n_frames) % L, device=device)

    def frames(i: int, j: int) -> Frames:
        s = sched[i:j]
        return Frames(w2c[s], K[None].expand(j - i, 3, 3), code_t[i:j], up[s],
                      torch.zeros(j - i, 2, device=device))

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    with torch.no_grad():
        caches = {b: model.precompute(b) for b in BRANCHES}
        for _ in range(2):  # warm-up
            model.render(frames(0, batch), S, S, body[sched[:batch]].float() / 255, caches=caches)
        sync()
        t = time.time()
        for i in range(0, n_frames, batch):
            j = min(n_frames, i + batch)
            out = model.render(frames(i, j), S, S, body[sched[i:j]].float() / 255, caches=caches)
            img = to_uint8(out.rgb)
        sync()
        full = time.time() - t
        # the same, including the copy of each batch to host memory (what the video encoder gets)
        t = time.time()
        for i in range(0, n_frames, batch):
            j = min(n_frames, i + batch)
            out = model.render(frames(i, j), S, S, body[sched[i:j]].float() / 255, caches=caches)
            img = to_uint8(out.rgb).cpu().numpy()
        host = time.time() - t
        # bare rasterization of the same (already deformed) Gaussians
        gs = {b: model.deform(b, frames(0, batch), caches[b]) for b in BRANCHES}
        fr = frames(0, batch)
        for _ in range(3):
            for b in BRANCHES:
                rasterize(*gs[b], fr.viewmats, fr.Ks, S, S)
        sync()
        n_batches = int(np.ceil(n_frames / batch))
        t = time.time()
        for _ in range(n_batches):
            for b in BRANCHES:
                rasterize(*gs[b], fr.viewmats, fr.Ks, S, S)
        sync()
        bare = time.time() - t
    del img
    return {"render_fps": n_frames / full, "render_fps_to_host": n_frames / host,
            "bare_raster_fps": n_batches * batch / bare, "overhead_ratio": full / bare,
            "render_batch": batch, "render_frames": n_frames, "render_size": S}


def bench_one(ds_path: Path, out: Path, preset: str, device: str, steps: int | None, kind: str,
              save_frames: bool, respeak_prob: float | None = None, keep_identity: bool = False,
              speed: bool = True, lip_code: bool | None = None, lip_driver: Path | None = None,
              lip_adapt: int | None = None, seed: int = 0) -> dict:
    import torch

    from emotalk.dataset.format import load_dataset
    from emotalk.identity.checkpoint import identity_size_mb, load_identity, save_identity
    from emotalk.metrics import face_box, image_metrics
    from emotalk.training.data import dataset_audio_code, load_train_data
    from emotalk.training.loop import evaluate, train
    from emotalk.training.settings import PRESETS

    name = ds_path.name
    tag = f"{name}_{preset}"
    ds = load_dataset(ds_path)
    s = replace(PRESETS[preset], audio_kind=kind)
    if steps:
        s = replace(s, steps=steps)
    if respeak_prob is not None:  # the lip-sync ablation: with / without re-spoken codes
        s = replace(s, respeak=replace(s.respeak, prob=respeak_prob))
        tag += f"_rs{respeak_prob:g}"
    if lip_code is not None:  # the lip-code ablation: speech through the lip code or straight from audio
        s = replace(s, model=replace(s.model, lip_code=lip_code))
    if lip_driver is not None:
        s = replace(s, lips=replace(s.lips, driver=str(lip_driver)))
    if seed:
        s = replace(s, seed=seed)
        tag += f"_seed{seed}"
    if lip_adapt is not None:
        s = replace(s, lips=replace(s.lips, adapt_steps=lip_adapt))
    tag += ("_lipa" if s.lips.adapt_steps else "_lip") if s.model.lip_code else ""
    code = dataset_audio_code(ds, kind)
    work = Path(tempfile.mkdtemp(prefix=f"emotalk_bench_{name}_"))  # fresh: never resume a timed run
    t0 = time.time()
    last = [0.0]

    def status(st) -> None:
        if time.time() - last[0] > 15 or st.step == st.steps:
            last[0] = time.time()
            print(f"  [{name} {st.stage}] {st.step}/{st.steps} loss {st.loss:.4f} psnr {st.psnr:.2f} "
                  f"n {st.n_gaussians} eta {st.eta_s:.0f}s", flush=True)

    model, summary = train(ds, s, work, device=device, on_status=status, audio_code=code)
    train_wall = time.time() - t0
    data = load_train_data(ds, s.size, code, device)
    val = data.val_idx
    renders, _ = evaluate(model, data, val)
    gt = ds.frames(val)
    box = face_box(ds.lmk2d[val], ds.size)
    m = image_metrics(torch.as_tensor(renders).to(device), torch.as_tensor(gt).to(device), box=box,
                      lpips=True)
    ident_dir = work / f"identity_{tag}"  # not in OUT: only a few files come back from the GPU host
    save_identity(ident_dir, model, ds, s, {**summary, **m}, name=name, thumbnail=renders[0])
    if keep_identity:  # bring it back (a few MB) for CPU-side evaluation
        import shutil

        shutil.copytree(ident_dir, out / f"identity_{tag}", dirs_exist_ok=True)
    timing = {}
    if speed:
        ident = load_identity(ident_dir, device=device)
        timing = time_render(ident, code[val], device, batch=32, n_frames=512)
        speed64 = time_render(ident, code[val], device, batch=64, n_frames=512)
        timing.update({f"{k}_b64": v for k, v in speed64.items() if k != "render_frames"})
    res = {"dataset": name, "n_frames": int(ds.n_frames), "n_val": int(len(val)), "size": int(ds.size),
           "preset": preset, "steps": s.steps, "train_minutes": summary["train_minutes"],
           "train_wall_minutes": train_wall / 60, "n_gaussians": summary["n_face"] + summary["n_mouth"],
           "n_face": summary["n_face"], "n_mouth": summary["n_mouth"],
           "checkpoint_mb": identity_size_mb(ident_dir), **m, **timing, "face_box": list(box),
           "respoken_voices": summary.get("respoken_voices", 0),
           "respoken_frames": summary.get("respoken_frames", 0),
           "gpu": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
           "settings": asdict(s)}
    if save_frames:
        np.savez(out / f"heldout_{tag}.npz", render=encode_jpegs(renders), truth_idx=val,
                 lmk2d=ds.lmk2d[val])
    # side by side: render | truth for 3 held-out frames
    pick = np.linspace(0, len(val) - 1, 3).round().astype(int)
    rows = [np.concatenate([renders[i], gt[i]], 1) for i in pick]
    import cv2

    sbs = np.ascontiguousarray(np.concatenate(rows, 0)[..., ::-1])
    cv2.imwrite(str(out / f"side_by_side_{tag}.png"), sbs)
    (out / f"bench_{tag}.json").write_text(json.dumps(res, indent=1))
    return res


def lmd_from_npz(npz: Path, datasets: Path | None = None) -> float:
    """LMD (px) of held-out renders in an npz from `bench_one`: the same detector (MediaPipe, per image)
    on the renders and on the true frames (from DATASETS/<clip>); without them, the tracked landmarks."""
    from emotalk.metrics import detect_landmarks, lmd

    z = np.load(npz, allow_pickle=True)
    frames = decode_jpegs(z["render"])
    truth = z["lmk2d"]
    clip = npz.stem[8:].rsplit("_", 1)[0]
    if datasets is not None and (datasets / clip).is_dir():
        from emotalk.dataset.format import load_dataset

        truth = detect_landmarks(load_dataset(datasets / clip).frames(z["truth_idx"]))
    return lmd(detect_landmarks(frames), truth)


def table(folder: Path, lmd: dict[str, float] | None = None) -> str:
    """Markdown rows from the bench_*.json files in a folder (LMD added where measured)."""
    rows = ["| clip | preset | steps | train min | Gaussians | ckpt MB | PSNR | SSIM | ST-LPIPS | PSNR face "
            "| SSIM face | ST-LPIPS face | LMD px | FPS b32 (to host) | FPS b64 | bare raster FPS b32 "
            "| overhead b32 / b64 |",
            "|" + "---|" * 17]
    for f in sorted(folder.glob("bench_*.json")):
        r = json.loads(f.read_text())
        tag = f"{r['dataset']}_{r['preset']}"
        lm = (lmd or {}).get(tag)
        rows.append(
            f"| {r['dataset']} | {r['preset']} | {r['steps']} | {r['train_minutes']:.2f} | "
            f"{r['n_gaussians']} | "
            f"{r['checkpoint_mb']:.1f} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['stlpips']:.3f} | "
            f"{r['psnr_face']:.2f} | {r['ssim_face']:.3f} | {r['stlpips_face']:.3f} | "
            f"{'n/a' if lm is None else f'{lm:.2f}'} | "
            f"{r['render_fps']:.0f} ({r['render_fps_to_host']:.0f}) | "
            f"{r['render_fps_b64']:.0f} | {r['bare_raster_fps']:.0f} | "
            f"{r['overhead_ratio']:.2f} / {r['overhead_ratio_b64']:.2f} |")
    return "\n".join(rows)


def cpu_raster(n: int = 30000, size: int = 256, reps: int = 3) -> dict:
    """Seconds per frame of the PyTorch reference rasterizer (forward, and forward+backward) on CPU."""
    import torch

    from emotalk.gaussians.raster import rasterize_torch

    g = torch.Generator().manual_seed(0)
    means = torch.randn(n, 3, generator=g) * torch.tensor([0.35, 0.45, 0.3])
    params = [means, torch.randn(n, 4, generator=g), torch.rand(n, 3, generator=g) * 0.02 + 0.005,
              torch.rand(n, generator=g) * 0.8 + 0.1, torch.rand(n, 3, generator=g)]
    vm = torch.eye(4)[None]
    vm[0, 2, 3] = 3.0
    K = torch.tensor([[size * 1.5, 0, size / 2], [0, size * 1.5, size / 2], [0, 0, 1.0]])[None]
    fwd, both = [], []
    for _ in range(reps):
        t = time.time()
        with torch.no_grad():
            rasterize_torch(*params, vm, K, size, size)
        fwd.append(time.time() - t)
        ps = [p.clone().requires_grad_() for p in params]
        t = time.time()
        rasterize_torch(*ps, vm, K, size, size).rgb.sum().backward()
        both.append(time.time() - t)
    return {"n": n, "size": size, "threads": torch.get_num_threads(), "forward_s": min(fwd),
            "forward_backward_s": min(both)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emotalk bench model", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("datasets", nargs="*", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--preset", default="fast", help="one or more presets, comma-separated")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--kind", default="whisper", help="audio code kind")
    ap.add_argument("--no-frames", action="store_true", help="do not save held-out renders")
    ap.add_argument("--respeak-prob", default=None,
                    help="TrainSettings.respeak.prob values, comma-separated (lip-sync ablation)")
    ap.add_argument("--keep-identity", action="store_true", help="copy each trained identity into OUT")
    ap.add_argument("--no-speed", action="store_true", help="skip the render-speed timing")
    ap.add_argument("--lip-code", choices=("on", "off", "both"), default=None,
                    help="speech via the lip code (emotalk.lips) or the audio code (default: the preset's)")
    ap.add_argument("--lip-driver", type=Path, default=None, help="LipDriver file (default: the shipped one)")
    ap.add_argument("--lip-adapt", type=int, default=None, help="driver speaker-adaptation steps (0: none)")
    ap.add_argument("--seed", type=int, default=0, help="training seed (tags other than 0 get _seed<N>)")
    ap.add_argument("--lmd", type=Path, default=None,
                    help="compute LMD for heldout_*.npz in this folder (DATASETS: folder of the datasets)")
    ap.add_argument("--table", type=Path, default=None, help="print a markdown table of bench_*.json here")
    ap.add_argument("--cpu-raster", action="store_true", help="time the PyTorch reference rasterizer on CPU")
    a = ap.parse_args(argv)
    if a.cpu_raster:
        print(json.dumps(cpu_raster(), indent=1))
        return 0
    if a.lmd:
        res = {npz.stem[8:]: lmd_from_npz(npz, a.datasets[0] if a.datasets else None)
               for npz in sorted(a.lmd.glob("heldout_*.npz"))}
        for k, v in res.items():
            print(k, f"LMD {v:.3f} px")
        (a.lmd / "lmd.json").write_text(json.dumps(res, indent=1))
        return 0
    if a.table:
        lm = a.table / "lmd.json"
        print(table(a.table, json.loads(lm.read_text()) if lm.is_file() else None))
        return 0
    a.out.mkdir(parents=True, exist_ok=True)
    ok = True
    probs = [float(x) for x in a.respeak_prob.split(",")] if a.respeak_prob else [None]
    lips = {None: [None], "on": [True], "off": [False], "both": [False, True]}[a.lip_code]
    for d, preset, rp, lc in [(d, p, r, lc) for d in a.datasets for p in a.preset.split(",") for r in probs
                              for lc in lips]:
        try:
            r = bench_one(d, a.out, preset, a.device, a.steps, a.kind, not a.no_frames, rp,
                          a.keep_identity, not a.no_speed, lc, a.lip_driver, a.lip_adapt, a.seed)
            print(json.dumps({k: v for k, v in r.items() if k != "settings"}, indent=1), flush=True)
        except Exception:
            ok = False
            traceback.print_exc()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
