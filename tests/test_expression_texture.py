"""Expression ratio images: fitting, the disc map, applying them (inside the mask, never in the mouth)."""

from __future__ import annotations

import numpy as np
import pytest

from emotalk.emotion import CATEGORIES
from emotalk.face.expression import ExpressionModel
from emotalk.face.expression_texture import (
    DEFAULT_TEXTURE_PATH,
    CanonicalWarp,
    ExpressionTexture,
    actor_log_ratios,
    canonical_points,
    canonical_weight,
    combine_actors,
    polygon_mask,
)
from emotalk.face.landmarks import INNER_LIP_RING
from tests.conftest import shared

S = 48  # canonical side for the synthetic tests


def _texture(size: int = S, seed: int = 0) -> ExpressionTexture:
    """A synthetic texture: smooth random log ratios per category, inside the canonical weight."""
    canon = canonical_points(ExpressionModel.load().neutral_shape, size)
    w = canonical_weight(canon, size)
    rng = np.random.default_rng(seed)
    cats = [c for c in CATEGORIES if c not in ("neutral", "calm")]
    lr = np.stack([0.3 * np.tanh(rng.normal(size=(1, 1, 3))) * w[..., None] for _ in cats])
    return ExpressionTexture(canon, size, cats, lr.astype(np.float32))


def _face(size: int = 120):
    """A textured image and the model's neutral face placed in it (eye distance 30 px)."""
    lmk = ExpressionModel.load().neutral_shape[:, :2] * 30 + size / 2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    img = np.stack([120 + 60 * np.sin(xx / 7), 120 + 60 * np.cos(yy / 9), 100 + 0 * xx], -1)
    return img.astype(np.uint8), lmk.astype(np.float32)


def test_neutral_is_identity_and_categories_are_exact():
    tex = _texture()
    assert not np.any(tex.at(0.0, 0.0))
    for k, c in enumerate(tex.categories):
        np.testing.assert_allclose(tex.at(*CATEGORIES[c]), tex.log_ratio[k], atol=1e-6)
    half = tex.at(*(0.5 * np.array(CATEGORIES["happy"])))
    np.testing.assert_allclose(half, 0.5 * tex.log_ratio[tex.categories.index("happy")], atol=1e-6)
    img, lmk = _face()
    w = np.ones(img.shape[:2], np.float32)
    assert np.array_equal(tex.apply(img, lmk, w, 0.0, 0.0, strength=2.0), img)


def test_apply_keeps_pixels_outside_the_mask_and_in_the_inner_mouth():
    tex = _texture()
    img, lmk = _face()
    lmk = lmk.copy()
    lmk[[13, 82, 81, 80, 312, 311, 310], 1] -= 4  # open the mouth a little
    lmk[[14, 87, 178, 88, 317, 402, 318], 1] += 4
    w = np.zeros(img.shape[:2], np.float32)
    w[20:100, 25:95] = 1.0
    out = tex.apply(img, lmk, w, *CATEGORIES["angry"], strength=3.0)
    assert not np.array_equal(out, img)
    assert np.array_equal(out[w == 0], img[w == 0])
    mouth = polygon_mask(img.shape[:2], lmk[INNER_LIP_RING].astype(np.float64)) > 0
    assert mouth.sum() > 10 and np.array_equal(out[mouth], img[mouth])


def test_to_image_maps_the_template_onto_the_face():
    """A log ratio that marks one canonical spot lands at the face's matching landmark."""
    tex = _texture()
    img, lmk = _face()
    spot = np.zeros((S, S, 1), np.float32)
    x, y = np.round(tex.canon[1]).astype(int)  # nose tip
    spot[y - 1:y + 2, x - 1:x + 2] = 1.0
    f = tex.to_image(spot, lmk, img.shape[:2], grid_step=1)[..., 0]
    peak = np.array(np.unravel_index(np.argmax(f), f.shape))[::-1]
    assert np.linalg.norm(peak - lmk[1]) < 3.0


