"""Emotion's mouth through the lip code, the mouth mask of the emotion field and the emotion gain
(issue 17): zero at neutral, continuous, masked at the lips, gain 0 = neutral, switches off = as before."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emotalk.emotion import CATEGORIES
from emotalk.errors import InputError
from emotalk.gaussians.emotion import EmotionSwitches, lip_lock_distance, mouth_keep
from emotalk.gaussians.model import Frames, ModelSettings, TalkingGaussians
from emotalk.lips import LIP_NAMES
from emotalk.lips.emotion import (
    MAX_SHARE,
    OPEN_FADE,
    OPENING,
    EmotionLipTable,
    applied_offsets,
    emotion_lip_offset,
    emotion_opening,
    open_lips,
)

W, C = 4, 6


def test_table_matches_the_lip_code_and_reads_as_expected():
    t = EmotionLipTable.load()
    i = {n: k for k, n in enumerate(LIP_NAMES)}
    assert set(t.categories) >= {"happy", "surprised", "angry", "sad"}
    assert all(t.applied[c][i["gap"]] == 0 for c in t.categories)  # the opening is the speech's
    assert t.applied["happy"][i["width"]] > 0.5  # a smile widens the mouth
    assert 0 < t.applied["surprised"][i["jaw"]] <= 0.6  # surprise: a small jaw drop, nothing else drops it
    assert all(t.applied[c][i["jaw"]] == 0 for c in t.categories if c != "surprised")
    assert np.abs(np.stack(list(t.applied.values()))).max() <= 1.0


def test_applied_offsets_shrink_what_the_actors_disagree_on():
    names = LIP_NAMES
    m = {"happy": np.array([2.0, 0.8, 1.0, 0.5, 0.5, 3.0]), "sad": np.array([0.0, 1.0, 0, 0, 0, 0])}
    sd = {"happy": np.array([0.1, 0.1, 0.1, 3.0, 0.1, 0.1]), "sad": np.full(6, 0.1)}
    got = applied_offsets(m, sd, 3)
    a = got["happy"]
    assert a[names.index("gap")] == 0 and a[names.index("jaw")] == 0  # no jaw for happy
    assert a[names.index("round")] == 0  # sign not consistent over actors
    assert 0.75 < a[names.index("width")] < 0.8 and a[names.index("lower")] == 1.0  # clipped
    assert got["sad"][names.index("width")] == 0  # no grin for a negative emotion


def test_offset_is_zero_at_neutral_exact_at_categories_and_continuous():
    t = EmotionLipTable.load()
    assert torch.equal(emotion_lip_offset(torch.zeros(3, 2)), torch.zeros(3, len(LIP_NAMES)))
    assert torch.equal(emotion_lip_offset(torch.tensor([[0.8, 0.5]]), 0.0), torch.zeros(1, len(LIP_NAMES)))
    for c in t.categories:
        got = emotion_lip_offset(torch.tensor([CATEGORIES[c]], dtype=torch.float32))[0]
        assert torch.allclose(got, torch.as_tensor(t.applied[c]), atol=1e-5), c
    # a dense walk around circles and along rays: no jumps (the angle wrap at +-pi included)
    th = torch.linspace(-math.pi, math.pi, 2001)
    for r in (0.3, 1.0):
        off = emotion_lip_offset(torch.stack([r * torch.cos(th), r * torch.sin(th)], 1))
        assert (off[1:] - off[:-1]).abs().max() < 0.05
        assert torch.allclose(off[0], off[-1], atol=1e-4)
    ray = torch.linspace(0, 1, 101)[:, None] * torch.tensor([[0.8, 0.5]]) / math.hypot(0.8, 0.5)
    off = emotion_lip_offset(ray)
    assert (off[1:] - off[:-1]).abs().max() < 0.05 and off[0].abs().max() == 0
    # intensity scales it linearly
    va = torch.tensor([[0.2, 0.85]])
    assert torch.allclose(emotion_lip_offset(va, 1.5), 1.5 * emotion_lip_offset(va), atol=1e-6)


def test_mouth_keep_is_zero_at_the_lips_and_one_far_away():
    k = mouth_keep(np.array([0.0, 0.05, 0.3, 0.45, 1.0, 3.0]), 0.1, 0.45)
    assert k[0] == 0 and k[1] == 0 and 0 < k[2] < 1 and k[3] == 1 and k[-1] == 1
    assert np.all(np.diff(k) >= 0)
    # distances read back from lip-lock weights
    d = np.array([0.0, 0.1, 0.5, 1.0])
    w = np.exp(-(d / 0.25) ** 2).astype(np.float32)
    assert np.allclose(lip_lock_distance(w), d, atol=1e-3)
    assert lip_lock_distance(np.zeros(1))[0] > 2.0


def test_mouth_distance_of_the_emotion_stage_is_in_mouth_widths():
    from emotalk.face.landmarks import MOUTH_CORNERS, MOUTH_LANDMARKS
    from emotalk.training.emotion_stage import mouth_distance

    L = np.full((478, 3), 10.0, np.float32)
    L[list(MOUTH_LANDMARKS)] = 0.0
    L[MOUTH_CORNERS[0]] = (-0.5, 0, 0)
    L[MOUTH_CORNERS[1]] = (0.5, 0, 0)
    d = mouth_distance(np.array([[0.0, 0, 0], [0, 2.0, 0]], np.float32), L[None])
    assert np.allclose(d, [0.0, 2.0], atol=1e-5)


# -- the model -----------------------------------------------------------------------------------

def _model(lip_code: bool = True) -> TalkingGaussians:
    torch.manual_seed(0)
    m = TalkingGaussians(ModelSettings(sh_degree=0, emotion_field=True, lip_code=lip_code), 60, 10, (W, C), 2,
                         -torch.ones(3), torch.ones(3))
    with torch.no_grad():
        for b in ("face", "mouth"):
            m.branches[b]["means"].normal_(0, 0.3)
            m.branches[b]["means"][:, 2] += 3.0  # in front of the camera
            m.branches[b]["scales"].fill_(math.log(0.08))
            m.branches[b]["opacities"].fill_(2.0)
            m.branches[b]["sh0"].normal_(0, 1)
        for p in m.emotion_field.mlp[-1].parameters():  # a "trained" emotion field
            p.normal_(0, 0.1)
        for p in m.lip_enc.parameters() if lip_code else ():
            p.normal_(0, 0.5)
        m.fields["face"].mlp[-1].weight.normal_(0, 0.05)
    return m.eval()


def _frames(emotion, gain=None, lips=None) -> Frames:
    B = len(emotion)
    K = torch.tensor([[20.0, 0, 8], [0, 20.0, 8], [0, 0, 1]])
    g = None if gain is None else torch.full((B,), float(gain))
    torch.manual_seed(1)
    return Frames(torch.eye(4).repeat(B, 1, 1), K.repeat(B, 1, 1), torch.randn(B, W, C), torch.zeros(B, 2),
                  torch.tensor(emotion, dtype=torch.float32), lips, g)


def _render(m, fr):
    with torch.no_grad():
        return m.render(fr, 16, 16, torch.zeros(len(fr.emotion), 16, 16, 3), backend="torch").rgb


def test_gain_zero_renders_neutral_exactly_and_more_gain_moves_further():
    m = _model()
    neutral = _render(m, _frames([[0.0, 0.0]]))
    happy = CATEGORIES["happy"]
    assert torch.equal(_render(m, _frames([happy], gain=0.0)), neutral)
    d1 = (_render(m, _frames([happy], gain=1.0)) - neutral).abs().mean()
    d15 = (_render(m, _frames([happy], gain=1.5)) - neutral).abs().mean()
    assert d1 > 1e-4 and d15 > 1.2 * d1
    assert torch.equal(_render(m, _frames([happy], gain=1.0)), _render(m, _frames([happy])))  # None = 1


def test_lip_offset_moves_the_lip_code_within_the_identity_range():
    m = _model()
    assert not m.switches.lip_offset  # off by default (measured worse on audio-driven renders)
    m.switches = EmotionSwitches(lip_offset=True)
    with torch.no_grad():
        m.lip_lo.fill_(-1.0), m.lip_hi.fill_(1.0)
    base = torch.full((2, len(LIP_NAMES)), 0.9)
    fr = _frames([[0.0, 0.0], list(CATEGORIES["happy"])], lips=base)
    got = m.lips(fr, emotional=True)
    assert torch.equal(got[0], base[0])  # neutral row untouched
    w = LIP_NAMES.index("width")
    assert got[1, w] == 1.0  # widened, clamped to the trained range
    m.switches = EmotionSwitches(lip_offset=False)
    assert torch.equal(m.lips(fr, emotional=True), base)


def test_dropped_jaw_opens_surprise_and_fear_only_and_scales_with_intensity():
    i = {n: k for k, n in enumerate(LIP_NAMES)}
    va = torch.tensor([CATEGORIES[c] for c in CATEGORIES], dtype=torch.float32)
    got = dict(zip(CATEGORIES, emotion_opening(va)))
    for c, row in got.items():
        want = torch.zeros(len(LIP_NAMES))
        for n, z in OPENING.get(c, {}).items():
            want[i[n]] = z
        if c not in ("contempt", "calm"):  # between two categories of the disc: a blend
            assert torch.allclose(row, want, atol=1e-5), c
    assert got["surprised"][i["jaw"]] >= 0.3 and got["fear"][i["gap"]] >= 0.3
    assert torch.equal(got["calm"], torch.zeros(len(LIP_NAMES)))  # between sad and happy: no opening
    s = torch.tensor([CATEGORIES["surprised"]], dtype=torch.float32)
    assert torch.allclose(emotion_opening(s, 1.5), 1.5 * emotion_opening(s))
    assert emotion_opening(s, 3.0).max() == MAX_SHARE  # the mouth always keeps moving with speech
    assert torch.equal(emotion_opening(s, 0.0), torch.zeros(1, len(LIP_NAMES)))
    th = torch.linspace(-math.pi, math.pi, 2001)  # continuous around the disc (fear -> angry is 6 degrees)
    off = emotion_opening(torch.stack([torch.cos(th), torch.sin(th)], 1))
    assert (off[1:] - off[:-1]).abs().max() < 0.05


def test_open_lips_keeps_closures_shut_and_the_speechs_own_movement():
    g, j, w = (LIP_NAMES.index(n) for n in ("gap", "jaw", "width"))
    lo, hi = torch.full((len(LIP_NAMES),), -2.0), torch.full((len(LIP_NAMES),), 2.5)
    lips = torch.zeros(5, len(LIP_NAMES))
    lips[:, g] = torch.tensor([-2.0, -2.0 + OPEN_FADE / 2, -2.0 + OPEN_FADE, 1.0, 2.0])  # shut ... open
    lips[:, j] = lips[:, g]
    share = emotion_opening(torch.tensor([CATEGORIES["surprised"]], dtype=torch.float32))
    out = open_lips(lips, share, lo, hi)
    assert torch.equal(out[0], lips[0])  # a closure at the most closed trained gap stays shut
    lift = out - lips
    assert 0 < lift[1, j] < lift[2, j]  # faded in with the speech's gap
    # above the fade every open frame gets the same lift, that share of the headroom above the mean code:
    # the differences between open frames (the speech's own movement) are kept, not compressed toward hi
    torch.testing.assert_close(lift[2:, j], (share[0, j] * hi[j]).expand(3))
    torch.testing.assert_close(out[4, g] - out[3, g], lips[4, g] - lips[3, g])
    assert torch.equal(out[:, w], lips[:, w])  # parameters with no opening are untouched
    sweep = torch.zeros(200, len(LIP_NAMES))
    sweep[:, g] = torch.linspace(-2.0, 2.5, 200)
    for gain in (1.0, 1.5):  # monotonic in the speech's gap, never below it, at any intensity
        s = emotion_opening(torch.tensor([CATEGORIES["surprised"]], dtype=torch.float32), gain)
        got = open_lips(sweep, s, lo, hi)[:, g]
        assert (got[1:] >= got[:-1]).all() and (got >= sweep[:, g]).all()
        assert got.max() <= hi[g] * (1 + s[0, g]) + 1e-6  # at most the share above the trained maximum


def test_jaw_drop_switch_opens_the_models_lip_code():
    m = _model()
    assert m.switches.jaw_drop  # on by default
    with torch.no_grad():
        m.lip_lo.fill_(-2.0), m.lip_hi.fill_(3.0)
    base = torch.zeros(2, len(LIP_NAMES))
    fr = _frames([[0.0, 0.0], list(CATEGORIES["surprised"])], lips=base)
    got = m.lips(fr, emotional=True)
    assert torch.equal(got[0], base[0])  # neutral untouched
    assert got[1, LIP_NAMES.index("jaw")] > 1.0  # lifted by half of lip_hi (3)
    assert torch.equal(m.lips(fr), base)  # only the emotional lips (the speech condition of training)
    m.switches = EmotionSwitches(jaw_drop=False)
    assert torch.equal(m.lips(fr, emotional=True), base)


def test_mouth_mask_leaves_masked_gaussians_to_the_speech_fields():
    m = _model()
    keep = torch.ones(m.n_gaussians("face"))
    keep[:20] = 0.0
    m.set_mouth_mask(keep)
    assert m.settings.emotion_mouth_mask and "emotion_keep" in m.state_dict()
    m.switches.lip_offset = False  # compare the fields only
    fr = _frames([[0.0, 0.0], list(CATEGORIES["surprised"])], lips=torch.zeros(2, len(LIP_NAMES)))
    with torch.no_grad():
        means, _, _, _, colors = m.deform("face", fr)
    assert torch.equal(means[1, :20], means[0, :20]) and torch.equal(colors[1, :20], colors[0, :20])
    assert (means[1, 20:] - means[0, 20:]).abs().max() > 1e-5
    # a loaded identity with a mask has the buffer from its settings (strict loading)
    m2 = TalkingGaussians(m.settings, 60, 10, (W, C), 2, -torch.ones(3), torch.ones(3))
    m2.load_state_dict(m.state_dict(), strict=True)
    assert torch.equal(m2.emotion_keep, m.emotion_keep)


def test_identities_without_a_mask_read_one_from_their_lip_lock():
    m = _model()
    w = torch.zeros(m.n_gaussians("face"))
    w[:10] = 1.0  # on the central inner lips
    m.set_lip_lock(w, torch.tensor([0.0, 1.0, 0.0]))
    m.switches.lip_offset = False
    fr = _frames([[0.0, 0.0], list(CATEGORIES["happy"])], lips=torch.zeros(2, len(LIP_NAMES)))
    with torch.no_grad():
        means = m.deform("face", fr)[0]
        assert torch.equal(means[1, :10], means[0, :10])
        assert (means[1, 10:] - means[0, 10:]).abs().max() > 1e-5
        m.switches.mouth_mask = False
        assert (m.deform("face", fr)[0][1, :10] - means[0, :10]).abs().max() > 1e-6


def test_switched_off_model_renders_as_before():
    """Switches off: a model with a mouth mask and the lip table renders exactly as one without either
    (the code path of the identities shipped before issue 17)."""
    m = _model()
    m.switches = EmotionSwitches(lip_offset=True)
    fr = _frames([[0.0, 0.0], list(CATEGORIES["happy"]), list(CATEGORIES["sad"])])
    before = _render(m, fr)  # no mask yet; lip offset on
    m.switches = EmotionSwitches(lip_offset=False, mouth_mask=False)
    plain = _render(m, fr)
    m.set_mouth_mask(torch.zeros(m.n_gaussians("face")))
    assert torch.equal(_render(m, fr), plain)
    assert not torch.equal(before, plain)  # the offset does change the emotional rows ...
    assert torch.equal(before[0], plain[0])  # ... and never the neutral one


def test_render_frames_takes_a_gain_column():
    from emotalk.render.frames import _as_emotion

    e = _as_emotion((0.5, 0.5), 3)
    assert e.shape == (3, 3) and np.all(e[:, 2] == 1)
    assert np.all(_as_emotion(np.array([[0.1, 0.2, 1.5]] * 2), 2)[:, 2] == 1.5)
    with pytest.raises(InputError):
        _as_emotion((0.5, 0.5, 1.6), 2)
    with pytest.raises(InputError):
        _as_emotion(np.zeros((2, 4)), 2)


@pytest.mark.slow
def test_emotion_stage_script_retrains_an_identity(tiny_identity, may_dataset_64, tmp_path):
    """scripts/emotion_stage.py (the lead's GPU command, here at test size on the CPU): a fresh masked
    emotion field with the mouth warp, the identity loads and renders; --old trains without the mask;
    --warp-only adds the warp to a trained identity."""
    import subprocess
    import sys
    from pathlib import Path

    from emotalk.identity.checkpoint import load_identity

    script = Path(__file__).resolve().parents[1] / "scripts" / "emotion_stage.py"
    for extra, masked in (([], True), (["--old"], False)):
        out = tmp_path / f"id{len(extra)}"
        cmd = [sys.executable, str(script), str(may_dataset_64.root), str(tiny_identity), str(out),
               "--preset", "test", "--device", "cpu", *extra]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-2000:]
        ident = load_identity(out)
        assert ident.model.emotion_field is not None
        assert ident.model.settings.emotion_mouth_mask == masked
        assert hasattr(ident.model, "emotion_keep") == masked
        assert ident.model.settings.emotion_mouth_warp == masked  # the warp comes with the mask
        # the field's fidelity to its targets is printed and kept with the identity
        fid = ident.meta["metrics"]["emotion_stage"]["fidelity"]
        assert "fidelity/amplitude happy" in r.stdout and set(fid["mean"]) == {"fidelity", "amplitude"}
    # --warp-only gives a trained identity the mouth warp without training; one without a mask is refused
    for src, rc in ((tmp_path / "id0", 0), (tmp_path / "id1", 2)):
        out = tmp_path / f"warp_{src.name}"
        r = subprocess.run([sys.executable, str(script), str(may_dataset_64.root), str(src), str(out),
                            "--warp-only", "--device", "cpu"], capture_output=True, text=True, timeout=300)
        assert r.returncode == rc, r.stderr[-2000:]
    ident = load_identity(tmp_path / "warp_id0")
    assert ident.model.settings.emotion_mouth_warp and float(ident.model.emotion_face.abs().sum()) > 0
    assert "no mouth mask" in r.stderr
    # --fidelity-only measures a trained field and writes nothing
    out = tmp_path / "none"
    cmd = [sys.executable, str(script), str(may_dataset_64.root), str(tmp_path / "id0"), str(out),
           "--fidelity-only", "--preset", "test", "--device", "cpu"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "fidelity/amplitude happy" in r.stdout and "mean" in r.stdout
    assert not out.exists()
