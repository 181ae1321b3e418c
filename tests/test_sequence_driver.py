"""The sequence lip driver: shapes, causal vs centred padding, its loss, training on a toy signal, files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotalk.errors import AssetError, InputError
from emotalk.lips import LipDriver, save_driver
from emotalk.lips.sequence_driver import (
    LossWeights,
    SequenceDriver,
    SequenceSettings,
    adapt_sequence_driver,
    closure_mask,
    is_sequence_driver,
    load_any_driver,
    load_sequence_driver,
    predict_clip,
    rest_targets,
    save_sequence_driver,
    sequence_loss,
)

W, C = 4, 6
TINY = SequenceSettings(step_dim=4, frame_dim=8, kernel=3, dilations=(1, 2), dropout=0.0)


def test_shapes_and_receptive_field():
    d = SequenceDriver(W, C, settings=TINY).eval()
    assert d.receptive_field == 1 + 2 * 3
    assert d(torch.randn(30, W, C)).shape == (30, 6)
    assert d(torch.randn(2, 30, W, C)).shape == (2, 30, 6)
    assert d(torch.randn(1, W, C)).shape == (1, 6)  # one frame still works (replicate padding)
    assert is_sequence_driver(d) and not is_sequence_driver(LipDriver(W, C))
    with pytest.raises(InputError):
        d(torch.randn(30, W + 1, C))


@pytest.mark.parametrize("causal", [True, False])
def test_padding_reach(causal):
    """A change at frame 20 moves causal outputs only at t >= 20, centred ones within ±field/2 of it."""
    torch.manual_seed(0)
    d = SequenceDriver(W, C, settings=SequenceSettings(**{**TINY.__dict__, "causal": causal})).eval()
    x = torch.randn(40, W, C)
    y = x.clone()
    y[20] += 5.0
    with torch.no_grad():
        moved = (d(x) - d(y)).abs().sum(1) > 1e-6
    idx = torch.nonzero(moved).flatten().tolist()
    half = d.receptive_field // 2
    if causal:
        assert min(idx) == 20 and max(idx) == 20 + d.receptive_field - 1
    else:
        assert min(idx) == 20 - half and max(idx) == 20 + half


def test_closure_and_rest_targets():
    gap = np.arange(100, dtype=np.float32)
    m = closure_mask(gap, 0.15)
    assert m[:15].all() and not m[16:].any()
    code = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    w = np.zeros(50, np.float32)
    w[10:20] = 1.0
    t = rest_targets(code, w)
    assert np.allclose(t[10:20], code[10:20].mean(0), atol=1e-6)  # silence -> the clip's rest, constant
    assert np.allclose(t[30:], code[30:])
    assert np.allclose(rest_targets(code, np.zeros(50)), code)


def test_loss_terms():
    y = torch.zeros(1, 10, 6)
    p = torch.zeros(1, 10, 6)
    p[0, 5] = 1.0  # a one-frame blip: position error plus two velocity errors
    no_vel = LossWeights(velocity=0.0, closure=0.0)
    assert sequence_loss(p, y, None, no_vel).item() == pytest.approx(6 / 60)
    base = sequence_loss(p, y, None, no_vel).item()
    assert sequence_loss(p, y, None, LossWeights(closure=0.0)).item() > base
    c = torch.zeros(1, 10, dtype=torch.bool)
    c[0, 5] = True  # the blip on a closure frame weighs more
    assert sequence_loss(p, y, c, LossWeights(velocity=0.0)).item() > sequence_loss(p, y, None, no_vel).item()


def test_learns_a_toy_signal():
    """Target = a delayed, smoothed feature of the code: the driver needs its temporal context to fit it."""
    torch.manual_seed(0)
    T = 120
    x = torch.randn(8, T, W, C)
    s = x[..., 0].mean(-1)  # [B,T]
    y = torch.zeros(8, T, 6)
    y[:, 2:, 0] = s[:, :-2]  # two frames later
    y[..., 1] = torch.nn.functional.avg_pool1d(s[:, None], 5, 1, 2, count_include_pad=False)[:, 0]
    d = SequenceDriver(W, C, settings=TINY)
    opt = torch.optim.Adam(d.parameters(), lr=1e-2)
    first = sequence_loss(d.raw(x), y).item()
    for _ in range(150):
        loss = sequence_loss(d.raw(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3 * first


def test_adapt_runs_in_place_and_keeps_eval():
    torch.manual_seed(0)
    d = SequenceDriver(W, C, settings=TINY)
    code, lips = torch.randn(80, W, C), torch.randn(80, 6)
    before = d.head.weight.clone()
    loss = adapt_sequence_driver(d, code, lips, steps=3, length=16, batch=2)
    assert np.isfinite(loss) and not d.training and not torch.equal(before, d.head.weight)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    d = SequenceDriver(W, C, settings=TINY).eval()
    d.gain.copy_(torch.tensor([1.0, 1.5, 2.0, 1.0, 1.2, 1.1]))
    p = save_sequence_driver(d, tmp_path / "seq.safetensors", clips=["a"])
    back = load_sequence_driver(p)
    assert back.settings == TINY
    x = np.random.default_rng(1).normal(size=(25, W, C)).astype(np.float32)
    assert np.allclose(predict_clip(d, x), predict_clip(back, x), atol=1e-6)
    assert isinstance(load_any_driver(p), SequenceDriver)
    frame = LipDriver(W, C).eval()
    fp = save_driver(frame, tmp_path / "frame.safetensors")
    assert isinstance(load_any_driver(fp), LipDriver)
    assert predict_clip(load_any_driver(fp), x).shape == (25, 6)
    with pytest.raises(AssetError):
        load_sequence_driver(fp)
    with pytest.raises(AssetError):
        load_sequence_driver(tmp_path / "missing.safetensors")
