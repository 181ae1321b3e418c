"""Vectorised PyTorch rasterizer: what draws on a GPU where gsplat cannot run (on the CPU the loop
reference, with its early termination, is faster and stays the default; see `raster_backend.torch_path`).

The image model of the reference `raster.rasterize_torch` (EWA projection with the 0.3 px² blur, alpha =
min(0.999, o·exp(-σ)), contributions under 1/255 skipped, a pixel stops before its transmittance falls to
1e-4, the same opacity-aware tile boxes), without a Python loop over frames, tiles or Gaussians:
every (tile, Gaussian) pair of every frame is listed once, sorted by (frame·tile, depth), and evaluated at
the tile's 64 pixels in one go. A pixel's transmittance before each pair is a segmented prefix sum of
log(1-α) along the sorted pairs (one flat scan in float64, so a tile's start can be subtracted exactly);
weights α·T are summed per tile with index_add. Alpha is the sum of the weights (= 1 - T). Memory is
bounded by processing whole tiles in chunks of at most `chunk_elems` pixel·pair values (a handful of
chunks at 512², batch 8); with gradients each chunk is recomputed in backward (activation checkpointing),
so training memory is bounded the same way. Two host syncs per call (pair count, tile ends); every pair
is evaluated at all 64 pixels (no early exit: cheap on a GPU, not on a CPU).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from emotalk.gaussians.projection import ALPHA_MAX, ALPHA_MIN, T_STOP, TILE, RasterOut, project, tile_boxes

CHUNK_ELEMS = 1 << 24  # pixel·pair values per chunk: about 1.5 GB of temporaries without gradients


def rasterize_fast(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, colors: Tensor,
                   viewmats: Tensor, Ks: Tensor, width: int, height: int,
                   background: Tensor | None = None, chunk_elems: int = CHUNK_ELEMS) -> RasterOut:
    """Rasterize B cameras at once; inputs and outputs as `raster.rasterize_torch`.

    means [B,N,3] (or [N,3], shared by all cameras), quats [B,N,4], scales [B,N,3] (linear),
    opacities [B,N] in [0,1], colors [B,N,D], viewmats [B,4,4], Ks [B,3,3]
    -> RasterOut(rgb [B,H,W,D] premultiplied, alpha [B,H,W,1], means2d [B,N,2], radii [B,N]).
    """
    B = viewmats.shape[0]
    if means.dim() == 2:
        means, quats, scales, opacities, colors = (x.expand(B, *x.shape) for x in
                                                   (means, quats, scales, opacities, colors))
    N, D = means.shape[1], colors.shape[-1]
    means2d, conics, depths, valid = project(means, quats, scales, viewmats, Ks, width, height)
    tw, th = math.ceil(width / TILE), math.ceil(height / TILE)
    ok, radii, boxes = tile_boxes(means2d, conics, opacities, valid, width, height)  # [B,N], [B,N], [B,N,4]
    gtile, gid, first, ends = _bin_pairs(ok, depths, boxes, tw, th)
    P = TILE * TILE
    flat = [means2d.reshape(B * N, 2), conics.reshape(B * N, 3), opacities.reshape(B * N),
            colors.reshape(B * N, D)]
    pieces = []
    for t0, t1 in _chunks(ends, max(1, chunk_elems // P)):
        p0 = int(ends[t0 - 1]) if t0 > 0 else 0
        p1 = int(ends[t1 - 1])
        if p1 == p0:  # tiles nobody covers
            pieces.append(means.new_zeros(P, t1 - t0, D + 1))
            continue
        args = (gtile[p0:p1], gid[p0:p1], first[p0:p1] - p0, t0, t1 - t0, flat, tw, th)
        if torch.is_grad_enabled() and any(t.requires_grad for t in flat):
            # keep only the chunk's inputs for backward and recompute the rest then: training memory
            # stays bounded by one chunk instead of growing with every pixel·pair value
            pieces.append(checkpoint(_composite, *args, use_reentrant=False, preserve_rng_state=False))
        else:
            pieces.append(_composite(*args))
    acc = torch.cat(pieces, 1) if len(pieces) > 1 else pieces[0]  # [P, B·th·tw, D+1]
    img = (acc.reshape(TILE, TILE, B, th, tw, D + 1).permute(2, 3, 0, 4, 1, 5)
           .reshape(B, th * TILE, tw * TILE, D + 1)[:, :height, :width])
    rgb, alpha = img[..., :D], img[..., D:]
    if background is not None:
        rgb = rgb + (1 - alpha) * background
    return RasterOut(rgb, alpha, means2d, radii)


@torch.no_grad()
def _bin_pairs(ok: Tensor, depths: Tensor, boxes: Tensor, tw: int, th: int
               ) -> tuple[Tensor, Tensor, Tensor, np.ndarray]:
    """All (tile, Gaussian) pairs, sorted by frame·tile then depth (ties by index, as the reference).

    ok [B,N], depths [B,N], boxes [B,N,4] -> gtile [M] (b·th·tw + tile), gid [M] (b·N + n),
    first [M] (index of the first pair of the same tile), ends [B·th·tw] (numpy: one past each tile's
    last pair; the one copy to the host).
    """
    B, N = ok.shape
    dev = ok.device
    idx = torch.argsort(depths.reshape(-1), stable=True)  # flat ids b·N + n, front to back (frames mixed)
    x0, x1, y0, y1 = boxes.reshape(-1, 4)[idx].unbind(-1)
    nx = x1 - x0
    cnt = torch.where(ok.reshape(-1)[idx], nx * (y1 - y0), 0)  # culled Gaussians make no pairs
    g = torch.repeat_interleave(torch.arange(len(idx), device=dev), cnt)  # pair -> position in idx
    start = torch.cumsum(cnt, 0) - cnt
    k = torch.arange(len(g), device=dev) - start[g]
    gtile = (idx[g] // N) * (tw * th) + (y0[g] + k // nx[g]) * tw + (x0[g] + k % nx[g])
    gtile, order = torch.sort(gtile, stable=True)  # by tile; depth order kept inside a tile
    gid = idx[g[order]]
    tiles = torch.arange(B * tw * th, device=dev)
    first = torch.searchsorted(gtile, tiles)[gtile]  # (sorted: no atomics, unlike bincount)
    ends = torch.searchsorted(gtile, tiles, right=True)
    return gtile, gid, first, ends.cpu().numpy()


def _chunks(ends: np.ndarray, cap: int) -> list[tuple[int, int]]:
    """Split tiles 0..T-1 into runs [t0, t1) of whole tiles with at most `cap` pairs each
    (a single tile with more pairs is a run of its own)."""
    out, t0, T = [], 0, len(ends)
    while t0 < T:
        base = ends[t0 - 1] if t0 > 0 else 0
        t1 = int(np.searchsorted(ends, base + cap, side="right"))
        t1 = min(T, max(t1, t0 + 1))
        out.append((t0, t1))
        t0 = t1
    return out


def _composite(gtile: Tensor, gid: Tensor, first: Tensor, t0: int, nt: int, flat: list[Tensor], tw: int,
               th: int) -> Tensor:
    """Front-to-back compositing of one chunk of whole tiles t0..t0+nt-1 (frame·tile ids).

    gtile [M] tile of each pair (sorted), gid [M] flat Gaussian ids, first [M] first pair of the same
    tile (relative to the chunk); flat: means2d [BN,2], conics [BN,3], opacities [BN], colors [BN,D].
    Returns [P, nt, D+1]: per pixel of each tile, sum of w·colour and sum of w (w = α·T before).
    """
    means2d, conics, opacities, colors = flat
    dev, dt = means2d.device, means2d.dtype
    tile = gtile % (tw * th)  # tile within its frame
    ox = (tile % tw * TILE).to(dt) + 0.5 - means2d[gid, 0]  # [M] tile origin's pixel centre - mean
    oy = (tile // tw * TILE).to(dt) + 0.5 - means2d[gid, 1]
    loc = torch.arange(TILE, device=dev, dtype=dt)
    lx, ly = loc.repeat(TILE)[:, None], loc.repeat_interleave(TILE)[:, None]  # [P,1] x, y within the tile
    dx, dy = lx + ox, ly + oy  # [P,M]
    cn = conics[gid]  # [M,3]
    # σ = ½c₀dx² + ½c₂dy² + c₁dx·dy, written to take few passes over [P,M]
    sigma = torch.addcmul((0.5 * cn[:, 2]) * dy * dy, dx, torch.addcmul(cn[:, 1] * dy, 0.5 * cn[:, 0], dx))
    a = torch.clamp_max(opacities[gid] * torch.exp(-sigma), ALPHA_MAX)
    a = torch.where((sigma >= 0) & (a >= ALPHA_MIN), a, 0.0)
    l1a = torch.log1p(-a)  # [P,M] log(1-α)
    # Segmented prefix sum: one flat scan over all pixels' rows, minus its value before each tile's start.
    l1a64 = l1a.double()
    cs = torch.cumsum(l1a64.reshape(-1), 0).view_as(l1a64)
    lt_incl = (cs - (cs - l1a64)[:, first]).to(dt)  # log T after each pair
    keep = lt_incl > math.log(T_STOP)  # a prefix of each tile's pairs: the pixel has not stopped yet
    w = torch.where(keep, a * torch.exp(lt_incl - l1a), 0.0)  # α·T before the pair
    col = colors[gid]
    col = torch.cat([col, torch.ones_like(col[:, :1])], -1)  # [M,D+1]: colour and 1 (for alpha)
    return means2d.new_zeros(w.shape[0], nt, col.shape[1]).index_add(1, gtile - t0, w[..., None] * col)
