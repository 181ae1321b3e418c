"""The vectorised PyTorch rasterizer (`raster_fast`, the GPU fallback) against the loop reference and the
dense definition: images, alpha, radii, gradients, chunking, and the stop rule both must share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotalk.gaussians import raster, raster_backend, raster_fast
from emotalk.gaussians.projection import project, tile_boxes
from emotalk.gaussians.raster import rasterize, rasterize_torch
from emotalk.gaussians.raster_fast import _bin_pairs, _chunks, rasterize_fast
from tests.test_gaussians import _dense, _scene


def _random_scene(seed: int, n: int, size: int, batch: int, per_frame: bool):
    params, vm, K = _scene(n=n, size=size, batch=batch, seed=seed)
    if per_frame:  # per-frame deformed Gaussians, as the talking head renders them
        g = torch.Generator().manual_seed(seed + 100)
        params = [p[None].repeat(batch, *[1] * p.dim()) for p in params]
        params[0] = params[0] + 0.02 * torch.randn(params[0].shape, generator=g)
        params[4] = (params[4] + 0.1 * torch.randn(params[4].shape, generator=g)).clamp(0, 1)
    return params, vm, K


def test_fast_matches_the_dense_definition() -> None:
    params, vm, K = _scene()
    img, alpha = _dense(*params, vm, K, 40, 36)
    out = rasterize_fast(*params, vm, K, 40, 36, chunk_elems=64 * 40)  # many chunks of a few tiles
    assert out.rgb.shape == (2, 36, 40, 3) and out.alpha.shape == (2, 36, 40, 1)
    assert alpha.mean() > 0.3  # the scene is not empty
    assert torch.allclose(out.rgb, img, atol=2e-6), (out.rgb - img).abs().max()
    assert torch.allclose(out.alpha, alpha, atol=2e-6)


@pytest.mark.parametrize("seed, per_frame", [(0, False), (1, True), (2, True), (3, False)])
def test_fast_matches_the_reference(seed: int, per_frame: bool) -> None:
    params, vm, K = _random_scene(seed, n=400, size=44, batch=3, per_frame=per_frame)
    bg = torch.tensor([0.2, 0.5, 0.9])
    ref = rasterize_torch(*params, vm, K, 44, 37, background=bg, k_chunk=8)
    for chunk in (1 << 24, 64 * 25, 1):  # one chunk; several; one tile each (a tile larger than the cap)
        got = rasterize_fast(*params, vm, K, 44, 37, background=bg, chunk_elems=chunk)
        assert float(ref.alpha.mean()) > 0.2
        assert torch.allclose(got.rgb, ref.rgb, atol=2e-6), (got.rgb - ref.rgb).abs().max()
        assert torch.allclose(got.alpha, ref.alpha, atol=2e-6)
        assert torch.equal(got.radii, ref.radii) and torch.equal(got.means2d, ref.means2d)


def test_edges_and_cameras_inside_the_cloud_match_the_reference() -> None:
    """Gaussians across the image border, off screen and behind the camera; a non-square odd size."""
    params, vm, K = _random_scene(6, n=500, size=30, batch=2, per_frame=True)
    params[0] = params[0] * torch.tensor([2.5, 2.5, 4.0])  # z from about -3 to 9 around the camera at -3
    ref = rasterize_torch(*params, vm, K, 30, 21)
    got = rasterize_fast(*params, vm, K, 30, 21, chunk_elems=64 * 30)
    assert 0 < int((ref.radii > 0).sum()) < ref.radii.numel()  # some drawn, some culled
    assert float(ref.alpha.mean()) > 0.1
    assert torch.allclose(got.rgb, ref.rgb, atol=2e-6) and torch.allclose(got.alpha, ref.alpha, atol=2e-6)
    assert torch.equal(got.radii, ref.radii)


def test_gradients_match_the_reference() -> None:
    params, vm, K = _random_scene(5, n=60, size=24, batch=2, per_frame=True)
    params = [p.double() for p in params]
    w = torch.rand(2, 24, 24, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    grads = {}
    for name, fn in [("fast", rasterize_fast), ("ref", rasterize_torch)]:
        ps = [p.clone().requires_grad_() for p in params]
        out = fn(*ps, vm.double(), K.double(), 24, 24)
        out.means2d.retain_grad()  # densification reads this gradient
        ((out.rgb * w).sum() + out.alpha.square().sum()).backward()
        grads[name] = [p.grad for p in ps] + [out.means2d.grad]
    for gf, gr in zip(grads["fast"], grads["ref"]):
        assert float(gr.abs().max()) > 1e-3  # every input moves the image (zero would prove nothing)
        assert torch.allclose(gf, gr, rtol=1e-8, atol=1e-10), (gf - gr).abs().max()


def test_a_stopped_pixel_never_resumes() -> None:
    """T falls near 1e-4 at one pixel; the next Gaussian would cross it, so the pixel stops for good,
    even for faint Gaussians that would keep T above 1e-4 (the reference once resumed at a K-chunk)."""
    n = 8
    means = torch.tensor([[0.0, 0.0, 2.0 + 0.1 * i] for i in range(n)])
    quats = torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1)
    scales = torch.full((n, 3), 0.02)
    opac = torch.tensor([0.999, 0.95, 0.999] + [0.1] * (n - 3))  # T: 1e-3, 5e-5 (stop) ...
    cols = torch.eye(3)[torch.arange(n) % 3]
    vm = torch.eye(4)[None]
    K = torch.tensor([[[40.0, 0, 8.5], [0, 40.0, 8.5], [0, 0, 1]]])  # centres on pixel (8, 8)
    img, alpha = _dense(means, quats, scales, opac, cols, vm, K, 16, 16)
    ref = rasterize_torch(means, quats, scales, opac, cols, vm, K, 16, 16, k_chunk=2)
    fast = rasterize_fast(means, quats, scales, opac, cols, vm, K, 16, 16)
    for out in (ref, fast):
        assert torch.allclose(out.rgb, img, atol=1e-7) and torch.allclose(out.alpha, alpha, atol=1e-7)
    assert float(1 - alpha[0, 8, 8, 0]) == pytest.approx(1e-3, rel=1e-2)  # stopped at T = 1e-3


def test_nothing_visible_renders_empty() -> None:
    params, vm, K = _scene(n=20, size=16, batch=2)
    params[0] = params[0] - torch.tensor([0.0, 0.0, 10.0])  # all behind the camera
    out = rasterize_fast(*params, vm, K, 16, 16, background=torch.ones(3))
    assert torch.equal(out.alpha, torch.zeros(2, 16, 16, 1))
    assert torch.equal(out.rgb, torch.ones(2, 16, 16, 3))
    assert not out.radii.any()


def test_chunks_hold_whole_tiles_within_the_cap() -> None:
    counts = np.array([3, 0, 5, 2, 9, 0, 0, 1, 4])
    ends = np.cumsum(counts)
    for cap in (1, 4, 6, 10, 100):
        runs = _chunks(ends, cap)
        assert runs[0][0] == 0 and runs[-1][1] == len(counts)
        assert all(a[1] == b[0] for a, b in zip(runs, runs[1:]))  # contiguous, every tile once
        for t0, t1 in runs:
            pairs = counts[t0:t1].sum()
            assert pairs <= cap or t1 - t0 == 1  # over the cap only as a single big tile


def test_dispatch_picks_the_path_per_device(monkeypatch) -> None:
    calls = []
    monkeypatch.setattr(raster_fast, "rasterize_fast", lambda *a: calls.append("fast"))
    monkeypatch.setattr(raster, "rasterize_torch", lambda *a: calls.append("reference"))
    scene = _scene(n=10, size=8, batch=1)
    args = (*scene[0], scene[1], scene[2], 8, 8)
    for backend in ("auto", "torch", "reference", "fast"):
        rasterize(*args, backend=backend)
    assert calls == ["reference", "reference", "reference", "fast"]  # CPU: the reference is faster here
    assert raster_backend.torch_path(cuda=True) == "fast"
    with pytest.raises(ValueError, match="unknown rasterizer backend 'gl'"):
        rasterize(*args, backend="gl")


def test_backward_keeps_only_chunk_inputs(monkeypatch) -> None:
    """With gradients, the [64 px × pairs] intermediates are recomputed in backward, not kept."""
    params, vm, K = _random_scene(4, n=300, size=40, batch=2, per_frame=True)
    m2, con, depths, valid = project(*params[:3], vm, K, 40, 40)
    ok, _, boxes = tile_boxes(m2, con, params[3], valid, 40, 40)
    pairs = len(_bin_pairs(ok, depths, boxes, 5, 5)[0])
    assert pairs > 1000  # several chunks below

    def saved_numel() -> int:
        ps = [p.clone().requires_grad_() for p in params]
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            out = rasterize_fast(*ps, vm, K, 40, 40, chunk_elems=64 * 200)
        out.rgb.sum().backward()
        assert all(torch.isfinite(p.grad).all() and p.grad.abs().max() > 0 for p in ps)
        return sum(saved)

    assert saved_numel() < 64 * pairs  # less than one [64, pairs] tensor: nothing per pixel·pair is kept
    monkeypatch.setattr(raster_fast, "checkpoint", lambda fn, *a, **k: fn(*a))
    assert saved_numel() > 5 * 64 * pairs  # the count would see them (without checkpointing)
