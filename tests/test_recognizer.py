"""Emotion recogniser (fer on aligned crops) and the emotion metrics."""

from __future__ import annotations

import numpy as np
import pytest

from emotalk.emotion import CATEGORIES, FER_CLASSES, FER_VA
from emotalk.errors import InputError
from emotalk.evaluation.emotion import (
    clip_result,
    expression_fidelity,
    lip_preservation,
    sign_agreement,
    summarise,
)
from emotalk.face.landmarks import mouth_opening, mouth_width_px
from tests.conftest import shared


def test_probs_to_va_is_weighted_category_coordinates():
    from emotalk.face.recognizer import probs_to_va

    p = np.zeros(7, np.float32)
    p[FER_CLASSES.index("happy")] = 1
    np.testing.assert_allclose(probs_to_va(p), CATEGORIES["happy"], atol=1e-6)
    p = np.full(7, 1 / 7, np.float32)
    np.testing.assert_allclose(probs_to_va(p), FER_VA.mean(0), atol=1e-6)


def test_sign_agreement_and_summary():
    assert sign_agreement(np.array([0.5, -0.3, 0.05, 0.3]), np.array([0.8, -0.7, 0.0, 0.0])) == 0.75
    p_h = np.zeros((4, 7))
    p_h[:, FER_CLASSES.index("happy")] = 1
    p_s = np.zeros((4, 7))
    p_s[:, FER_CLASSES.index("sad")] = 0.6
    p_s[:, FER_CLASSES.index("neutral")] = 0.4
    p_s[0] = np.nan  # a frame without a face is ignored
    res = [clip_result("a", "happy", p_h), clip_result("b", "sad", p_s), clip_result("c", "angry", p_h)]
    assert res[1].n_frames == 3 and res[1].predicted == "sad"
    s = summarise(res)
    assert s["n"] == 3 and abs(s["accuracy"] - 2 / 3) < 1e-9
    assert s["confusion"]["angry"]["happy"] == 1
    dv = np.array([0.0, 0.6 * -0.7 - (-0.7), 0.8 + 0.65])
    assert abs(s["v_rmse"] - np.sqrt((dv**2).mean())) < 1e-6


def test_lip_metrics():
    lm = np.zeros((2, 478, 2))
    lm[:, 61], lm[:, 291] = (0, 0), (10, 0)  # mouth corners
    lm[:, 33], lm[:, 263] = (-20, -30), (30, -30)  # eyes, 50 apart
    lm[:, 13], lm[:, 14] = (5, 0), (5, 4)  # gap 4 = 0.08 eye distances: open
    assert np.allclose(mouth_opening(lm), 0.08) and np.allclose(mouth_width_px(lm), 10)
    new = lm.copy()
    new[:, 14] = (5, 3)
    r = lip_preservation(lm, new)
    assert abs(r["gap_ratio"] - 0.75) < 1e-9 and abs(r["gap_mae"] - 1 / 50) < 1e-9
    f = expression_fidelity(np.array([0.5, 0.0]), np.array([1.0, 0.0]))
    assert abs(f["cosine"] - 1) < 1e-9 and abs(f["gain"] - 0.5) < 1e-9


def test_recogniser_reads_real_happy_and_neutral_faces():
    """On real labelled frames (MEAD), happy and neutral — the classes it gets right — are recognised."""
    from emotalk.evaluation.emotion import recognise_clip
    from emotalk.face.recognizer import EmotionRecognizer

    rec = EmotionRecognizer()
    for emo, lvl in [("happy", 3), ("neutral", 1)]:
        p = shared(f"emotion/mead_video/W009_front_{emo}_level{lvl}_001.mp4")
        probs = recognise_clip(p, rec)  # the whole clip (~4 s): single frames vary
        assert probs.shape[1] == 7 and len(probs) > 50 and np.isfinite(probs).all()
        np.testing.assert_allclose(probs.sum(1), 1, atol=1e-4)
        assert clip_result(p.name, emo, probs).predicted == emo


def test_align_crop_is_upright_and_sized():
    from emotalk.face.recognizer import CropSettings, align_crop

    img = np.zeros((200, 200, 3), np.uint8)
    img[100:, :] = 255  # lower half white
    lm = np.zeros((478, 2))
    lm[33], lm[263] = (80, 80), (120, 80)
    lm[10], lm[152] = (100, 60), (100, 140)
    crop = align_crop(img, lm, CropSettings(scale=1.0, centre_y=0.5))
    assert crop.shape == (64, 64) and crop.dtype == np.uint8
    assert crop[:28].mean() < 10 and crop[36:].mean() > 245  # the image's horizon stays at the centre
    with pytest.raises(InputError):
        align_crop(img, lm[:10], CropSettings())