def test_fit_recovers_a_known_ratio():
    """Canonical frames of neutral and of neutral × R (with speech noise) give back log R."""
    rng = np.random.default_rng(1)
    n, size = 40, 16
    base = rng.uniform(60, 200, (size, size, 3))
    R = np.exp(rng.uniform(-0.3, 0.3, (size, size, 3)))
    gap = rng.uniform(0, 1, 2 * n)
    speech_effect = rng.normal(0, 20, (size, size, 3))  # a speech-driven brightness change
    imgs = np.stack([base * (R if k >= n else 1.0) + gap[k] * speech_effect for k in range(2 * n)])
    labels = ["neutral"] * n + ["angry"] * n
    got = actor_log_ratios(imgs, labels, gap[:, None], eps=0.0)["angry"]
    expect = np.log((base * R + gap.mean() * speech_effect) / (base + gap.mean() * speech_effect))
    np.testing.assert_allclose(got, expect, atol=1e-3)
    # without speech regressors, the same mouth opening in both halves still gives the ratio
    imgs2 = np.stack([base * (R if k >= n else 1.0) for k in range(2 * n)])
    got2 = actor_log_ratios(imgs2, labels, None, eps=0.0)["angry"]
    np.testing.assert_allclose(got2, np.log(R), atol=1e-4)
    ones = np.ones((size, size), np.float32)
    comb = combine_actors([{"angry": got2}, {"angry": got2}], ones, smooth=0, limit=1.0, zero_mean=False)
    np.testing.assert_allclose(comb["angry"], np.log(R), atol=1e-4)
    # zero_mean removes each actor's overall exposure change (then the median of equal logs)
    shifted = [{"angry": got2 + d} for d in (0.2, 0.0, -0.1, 5.0)]
    comb = combine_actors(shifted, ones, smooth=0, limit=10.0, zero_mean=True, median=True)
    np.testing.assert_allclose(comb["angry"], np.log(R) - np.log(R).mean((0, 1)), atol=1e-4)


def test_canonical_warp_removes_geometry():
    """A face drawn at two sizes and places warps to the same canonical image."""
    import cv2

    canon = canonical_points(ExpressionModel.load().neutral_shape, S)
    warp = CanonicalWarp.build(canon, S)
    neutral = ExpressionModel.load().neutral_shape[:, :2]
    outs = []
    for scale, shift in ((30, 60), (45, 80)):
        lmk = neutral * scale + shift
        img = np.zeros((160, 160, 3), np.uint8)
        cv2.circle(img, tuple(np.round(lmk[1]).astype(int)), int(scale * 0.2), (255, 255, 255), -1)
        outs.append(warp.to_canonical(img, lmk))
    inside = warp.inside()
    assert inside.mean() > 0.4
    assert np.abs(outs[0] - outs[1])[inside].mean() < 6.0


def test_committed_texture_loads():
    if not DEFAULT_TEXTURE_PATH.is_file():
        pytest.skip(f"no fitted texture at {DEFAULT_TEXTURE_PATH}")
    tex = ExpressionTexture.load()
    K = len(tex.categories)
    assert set(tex.categories) == {"happy", "surprised", "fear", "angry", "disgusted", "contempt", "sad"}
    assert tex.log_ratio.shape == (K, tex.size, tex.size, 3) and tex.canon.shape == (478, 2)
    assert np.abs(tex.log_ratio).max() <= tex.info.get("limit", 0.5) + 1e-2
    assert not np.any(tex.at(0, 0)) and np.any(tex.at(*CATEGORIES["angry"]))
    assert DEFAULT_TEXTURE_PATH.stat().st_size < 400_000


def test_real_mead_frame_canonical_warp():
    """A real MEAD frame warps into the canonical face (needs the shared clips and the tracker)."""
    from emotalk.face.tracking import track_video
    from emotalk.media import read_frames

    frame = read_frames(shared("emotion/mead_video/M030_front_neutral_level1_001.mp4"), max_frames=1)[0]
    tr = track_video([frame], 1)
    assert tr.found[0]
    canon = canonical_points(ExpressionModel.load().neutral_shape, 64)
    c = CanonicalWarp.build(canon, 64).to_canonical(frame, tr.lmk[0])
    assert c.shape == (64, 64, 3)
    inside = CanonicalWarp.build(canon, 64).inside()
    assert c[inside].mean() > 40  # a lit face, not the border


def test_highpass_drops_broad_shading_and_keeps_folds():
    """A constant log ratio over the face (a MEAD actor's light) is removed; a narrow fold stays, and the map
    stays zero where it was undefined."""
    tex = _texture()
    w = (np.abs(tex.log_ratio[0]).sum(-1) > 0).astype(np.float32)  # [S,S] where the map is defined
    broad = 0.2 * w[..., None] * np.ones(3, np.float32)
    fold = np.zeros_like(broad)
    fold[S // 2, S // 4: 3 * S // 4] = 0.3 * w[S // 2, S // 4: 3 * S // 4, None]
    out = tex.highpass(broad + fold, 0.1)
    inner = w * (np.abs(np.arange(S) - S // 2)[:, None] > 3)  # away from the fold's own row
    assert np.abs(out[inner > 0]).mean() < 0.02 * 0.2 + 0.01  # the broad part is (nearly) gone
    assert out[S // 2, S // 2].mean() > 0.2  # the fold is kept
    assert not np.any(out[w == 0])
    np.testing.assert_array_equal(tex.highpass(broad, 0.0), broad)  # 0: off
