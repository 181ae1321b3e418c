"""The additive emotion field: zero at (0, 0), moves and re-colours the face elsewhere, saved and loaded
with the identity; identities without one still load."""

from __future__ import annotations

import numpy as np
import torch

from emotalk.gaussians.model import Frames, ModelSettings, TalkingGaussians


def _model(emotion_field: bool) -> TalkingGaussians:
    torch.manual_seed(0)
    m = TalkingGaussians(ModelSettings(sh_degree=0, emotion_field=emotion_field), 50, 10, (4, 6), 2,
                         -torch.ones(3), torch.ones(3))
    with torch.no_grad():
        for b in ("face", "mouth"):
            m.branches[b]["means"].normal_(0, 0.3)
    return m


def _frames(emotion: list[list[float]]) -> Frames:
    B = len(emotion)
    return Frames(torch.eye(4).repeat(B, 1, 1), torch.eye(3).repeat(B, 1, 1), torch.randn(B, 4, 6),
                  torch.zeros(B, 2), torch.tensor(emotion, dtype=torch.float32))


def _train_field_a_little(m: TalkingGaussians) -> None:
    with torch.no_grad():
        for p in m.emotion_field.mlp[-1].parameters():
            p.normal_(0, 0.1)


def test_emotion_field_is_zero_at_neutral_and_acts_elsewhere():
    m = _model(True)
    _train_field_a_little(m)
    fr = _frames([[0.0, 0.0], [0.8, 0.3]])
    means, quats, scales, _, colors = m.deform("face", fr)
    plain = _model(False)
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("emotion_")})
    pm, _, _, _, pc = plain.deform("face", _frames([[0.0, 0.0]]))
    assert torch.allclose(means[0], pm[0], atol=1e-6) and torch.allclose(colors[0], pc[0], atol=1e-6)
    assert (means[1] - means[0]).abs().max() > 1e-4 and (colors[1] - colors[0]).abs().max() > 1e-4
    # the speech fields no longer see the emotion: the mouth branch ignores it
    mm = m.deform("mouth", fr)[0]
    assert torch.allclose(mm[0], mm[1], atol=1e-6)


def test_precomputed_cache_gives_the_same_emotion_delta():
    m = _model(True)
    _train_field_a_little(m)
    fr = _frames([[-0.5, 0.5]])
    a = m.deform("face", fr)[0]
    b = m.deform("face", fr, cache=m.precompute("face"))[0]
    assert torch.allclose(a, b, atol=1e-6)


def test_add_emotion_field_to_a_trained_model_changes_nothing_until_trained():
    m = _model(False)
    fr = _frames([[0.0, 0.0], [0.6, -0.4]])
    m.add_emotion_field()
    assert m.settings.emotion_field and m.emotion_field is not None
    means = m.deform("face", fr)[0]
    assert torch.allclose(means[0], means[1], atol=1e-6)  # zero-initialised output layer


def test_identity_keeps_its_emotion_field(may_dataset_64, tmp_path):
    """Save / load round trip of a tiny real identity with a trained emotion field."""
    from dataclasses import replace

    from emotalk.identity.checkpoint import load_identity, save_identity
    from emotalk.training.data import dataset_audio_code
    from emotalk.training.loop import train
    from emotalk.training.settings import PRESETS

    ds = may_dataset_64
    s = replace(PRESETS["test"], steps=4, size=32, audio_kind="mel", checkpoint_every=100)
    model, summary = train(ds, s, tmp_path / "work")
    model.add_emotion_field()
    _train_field_a_little(model)
    path = save_identity(tmp_path / "id", model, ds, s, summary, name="t")
    ident = load_identity(path)
    assert ident.model.emotion_field is not None
    code = dataset_audio_code(ds, "mel")
    fr = Frames(torch.as_tensor(ds.world_to_cam[:1], dtype=torch.float32),
                torch.as_tensor(ds.K[None], dtype=torch.float32), torch.as_tensor(code[:1]),
                torch.as_tensor(ds.upper_face[:1], dtype=torch.float32), torch.tensor([[0.5, 0.5]]))
    with torch.no_grad():
        a = model.deform("face", fr)[0]
        b = ident.model.deform("face", fr)[0]
    assert np.allclose(a.numpy(), b.numpy(), atol=5e-3)  # fp16 storage of the field


