"""Emotion's mouth warp (emotalk.gaussians.emotion_warp): the 3-D thin-plate spline, the expression model's
blend weights, the lower-face changes it spreads (opening pinned, upper face left to the field), the map
into an identity's head frame, and the model: zero at neutral, only where the mouth mask turns the field
off, the inner lips moving as pairs, the fast path equal to the plain one, saved with the identity; and the
whole-face region (brows and lids too, limited as the generator limits them, faded away from the face)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from emotalk.emotion import CATEGORIES
from emotalk.face.expression import ExpressionModel, keep_lip_gap, lip_points
from emotalk.face.generator import GeneratorSettings, brow_lid_gaps
from emotalk.face.landmarks import (
    BROW_LOWER,
    EYE_RINGS,
    INNER_LIP_PAIRS,
    LID_PAIRS,
    MOUTH_CORNERS,
    head_frame,
)
from emotalk.face.thin_plate import tps_eval, tps_fit
from emotalk.gaussians.emotion import EmotionSwitches
from emotalk.gaussians.emotion_warp import (
    MouthWarp,
    axis_log_stretch,
    category_weights,
    expression_model,
    eye_blocks,
    face_changes,
    face_fade,
    lower_face_changes,
    to_head_frame,
    warp_basis_torch,
)
from emotalk.gaussians.fast_render import FastRenderer
from emotalk.gaussians.model import BRANCHES, Frames, ModelSettings, TalkingGaussians

W, C = 4, 8


def test_thin_plate_in_3d_interpolates_and_keeps_affine_maps():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(40, 3))
    vals = rng.normal(size=(40, 2))
    w, aff, s = tps_fit(c, vals, 0.0)
    np.testing.assert_allclose(tps_eval(c, w, aff, s, c), vals, atol=1e-8)
    A = np.array([[0.5, -0.2], [0.1, 0.3], [0.0, 0.7]])
    w, aff, s = tps_fit(c, c @ A + [2, 3], 0.0)
    q = rng.normal(size=(25, 3))
    np.testing.assert_allclose(tps_eval(c, w, aff, s, q), q @ A + [2, 3], atol=1e-8)


def test_weights_make_the_expression_models_vector():
    m = expression_model()
    assert not m.weights(0.0, 0.0).any()
    for v, a in [CATEGORIES["happy"], CATEGORIES["sad"], (0.3, -0.2), (-0.9, 0.1), (2.0, 2.0)]:
        w = m.weights(v, a)
        assert (w != 0).sum() <= 2
        np.testing.assert_allclose(w @ m.per_radius, m.vector(v, a), atol=1e-6)
    rows = category_weights(m, np.array([[0.0, 0.0], CATEGORIES["angry"]]))
    assert rows.shape == (2, len(m.angles)) and not rows[0].any()


def test_lower_face_changes_keep_the_opening_and_leave_the_upper_face():
    m = expression_model()
    ch = lower_face_changes(m)  # [K,478,3]
    assert ch.shape == (len(m.angles), 478, 3)
    np.testing.assert_allclose(ch[:, INNER_LIP_PAIRS[:, 0], 1], ch[:, INNER_LIP_PAIRS[:, 1], 1], atol=1e-9)
    upper = m.upper_landmarks
    assert not ch[:, upper].any()
    happy = ch[m.categories.index("happy")]
    assert np.abs(happy[list(MOUTH_CORNERS)]).max() > 0.01  # a smile moves the corners


def test_lips_move_as_a_block_between_the_corners():
    """No lip landmark between the outermost inner-lip pairs moves vertically unlike the inner lips at its
    x (a smile's lower lip used to rise into the opening), and the corners keep their lift."""
    m = expression_model()
    ch = lower_face_changes(m)
    nx = m.neutral_shape[:, 0]
    px = m.neutral_shape[INNER_LIP_PAIRS].mean(1)[:, 0]
    pts = lip_points(m.neutral_shape)
    mid = np.setdiff1d(pts[(nx[pts] >= px.min()) & (nx[pts] <= px.max())], INNER_LIP_PAIRS)
    assert {0, 17, 12, 15}.issubset(set(mid.tolist())) and len(mid) > 30  # both lips, to their outer edges
    for k in range(len(ch)):
        want = np.interp(nx[mid], np.sort(px), ch[k, INNER_LIP_PAIRS[np.argsort(px), 0], 1])
        np.testing.assert_allclose(ch[k, mid, 1], want, atol=1e-12)
    happy = ch[m.categories.index("happy")]
    assert happy[list(MOUTH_CORNERS), 1].max() < happy[13, 1] - 0.01  # corners rise above the lips' middle
    raw = keep_lip_gap(m.per_radius[:, : m.n_lmk].reshape(-1, 478, 3).astype(np.float64))
    k = m.categories.index("happy")
    assert raw[k, 17, 1] < raw[k, 14, 1] - 0.01  # (the measured lower lip did rise at its outer edge)


def test_to_head_frame_follows_scale_axes_and_handedness():
    m = expression_model()
    R = np.array([[-1.0, 0, 0], [0, 0, 1], [0, 1, 0]])  # a reflection with swapped axes
    face = 0.04 * m.neutral_shape @ R.T + [0.1, -0.2, 3.0]
    off = np.random.default_rng(1).normal(size=(2, 478, 3))
    np.testing.assert_allclose(to_head_frame(off, m.neutral_shape, face), 0.04 * off @ R.T, atol=1e-9)


# -- the model --------------------------------------------------------------------------------------

SCALE = 0.09  # head-frame metres per expression-model unit (the outer-eye distance)


def _face() -> np.ndarray:
    """A face [478,3] in the model's frame: the expression model's neutral face, in front of the camera."""
    return (SCALE * expression_model().neutral_shape + [0.0, 0.0, 3.0]).astype(np.float32)


def _model() -> tuple[TalkingGaussians, torch.Tensor]:
    """A tiny lip-code model with a "trained" emotion field; its first Gaussians sit on the inner lips and
    the mouth corners (mask 0), the rest spread over the face (mask 1)."""
    torch.manual_seed(0)
    face = torch.as_tensor(_face())
    m = TalkingGaussians(ModelSettings(sh_degree=0, emotion_field=True, lip_code=True), 80, 10, (W, C), 2,
                         -torch.ones(3) * 4, torch.ones(3) * 4)
    lips = np.concatenate([INNER_LIP_PAIRS.ravel(), list(MOUTH_CORNERS)])  # the pairs, then the corners
    with torch.no_grad():
        for b in BRANCHES:
            m.branches[b]["means"].copy_(face[torch.randint(0, 478, (m.n_gaussians(b),))]
                                         + 0.002 * torch.randn(m.n_gaussians(b), 3))
            m.branches[b]["scales"].fill_(math.log(0.004))
            m.branches[b]["opacities"].fill_(2.0)
            m.branches[b]["sh0"].normal_(0, 1)
        m.branches["face"]["means"][: len(lips)] = face[lips]
        for p in m.emotion_field.mlp[-1].parameters():
            p.normal_(0, 0.05)
    keep = torch.ones(m.n_gaussians("face"))
    keep[: len(lips)] = 0.0
    m.set_mouth_mask(keep)
    m.set_mouth_warp(face, 2.5)
    return m.eval(), keep


def _frames(emotion, gain=None) -> Frames:
    B = len(emotion)
    K = torch.tensor([[600.0, 0, 16], [0, 600.0, 16], [0, 0, 1]])
    return Frames(torch.eye(4).repeat(B, 1, 1), K.repeat(B, 1, 1), torch.zeros(B, W, C), torch.zeros(B, 2),
                  torch.tensor(emotion, dtype=torch.float32), torch.zeros(B, 6),
                  None if gain is None else torch.tensor(gain, dtype=torch.float32))


def _means(m, fr) -> torch.Tensor:
    with torch.no_grad():
        return m.deform("face", fr)[0]


def _fast_as_plain(m, fr: Frames) -> dict:
    """The fast path's deformed Gaussians of frames fr, checked equal to the plain path's (within 1e-6)."""
    with torch.no_grad():
        plain = {b: m.deform(b, fr) for b in BRANCHES}
    fast = FastRenderer(m).deform(fr)
    for b in BRANCHES:
        for x, y in zip(plain[b], fast[b]):
            assert float((x - y).detach().abs().max()) <= 1e-6
    return fast


def test_warp_moves_only_the_masked_mouth_and_keeps_its_opening():
    m, keep = _model()
    fr = _frames([[0.0, 0.0], list(CATEGORIES["happy"])])
    on = _means(m, fr)
    m.switches = EmotionSwitches(mouth_warp=False)
    off = _means(m, fr)
    assert torch.equal(on[0], off[0])  # neutral: exactly the trained face
    moved = (on[1] - off[1]).norm(dim=-1)  # [N] what the warp adds
    assert moved[keep == 1].max() == 0  # where the field acts, the warp does not
    n = INNER_LIP_PAIRS.size
    corners = moved[n:n + 2]
    assert corners.min() > 0.005  # a smile at gain 2.5 moves the corners by about a centimetre
    d = on[1] - off[1]
    up, lo = d[0:n:2, 1], d[1:n:2, 1]  # inner-lip pairs: the same vertical motion (opening kept)
    assert (up - lo).abs().max() < 0.1 * corners.mean()


def test_warp_scales_with_intensity_and_is_linear_on_the_disc():
    m, _ = _model()
    happy = list(CATEGORIES["happy"])
    w1 = m.mouth_warp(torch.tensor([happy]))
    half = m.mouth_warp(torch.tensor([[0.5 * happy[0], 0.5 * happy[1]]]))
    torch.testing.assert_close(half[..., :3], 0.5 * w1[..., :3], atol=1e-7, rtol=1e-5)  # positions: linear
    m.switches = EmotionSwitches(mouth_warp=False)
    base = _means(m, _frames([happy], gain=[1.0]))
    m.switches = EmotionSwitches()
    d1 = _means(m, _frames([happy], gain=[1.0])) - base
    m.switches = EmotionSwitches(mouth_warp=False)
    base15 = _means(m, _frames([happy], gain=[1.5]))
    m.switches = EmotionSwitches()
    d15 = _means(m, _frames([happy], gain=[1.5])) - base15
    torch.testing.assert_close(d15, 1.5 * d1, atol=1e-6, rtol=1e-4)


def test_stretch_follows_the_warp_and_widens_a_smile():
    rot = torch.eye(3).expand(2, 3, 3)
    jac = torch.diag(torch.tensor([0.4, -0.2, 0.0])).expand(2, 3, 3)  # x stretched 1.4x, y squashed 0.8x
    want = torch.log(torch.tensor([1.4, 0.8, 1.0])).expand(2, 3)
    torch.testing.assert_close(axis_log_stretch(jac, rot), want)
    m, keep = _model()
    d = m.mouth_warp(torch.tensor([list(CATEGORIES["happy"])]))[0]  # [N,13]
    n = INNER_LIP_PAIRS.size
    scale_x = d[: n, 7:10] @ torch.tensor([1.0, 0.0, 0.0])  # the test's Gaussians have no rotation
    assert scale_x.mean() > 0.05  # a smile widens the lips: their Gaussians grow along the mouth
    assert not d[keep == 1].any() and not d[:, 3:7].any() and not d[:, 10:].any()
    m.switches = EmotionSwitches(warp_stretch=False)
    assert not m.mouth_warp(torch.tensor([list(CATEGORIES["happy"])]))[0, :, 7:10].any()


def test_fast_path_draws_the_warp_as_the_plain_path():
    m, _ = _model()
    fast = _fast_as_plain(m, _frames([[0.0, 0.0], list(CATEGORIES["happy"]), list(CATEGORIES["sad"])],
                                     gain=[1.0, 1.0, 0.7]))
    inside = (fast["mouth"][0][1] - fast["mouth"][0][0]).norm(dim=-1)  # the inside of the mouth follows
    assert inside.max() > 0.002
    m.switches = EmotionSwitches(mouth_warp=False)  # the memo tells the switches apart
    fast_off = FastRenderer(m).deform(_frames([[0.0, 0.0], list(CATEGORIES["happy"]),
                                               list(CATEGORIES["sad"])], gain=[1.0, 1.0, 0.7]))["face"][0]
    assert float((fast_off[1] - fast["face"][0][1]).abs().max()) > 1e-3


def test_warp_is_saved_with_the_model_and_absent_models_are_unchanged():
    m, _ = _model()
    m2 = TalkingGaussians(m.settings, 80, 10, (W, C), 2, -torch.ones(3) * 4, torch.ones(3) * 4)
    m2.load_state_dict(m.state_dict(), strict=True)
    assert torch.equal(m2.emotion_face, m.emotion_face) and float(m2.emotion_warp_gain) == 2.5
    # a model made without the warp loads the older files strictly and has none
    plain = TalkingGaussians(ModelSettings(sh_degree=0, emotion_field=True, emotion_mouth_mask=True,
                                           lip_code=True), 80, 10, (W, C), 2, -torch.ones(3), torch.ones(3))
    assert "emotion_face" not in plain.state_dict()
    assert plain.mouth_warp(torch.tensor([list(CATEGORIES["happy"])])) is None


def test_mouth_warp_class_blends_the_category_basis():
    face = _face()
    pts = torch.as_tensor(face[[13, 14, 61, 291, 1]])
    mw = MouthWarp(face, pts)
    m: ExpressionModel = mw.model
    assert mw.basis.shape == (len(m.angles), 5, 3)
    got, stretch = mw(torch.tensor([[0.0, 0.0], list(CATEGORIES["happy"])]))
    assert stretch is None and mw.jac is None  # no rotations given: offsets only
    assert not got[0].any()
    k = m.categories.index("happy")
    r = math.hypot(*CATEGORIES["happy"])
    torch.testing.assert_close(got[1], r * mw.basis[k], atol=1e-7, rtol=1e-5)


def test_torch_basis_matches_the_numpy_reference_and_its_jacobian():
    from emotalk.gaussians.emotion_warp import warp_basis

    m = expression_model()
    face = _face()
    changes = to_head_frame(lower_face_changes(m), m.neutral_shape, face)
    rng = np.random.default_rng(2)
    pts = face[rng.integers(0, 478, 40)] + rng.normal(0, 0.003, (40, 3)).astype(np.float32)
    ref, ref_jac = warp_basis(face, changes, pts, step=1e-4)
    got, jac = warp_basis_torch(face, changes, torch.as_tensor(pts), jacobian=True)
    np.testing.assert_allclose(got.numpy(), ref, atol=1e-5)  # float32 results of float64 sums
    # central differences of r² log r² are rough next to a landmark: a loose bound, but far below the values
    np.testing.assert_allclose(jac.numpy(), ref_jac, atol=1e-3 * np.abs(ref_jac).max())
    assert np.abs(ref_jac).max() > 0.05  # the warp really stretches somewhere


def test_per_category_factors_scale_that_category_only():
    """An identity's calibrated strengths (ModelSettings.emotion_category_gain) scale its category only."""
    m, _ = _model()
    happy, sad = torch.tensor([list(CATEGORIES["happy"])]), torch.tensor([list(CATEGORIES["sad"])])
    h1, s1 = m.mouth_warp(happy), m.mouth_warp(sad)
    m.settings = dataclasses.replace(m.settings, emotion_category_gain={"happy": 1.8})
    h2, s2 = m.mouth_warp(happy), m.mouth_warp(sad)
    torch.testing.assert_close(h2[..., :3], 1.8 * h1[..., :3], atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(s2, s1)
    assert float(h1[..., :3].abs().max()) > 1e-3  # the smile really moves


# -- the whole face (ModelSettings.emotion_warp_region "face") ------------------------------------------


def test_face_region_carries_the_upper_face_and_the_same_lower_face():
    m = expression_model()
    ch = face_changes(m, _face(), 2.5)  # [K,478,3]
    upper = m.upper_landmarks
    lower = lower_face_changes(m)
    np.testing.assert_allclose(ch[:, ~upper], lower[:, ~upper], atol=1e-12)  # the mouth region's change
    surprised = ch[m.categories.index("surprised")]
    assert surprised[np.concatenate(BROW_LOWER), 1].mean() < -0.01  # brows go up (y runs down the face)
    # saturated as the generator does: no brow moves further than max_offset at full strength
    brows = np.concatenate(BROW_LOWER)
    assert np.linalg.norm(2.5 * ch[:, brows], axis=-1).max() <= GeneratorSettings().max_offset + 1e-9


def test_face_region_keeps_low_brows_above_the_lids():
    """A face whose brows sit low: at angry the unlimited change takes brow points below the upper lid;
    the face region's keeps each one brow_gap_min of its gap above it, as the generator does."""
    m = expression_model()
    face = _face().astype(np.float64)

    def frontal(f):  # the face seen from the front in its own head frame (y down), as face_changes sees it
        R, o, unit = head_frame(f)
        return ((f - o) @ R.T / unit)[:, :2]

    g0 = brow_lid_gaps(frontal(face), frontal(face))
    low = face.copy()
    low[np.concatenate(BROW_LOWER), 1] += 0.8 * g0 * SCALE  # brows lowered to about 0.2 of their gap
    low_flat = frontal(low)
    g_low = brow_lid_gaps(low_flat, low_flat)
    k = m.categories.index("angry")
    raw = 2.5 * m.per_radius[k, : ExpressionModel.n_lmk].reshape(478, 3)
    assert (brow_lid_gaps(low_flat + raw[:, :2], low_flat) < 0.15 * g_low).any()
    ch = 2.5 * face_changes(m, low, 2.5)[k]
    assert (brow_lid_gaps(low_flat + ch[:, :2], low_flat) >= 0.15 * g_low - 1e-6).all()


def test_face_fade_spares_what_is_far_from_the_face():
    face = _face()
    unit = float(np.linalg.norm(face[263] - face[33]))
    top = face[:468, 1].min()  # the forehead's top landmark (y runs down)
    pts = np.array([face[1], [0.0, top - 0.2 * unit, 3.0], [0.0, top - 1.0 * unit, 3.0]], np.float32)
    f = face_fade(face, pts)
    assert f[0] == 1.0 and 0.0 < f[1] < 1.0 and f[2] == 0.0


def test_face_region_moves_the_brows_in_the_model_and_the_fast_path_agrees():
    m, keep = _model()
    face = m.emotion_face.numpy()
    brow = torch.as_tensor(face[np.concatenate(BROW_LOWER)])
    with torch.no_grad():
        m.branches["face"]["means"][-len(brow):] = brow  # the last Gaussians sit on the brows (mask 1)
    surprised = torch.tensor([list(CATEGORIES["surprised"])])
    assert not m.mouth_warp(surprised)[0, -len(brow):].any()  # mouth region: the brows are the field's
    m.settings = dataclasses.replace(m.settings, emotion_warp_region="face")
    d = m.mouth_warp(surprised)[0]
    assert float(d[-len(brow):, 1].mean()) < -0.001  # face region: the warp raises them (y runs down)
    _fast_as_plain(m, _frames([[0.0, 0.0], list(CATEGORIES["surprised"]), list(CATEGORIES["angry"])],
                              gain=[1.0, 1.0, 0.6]))
    m.settings = dataclasses.replace(m.settings, emotion_warp_region="cheeks")
    with pytest.raises(ValueError, match="warp region"):
        m.mouth_warp(surprised)


def test_colour_only_field_keeps_its_colour_and_drops_its_geometry():
    m, keep = _model()
    happy = torch.tensor([list(CATEGORIES["happy"])])
    m.switches = EmotionSwitches(mouth_warp=False)
    with torch.no_grad():
        full = m.emotion_delta(None, happy)
        m.settings = dataclasses.replace(m.settings, emotion_field_colour_only=True)
        colour = m.emotion_delta(None, happy)
    assert float(full[..., :10].abs().max()) > 1e-4  # the "trained" field moves Gaussians
    assert not colour[..., :10].any()
    torch.testing.assert_close(colour[..., 10:], full[..., 10:])


def test_eyes_move_as_blocks_in_the_face_region():
    """Each eye, its lids and the skin just around it follow the eye ring's mean change, squashed across the
    eye by the lids' opening change (the spline bent the Gaussians behind the lid landmarks apart from the
    lids and erased the irises); far from the eyes the spline's motion is left as it is."""
    m = expression_model()
    face = _face().astype(np.float64)
    R, o, unit = head_frame(face)
    ch = to_head_frame(face_changes(m, face, 2.5), m.neutral_shape, face)  # [K,478,3] head frame
    k = m.categories.index("angry")
    ring = EYE_RINGS[0]
    centre = face[ring].mean(0)
    above = centre - 0.04 * unit * R[1]  # inside the block, above the eye's centre (y runs down)
    far = face[1]  # the nose tip
    off, jac, w = eye_blocks(face, ch, np.stack([centre, above, far]))
    assert w[0] == 1.0 and w[1] == 1.0 and w[2] == 0.0
    np.testing.assert_allclose(off[k, 0], ch[k, ring].mean(0), atol=1e-6)  # the ring's mean motion
    flat = (face - o) @ R.T / unit
    moved = ch[k] @ R.T / unit
    pairs = LID_PAIRS[:5]
    gap = flat[pairs[:, 1], 1] - flat[pairs[:, 0], 1]
    ratio = ((moved[pairs[:, 1], 1] - moved[pairs[:, 0], 1]) / gap).mean()
    assert ratio < -0.05  # angry narrows the eye ...
    dy = ((off[k, 1] - off[k, 0]) @ R[1]) / unit
    np.testing.assert_allclose(dy, ratio * -0.04, atol=1e-6)  # ... so the block's top comes down towards it
    np.testing.assert_allclose(jac[k, 0], ratio * np.outer(R[1], R[1]), atol=1e-6)
    assert not off[:, 2].any() and not jac[:, 2].any()
    # in the model, a Gaussian on the eye's centre moves with the block; one on the nose tip as the spline
    pts = torch.as_tensor(np.stack([centre, far]), dtype=torch.float32)
    spline = MouthWarp(face, pts, region="face", gain=2.5).basis.clone()  # (the block is part of the basis)
    plain, _ = warp_basis_torch(face, ch, pts)
    np.testing.assert_allclose(spline[k, 0].numpy(), ch[k, ring].mean(0), atol=1e-6)
    np.testing.assert_allclose(spline[k, 1].numpy(), plain[k, 1].numpy(), atol=1e-6)
    assert np.abs(plain[k, 0].numpy() - ch[k, ring].mean(0)).max() > 1e-5  # (the spline alone differs there)
