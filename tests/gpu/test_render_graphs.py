"""The CUDA-graph (and torch.compile) render paths give the plain path's images: on a tiny synthetic model and
on the shipped obama, at batch 1, a padded batch and per-frame emotions (which run eagerly); a replayed
graph follows new audio and a new emotion; at batch 1 the graph path is faster than the plain one."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from emotalk.gaussians.fast_render import FastRenderer, FastSettings
from emotalk.gaussians.model import BRANCHES, Frames

pytestmark = pytest.mark.gpu
ROOT = Path(__file__).resolve().parents[2]
DEV = "cuda"


def setup_module() -> None:
    with contextlib.suppress(ImportError):  # the prebuilt gsplat kernel of the lent GPU hosts, if there
        import gsplat_prebuilt  # noqa: F401


@pytest.fixture(scope="module")
def obama():
    from emotalk.identity.checkpoint import load_identity

    path = ROOT / "checkpoints" / "obama"
    if not (path / "model.safetensors").is_file():
        pytest.skip(f"no shipped identity at {path}")
    return load_identity(path, device=DEV)


@pytest.fixture(scope="module")
def synthetic():
    """A tiny lip-code model with an emotion field whose fields all move the Gaussians, and its dataset."""
    from emotalk.gaussians.fields import FieldSettings
    from emotalk.gaussians.model import ModelSettings, build_model
    from emotalk.gaussians.synthetic import make_synthetic
    from emotalk.lips import LipDriver

    ds = make_synthetic(size=64, n_frames=16, window=4, channels=8)
    s = ModelSettings(n_face_init=600, n_mouth_init=100, field=FieldSettings(plane_res=(8, 16), plane_ch=2,
                      hidden=16), emotion_field=True, lip_code=True)
    torch.manual_seed(0)
    m = build_model(ds, s, (4, 8), lip_driver=LipDriver(4, 8)).eval()
    with torch.no_grad():
        for f in [*m.fields.values(), m.emotion_field]:
            for p in f.mlp[-1].parameters():
                p.normal_(0, 0.05)
    return m.to(DEV), ds


def _frames(w2c, K, code, upper, emotion, gain) -> Frames:
    B = len(emotion)
    return Frames(w2c.to(DEV), K.to(DEV)[None].expand(B, 3, 3), code.to(DEV), upper.to(DEV),
                  torch.tensor(emotion, dtype=torch.float32, device=DEV),
                  gain=torch.tensor(gain, dtype=torch.float32, device=DEV))


def _identity_frames(ident, i: int, B: int, emotion, gain, size: int):
    L = len(ident.track_w2c)
    idx = np.arange(i, i + B) % L
    K = torch.as_tensor(ident.K * np.array([[size / ident.size]] * 2 + [[1.0]], np.float32))
    g = torch.Generator().manual_seed(i)
    code = torch.randn(B, *ident.model.audio_shape, generator=g)
    return _frames(torch.as_tensor(ident.track_w2c[idx]), K, code,
                   torch.as_tensor(np.asarray(ident.track_upper[idx], np.float32)), emotion, gain)


def _check(model, fr, size: int, paths: dict[str, FastRenderer], tol: float = 1e-3) -> None:
    """tol: a quarter of a grey level (GPU matrix kernels may round differently at another batch size:
    1.3e-4 measured on the H200 for the synthetic model at batch 12)."""
    body = torch.full((fr.viewmats.shape[0], size, size, 3), 0.4, device=DEV)
    with torch.no_grad():
        want = model.render(fr, size, size, body).rgb
        plain_fr = replace(fr, lips=model.lips(fr, emotional=True)) if model.settings.lip_code else fr
        want_means = model.deform("face", plain_fr)[0]
        for name, r in paths.items():
            got = r.render(fr, size, size, body).rgb
            err = float((got - want).abs().max())
            assert err <= tol, f"{name}: images differ by {err:.3g}"
            dm = float((r.deform(fr)["face"][0] - want_means).abs().max())
            assert dm <= 1e-5, f"{name}: face means differ by {dm:.3g}"


EMOS = [([0.0, 0.0], 1.0), ([0.3, 0.2], 1.0), ([-0.6, 0.5], 1.4), ([0.2, 0.85], 1.0)]  # last: jaw drop


def test_graph_path_matches_plain_on_a_synthetic_model(synthetic):
    m, ds = synthetic
    m.switches.lip_offset = True  # the lip-code offset goes through the graph too
    try:
        paths = {"fast": FastRenderer(m), "graphs": FastRenderer(m, FastSettings(graphs=True)),
                 "graphs+fused": FastRenderer(m, FastSettings(graphs=True, fused=True))}
        K, code, upper = (torch.as_tensor(x) for x in (ds.K, ds.audio_code, ds.upper_face))
        w2c = torch.as_tensor(ds.world_to_cam)
        for B in (1, 3, 12):  # 12 runs padded in the graph of 16
            for emo, g in EMOS:
                _check(m, _frames(w2c[:B], K, code[:B], upper[:B], [emo] * B, [g] * B), 64, paths)
            if B > 1:  # different emotions in one batch: the eager fast path
                rows = [EMOS[i % len(EMOS)][0] for i in range(B)]
                _check(m, _frames(w2c[:B], K, code[:B], upper[:B], rows, [1.0] * B), 64, paths)
    finally:
        m.switches.lip_offset = False


def test_graph_path_matches_plain_on_obama(obama):
    m = obama.model
    paths = {"fast": FastRenderer(m), "graphs": FastRenderer(m, FastSettings(graphs=True)),
             "fused": FastRenderer(m, FastSettings(fused=True)),
             "graphs+fused": FastRenderer(m, FastSettings(graphs=True, fused=True))}
    for B in (1, 5):
        for k, (emo, g) in enumerate(EMOS):
            _check(m, _identity_frames(obama, 7 * k, B, [emo] * B, [g] * B, 256), 256, paths)


def test_a_replayed_graph_follows_new_inputs(obama):
    """Frame after frame (new audio, pose, emotion) the graph's outputs are those of the eager fast path."""
    m = obama.model
    eager, graphs = FastRenderer(m), FastRenderer(m, FastSettings(graphs=True))
    prev = None
    for i in range(6):
        emo, g = EMOS[i % 3]
        fr = _identity_frames(obama, i, 1, [emo], [g], 256)
        with torch.no_grad():
            want = eager.deform(fr)
            got = {b: tuple(x.clone() for x in v) for b, v in graphs.deform(fr).items()}
        for b in BRANCHES:
            for x, y in zip(got[b], want[b]):
                assert float((x - y).abs().max()) <= 1e-5
        if prev is not None:
            assert float((got["face"][0] - prev).abs().max()) > 0  # not a stale buffer
        prev = got["face"][0]


