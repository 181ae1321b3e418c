"""Eye measures of renders: erased eyes lose the eye boxes' detail, the box does not shrink with a squint."""

from __future__ import annotations

import numpy as np

from emotalk.evaluation.eye_metrics import eye_boxes, eye_opening, eye_sharpness
from emotalk.face.expression import ExpressionModel
from emotalk.face.landmarks import EYE_RINGS, LID_PAIRS


def _face(size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """Skin-coloured frame with dark irises and white eyes at the expression model's neutral landmarks."""
    import cv2

    lmk = (ExpressionModel.load().neutral_shape[:, :2] * 50 + size / 2).astype(np.float32)
    img = np.full((size, size, 3), (205, 160, 140), np.uint8)
    for ring in EYE_RINGS:
        cv2.fillPoly(img, [np.round(lmk[ring]).astype(np.int32)], (240, 240, 240))
        c = lmk[ring].mean(0)
        cv2.circle(img, (int(round(c[0])), int(round(c[1]))), 3, (40, 30, 30), -1)
    return img, lmk


def test_erased_eyes_lose_their_detail_and_narrowed_boxes_stay_the_same():
    img, lmk = _face()
    skin = np.full_like(img, (205, 160, 140))
    frames, lm = np.stack([img, img]), np.stack([lmk, lmk])
    seen, erased = eye_sharpness(frames, lm), eye_sharpness(np.stack([skin, skin]), lm)
    assert seen > 20.0 and erased < 1e-6
    shut = lmk.copy()
    up, dn = LID_PAIRS[:, 0], LID_PAIRS[:, 1]
    mid = 0.5 * (shut[up] + shut[dn])
    shut[up], shut[dn] = mid + 0.2 * (shut[up] - mid), mid + 0.2 * (shut[dn] - mid)  # lids at 0.2 of the gap
    np.testing.assert_allclose(eye_boxes(shut), eye_boxes(lmk), atol=1e-3)  # boxes follow the eye's width
    assert np.isclose(eye_opening(shut[None]) / eye_opening(lmk[None]), 0.2, atol=0.02)
    no_face = np.full_like(lm, np.nan)
    assert np.isnan(eye_sharpness(frames, no_face)) and np.isnan(eye_opening(no_face))


def test_real_actors_bar_widens_at_surprise_and_narrows_at_anger(tmp_path):
    """scripts/fit_eye_bar.py on the shared MEAD clips (every 4th frame): surprised eyes open wider than
    neutral ones for every actor, angry ones narrower on average, as the committed table says."""
    import importlib.util
    import json
    from pathlib import Path

    from tests.conftest import shared

    data = shared("emotion/mead_video").parents[1]
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("fit_eye_bar", root / "scripts" / "fit_eye_bar.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "bar.json"
    assert mod.main(["--data", str(data), "--step", "4", "--out", str(out)]) == 0
    bar = json.loads(out.read_text())["categories"]
    assert bar["surprised"]["opening_ratio_min"] > 1.0 and bar["angry"]["opening_ratio"] < 0.9
    committed = json.loads((root / "emotalk" / "models" / "eye_bar_mead.json").read_text())["categories"]
    for c, v in committed.items():
        assert abs(bar[c]["opening_ratio"] - v["opening_ratio"]) < 0.1  # every 4th frame vs every 2nd
