"""Lip-aligned emotional face generator: warp correctness, stillness outside the face, lip opening."""

from __future__ import annotations

import numpy as np
import pytest

from emotalk.emotion import CATEGORIES
from emotalk.errors import InputError
from emotalk.face.expression import ExpressionModel
from emotalk.face.generator import EmotionalFaceGenerator, GeneratorSettings
from emotalk.face.landmarks import INNER_LIP_PAIRS, INNER_LIP_RING, MOUTH_CORNERS
from emotalk.face.thin_plate import tps_eval, tps_fit
from tests.conftest import shared


def _synthetic_face(size: int = 160):
    """A smooth textured image and landmarks: the model's neutral face placed in the image."""
    m = ExpressionModel.load()
    lmk = m.neutral_shape[:, :2] * 40 + size / 2  # eye distance 40 px
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.stack([128 + 100 * np.sin(xx / 9), 128 + 100 * np.cos(yy / 11),
                    128 + 60 * np.sin((xx + yy) / 13)], -1)
    return np.clip(img, 0, 255).astype(np.uint8), lmk.astype(np.float32)


def test_tps_interpolates_and_reproduces_affine():
    rng = np.random.default_rng(0)
    c = rng.uniform(0, 100, (30, 2))
    vals = c @ np.array([[0.5, -0.2], [0.1, 0.3]]) + [2, 3]
    w, aff, s = tps_fit(c, vals, 0.0)
    q = rng.uniform(0, 100, (50, 2))
    np.testing.assert_allclose(tps_eval(c, w, aff, s, q), q @ np.array([[0.5, -0.2], [0.1, 0.3]]) + [2, 3],
                               atol=1e-6)
    v2 = rng.normal(size=(30, 1))
    w, aff, s = tps_fit(c, v2, 0.0)
    np.testing.assert_allclose(tps_eval(c, w, aff, s, c), v2, atol=1e-6)


def test_neutral_is_identity_and_background_stays_still():
    img, lmk = _synthetic_face()
    gen = EmotionalFaceGenerator(settings=GeneratorSettings(gain=2.0))
    g0 = gen(img, lmk, None, 0.0, 0.0)
    assert np.array_equal(g0.image, img) and np.allclose(g0.lmk, lmk)
    g = gen(img, lmk, None, *CATEGORIES["surprised"])
    assert not np.array_equal(g.image, img)
    still = g.mask == 0
    assert still.mean() > 0.2 and np.array_equal(g.image[still], img[still])


def test_pixels_follow_the_landmarks_and_lip_gap_is_kept():
    img, lmk = _synthetic_face()
    # the warp alone (texture off: the ratio image would change the colours being compared)
    gen = EmotionalFaceGenerator(settings=GeneratorSettings(gain=2.0, grid_step=1, texture=0.0))
    g = gen(img, lmk, None, *CATEGORIES["happy"])
    assert np.abs(g.offsets_px).max() > 1.0  # the face really moves
    # pixels at the moved landmarks show what was at the original ones (sampled inside the face)
    inner = [i for i in (1, 4, 6, 9, 33, 61, 105, 133, 159, 291, 334, 362, 386) if g.mask[
        int(lmk[i, 1]), int(lmk[i, 0])] > 0.999]
    assert len(inner) > 8
    src = img[np.round(lmk[inner, 1]).astype(int), np.round(lmk[inner, 0]).astype(int)].astype(float)
    dst = g.image[np.round(g.lmk[inner, 1]).astype(int), np.round(g.lmk[inner, 0]).astype(int)].astype(float)
    unmoved = g.image[np.round(lmk[inner, 1]).astype(int), np.round(lmk[inner, 0]).astype(int)].astype(float)
    assert np.abs(dst - src).mean() < 0.5 * np.abs(unmoved - src).mean()
    up, lo = INNER_LIP_PAIRS[:, 0], INNER_LIP_PAIRS[:, 1]
    np.testing.assert_allclose(g.lmk[lo, 1] - g.lmk[up, 1], lmk[lo, 1] - lmk[up, 1], atol=1e-3)
    names = dict(zip(g.blendshape_names, g.blendshape_delta))
    assert names["jawOpen"] == 0 and names["mouthSmileLeft"] > 0


