"""Single-stream render speed: the plain `TalkingGaussians.render` against the fast paths, in one process.

    python -m emotalk bench single-stream --out out/bench/single_stream.json
        [--identity checkpoints/obama] [--device cuda] [--sizes 256,512] [--batches 1,64] [--frames 200]
        [--emotions "0,0;0.3,0.2"] [--paths plain,fast,graphs,compile,graphs+compile] [--dataset DIR]
    (or python bench/bench_single_stream.py ...)

For each size, emotion, batch and path (timed REPEATS times, the fastest pass reported): render FPS
(deform + raster + composite + uint8 from uint8 body frames, as `render_frames` does; frames left on the
device; warm, timed with torch.cuda.synchronize), deform-only FPS, and the largest pixel difference to the
plain path on the same frames; per size, the bare rasterizer FPS of the same Gaussians at batch 1
and 64 and each path's overhead ratio (bare FPS / render FPS); at batch 1, `render_frames` to the host
(what a stream gets). Every path renders the same audio code (the dataset's, else seeded random numbers
of the identity's shape), poses and body frames. Imports nothing that needs ffmpeg, Gradio or MediaPipe.
On a CPU run it with tiny sizes (--device cpu --sizes 32 --frames 5): the graph paths need CUDA and are
recorded as skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np

DEFAULT_IDENTITY = Path("checkpoints/obama")
REPEATS = 3  # timed passes per path; the fastest is reported (the median too)
ALL_PATHS = ("plain", "fast", "graphs", "compile", "graphs+compile", "fused", "graphs+fused")


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _code_for(ident, dataset: Path | None, n: int) -> np.ndarray:
    """n frames of audio code: the dataset's (tiled), else seeded random numbers of the identity's shape."""
    shape = tuple(ident.model.audio_shape)
    if dataset is not None:
        from emotalk.dataset.format import load_dataset
        from emotalk.training.data import dataset_audio_code

        code = dataset_audio_code(load_dataset(dataset), ident.meta["model"].get("audio_kind", "whisper"))
        if tuple(code.shape[1:]) == shape:
            return np.resize(code, (n, *shape)).astype(np.float32)
    return np.random.default_rng(0).standard_normal((n, *shape)).astype(np.float32)


class Scene:
    """Everything the paths share at one size: device tensors of n frames (poses, codes, body)."""

    def __init__(self, ident, code: np.ndarray, size: int, device: str):
        import torch

        from emotalk.media import resize_frames

        self.ident, self.size, self.device = ident, size, device
        self.body_np = resize_frames(ident.body_frames(), size)  # [L,S,S,3] uint8
        L = min(len(self.body_np), len(ident.track_w2c))
        n = len(code)
        self.sched = torch.as_tensor(np.arange(n) % L, device=device)
        K = ident.K.astype(np.float32).copy()
        K[:2] *= size / ident.size
        self.K = torch.as_tensor(K, device=device)
        self.w2c = torch.as_tensor(ident.track_w2c[:L], device=device)
        self.upper = torch.as_tensor(np.asarray(ident.track_upper[:L], np.float32), device=device)
        self.code = torch.as_tensor(code, device=device)
        self.body = torch.as_tensor(self.body_np[:L], device=device)
        self.n = n

    def frames(self, i: int, j: int, emotion: tuple[float, float]):
        """Frames [i, j) at one emotion (gain 1) and their body [b,S,S,3] uint8."""
        import torch

        from emotalk.gaussians.model import Frames

        s = self.sched[i:j]
        b = j - i
        emo = torch.tensor(emotion, dtype=torch.float32, device=self.device).expand(b, 2)
        fr = Frames(self.w2c[s], self.K[None].expand(b, 3, 3), self.code[i:j], self.upper[s], emo,
                    gain=torch.ones(b, device=self.device))
        return fr, self.body[s]


def _renderer(model, path: str):
    """(uint8 render fn(fr, body_u8, S, emo_rows), float render fn (same arguments), deform fn(fr,
    emo_rows)) of a path."""
    from emotalk.gaussians.fast_render import fast_renderer, path_settings
    from emotalk.gaussians.model import BRANCHES

    s = path_settings(path)
    if s is None:
        caches = {b: model.precompute(b) for b in BRANCHES}

        def deform(fr, emo):
            if model.settings.lip_code:
                fr = replace(fr, lips=model.lips(fr, emotional=True))
            return {b: model.deform(b, fr, caches[b]) for b in BRANCHES}

        def plain(fr, body, S, emo):
            return model.render(fr, S, S, body.float() / 255, caches=caches).rgb

        return (lambda *a: _to_u8(plain(*a))), plain, deform
    r = fast_renderer(model, s)  # one per path and model: graphs and compiled code are kept between runs
    return ((lambda fr, body, S, emo: r.render_u8(fr, S, S, body, emotion=emo)),
            (lambda fr, body, S, emo: r.render(fr, S, S, body.float() / 255, emotion=emo).rgb), r.deform)


def _to_u8(rgb):
    from emotalk.gaussians.fused_kernels import to_uint8

    return to_uint8(rgb)


def time_path(scene: Scene, path: str, batch: int, emotion: tuple[float, float], n: int,
              reference: list | None) -> tuple[dict, list]:
    """Render FPS, deform FPS and pixel difference of one path; returns (entry, its first images)."""
    import torch

    model, S, dev = scene.ident.model, scene.size, scene.device
    render, render_float, deform = _renderer(model, path)
    rows = np.tile(np.array([*emotion, 1.0], np.float32), (batch, 1))
    n = -(-n // batch) * batch  # whole batches, at least n frames
    starts = range(0, n, batch)
    with torch.no_grad():
        t0 = time.time()
        for i in list(starts)[:3]:  # warm-up: first use (graph capture, compilation) is not timed
            fr, body = scene.frames(i, i + batch, emotion)
            render(fr, body, S, rows)
        _sync(dev)
        warm_s = time.time() - t0
        batches = [scene.frames(i, i + batch, emotion) for i in starts]  # inputs made before the clock
        times = []
        for _ in range(REPEATS):  # best of a few: batch-1 timings on a shared host vary by ±20 %
            _sync(dev)
            t0 = time.time()
            for fr, body in batches:
                img = render(fr, body, S, rows)
            _sync(dev)
            times.append(time.time() - t0)
        render_s = min(times)
        t0 = time.time()
        for fr, _ in batches:
            g = deform(fr, rows)
        _sync(dev)
        deform_s = time.time() - t0
        del img, g
        check = batches[:max(1, 8 // batch)]
        imgs = [render_float(fr, body, S, rows)[:8].float().cpu() for fr, body in check]
        u8 = [render(fr, body, S, rows)[:8].cpu() for fr, body in check]
    entry = {"render_fps": n / render_s, "render_fps_median": n / float(np.median(times)),
             "deform_fps": n / deform_s, "frames": n, "warmup_s": warm_s}
    if reference is not None:
        diff = max(float((a - b).abs().max()) for a, b in zip(imgs, reference))
        du8 = max(int((a.int() - _to_u8(b).int()).abs().max()) for a, b in zip(u8, reference))
        entry.update({"max_abs_diff_vs_plain": diff, "max_u8_diff_vs_plain": du8})
    return entry, imgs


def bare_raster(scene: Scene, batch: int, n: int) -> float:
    """FPS of the rasterizer alone (both branches, gsplat where it works) on Gaussians deformed once."""
    import torch

    from emotalk.gaussians.model import BRANCHES
    from emotalk.gaussians.raster import rasterize

    model, S = scene.ident.model, scene.size
    fr, _ = scene.frames(0, batch, (0.0, 0.0))
    with torch.no_grad():
        caches = {b: model.precompute(b) for b in BRANCHES}
        if model.settings.lip_code:
            fr = replace(fr, lips=model.lips(fr, emotional=True))
        gs = {b: model.deform(b, fr, caches[b]) for b in BRANCHES}
        for _ in range(3):
            for b in BRANCHES:
                rasterize(*gs[b], fr.viewmats, fr.Ks, S, S)
        reps = max(1, n // batch)
        best = float("inf")
        for _ in range(REPEATS):
            _sync(scene.device)
            t0 = time.time()
            for _ in range(reps):
                for b in BRANCHES:
                    rasterize(*gs[b], fr.viewmats, fr.Ks, S, S)
            _sync(scene.device)
            best = min(best, time.time() - t0)
    return reps * batch / best


def stream_fps(scene: Scene, path: str, emotion: tuple[float, float], n: int) -> dict:
    """`render_frames` at batch 1 to host uint8, as a stream gets frames: first frame and steady FPS."""
    from emotalk.render.frames import render_frames

    code = scene.code[:n].cpu().numpy()
    ident = scene.ident
    kw = dict(emotion=emotion, batch=1, size=scene.size, device=scene.device, body=scene.body_np,
              blinks=False, render_path=path)
    list(render_frames(ident, code[:3], **kw))  # warm (graph capture, compilation)
    t0 = time.time()
    stamps = [time.time() for _ in render_frames(ident, code, **kw)]
    return {"first_frame_s": stamps[0] - t0, "fps": (len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-9),
            "frames": len(stamps)}


def run(identity: Path, out: Path, device: str, sizes: list[int], batches: list[int], n: int,
        emotions: list[tuple[float, float]], paths: list[str], dataset: Path | None = None,
        bare_batches: tuple[int, ...] = (1, 64), log=print) -> dict:
    import torch

    from emotalk.folders import atomic_write_text
    from emotalk.gaussians.raster import backend_status
    from emotalk.identity.checkpoint import load_identity

    cuda = device.startswith("cuda")
    if cuda:
        with contextlib.suppress(ImportError):  # the lent GPU hosts' prebuilt gsplat kernel, where it is
            import gsplat_prebuilt  # noqa: F401
    ident = load_identity(identity, device=device)
    doc = {"header": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "device": device,
                      "gpu": torch.cuda.get_device_name() if cuda else "no GPU", "torch": torch.__version__,
                      "identity": str(identity), "n_gaussians": ident.model.n_gaussians(),
                      "raster": backend_status() if cuda else "torch (CPU)", "frames": n,
                      "audio_code": str(dataset) if dataset else "seeded random (shape of the identity's)"},
           "sizes": {}}
    code = _code_for(ident, dataset, max(n, max(batches)) + 8 * max(batches))

    def save() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(doc, indent=1, default=str))

    for S in sizes:
        idn = replace(ident, size=S, K=ident.K * np.array([[S / ident.size]] * 2 + [[1.0]], np.float32))
        scene = Scene(idn, code, S, device)
        res = doc["sizes"][str(S)] = {"bare_raster_fps": {}, "runs": {}, "stream": {}}
        for b in sorted(set(batches) | set(bare_batches)):
            try:
                res["bare_raster_fps"][f"batch{b}"] = bare_raster(scene, b, max(n, 4 * b))
            except Exception as e:
                res["bare_raster_fps"][f"batch{b}"] = f"error: {type(e).__name__}: {e}"
        for emo in emotions:
            for b in batches:
                tag = f"emotion{emo[0]:g},{emo[1]:g}_batch{b}"
                runs = res["runs"][tag] = {}
                ref = None
                for p in paths:
                    if "graphs" in p and not cuda:
                        runs[p] = {"skipped": "CUDA graphs need a CUDA device"}
                        continue
                    try:
                        entry, imgs = time_path(scene, p, b, emo, max(n, b), ref)
                        ref = imgs if p == "plain" else ref
                        bare = res["bare_raster_fps"].get(f"batch{b}")
                        if isinstance(bare, float):
                            entry["overhead_ratio"] = bare / entry["render_fps"]
                        runs[p] = entry
                    except Exception as e:
                        traceback.print_exc()
                        runs[p] = {"error": f"{type(e).__name__}: {e}"}
                    log(f"[single-stream] {S}px {tag} {p}: {json.dumps(runs[p], default=str)}")
                    save()
            for p in paths:
                if "graphs" in p and not cuda:
                    continue
                try:
                    res["stream"][f"emotion{emo[0]:g},{emo[1]:g}_{p}"] = stream_fps(scene, p, emo, max(n, 4))
                except Exception as e:
                    traceback.print_exc()
                    res["stream"][f"emotion{emo[0]:g},{emo[1]:g}_{p}"] = {"error": f"{type(e).__name__}: {e}"}
        log(f"[single-stream] {S}px bare raster FPS {res['bare_raster_fps']}")
        save()
    doc["summary"] = summary(doc)
    save()
    log(json.dumps(doc["summary"], indent=1))
    log(f"wrote {out}")
    return doc


def summary(doc: dict) -> dict:
    """Per size and emotion at batch 1: FPS and overhead of each path, and the speed-up over plain."""
    out = {}
    for S, res in doc["sizes"].items():
        for tag, runs in res["runs"].items():
            plain = runs.get("plain", {}).get("render_fps")
            out[f"{S}px_{tag}"] = {
                p: {k: (round(r[k], 3) if isinstance(r[k], float) else r[k])
                    for k in ("render_fps", "overhead_ratio", "max_abs_diff_vs_plain", "skipped", "error")
                    if k in r}
                | ({"speedup_vs_plain": round(r["render_fps"] / plain, 2)} if plain and "render_fps" in r
                   else {})
                for p, r in runs.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emotalk bench single-stream", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--identity", type=Path, default=DEFAULT_IDENTITY)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--sizes", default="256,512", help="render sides, comma-separated")
    ap.add_argument("--batches", default="1,64", help="render batch sizes, comma-separated")
    ap.add_argument("--frames", type=int, default=200, help="timed frames per run (at least one batch)")
    ap.add_argument("--emotions", default="0,0;0.3,0.2", help="(valence,arousal) pairs, ';'-separated")
    ap.add_argument("--paths", default=",".join(ALL_PATHS), help="render paths, comma-separated "
                    "(plain first: the others are compared with it)")
    ap.add_argument("--dataset", type=Path, default=None, help="dataset whose audio code to render")
    ap.add_argument("--bare-batches", default="1,64", help="batch sizes of the bare rasterizer timing")
    a = ap.parse_args(argv)
    paths = [p.strip() for p in a.paths.split(",") if p.strip()]
    if "plain" in paths:
        paths = ["plain"] + [p for p in paths if p != "plain"]
    bad = [p for p in paths if p not in ALL_PATHS]
    if bad:
        ap.error(f"unknown paths {bad}; use {', '.join(ALL_PATHS)}")
    emos = [tuple(float(x) for x in e.split(",")) for e in a.emotions.split(";") if e.strip()]
    ints = lambda text: [int(x) for x in text.split(",")]  # noqa: E731
    run(a.identity, a.out, a.device, ints(a.sizes), ints(a.batches), a.frames, emos, paths,
        a.dataset, tuple(ints(a.bare_batches)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
