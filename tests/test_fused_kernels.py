"""The fused Triton kernels against their PyTorch references: in Triton's CPU interpreter where Triton is
installed (it is not in the CPU setup: those tests skip), on the GPU in tests/gpu; without Triton the fused
render path falls back to the references and gives the same frames."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from emotalk.gaussians import fused_kernels as fk

try:
    import triton  # noqa: F401

    HAVE_TRITON = True
except Exception:  # noqa: BLE001
    HAVE_TRITON = False

INTERPRETED = textwrap.dedent("""
    import json, torch
    from emotalk.gaussians import fused_kernels as fk
    torch.manual_seed(0)
    out = {}
    for N, D, H, O, B, per in [(100, 48, 64, 10, 3, 2), (37, 40, 16, 3, 5, 8)]:
        att, base, M = torch.rand(N, D) * 2, torch.randn(N, H), torch.randn(B, D, H) * 0.3
        w1, b1 = torch.randn(H, H) * 0.2, torch.randn(H) * 0.1
        w2, b2 = torch.randn(O, H) * 0.2, torch.randn(O)
        ref = fk.field_mlp_reference(att, base, M, w1, b1, w2, b2)
        got = fk.field_mlp(att, base, M, w1, b1, w2, b2, frames_per_program=per)
        out[f"field{N}"] = float((got - ref).abs().max() / ref.abs().max())
    layers = [torch.rand(2, 8, 8, c) for c in (3, 1, 3, 1)]
    body = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    ref = fk.composite_u8_reference(*layers, body)
    out["composite"] = int((fk.composite_u8(*layers, body, block=64).int() - ref.int()).abs().max())
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.skipif(not HAVE_TRITON, reason="Triton is not installed (CPU torch has none); the kernels are "
                    "checked on the GPU by tests/gpu/test_render_graphs.py")
def test_kernels_match_references_in_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, "-c", INTERPRETED], capture_output=True, text=True, env=env,
                       timeout=600)
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")]
    assert r.returncode == 0 and line, r.stderr[-2000:]
    res = json.loads(line[0][7:])
    assert res["field100"] < 1e-5 and res["field37"] < 1e-5, res
    assert res["composite"] == 0, res


def test_references_are_the_plain_forms():
    """field_mlp_reference is `DeformField.forward`; composite_u8_reference is render + rounding."""
    from emotalk.gaussians.fields import DeformField, FieldSettings

    torch.manual_seed(1)
    s = FieldSettings(plane_res=(4, 8), plane_ch=2, hidden=16)
    f = DeformField(torch.zeros(3) - 1, torch.ones(3), [5, 3], 10, s)
    for p in f.mlp[-1].parameters():
        torch.nn.init.normal_(p, 0, 0.1)
    cache = f.precompute(torch.rand(30, 3) * 2 - 1)
    conds = [torch.randn(4, 5), torch.randn(4, 3)]
    M = torch.cat([c[:, :, None] * lin.weight.t()[None] for c, lin in zip(conds, f.cond)], 1)
    got = fk.field_mlp_reference(cache.att_all, cache.base, M, f.mlp[1].weight, f.mlp[1].bias,
                                 f.mlp[3].weight, f.mlp[3].bias)
    assert torch.allclose(got, f.forward_reference(cache, conds), atol=1e-5)
    layers = [torch.rand(2, 4, 4, c) for c in (3, 1, 3, 1)]
    body = torch.randint(0, 256, (2, 4, 4, 3), dtype=torch.uint8)
    rgb = layers[0] + (1 - layers[1]) * (layers[2] + (1 - layers[3]) * (body.float() / 255))
    want = (rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    assert torch.equal(fk.composite_u8_reference(*layers, body), want)


def test_fused_path_on_cpu_gives_the_plain_frames():
    """On a CPU the fused path uses the references: its uint8 frames equal the plain path's."""
    from emotalk.gaussians.fast_render import FastRenderer, FastSettings
    from emotalk.gaussians.fields import FieldSettings
    from emotalk.gaussians.model import Frames, ModelSettings, build_model
    from emotalk.gaussians.synthetic import make_synthetic

    ds = make_synthetic(size=32, n_frames=4, window=4, channels=8)
    s = ModelSettings(n_face_init=200, n_mouth_init=50,
                      field=FieldSettings(plane_res=(8,), plane_ch=2, hidden=16))
    torch.manual_seed(0)
    m = build_model(ds, s, (4, 8)).eval()
    B = 2
    fr = Frames(torch.as_tensor(ds.world_to_cam[:B]), torch.as_tensor(ds.K)[None].expand(B, 3, 3),
                torch.as_tensor(ds.audio_code[:B]), torch.as_tensor(ds.upper_face[:B]),
                torch.tensor([[0.3, 0.2]] * B))
    body = torch.as_tensor(np.random.default_rng(0).integers(0, 256, (B, 32, 32, 3), dtype=np.uint8))
    with torch.no_grad():
        want = m.render(fr, 32, 32, body.float() / 255).rgb
        got = FastRenderer(m, FastSettings(fused=True)).render_u8(fr, 32, 32, body)
    assert got.dtype == torch.uint8
    assert torch.equal(got, (want.clamp(0, 1) * 255 + 0.5).to(torch.uint8))


def test_a_kernel_that_cannot_build_falls_back_once_and_says_why(monkeypatch):
    """An old GPU (no TF32) or a broken Triton: the kernel's error is recorded, its PyTorch form answers,
    and from then on the fused path is off for the process."""

    class Broken:
        def __getitem__(self, grid):
            def launch(*a, **k):
                raise RuntimeError("tf32x3 is not supported on this GPU")
            return launch

    monkeypatch.setattr(fk, "_triton", lambda: ("triton", "tl"))
    monkeypatch.setattr(fk, "_kernels", lambda: (Broken(), Broken()))
    monkeypatch.setattr(fk, "_failed", {})
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    torch.manual_seed(0)
    att, base, M = torch.rand(20, 8), torch.randn(20, 16), torch.randn(2, 8, 16)
    w1, b1, w2, b2 = torch.randn(16, 16), torch.randn(16), torch.randn(4, 16), torch.randn(4)
    assert fk.available(att)
    got = fk.field_mlp(att, base, M, w1, b1, w2, b2)
    assert torch.equal(got, fk.field_mlp_reference(att, base, M, w1, b1, w2, b2))
    assert "not supported" in fk.failures()["field_mlp"] and not fk.available(att)
    layers = [torch.rand(1, 4, 4, c) for c in (3, 1, 3, 1)]
    body = torch.zeros(1, 4, 4, 3, dtype=torch.uint8)
    assert torch.equal(fk.composite_u8(*layers, body), fk.composite_u8_reference(*layers, body))