def test_lip_lock_moves_upper_and_lower_lip_together():
    """Locked Gaussians share one motion along the opening direction (the gap is kept); the others and
    the sideways motion are free."""
    m = _model(True)
    _train_field_a_little(m)
    m.switches.mouth_mask = False  # the lip lock alone (the mask would read the lips off its weights)
    fr = _frames([[0.7, 0.5]])
    free = m.emotion_delta(None, fr.emotion)[0, :, :3]
    w = torch.zeros(50)
    w[:20] = 1.0
    u = torch.tensor([0.0, 1.0, 0.0])
    m.set_lip_lock(w, u)
    locked = m.emotion_delta(None, fr.emotion)[0, :, :3]
    along = locked[:20, 1]
    assert torch.allclose(along, along.mean().expand(20), atol=1e-6) and free[:20, 1].std() > 1e-5
    assert torch.allclose(locked[20:], free[20:]) and torch.allclose(locked[:, [0, 2]], free[:, [0, 2]])
    assert torch.allclose(m.emotion_delta(None, torch.zeros(1, 2)), torch.zeros(1, 50, 13))


def test_lip_lock_weights_cover_the_inner_lips_not_the_corners():
    from emotalk.face.landmarks import INNER_LIP_PAIRS, MOUTH_CORNERS
    from emotalk.training.emotion_stage import lip_lock_weights

    rng = np.random.default_rng(0)
    L = rng.normal(0, 0.05, (478, 3)).astype(np.float32)
    L[MOUTH_CORNERS[0]], L[MOUTH_CORNERS[1]] = [-0.025, 0.05, 0], [0.025, 0.05, 0]
    xs = np.linspace(-0.018, 0.018, len(INNER_LIP_PAIRS))
    L[INNER_LIP_PAIRS[:, 0]] = np.stack([xs, np.full_like(xs, 0.045), np.zeros_like(xs)], 1)
    L[INNER_LIP_PAIRS[:, 1]] = np.stack([xs, np.full_like(xs, 0.055), np.zeros_like(xs)], 1)
    pts = np.array([[0, 0.045, 0], [0, 0.055, 0], [0.025, 0.05, 0], [0, -0.05, 0]], np.float32)
    w, u = lip_lock_weights(pts, L[None], 0.25)
    assert w[0] > 0.9 and w[1] > 0.9 and w[2] < 0.3 and w[3] < 1e-6
    assert np.allclose(u, [0, -1, 0], atol=1e-6)


def test_train_identity_adds_the_emotion_field_when_asked(may_dataset_64, tmp_path):
    """The train CLI / app path: with an emotion stage the saved identity has a trained emotion field
    (at the stage's own size when it has one); without one the identity has none."""
    from dataclasses import replace

    from emotalk.identity.checkpoint import load_identity
    from emotalk.identity.fit import train_identity
    from emotalk.training.settings import EMOTION_PRESETS, PRESETS

    ds = may_dataset_64
    s = replace(PRESETS["test"], steps=4, size=32, audio_kind="mel", checkpoint_every=100)
    es = replace(EMOTION_PRESETS["test"], steps=3, size=24)
    path, summary, _ = train_identity(ds, s, tmp_path / "id", tmp_path / "work", emotion=es)
    assert summary["emotion_stage"]["steps"] == 3 and summary["emotion_stage"]["size"] == 24
    ident = load_identity(path)
    assert ident.model.emotion_field is not None and float(ident.model.emotion_lip.max()) > 0
    path2, summary2, _ = train_identity(ds, s, tmp_path / "id2", tmp_path / "work2")
    assert "emotion_stage" not in summary2 and load_identity(path2).model.emotion_field is None