def test_texture_changes_the_face_only_inside_the_mask_and_outside_the_mouth():
    from emotalk.face.expression_texture import polygon_mask

    img, lmk = _synthetic_face()
    lmk = lmk.copy()
    lmk[[13, 82, 81, 80, 312, 311, 310], 1] -= 5  # an open mouth
    lmk[[14, 87, 178, 88, 317, 402, 318], 1] += 5
    warp_only = EmotionalFaceGenerator(settings=GeneratorSettings(texture=0.0))
    textured = EmotionalFaceGenerator(settings=GeneratorSettings(texture=2.0))
    for cat in ("angry", "happy"):
        a = warp_only(img, lmk, None, *CATEGORIES[cat])
        b = textured(img, lmk, None, *CATEGORIES[cat])
        assert np.array_equal(a.lmk, b.lmk) and np.array_equal(a.mask, b.mask)
        assert np.abs(a.image.astype(int) - b.image.astype(int)).max() > 3  # the texture shows
        still = b.mask == 0
        assert np.array_equal(b.image[still], img[still])
        mouth = polygon_mask(img.shape[:2], b.lmk[INNER_LIP_RING].astype(np.float64)) > 0
        assert mouth.sum() > 20 and np.array_equal(a.image[mouth], b.image[mouth])
    n = textured(img, lmk, None, 0.0, 0.0)
    assert np.array_equal(n.image, img)


def test_bad_inputs():
    img, lmk = _synthetic_face(64)
    gen = EmotionalFaceGenerator()
    with pytest.raises(InputError):
        gen(img.astype(np.float32), lmk, None, 0.5, 0.5)
    with pytest.raises(InputError):
        gen(img, lmk[:100], None, 0.5, 0.5)
    bad = lmk.copy()
    bad[5] = np.nan
    with pytest.raises(InputError):
        gen(img, bad, None, 0.5, 0.5)
    with pytest.raises(InputError):
        gen(img, lmk, None, float("nan"), 0.5)
    g = gen(img, lmk, None, 3.0, 4.0)  # outside the disc: clamped, not an error
    assert abs(g.valence - 0.6) < 1e-9 and abs(g.arousal - 0.8) < 1e-9


def test_real_face_smiles_and_frowns():
    """On a real neutral MEAD frame, re-tracked blendshapes move the way the emotion says."""
    from emotalk.face.tracking import track_video
    from emotalk.media import read_frames

    frame = read_frames(shared("emotion/mead_video/M030_front_neutral_level1_001.mp4"), max_frames=1)[0]
    tr = track_video([frame], 1)
    assert tr.found[0]
    gen = EmotionalFaceGenerator(settings=GeneratorSettings(gain=2.0))
    names = tr.blendshape_names
    bs0 = dict(zip(names, tr.blendshapes[0]))

    def after(cat):
        g = gen(frame, tr.lmk[0], None, *CATEGORIES[cat])
        t = track_video([g.image], 1)
        assert t.found[0]
        return dict(zip(names, t.blendshapes[0]))

    happy, angry = after("happy"), after("angry")
    smile = lambda d: d["mouthSmileLeft"] + d["mouthSmileRight"]  # noqa: E731
    brow_down = lambda d: d["browDownLeft"] + d["browDownRight"]  # noqa: E731
    assert smile(happy) > smile(bs0) + 0.05
    assert brow_down(angry) > brow_down(bs0) + 0.05


def test_category_factors_scale_one_emotion_and_blend_between_neighbours():
    """GeneratorSettings.category_gain / category_texture: an identity's own strength per category."""
    img, lmk = _synthetic_face()
    base = GeneratorSettings(gain=2.0, texture=0.0, max_offset=10.0)  # no saturation: motion is linear
    strong = GeneratorSettings(gain=2.0, texture=0.0, max_offset=10.0, category_gain={"happy": 1.5})
    g0, g1 = EmotionalFaceGenerator(settings=base), EmotionalFaceGenerator(settings=strong)
    for c, f in (("happy", 1.5), ("sad", 1.0)):
        a, b = g0(img, lmk, None, *CATEGORIES[c]), g1(img, lmk, None, *CATEGORIES[c])
        corners = list(MOUTH_CORNERS)  # away from the lids' limits: the motion is linear in the gain
        assert np.abs(a.offsets_px[corners]).max() > 1.0
        np.testing.assert_allclose(b.offsets_px[corners], f * a.offsets_px[corners], rtol=0.03, atol=0.05)
        np.testing.assert_allclose(b.blendshape_delta, f * a.blendshape_delta, atol=1e-5)
    m = ExpressionModel.load()  # between two categories the factor blends with the weights: continuous
    v, a = CATEGORIES["happy"]
    eps = 1e-4
    w_in = m.weights(v + eps, a, {"happy": 1.5})
    w_at = m.weights(v, a, {"happy": 1.5})
    assert np.abs(w_in - w_at).max() < 1e-2 and not m.weights(0.0, 0.0, {"happy": 1.5}).any()
    k = m.categories.index("happy")
    assert w_at[k] == pytest.approx(1.5 * m.weights(v, a)[k])
    # texture factors reach the ratio image the same way
    tex = EmotionalFaceGenerator(settings=GeneratorSettings(texture=1.0)).texture
    np.testing.assert_allclose(tex.at(*CATEGORIES["angry"], {"angry": 2.0}), 2 * tex.at(*CATEGORIES["angry"]),
                               atol=1e-6)