def test_compiled_paths_match_plain(obama):
    m = obama.model
    paths = {"compile": FastRenderer(m, FastSettings(compile="inductor")),
             "graphs+compile": FastRenderer(m, FastSettings(graphs=True, compile="inductor"))}
    for k, (emo, g) in enumerate(EMOS[:2]):
        _check(m, _identity_frames(obama, 3 * k, 1, [emo], [g], 256), 256, paths, tol=1e-3)


def test_graph_path_is_faster_at_batch_1(obama):
    m, S, n = obama.model, 512, 100
    frames = [_identity_frames(obama, i, 1, [[0.3, 0.2]], [1.0], S) for i in range(n)]
    body = torch.full((1, S, S, 3), 0.4, device=DEV)
    graphs = FastRenderer(m, FastSettings(graphs=True))
    caches = {b: m.precompute(b) for b in BRANCHES}

    def fps(fn) -> float:
        with torch.no_grad():
            for fr in frames[:3]:
                fn(fr)
            torch.cuda.synchronize()
            t = time.time()
            for fr in frames:
                fn(fr)
            torch.cuda.synchronize()
        return n / (time.time() - t)

    plain = fps(lambda fr: m.render(fr, S, S, body, caches=caches))
    fast = fps(lambda fr: graphs.render(fr, S, S, body))
    assert fast > 1.3 * plain, f"graphs {fast:.0f} FPS vs plain {plain:.0f} FPS at batch 1, 512²"


def test_fused_kernels_match_their_references_on_the_gpu():
    from emotalk.gaussians import fused_kernels as fk

    assert fk.available(torch.zeros(1, device=DEV)), "Triton should come with CUDA torch"
    g = torch.Generator(device=DEV).manual_seed(0)
    for N, D, H, O, B in [(16241, 48, 64, 10, 64), (6863, 40, 64, 3, 1), (300, 20, 16, 10, 12)]:
        r = lambda *s: torch.randn(*s, device=DEV, generator=g)  # noqa: E731
        att, base, M = torch.rand(N, D, device=DEV, generator=g) * 2, r(N, H), r(B, D, H) * 0.3
        w1, b1, w2, b2 = r(H, H) * 0.2, r(H) * 0.1, r(O, H) * 0.2, r(O)
        ref = fk.field_mlp_reference(att, base, M, w1, b1, w2, b2)
        err = float((fk.field_mlp(att, base, M, w1, b1, w2, b2) - ref).abs().max() / ref.abs().max())
        assert err < 1e-5, (N, B, err)
    layers = [torch.rand(3, 64, 48, c, device=DEV, generator=g) for c in (3, 1, 3, 1)]
    body = torch.randint(0, 256, (3, 64, 48, 3), device=DEV, dtype=torch.uint8, generator=g)
    d = (fk.composite_u8(*layers, body).int() - fk.composite_u8_reference(*layers, body).int()).abs()
    assert int(d.max()) <= 1 and float(d.float().mean()) < 1e-3  # FMA contraction may round one value


def test_fused_uint8_frames_match_the_plain_path(obama):
    m, S = obama.model, 256
    fused = FastRenderer(m, FastSettings(graphs=True, fused=True))
    for k, (emo, gn) in enumerate(EMOS):
        fr = _identity_frames(obama, 5 * k, 4, [emo] * 4, [gn] * 4, S)
        body = torch.randint(0, 256, (4, S, S, 3), device=DEV, dtype=torch.uint8)
        with torch.no_grad():
            want = m.render(fr, S, S, body.float() / 255).rgb
            got = fused.render_u8(fr, S, S, body)
        d = (got.int() - (want.clamp(0, 1) * 255 + 0.5).to(torch.uint8).int()).abs()
        assert int(d.max()) <= 1 and float(d.float().mean()) < 0.01, (emo, int(d.max()))
