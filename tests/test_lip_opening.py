"""The render-time opening gain of lip-code identities (emotalk.lips.scale_opening,
ModelSettings.lip_open_gain, emotalk.training.opening): closed lips stay closed, only rendering opens
(training fits the tracked code as it is), the fast path opens as the plain one, and the fit keeps the
smallest gain that reaches its target."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from emotalk.gaussians.fast_render import FastRenderer
from emotalk.gaussians.model import BRANCHES
from emotalk.lips import LIP_NAMES, OPENING_NAMES, scale_opening
from emotalk.training.opening import choose_gain, fit_opening_gain
from emotalk.training.settings import OpeningSettings
from tests.test_emotion_warp import _frames, _model


def test_scale_opening_moves_only_the_opening_above_the_closure():
    closed = torch.tensor([-1.2, -0.4, -0.4, 0.3, 0.2, -0.6])
    lips = torch.stack([closed - 1.0, closed, closed + 1.0, closed + torch.arange(-2.0, 4.0)])
    assert scale_opening(lips, closed, 1.0) is lips
    out = scale_opening(lips, closed, 1.5)
    for j, name in enumerate(LIP_NAMES):
        if name in OPENING_NAMES:
            above = (lips[:, j] - closed[j]).clamp_min(0)
            torch.testing.assert_close(out[:, j], lips[:, j] + 0.5 * above)
        else:
            torch.testing.assert_close(out[:, j], lips[:, j])
    torch.testing.assert_close(out[:2], lips[:2])  # at or below the closure: as the phones and driver say
    assert bool((out[2] >= lips[2]).all()) and not torch.equal(out[2], lips[2])  # above it: more open


def test_the_opening_floor_is_a_spoken_p_b_m_closure():
    from emotalk.lips.phones import load_table

    m, _ = _model()
    bilabial = [load_table().targets[p] for p in ("P", "B", "M")]
    closure = torch.as_tensor(load_table().closure(), dtype=torch.float32)
    lo, hi = np.min(bilabial, 0), np.max(bilabial, 0)
    assert bool((closure.numpy() >= lo - 1e-6).all() and (closure.numpy() <= hi + 1e-6).all())
    assert float(closure[LIP_NAMES.index("gap")]) < -0.5  # a closure's gap is well below the mean code
    torch.testing.assert_close(m.opening_floor(), torch.maximum(closure, m.lip_lo))
    assert "lip_closure" not in m.state_dict()  # a constant of the package, not of the checkpoint


def test_model_opens_rendered_lips_outside_training_and_the_fast_path_agrees():
    m, _ = _model()
    with torch.no_grad():  # a face field that the lip code moves (an untrained one ignores it)
        for p in m.fields["face"].mlp[-1].parameters():
            p.normal_(0, 0.05)
    from emotalk.emotion import CATEGORIES
    from emotalk.gaussians.emotion import dropped_jaw

    fr = _frames([[0.0, 0.0], list(CATEGORIES["surprised"])])  # surprise drops the jaw (a lift by lip_hi)
    fr = replace(fr, lips=m.lip_lo + (0.5 + 0.5 * torch.rand(2, len(LIP_NAMES))) * (m.lip_hi - m.lip_lo))
    with torch.no_grad():
        as_trained = FastRenderer(m).deform(fr)["face"][0]
    m.settings = replace(m.settings, lip_open_gain=1.3)
    scaled = scale_opening(fr.lips, m.opening_floor(), 1.3)
    opened = m.lips(fr, emotional=True)
    torch.testing.assert_close(opened, dropped_jaw(scaled, fr.emotion, fr.gain, m.lip_lo, m.lip_hi))
    # the jaw drop only opens, also a code the gain took past the trained maximum (never clamped back)
    assert bool((opened >= scaled - 1e-6).all())
    past = scaled[1] > m.lip_hi
    g = LIP_NAMES.index("gap")
    assert bool(past.any()) and bool(past[g]) and float(opened[1, g]) > float(scaled[1, g])
    jaw = dropped_jaw(fr.lips, fr.emotion, fr.gain, m.lip_lo, m.lip_hi)
    torch.testing.assert_close(m.lips(fr), fr.lips)  # the fields' own speech input: as given
    m.train()
    torch.testing.assert_close(m.lips(fr, emotional=True), jaw)  # training fits the code as given
    m.eval()
    with torch.no_grad():
        plain = {b: m.deform(b, replace(fr, lips=m.lips(fr, emotional=True))) for b in BRANCHES}
        fast = FastRenderer(m).deform(fr)
    for b in BRANCHES:
        for x, y in zip(plain[b], fast[b]):
            assert float((x - y).detach().abs().max()) <= 1e-5
    assert float((fast["face"][0] - as_trained).detach().abs().max()) > 1e-6  # the gain changes what is drawn


def test_choose_gain_takes_the_smallest_that_reaches_the_target():
    assert choose_gain({1.0: 0.8, 1.1: 0.9, 1.2: 0.96, 1.3: 1.01}, 0.95) == 1.2
    assert choose_gain({1.0: 1.02}, 0.95) == 1.0
    assert choose_gain({1.0: 0.7, 1.5: 0.85}, 0.95) == 1.5  # none reaches: the closest


def test_choose_gain_stops_where_the_opening_levels_off():
    """Reagan's measured curve: 0.89 at 1.0, 0.91 at 1.1, then under 0.01 per step up to 0.936 at 1.6."""
    reagan = {1.0: 0.89, 1.1: 0.91, 1.2: 0.917, 1.3: 0.922, 1.4: 0.929, 1.5: 0.927, 1.6: 0.936}
    assert choose_gain(reagan, 0.95, min_slope=0.1) == 1.1
    assert choose_gain(reagan, 0.95) == 1.4  # no floor: where the ratio first falls (0.929 -> 0.927)
    obama = {1.0: 0.816, 1.1: 0.852, 1.2: 0.888, 1.3: 0.914, 1.4: 0.936, 1.5: 0.958}
    assert choose_gain(obama, 0.95, min_slope=0.1) == 1.5  # still rising: the target decides


