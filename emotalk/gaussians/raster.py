"""Rasterize 3D Gaussians: gsplat on CUDA, a pure-PyTorch reference (same inputs, differentiable), and
the dispatch `rasterize` that also reaches the vectorised PyTorch rasterizer (`raster_fast`).

All follow gsplat's "classic" 3DGS model: EWA projection with a 0.3 px² blur, per-pixel
alpha = min(0.999, o·exp(-σ)), contributions under 1/255 skipped, front-to-back compositing
that stops before transmittance falls to 1e-4, pixel centres at +0.5. Colours are given per
Gaussian (already evaluated from SH, see `eval_sh`), so both back ends see exactly the same inputs.
The reference is tiled (8×8 px) and culls by an opacity-aware bounding box, so it runs on CPU.
On CUDA, 'auto' uses gsplat only if a tiny render with it works and matches the reference (checked
once, see `backend_status`); otherwise the vectorised PyTorch rasterizer (`raster_fast`) renders on the
GPU: the reference loops over frames and tile batches, too slow for real time there, and stays as the
definition the fast paths are tested against. On the CPU the reference is the faster one and draws.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from emotalk.gaussians import raster_backend, raster_fast
from emotalk.gaussians.projection import (
    ALPHA_MAX,
    ALPHA_MIN,
    EPS2D,
    T_STOP,
    TILE,
    RasterOut,
    project,
    quat_to_rotmat,
    tile_boxes,
)

__all__ = ["ALPHA_MAX", "ALPHA_MIN", "EPS2D", "T_STOP", "TILE", "RasterOut", "backend_status", "eval_sh",
           "project", "quat_to_rotmat", "rasterize", "rasterize_gsplat", "rasterize_torch", "sh_dim"]

# Real spherical-harmonics constants (degrees 0..2), the usual 3DGS convention.
_C0 = 0.28209479177387814
_C1 = 0.4886025119029199
_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792,
       0.5462742152960396)


def sh_dim(degree: int) -> int:
    """Number of SH coefficients per colour channel for a degree."""
    return (degree + 1) ** 2


def eval_sh(coeffs: Tensor, dirs: Tensor, degree: int) -> Tensor:
    """Colour from SH coefficients along view directions; +0.5 and clamped at 0 as gsplat does.

    coeffs: [..., N, K, 3] with K >= (degree+1)²; dirs: [..., N, 3] (any length, normalised here).
    """
    d = F.normalize(dirs, dim=-1)
    x, y, z = d[..., 0:1], d[..., 1:2], d[..., 2:3]
    out = _C0 * coeffs[..., 0, :]
    if degree >= 1:
        out = out - _C1 * y * coeffs[..., 1, :] + _C1 * z * coeffs[..., 2, :] - _C1 * x * coeffs[..., 3, :]
    if degree >= 2:
        xx, yy, zz, xy, yz, xz = x * x, y * y, z * z, x * y, y * z, x * z
        out = (out + _C2[0] * xy * coeffs[..., 4, :] + _C2[1] * yz * coeffs[..., 5, :]
               + _C2[2] * (2 * zz - xx - yy) * coeffs[..., 6, :] + _C2[3] * xz * coeffs[..., 7, :]
               + _C2[4] * (xx - yy) * coeffs[..., 8, :])
    return torch.clamp_min(out + 0.5, 0.0)


def rasterize_torch(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                    viewmats: Tensor, Ks: Tensor, width: int, height: int,
                    background: Tensor | None = None, chunk_elems: int = 1 << 22,
                    k_chunk: int = 96) -> RasterOut:
    """Pure-PyTorch reference rasterizer (differentiable; CPU or GPU).

    means [B,N,3] (or [N,3], shared by all cameras), quats [B,N,4], scales [B,N,3] (linear),
    opacities [B,N] in [0,1], colors [B,N,D], viewmats [B,4,4], Ks [B,3,3].
    Memory is bounded by `chunk_elems` (pixels × Gaussians per tile batch); Gaussians are taken
    `k_chunk` at a time per tile and a tile stops once all its pixels are opaque.
    """
    B = viewmats.shape[0]
    if means.dim() == 2:
        means, quats, scales, opacities, colors = (x.expand(B, *x.shape) for x in
                                                   (means, quats, scales, opacities, colors))
    means2d, conics, depths, valid = project(means, quats, scales, viewmats, Ks, width, height)
    D = colors.shape[-1]
    rgb = means.new_zeros(B, height, width, D)
    alpha = means.new_zeros(B, height, width, 1)
    radii = means.new_zeros(B, means.shape[1])
    tw, th = math.ceil(width / TILE), math.ceil(height / TILE)
    ys, xs = torch.meshgrid(torch.arange(TILE, device=means.device), torch.arange(TILE, device=means.device),
                            indexing="ij")
    local = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1).to(means.dtype)  # [P,2] within a tile
    out_rgb, out_a = [], []
    for bi in range(B):
        with torch.no_grad():
            ok, radii[bi], boxes = tile_boxes(means2d[bi], conics[bi], opacities[bi], valid[bi], width,
                                              height)
            idx = torch.nonzero(ok)[:, 0]
            idx = idx[torch.argsort(depths[bi, idx], stable=True)]  # front to back
            x0, x1, y0, y1 = boxes[idx].unbind(-1)
            nx, ny = x1 - x0, y1 - y0
            cnt = nx * ny
            g = torch.repeat_interleave(torch.arange(len(idx), device=means.device), cnt)
            start = torch.cumsum(cnt, 0) - cnt
            k = torch.arange(len(g), device=means.device) - start[g]
            tile = (y0[g] + k // nx[g]) * tw + (x0[g] + k % nx[g])
            order = torch.argsort(tile, stable=True)  # by tile, depth order kept inside a tile
            tile, gid = tile[order], idx[g[order]]
            counts = torch.bincount(tile, minlength=tw * th)
            offsets = torch.cumsum(counts, 0) - counts
            tiles_sorted = torch.argsort(counts, descending=True)
            tiles_sorted = tiles_sorted[counts[tiles_sorted] > 0]
        P = TILE * TILE
        tiles_img, tiles_rgb, tiles_acc = [], [], []
        i = 0
        while i < len(tiles_sorted):
            kmax = int(counts[tiles_sorted[i]])
            kc = min(kmax, k_chunk)
            nt = max(1, min(len(tiles_sorted) - i, chunk_elems // max(1, P * kc)))
            ts = tiles_sorted[i:i + nt]
            i += nt
            rgb_t, acc_t = _composite_tiles(ts, counts, offsets, gid, means2d[bi], conics[bi], opacities[bi],
                                            colors[bi], tw, local, kc)
            tiles_img.append(ts)
            tiles_rgb.append(rgb_t)
            tiles_acc.append(acc_t)
        img = means.new_zeros(tw * th, P, D)
        acc = means.new_zeros(tw * th, P, 1)
        if tiles_img:
            ts_all = torch.cat(tiles_img)
            img = img.index_copy(0, ts_all, torch.cat(tiles_rgb))
            acc = acc.index_copy(0, ts_all, torch.cat(tiles_acc))
        img = img.reshape(th, tw, TILE, TILE, D).permute(0, 2, 1, 3, 4).reshape(th * TILE, tw * TILE, D)
        acc = acc.reshape(th, tw, TILE, TILE, 1).permute(0, 2, 1, 3, 4).reshape(th * TILE, tw * TILE, 1)
        out_rgb.append(img[:height, :width])
        out_a.append(acc[:height, :width])
    rgb = torch.stack(out_rgb)
    alpha = torch.stack(out_a)
    if background is not None:
        rgb = rgb + (1 - alpha) * background
    return RasterOut(rgb, alpha, means2d, radii)


def _composite_tiles(ts: Tensor, counts: Tensor, offsets: Tensor, gid: Tensor, means2d: Tensor,
                     conics: Tensor, opacities: Tensor, colors: Tensor, tw: int, local: Tensor,
                     kc: int) -> tuple[Tensor, Tensor]:
    """Front-to-back compositing of tiles `ts` [nt], `kc` Gaussians at a time.

    Returns rgb [nt,P,D] and alpha [nt,P,1].
    """
    dev = means2d.device
    nt, P, D = len(ts), local.shape[0], colors.shape[-1]
    origin = torch.stack([(ts % tw) * TILE, (ts // tw) * TILE], -1).to(means2d.dtype)
    pix = origin[:, None, :] + local[None] + 0.5  # [nt,P,2]
    rgb = means2d.new_zeros(nt, P, D)
    logT = means2d.new_zeros(nt, P, 1)  # log transmittance so far
    alive = torch.arange(nt, device=dev)  # tiles with pixels still transparent and Gaussians left
    done = torch.zeros(nt, P, 1, dtype=torch.bool, device=dev)  # pixels that stopped (for good, as gsplat)
    log_stop = math.log(T_STOP)
    k0 = 0
    kmax = int(counts[ts].max())
    while k0 < kmax and len(alive) > 0:
        with torch.no_grad():
            ar = torch.arange(k0, k0 + kc, device=dev)
            cnt = counts[ts[alive]]
            pad = ar[None, :] < cnt[:, None]  # [na,K]
            sel = torch.where(pad, offsets[ts[alive]][:, None] + ar[None, :], torch.zeros_like(ar)[None, :])
            gsel = gid[sel]  # [na,K]
        mu, cn = means2d[gsel], conics[gsel]  # [na,K,2], [na,K,3]
        px = pix[alive]
        dx = px[:, :, None, 0] - mu[:, None, :, 0]  # [na,P,K]
        dy = px[:, :, None, 1] - mu[:, None, :, 1]
        sigma = (0.5 * (cn[:, None, :, 0] * dx * dx + cn[:, None, :, 2] * dy * dy)
                 + cn[:, None, :, 1] * dx * dy)
        a = torch.clamp_max(opacities[gsel][:, None, :] * torch.exp(-sigma), ALPHA_MAX)
        a = torch.where(pad[:, None, :] & (sigma >= 0) & (a >= ALPHA_MIN), a, torch.zeros_like(a))
        lt0 = logT[alive]
        l1a = torch.log1p(-a)
        lt_incl = lt0 + torch.cumsum(l1a, -1)  # [na,P,K] log T after each Gaussian
        keep = (lt_incl > log_stop) & ~done[alive]  # transmittance stays above 1e-4: the Gaussian is drawn
        w = torch.where(keep, a * torch.exp(lt_incl - l1a), torch.zeros_like(a))
        # keep is a prefix along K (log T only falls), so the new log T is the last kept value.
        last = torch.where(keep, lt_incl, torch.ones_like(lt_incl)).amin(-1, keepdim=True)
        lt_new = torch.minimum(last, lt0)
        col = colors[gsel]  # [na,K,D]
        rgb = rgb.index_add(0, alive, torch.bmm(w, col))
        logT = logT.index_copy(0, alive, lt_new)
        with torch.no_grad():
            done = done.index_copy(0, alive, ~keep[..., -1:])
            finished = (~keep[..., -1]).all(-1) | (cnt <= k0 + kc)
        alive = alive[~finished]
        k0 += kc
    return rgb, 1 - torch.exp(logT)


def rasterize_gsplat(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                     viewmats: Tensor, Ks: Tensor, width: int, height: int,
                     background: Tensor | None = None) -> RasterOut:
    """gsplat's CUDA rasterizer with the same inputs and outputs as `rasterize_torch`.

    Per-frame Gaussians ([B,N,...]) are rendered as B batches of one camera each.
    """
    gsplat = import_gsplat()

    B = viewmats.shape[0]
    if means.dim() == 2:
        rgb, alpha, info = gsplat.rasterization(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            packed=False, eps2d=EPS2D, rasterize_mode="classic")
        m2 = info["means2d"]  # [B,N,2]
    else:
        rgb, alpha, info = gsplat.rasterization(
            means, quats, scales, opacities, colors, viewmats[:, None], Ks[:, None], width, height,
            packed=False, eps2d=EPS2D, rasterize_mode="classic")
        rgb, alpha = rgb[:, 0], alpha[:, 0]
        m2 = info["means2d"]  # [B,1,N,2]: kept as gsplat made it, so retain_grad() sees its gradient
    radii = info["radii"]
    radii = radii.reshape(B, -1, *radii.shape[-1:]).amax(-1) if radii.dim() >= 3 else radii
    if background is not None:
        rgb = rgb + (1 - alpha) * background
    return RasterOut(rgb, alpha, m2, radii)


def import_gsplat():
    """gsplat, imported after pointing CUDA_HOME at a pip CUDA toolkit where the machine has no other
    (a Space: `cuda_toolkit.use_pip_toolkit`), so its first-use kernel build finds nvcc."""
    from emotalk.gaussians import cuda_toolkit

    cuda_toolkit.ensure_once()
    import gsplat

    return gsplat


def _check_gsplat(device: str = "cuda") -> None:
    """Raise unless gsplat imports, builds/loads its kernels and draws a tiny scene like the reference."""
    import_gsplat()  # first, so a missing gsplat is reported as such

    dev = torch.device(device)
    n = 16
    t = torch.linspace(-1.0, 1.0, n, device=dev)
    means = torch.stack([0.3 * t, 0.2 * torch.roll(t, 5), 2.0 + 0.1 * t], -1)
    quats = torch.stack([torch.ones_like(t), 0.2 * t, -0.1 * t, 0.3 * t], -1)
    scales = (0.03 + 0.02 * t.abs())[:, None].expand(n, 3).contiguous()
    opac = 0.4 + 0.5 * t.abs()
    cols = torch.stack([t.abs(), 1 - t.abs(), 0.5 + 0 * t], -1)
    vm = torch.eye(4, device=dev)[None]
    K = torch.tensor([[[40.0, 0, 16], [0, 40.0, 16], [0, 0, 1]]], device=dev)
    with torch.no_grad():
        got = rasterize_gsplat(means, quats, scales, opac, cols, vm, K, 32, 32).rgb
        ref = rasterize_torch(means, quats, scales, opac, cols, vm, K, 32, 32).rgb
    err = float((got - ref).norm() / ref.norm().clamp_min(1e-12))
    if not err <= 1e-2:  # measured 4e-5 on an H100; NaN fails too
        raise RuntimeError(f"gsplat's test image differs from the reference (relative L2 error {err:.2g})")


def backend_status() -> dict:
    """The rasterizer that draws CUDA tensors under 'auto', why, and a notice for users (or None).

    Keys: backend ('gsplat'/'torch'), device ('cuda'/'cpu'), reason, forced, fallback, notice,
    cuda_toolkit (the pip CUDA toolkit put on CUDA_HOME for gsplat's build, or None) and
    fused_kernel_failures (Triton kernels that could not run here, and why; their PyTorch forms run).
    The first call on a GPU imports gsplat and may build its kernels; the answer is cached.
    """
    from emotalk.gaussians.cuda_toolkit import chosen
    from emotalk.gaussians.fused_kernels import failures

    return {**raster_backend.decide(_check_gsplat, torch.cuda.is_available()).as_dict(),
            "cuda_toolkit": chosen(), "fused_kernel_failures": failures()}


BACKENDS = ("auto", "gsplat", "torch", "fast", "reference")


def resolve_backend(backend: str, cuda: bool) -> str:
    """The rasterizer `rasterize` would use for tensors on CUDA (cuda) or the CPU: 'gsplat', 'fast' or
    'reference'."""
    if backend == "auto":
        backend = raster_backend.decide(_check_gsplat, cuda=True).backend if cuda else "torch"
    if backend == "torch":
        backend = raster_backend.torch_path(cuda)
    return backend


def rasterize(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
              viewmats: Tensor, Ks: Tensor, width: int, height: int, background: Tensor | None = None,
              backend: str = "auto") -> RasterOut:
    """Rasterize with gsplat or a PyTorch rasterizer: 'fast' (vectorised, `raster_fast`) or 'reference'
    (`rasterize_torch`, loops over frames and tile batches).

    'torch' is the PyTorch rasterizer best on the tensors' device: 'fast' on CUDA, 'reference' on the CPU
    (early termination makes it faster there). 'auto' is 'torch' for CPU tensors; for CUDA tensors gsplat
    when it works here (or as EMOTALK_RASTER says), else 'torch'. 'gsplat' uses gsplat without a check.
    """
    backend = resolve_backend(backend, means.is_cuda)
    fns = {"gsplat": rasterize_gsplat, "fast": raster_fast.rasterize_fast, "reference": rasterize_torch}
    if backend not in fns:
        raise ValueError(f"unknown rasterizer backend {backend!r}; use one of {', '.join(BACKENDS)}")
    return fns[backend](means, quats, scales, opacities, colors, viewmats, Ks, width, height, background)