def test_brows_never_cross_the_upper_lids():
    """A brow pulled down past its eye would fold the lid over the eye: the upper face's motion is scaled
    down until every brow point keeps brow_gap_min of its own gap; the lower face and small motions stay."""
    from emotalk.face.generator import brow_lid_gaps, limit_brows
    from emotalk.face.landmarks import BROW_LOWER, NOSE_TIP

    m = ExpressionModel.load()
    _, lmk = _synthetic_face()
    upper = m.neutral_shape[:, 1] < m.neutral_shape[NOSE_TIP, 1]
    g0 = brow_lid_gaps(lmk, lmk)
    assert (g0 > 0).all()  # the model's brows sit above its lids
    off = np.zeros((478, 2), np.float32)
    brows = np.concatenate(BROW_LOWER)
    off[brows, 1] = 1.5 * g0.max()  # every brow point well past its lid
    off[list(MOUTH_CORNERS), 0] = 3.0  # and a lower-face motion
    out = limit_brows(off, upper, lmk, 0.15)
    g1 = brow_lid_gaps(lmk + out, lmk)
    assert (g1 >= 0.15 * g0 - 1e-4).all() and np.isclose(g1 / g0, 0.15, atol=1e-3).any()  # just enough
    assert np.array_equal(out[list(MOUTH_CORNERS)], off[list(MOUTH_CORNERS)])
    small = off * 0.0
    small[brows, 1] = 0.2 * g0.min()
    assert np.array_equal(limit_brows(small, upper, lmk, 0.15), small)
    assert np.array_equal(limit_brows(off, upper, lmk, 0.0), off)  # off


def test_eyelids_keep_their_opening_down_the_face_even_when_they_slide():
    """The opening is measured down the face: a lower lid that rises while sliding sideways (the pair's
    distance about kept) is limited as a straight rise is; widening, common motion and small changes stay."""
    from emotalk.face.generator import limit_eyelids
    from emotalk.face.landmarks import LID_PAIRS

    _, lmk = _synthetic_face()
    s = GeneratorSettings()
    up, dn = LID_PAIRS[:, 0], LID_PAIRS[:, 1]
    g0 = lmk[dn, 1] - lmk[up, 1]  # [10] the model's eyes are level: the opening is the y gap
    off = np.zeros((478, 2), np.float32)
    off[dn, 1] = -0.8 * g0  # the lower lids rise most of the way ...
    off[dn, 0] = 0.9 * g0  # ... and slide sideways: the pair's distance drops to about 0.9 of its own
    out = limit_eyelids(off, lmk, s)
    g1 = (lmk[dn, 1] + out[dn, 1]) - (lmk[up, 1] + out[up, 1])
    np.testing.assert_allclose(g1 / g0, s.lid_gap_range[0], atol=1e-3)  # held at the range, down the face
    common = np.zeros((478, 2), np.float32)
    common[np.concatenate([up, dn]), 1] = -2.0  # both lids up together (with the brows)
    np.testing.assert_allclose(limit_eyelids(common, lmk, s), common, atol=1e-6)
    small = np.zeros((478, 2), np.float32)
    small[dn, 1] = -0.1 * g0  # closes to 0.9: inside the range
    np.testing.assert_allclose(limit_eyelids(small, lmk, s), small, atol=1e-6)
    wide = np.zeros((478, 2), np.float32)
    wide[up, 1] = -0.3 * g0  # opens to 1.3: inside the range
    np.testing.assert_allclose(limit_eyelids(wide, lmk, s), wide, atol=1e-6)