def test_fit_renders_each_gain_until_the_target_is_reached():
    """On a lip-code model of the synthetic head, with the measure stubbed so the answer is known: the
    renders of the open half of the frames open 0.8, 0.9, 0.97, ... of the real ones at gains 1.0, 1.1,
    1.2, ...; the model is left as given."""
    from emotalk.gaussians.model import ModelSettings, build_model
    from emotalk.gaussians.synthetic import make_synthetic
    from emotalk.lips import LipDriver
    from emotalk.training.data import load_train_data

    ds = make_synthetic(size=48, n_frames=40, window=4, channels=8)
    torch.manual_seed(0)
    model = build_model(ds, ModelSettings(n_face_init=300, n_mouth_init=60, sh_degree=0, lip_code=True),
                        (4, 8), lip_driver=LipDriver(4, 8)).eval()
    with torch.no_grad():  # a face field that the lip code moves (an untrained one ignores it)
        model.lip_enc[-2].weight.normal_(0, 1.0)
        model.fields["face"].mlp[-1].weight.normal_(0, 0.05)
    data = load_train_data(ds, 48, ds.audio_code, "cpu")
    assert data.lips is not None
    seen: list[np.ndarray] = []
    ratios = iter([0.8, 0.9, 0.97, 1.05])

    real = np.linspace(0.5, 1.5, 16)

    def measure(images: np.ndarray) -> np.ndarray:
        seen.append(images)
        if len(seen) == 1:
            return real
        return real[real >= np.quantile(real, 0.5)] * next(ratios)  # the open half, rendered

    before, was_training = model.settings, model.training
    fit = fit_opening_gain(model, data, OpeningSettings(n_frames=16, min_found=4), backend="torch",
                           measure=measure)
    assert fit.gain == 1.2 and list(fit.ratio) == [1.0, 1.1, 1.2] and fit.n_frames == 8  # the open half
    assert len(seen) == 4 and seen[1].shape == (8, 48, 48, 3) and seen[1].dtype == np.uint8
    assert not np.array_equal(seen[1], seen[3])  # each gain rendered anew
    assert model.settings == before and model.training == was_training
    # the opening levels off below the target: the renders stop after the first flat step, and the gain
    # before that step is kept
    seen.clear()
    ratios = iter([0.89, 0.91, 0.915, 0.99])
    flat = fit_opening_gain(model, data, OpeningSettings(n_frames=16, min_found=4), backend="torch",
                            measure=measure)
    assert flat.gain == 1.1 and list(flat.ratio) == [1.0, 1.1, 1.2] and len(seen) == 4
    # no faces found: the gain stays 1 and the reason is kept
    nothing = fit_opening_gain(model, data, OpeningSettings(n_frames=16), backend="torch",
                               measure=lambda im: np.full(len(im), np.nan))
    assert nothing.gain == 1.0 and "faces found on 0" in nothing.note

    def broken(images):
        raise ImportError("No module named 'mediapipe'")

    missing = fit_opening_gain(model, data, OpeningSettings(n_frames=16), backend="torch", measure=broken)
    assert missing.gain == 1.0 and "mediapipe" in missing.note


