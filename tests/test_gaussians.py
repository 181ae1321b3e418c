"""Model pieces on CPU: the tiled reference rasterizer against a dense one, SH, fields, seeding."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emotalk.gaussians.fields import DeformField, FieldSettings
from emotalk.gaussians.raster import ALPHA_MAX, ALPHA_MIN, T_STOP, eval_sh, project, rasterize_torch


def _scene(n: int = 300, size: int = 40, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(n, 3, generator=g) * torch.tensor([0.4, 0.4, 0.3])
    quats = torch.randn(n, 4, generator=g)
    scales = torch.rand(n, 3, generator=g) * 0.05 + 0.01
    opac = torch.rand(n, generator=g) * 0.9 + 0.05
    cols = torch.rand(n, 3, generator=g)
    vm = torch.eye(4).repeat(batch, 1, 1)
    vm[:, 2, 3] = 3.0
    vm[1:, 0, 3] = 0.2
    K = torch.tensor([[size * 1.5, 0, size / 2], [0, size * 1.5, size / 2], [0, 0, 1.0]]).repeat(batch, 1, 1)
    return [means, quats, scales, opac, cols], vm, K


def _dense(means, quats, scales, opac, cols, vm, K, W, H):
    """Every Gaussian at every pixel, sequential front-to-back loop: the plain definition."""
    m2, con, depth, valid = project(means[None].expand(len(vm), -1, -1), quats[None].expand(len(vm), -1, -1),
                                    scales[None].expand(len(vm), -1, -1), vm, K, W, H)
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    imgs, alphas = [], []
    for b in range(len(vm)):
        order = torch.argsort(depth[b])
        T = torch.ones(H, W)
        done = torch.zeros(H, W, dtype=torch.bool)
        img = torch.zeros(H, W, 3)
        for i in order.tolist():
            if not valid[b, i]:
                continue
            dx, dy = xs - m2[b, i, 0], ys - m2[b, i, 1]
            c = con[b, i]
            sig = 0.5 * (c[0] * dx * dx + c[2] * dy * dy) + c[1] * dx * dy
            a = torch.clamp(opac[i] * torch.exp(-sig), max=ALPHA_MAX)
            a = torch.where((sig >= 0) & (a >= ALPHA_MIN) & ~done, a, torch.zeros_like(a))
            nt = T * (1 - a)
            stop = nt <= T_STOP
            a = torch.where(stop, torch.zeros_like(a), a)
            done |= stop
            img = img + (a * T)[..., None] * cols[i]
            T = T * (1 - a)
        imgs.append(img)
        alphas.append(1 - T)
    return torch.stack(imgs), torch.stack(alphas)[..., None]


def test_tiled_reference_matches_dense_definition() -> None:
    params, vm, K = _scene()
    out = rasterize_torch(*params, vm, K, 40, 36, k_chunk=16)  # small chunks: many K-steps per tile
    img, alpha = _dense(*params, vm, K, 40, 36)
    assert out.rgb.shape == (2, 36, 40, 3)
    assert torch.allclose(out.rgb, img, atol=2e-5), (out.rgb - img).abs().max()
    assert torch.allclose(out.alpha, alpha, atol=2e-5)
    assert alpha.mean() > 0.3  # the scene is not empty


def test_reference_gradients_flow_and_match_finite_differences() -> None:
    params, vm, K = _scene(n=40, size=24, batch=1, seed=1)
    params = [p.double() for p in params]
    ps = [p.clone().requires_grad_() for p in params]
    w = torch.rand(1, 24, 24, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def f(*xs):
        return (rasterize_torch(*xs, vm.double(), K.double(), 24, 24).rgb * w).sum()

    f(*ps).backward()
    for k, (p, gp) in enumerate(zip(params, ps)):
        assert torch.isfinite(gp.grad).all()
        assert float(gp.grad.abs().max()) > 0.1  # every input moves the image (zero would prove nothing)
        i = int(torch.argmax(gp.grad.abs().flatten()))
        eps = 1e-6
        hi, lo = p.clone().flatten(), p.clone().flatten()
        hi[i] += eps
        lo[i] -= eps
        args_hi = [x if j != k else hi.view_as(p) for j, x in enumerate(params)]
        args_lo = [x if j != k else lo.view_as(p) for j, x in enumerate(params)]
        fd = (f(*args_hi) - f(*args_lo)) / (2 * eps)
        assert float(fd) == pytest.approx(float(gp.grad.flatten()[i]), rel=1e-3, abs=1e-6)


def test_eval_sh_degree0_and_view_dependence() -> None:
    n = 5
    coeffs = torch.zeros(n, 9, 3)
    coeffs[:, 0] = 1.0
    d = torch.randn(n, 3)
    c0 = eval_sh(coeffs, d, 0)
    assert torch.allclose(c0, torch.full_like(c0, 0.28209479177387814 + 0.5))
    coeffs[:, 2] = 0.5  # band-1 z term: brighter when looking along +z
    up = eval_sh(coeffs, torch.tensor([[0, 0, 1.0]]).repeat(n, 1), 1)
    down = eval_sh(coeffs, torch.tensor([[0, 0, -1.0]]).repeat(n, 1), 1)
    assert (up > down).all()


def test_field_fast_form_equals_reference_and_attention_gates() -> None:
    torch.manual_seed(0)
    s = FieldSettings(plane_res=(8, 16), plane_ch=4, hidden=16)
    f = DeformField(torch.full((3,), -1.0), torch.ones(3), [6, 3, 2], 10, s)
    torch.nn.init.normal_(f.mlp[-1].weight)  # non-zero output layer so the comparison means something
    x = torch.rand(50, 3) * 2 - 1
    conds = [torch.randn(4, 6), torch.randn(4, 3), torch.randn(4, 2)]
    cache = f.precompute(x)
    fast, ref = f(cache, conds), f.forward_reference(cache, conds)
    assert fast.shape == (4, 50, 10)
    assert torch.allclose(fast, ref, atol=1e-5)
    att = f.attention(x, 0).detach()
    assert att.shape == (50, 6) and float(att.min()) > 0 and float(att.max()) < 2
    # different places listen differently: gates vary across Gaussians
    assert float(att.std(0).mean()) > 1e-3


def test_fresh_field_is_the_identity_deformation() -> None:
    s = FieldSettings(plane_res=(8,), plane_ch=2, hidden=8)
    f = DeformField(torch.zeros(3), torch.ones(3), [4], 3, s)
    out = f(f.precompute(torch.rand(10, 3)), [torch.randn(2, 4)])
    assert torch.count_nonzero(out) == 0


def test_model_seeded_from_dataset_renders_the_head(synthetic_ds) -> None:
    from emotalk.gaussians.model import ModelSettings, build_model
    from emotalk.training.data import load_train_data
    from emotalk.training.data import render_batch as render_frames

    ds = synthetic_ds
    model = build_model(ds, ModelSettings(n_face_init=600, n_mouth_init=60), ds.audio_code.shape[1:])
    assert model.n_gaussians("face") >= 500 and model.n_gaussians("mouth") > 0
    data = load_train_data(ds, None, ds.audio_code, "cpu")
    with torch.no_grad():
        out = render_frames(model, data, torch.tensor([0, 1]))
    head = torch.as_tensor(np.isin(ds.parsing([0, 1]), [1, 4, 12, 17]))
    a = out.face.alpha[..., 0]
    # seeded Gaussians cover the head pixels much more than the rest
    from scipy.ndimage import binary_dilation

    near = torch.as_tensor(np.stack([binary_dilation(h, iterations=4) for h in head.numpy()]))
    inside, outside = float(a[head].mean()), float(a[~near].mean())
    assert inside > 0.3 and inside > 3 * outside, (inside, outside)
    assert math.isfinite(float(out.rgb.sum()))


@pytest.fixture(scope="module")
def synthetic_ds():
    from emotalk.gaussians.synthetic import make_synthetic

    return make_synthetic(size=48, n_frames=12)
