"""The lip code (emotalk/lips/): parameters, the driver file, lip-code models in training and loading."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from emotalk.errors import AssetError, EmoTalkError
from emotalk.face.landmarks import EYE_OUTER, LIP_MID, MOUTH_CORNERS
from emotalk.face.tracking import BLENDSHAPE_NAMES
from emotalk.lips import (
    DRIVER,
    LIP_NAMES,
    LipDriver,
    LipStats,
    driver_info,
    lip_params,
    load_driver,
    save_driver,
)
from tests.conftest import SHARED_DATA

DATA = SHARED_DATA  # ../shared/data, or $EMOTALK_SHARED_DATA


def _face(T: int, gap: np.ndarray, eyes: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    lmk = np.zeros((T, 478, 3), np.float32)
    lmk[:, EYE_OUTER[0], 0], lmk[:, EYE_OUTER[1], 0] = 0, eyes
    lmk[:, LIP_MID[0], 1], lmk[:, LIP_MID[1], 1] = 100, 100 + gap
    lmk[:, MOUTH_CORNERS[0], 0], lmk[:, MOUTH_CORNERS[1], 0] = 20, 80
    bs = np.zeros((T, 52), np.float32)
    bs[:, BLENDSHAPE_NAMES.index("jawOpen")] = gap / 50
    bs[:, BLENDSHAPE_NAMES.index("mouthFunnel")] = 0.2
    bs[:, BLENDSHAPE_NAMES.index("mouthPucker")] = 0.4
    return lmk, bs


def test_lip_params_are_scale_free_and_named():
    gap = np.array([0.0, 5.0, 10.0, 20.0], np.float32)
    lmk, bs = _face(4, gap)
    p = lip_params(lmk, bs, BLENDSHAPE_NAMES)
    assert p.shape == (4, len(LIP_NAMES))
    np.testing.assert_allclose(p[:, LIP_NAMES.index("gap")], gap / 100, atol=1e-6)
    np.testing.assert_allclose(p[:, LIP_NAMES.index("width")], 0.6, atol=1e-6)
    np.testing.assert_allclose(p[:, LIP_NAMES.index("round")], 0.3, atol=1e-6)
    lmk2, bs2 = _face(4, 2 * gap, eyes=200.0)  # the same face at twice the size
    np.testing.assert_allclose(lip_params(lmk2, bs2, BLENDSHAPE_NAMES)[:, 0], p[:, 0], atol=1e-6)
    with pytest.raises(EmoTalkError, match="blendshapes lack"):
        lip_params(lmk, bs, [f"shape{i}" for i in range(52)])


def test_lip_stats_z_score_and_floor():
    raw = np.stack([np.linspace(0, 1, 50), np.full(50, 0.3)], 1)
    st = LipStats.of(raw)
    z = st.code(raw)
    assert abs(z[:, 0].mean()) < 1e-5 and abs(z[:, 0].std() - 1) < 1e-4
    assert np.isfinite(z).all() and np.abs(z[:, 1]).max() < 1e-3  # a still parameter stays at 0


def test_driver_file_round_trip(tmp_path):
    d = LipDriver(4, 8)
    d.gain.fill_(1.7)
    path = save_driver(d, tmp_path / "d.safetensors", clips=["a", "b"])
    back = load_driver(path)
    x = torch.randn(5, 4, 8)
    with torch.no_grad():
        torch.testing.assert_close(back(x), d.eval()(x))
    assert driver_info(path)["clips"] == ["a", "b"]
    with pytest.raises(AssetError, match="missing"):
        load_driver(tmp_path / "none.safetensors")


def test_shipped_driver_reads_whisper_windows():
    d = load_driver()
    assert (d.window, d.channels) == (16, 384)
    assert (d.gain >= 1).all()
    info = driver_info(DRIVER)
    assert len(info["clips"]) >= 10 and info["held_out"]  # trained on many speakers, with held-out scores
    with torch.no_grad():
        z = d(torch.randn(3, 16, 384))
    assert z.shape == (3, len(LIP_NAMES)) and torch.isfinite(z).all()


@pytest.mark.skipif(not (DATA / "clips").is_dir(), reason="needs ../shared/data (real clips)")
def test_shipped_driver_follows_a_real_mouth(tmp_path):
    """The predicted inner-lip gap follows the tracked one on a real clip (in-sample sanity check that the
    shipped weights, the parameter order and the audio code agree)."""
    from emotalk import media
    from emotalk.face.tracking import fill_gaps, track_video
    from emotalk.speech.features import compute_audio_code

    clip = DATA / "clips" / "grid" / "bbaf2n.mpg"
    tr = track_video(media.iter_frames(clip, fps=25.0), fps=25.0)
    wav = media.read_audio(clip, 16000)
    T = len(tr.found)
    code = compute_audio_code(wav, 16000, n_frames=T, fps=25.0, kind="whisper")
    with torch.no_grad():
        pred = load_driver()(torch.as_tensor(code)).numpy()
    truth = lip_params(fill_gaps(tr.lmk, tr.found), tr.blendshapes, tr.blendshape_names)
    r = np.corrcoef(pred[:, 0], truth[:, 0])[0, 1]
    assert r > 0.5, r


def _tiny_settings(driver_path: Path | None):
    from emotalk.training.settings import PRESETS

    s = PRESETS["test"]
    return replace(s, steps=6, batch=1, size=32, checkpoint_every=100, densify=replace(s.densify, start=100),
                   model=replace(s.model, n_face_init=150, n_mouth_init=30, lip_code=True),
                   lips=replace(s.lips, driver=None if driver_path is None else str(driver_path)))


def test_lip_code_model_trains_saves_and_renders(tmp_path):
    from emotalk.gaussians.synthetic import make_synthetic
    from emotalk.identity.checkpoint import load_identity
    from emotalk.identity.fit import train_identity
    from emotalk.render.frames import render_frames

    ds = make_synthetic(size=32, n_frames=12, window=4, channels=8)
    drv = LipDriver(4, 8)
    torch.nn.init.normal_(drv.mlp[-1].weight, std=2.0)  # a driver whose predictions vary
    path = save_driver(drv, tmp_path / "drv.safetensors")
    s = _tiny_settings(path)
    out, summary, thumb = train_identity(ds, s, tmp_path / "ident", tmp_path / "work")
    assert np.isfinite(summary["val_psnr"]) and summary["respoken_voices"] == 0
    ident = load_identity(out)
    m = ident.model
    assert m.settings.lip_code and not hasattr(m, "audio_enc")
    carried = m.lip_driver.state_dict()  # the identity carries its driver (float16), fitted to the speaker
    for k in ("gain", "in_mean", "in_std"):
        torch.testing.assert_close(carried[k], drv.state_dict()[k], rtol=2e-3, atol=1e-3)
    assert not torch.allclose(carried["step.weight"], drv.step.weight, atol=1e-3)
    from emotalk.gaussians.model import Frames

    code = torch.as_tensor(ds.audio_code[:5])
    fr = Frames(torch.eye(4).repeat(5, 1, 1), torch.eye(3).repeat(5, 1, 1), code, torch.zeros(5, 2),
                torch.zeros(5, 2))
    z = m.lips(fr)
    assert (z >= m.lip_lo - 1e-6).all() and (z <= m.lip_hi + 1e-6).all()  # clamped to the trained range
    frames = np.concatenate(list(render_frames(ident, ds.audio_code, batch=4)))
    assert frames.shape == (12, 32, 32, 3)


def test_lip_code_fields_follow_the_given_lips():
    from emotalk.gaussians.model import Frames, ModelSettings, TalkingGaussians

    m = TalkingGaussians(ModelSettings(n_face_init=10, n_mouth_init=5, lip_code=True), 10, 5, (4, 8), 2,
                         -torch.ones(3), torch.ones(3))
    torch.nn.init.normal_(m.fields["face"].mlp[-1].weight)
    fr = Frames(torch.eye(4).repeat(2, 1, 1), torch.eye(3).repeat(2, 1, 1), torch.randn(2, 4, 8),
                torch.zeros(2, 2), torch.zeros(2, 2), lips=torch.zeros(2, len(LIP_NAMES)))
    a = m.deform("face", fr)[0]
    fr.audio = torch.randn(2, 4, 8)  # given lips: the audio does not matter
    torch.testing.assert_close(m.deform("face", fr)[0], a)
    fr.lips = torch.ones(2, len(LIP_NAMES))
    assert not torch.allclose(m.deform("face", fr)[0], a)
    m.train()
    assert not m.lip_driver.training  # the frozen driver never runs with dropout


def test_driver_shape_mismatch_is_a_clear_error(tmp_path):
    from emotalk.gaussians.model import ModelSettings, build_model
    from emotalk.gaussians.synthetic import make_synthetic

    ds = make_synthetic(size=32, n_frames=12, window=4, channels=8)
    with pytest.raises(EmoTalkError, match="audio_kind 'whisper'"):
        build_model(ds, ModelSettings(n_face_init=50, n_mouth_init=10, lip_code=True), (4, 8),
                    lip_driver=LipDriver(16, 384))


def test_speaker_adaptation_fits_the_identity_and_stays_frozen():
    from emotalk.lips import adapt_driver

    torch.manual_seed(0)
    d = LipDriver(4, 8).eval().requires_grad_(False)
    code = torch.randn(40, 4, 8)
    target = code[:, :, :len(LIP_NAMES)].mean(1) * 3  # a mapping the driver can learn
    with torch.no_grad():
        before = torch.nn.functional.mse_loss(d.raw(code), target)
    adapt_driver(d, code, target, steps=150, lr=3e-3)
    with torch.no_grad():
        after = torch.nn.functional.mse_loss(d.raw(code), target)
    assert after < 0.5 * before
    assert not d.training and not any(p.requires_grad for p in d.parameters())


def test_lip_code_training_needs_mouth_blendshapes(tmp_path):
    from emotalk.gaussians.synthetic import make_synthetic
    from emotalk.training.loop import TrainingError, train

    ds = make_synthetic(size=32, n_frames=12, window=4, channels=8)
    ds.blendshape_names = [f"shape{i}" for i in range(52)]  # an old dataset without FaceLandmarker names
    with pytest.raises(TrainingError, match="no mouth blendshapes"):
        train(ds, _tiny_settings(save_driver(LipDriver(4, 8), tmp_path / "d.safetensors")), tmp_path / "w")