@pytest.mark.slow
def test_fit_script_refuses_an_identity_without_a_lip_code(tiny_identity, may_dataset_64, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "fit_lip_opening.py"
    cmd = [sys.executable, str(script), str(may_dataset_64.root), str(tiny_identity), str(tmp_path / "out"),
           "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "not a lip-code identity" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_save_identity_variant_copies_an_identity_with_new_settings(tiny_identity, tmp_path):
    """What scripts/fit_lip_opening.py and scripts/emotion_stage.py write: a loadable copy, the new settings
    and metrics in, the other metrics and (without weights) the model file kept, no temporary left."""
    import json

    from emotalk.identity.checkpoint import load_identity, save_identity_variant

    ident = load_identity(tiny_identity)
    ident.model.settings = replace(ident.model.settings, lip_open_gain=1.2)
    out = save_identity_variant(tiny_identity, tmp_path / "ids" / "v", ident.model,
                                {"lip_opening": {"gain": 1.2}}, weights=False)
    v = load_identity(out)
    assert v.model.settings.lip_open_gain == 1.2 and v.meta["metrics"]["lip_opening"] == {"gain": 1.2}
    before = json.loads((tiny_identity / "identity.json").read_text())["metrics"]
    assert set(before) < set(v.meta["metrics"])
    assert (out / "model.safetensors").read_bytes() == (tiny_identity / "model.safetensors").read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["v"]


def test_a_gain_chosen_on_audio_driven_renders_is_set_and_the_fitted_one_kept(monkeypatch):
    """scripts/fit_lip_opening.py --gain: the fit still runs and is kept beside the chosen gain and why."""
    from types import SimpleNamespace

    from emotalk.gaussians.model import ModelSettings
    from emotalk.identity.fit import fit_lip_opening
    from emotalk.training import opening

    fitted = opening.OpeningFit(1.0, {1.0: 0.951}, 16)
    monkeypatch.setattr(opening, "fit_opening_gain", lambda model, data: fitted)
    model = SimpleNamespace(settings=ModelSettings())
    data = SimpleNamespace(val_idx=np.array([], int))  # nothing held out: no PSNR to add
    rec = fit_lip_opening(model, data, (1.6, "other voices open his code too little"))
    assert model.settings.lip_open_gain == 1.6
    assert rec == {"gain": 1.6, "ratio": {"1.0": 0.951}, "frames": 16, "fitted_gain": 1.0,
                   "chosen": "other voices open his code too little"}
    assert fit_lip_opening(model, data)["gain"] == 1.0 and model.settings.lip_open_gain == 1.0  # as fitted
