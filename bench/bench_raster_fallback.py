"""FPS of rendering without gsplat on the GPU: the vectorised PyTorch rasterizer (the fallback,
EMOTALK_RASTER=torch), the loop reference it replaced, and gsplat as the baseline, in one run.

    python -m bench.bench_raster_fallback [--identity checkpoints/obama] [--sizes 256 512]
        [--batches 1 8] [--paths fast reference gsplat] [--seconds 3] [--out FILE] [--device cuda]
    (from the repository root)

For each path, size and batch: `render_fps` (deform + raster + composite over a flat body, frames left on
the device: the app's render loop without video decoding) and `raster_fps` (the bare rasterization of
both branches' already deformed Gaussians). 'fast' goes through `rasterize`'s 'auto' path with the
fallback forced (what a GPU without gsplat's kernels runs), 'reference' calls the loop reference, 'gsplat'
runs when gsplat's kernels work here. `agreement` gives each path's largest pixel difference from the
reference on the first frames. Prints one JSON object (and writes it to --out).
Issue #18's target: >= 60 FPS at 256² without gsplat.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from emotalk.gaussians import raster_backend
from emotalk.gaussians.model import BRANCHES, Frames
from emotalk.gaussians.raster import backend_status, rasterize
from emotalk.identity.checkpoint import Identity, load_identity

PATHS = ("fast", "reference", "gsplat")  # the vectorised fallback, the loop reference, the baseline


def _timed(step: Callable[[], None], device: str, seconds: float, min_reps: int = 3) -> tuple[int, float]:
    """Run `step` twice to warm up, then until `seconds` pass (at least `min_reps` times) -> (reps, s)."""
    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(2):
        step()
    sync()
    reps, t0 = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - t0 < seconds:
        step()
        reps += 1
        if reps % 8 == 0:
            sync()
    sync()
    return reps, time.perf_counter() - t0


def _frames(ident: Identity, size: int, batch: int, device: str) -> Frames:
    """A batch of the body track's cameras and upper-face codes, silent speech, neutral emotion."""
    idx = np.arange(batch) % len(ident.track_w2c)
    K = torch.as_tensor(ident.K, dtype=torch.float32).clone()
    K[:2] *= size / ident.size
    code = torch.zeros(batch, *ident.model.audio_shape)
    return Frames(torch.as_tensor(ident.track_w2c[idx]).to(device), K[None].expand(batch, 3, 3).to(device),
                  code.to(device), torch.as_tensor(ident.track_upper[idx]).to(device),
                  torch.zeros(batch, 2, device=device))


def measure(ident: Identity, size: int, batch: int, device: str, seconds: float, backend: str) -> dict:
    """render_fps and raster_fps for one size and batch with `backend` (see `rasterize`)."""
    model = ident.model
    fr = _frames(ident, size, batch, device)
    body = torch.full((batch, size, size, 3), 0.5, device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        caches = {b: model.precompute(b) for b in BRANCHES}
        gs = {b: model.deform(b, fr, caches[b]) for b in BRANCHES}
        n, t = _timed(lambda: model.render(fr, size, size, body, caches=caches, backend=backend), device,
                      seconds)
        render_fps = n * batch / t
        n, t = _timed(lambda: [rasterize(*gs[b], fr.viewmats, fr.Ks, size, size, backend=backend)
                               for b in BRANCHES], device, seconds)
    row = {"size": size, "batch": batch, "render_fps": round(render_fps, 1),
           "raster_fps": round(n * batch / t, 1)}
    if device == "cuda":
        row["peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return row


def agreement(ident: Identity, sizes: list[int], batch: int, device: str, paths: list[str]) -> dict:
    """Largest |difference| of each path's rgb and alpha from the loop reference, per size (both branches)."""
    out = {}
    for size in sizes:
        fr = _frames(ident, size, batch, device)
        with torch.no_grad():
            gs = {b: ident.model.deform(b, fr, ident.model.precompute(b)) for b in BRANCHES}
            ref = {b: rasterize(*gs[b], fr.viewmats, fr.Ks, size, size, backend="reference")
                   for b in BRANCHES}
            for p in paths:
                if p == "reference":
                    continue
                got = {b: rasterize(*gs[b], fr.viewmats, fr.Ks, size, size, backend=p) for b in BRANCHES}
                out[f"{p}_{size}"] = {
                    "rgb_max_abs": max(float((got[b].rgb - ref[b].rgb).abs().max()) for b in BRANCHES),
                    "alpha_max_abs": max(float((got[b].alpha - ref[b].alpha).abs().max()) for b in BRANCHES)}
    return out


def _run_path(path: str, ident: Identity, args, device: str) -> dict:
    """All sizes and batches with one path: 'fast' with EMOTALK_RASTER=torch through 'auto' (named
    directly on the CPU), 'reference' named directly, 'gsplat' through 'auto' with EMOTALK_RASTER unset."""
    old = os.environ.pop(raster_backend.ENV, None)
    if path == "fast":
        os.environ[raster_backend.ENV] = "torch"
    try:
        status = backend_status()
        backend = {"reference": "reference", "fast": "auto" if device == "cuda" else "fast"}.get(path, "auto")
        if path == "gsplat" and status["backend"] != "gsplat":
            return {"skipped": status["reason"]}
        rows = [measure(ident, s, b, device, args.seconds, backend) for s in args.sizes for b in args.batches]
    finally:
        os.environ.pop(raster_backend.ENV, None)
        if old is not None:
            os.environ[raster_backend.ENV] = old
    return {"renderer": status, "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--identity", default="checkpoints/obama", help="identity checkpoint folder")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="render sides in px")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="frames per render call")
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS, help="rasterizers to time")
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    ap.add_argument("--device", default="cuda", help="cuda (what this times) or cpu (a smoke test)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("No CUDA GPU here: this times the GPU fallback (--device cpu for a smoke test).")
    ident = load_identity(args.identity, device=args.device)
    res = {"identity": ident.name, "device": args.device, "python": platform.python_version(),
           "torch": torch.__version__,
           "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
           "gaussians": {b: int(ident.model.branches[b]["means"].shape[0]) for b in BRANCHES},
           "seconds_per_measurement": args.seconds}
    for path in args.paths:
        res[path] = _run_path(path, ident, args, args.device)
    usable = [p for p in args.paths if p != "gsplat" or "rows" in res[p]]
    res["agreement"] = agreement(ident, args.sizes, min(args.batches), args.device, usable)
    text = json.dumps(res, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return res


if __name__ == "__main__":
    main()
