"""Emotion tracks, clamping, track files and the fitted expression model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emotalk.emotion import CATEGORIES, EmotionTrack, clamp_to_disc, parse_track_text
from emotalk.errors import InputError
from emotalk.face.expression import (
    EXPRESSION_BLENDSHAPES,
    ExpressionModel,
    keep_lip_gap,
    lip_gap,
    normalise_faces,
)
from emotalk.face.landmarks import INNER_LIP_PAIRS


def test_constant_track_is_one_keyframe():
    tr = EmotionTrack.constant(0.8, 0.5)
    va = tr.sample(10, 25.0)
    assert va.shape == (10, 2)
    np.testing.assert_allclose(va, np.tile([0.8, 0.5], (10, 1)), atol=1e-6)


def test_track_interpolates_smoothly_and_holds_ends():
    tr = EmotionTrack.from_keyframes([(0.2, 0.0, 0.0), (1.2, 0.8, 0.5)])
    t = np.array([0.0, 0.2, 0.7, 1.2, 2.0])
    va = tr.at(t)
    np.testing.assert_allclose(va[0], [0, 0], atol=1e-6)  # held before the first keyframe
    np.testing.assert_allclose(va[2], [0.4, 0.25], atol=1e-6)  # smoothstep midpoint
    np.testing.assert_allclose(va[4], [0.8, 0.5], atol=1e-6)  # held after the last
    # ease in: a quarter of the way in time is less than a quarter of the way in value
    assert tr.at(np.array([0.45]))[0, 0] < 0.2
    dense = tr.at(np.linspace(0.2, 1.2, 201))[:, 0]
    assert (np.diff(dense) >= -1e-7).all()  # monotone, no overshoot


def test_samples_stay_in_disc():
    tr = EmotionTrack.from_keyframes([(0, 1.0, 0.0), (1, 0.0, 1.0), (2, -1.0, 0.0)])
    va = tr.sample(50, 25.0)
    assert (np.hypot(va[:, 0], va[:, 1]) <= 1 + 1e-6).all()


def test_clamp_outside_disc_gives_notice():
    v, a, note = clamp_to_disc(3.0, 4.0)
    assert math.isclose(v, 0.6) and math.isclose(a, 0.8)
    assert note and "outside" in note
    assert clamp_to_disc(0.3, 0.2)[2] is None
    tr = EmotionTrack.from_keyframes([(0.0, 2.0, 0.0)])
    assert tr.notices and np.allclose(tr.va[0], [1.0, 0.0])


@pytest.mark.parametrize("bad", [
    [(0.0, float("nan"), 0.0)],
    [(0.0, 0.1, float("inf"))],
    [(1.0, 0.1, 0.1), (0.5, 0.2, 0.2)],  # unsorted
    [(0.5, 0.1, 0.1), (0.5, 0.2, 0.2)],  # duplicate time
    [(-0.1, 0.1, 0.1)],  # negative time
    [],
])
def test_bad_keyframes_raise(bad):
    with pytest.raises(InputError):
        EmotionTrack.from_keyframes(bad)


def test_keyframe_after_speech_end_raises():
    with pytest.raises(InputError, match="after the end"):
        EmotionTrack.from_keyframes([(0, 0, 0), (5.0, 0.5, 0.5)], duration=3.0)
    tr = EmotionTrack.from_keyframes([(0, 0, 0), (5.0, 0.5, 0.5)])
    with pytest.raises(InputError):
        tr.sample(50, 25.0)  # 2 s of frames


def test_parse_json_and_csv(tmp_path):
    j = tmp_path / "t.json"
    j.write_text('{"keyframes": [[0, 0, 0], {"time": 1, "valence": -0.7, "arousal": -0.45},'
                 ' {"time": 2, "emotion": "happy", "intensity": 0.5}]}')
    tr = EmotionTrack.from_file(j, duration=3.0)
    np.testing.assert_allclose(tr.va, [[0, 0], [-0.7, -0.45], [0.4, 0.25]], atol=1e-6)
    c = tmp_path / "t.csv"
    c.write_text("time,valence,arousal\n0,0.1,0.2\n1.5,0.3,0.4\n")
    tr = EmotionTrack.from_file(c)
    np.testing.assert_allclose(tr.times, [0, 1.5])
    assert parse_track_text("0,0.1,0.2\n", ".csv") == [(0.0, 0.1, 0.2)]
    for bad, suf in [("[[0, 1]]", ".json"), ("{not json", ".json"), ("time,x,y\n0,1,2", ".csv"),
                     ('[{"time": 0, "emotion": "bored"}]', ".json"), ("0,a,b", ".csv")]:
        with pytest.raises(InputError):
            parse_track_text(bad, suf)


def test_normalise_faces_removes_similarity_and_lip_gap_is_kept():
    rng = np.random.default_rng(0)
    ref = ExpressionModel.load().neutral_shape.astype(np.float64) * 60 + 128  # a face in "px"
    th = 0.3
    R = np.array([[math.cos(th), -math.sin(th), 0], [math.sin(th), math.cos(th), 0], [0, 0, 1]])
    moved = (1.7 * ref @ R.T + [20, -5, 3])[None]
    n0, n1 = normalise_faces(ref[None], ref), normalise_faces(moved, ref)
    np.testing.assert_allclose(n0, n1, atol=1e-4)
    off = rng.normal(0, 0.01, (478, 3))
    off[INNER_LIP_PAIRS[:, 1], 1] += 0.05  # lower lip drops: the mouth opens
    kept = keep_lip_gap(off)
    np.testing.assert_allclose(lip_gap(n0[0] + kept), lip_gap(n0[0]), atol=1e-6)
    assert not np.allclose(lip_gap(n0[0] + off), lip_gap(n0[0]), atol=1e-3)


def test_expression_model_exact_at_categories_and_zero_at_neutral():
    m = ExpressionModel.load()
    assert set(m.categories) == {"happy", "surprised", "fear", "angry", "disgusted", "contempt", "sad"}
    assert np.abs(m.vector(0, 0)).max() == 0
    for c, meas in zip(m.categories, m.category_changes):
        np.testing.assert_allclose(m.vector(*CATEGORIES[c]), meas, atol=1e-5)
    # linear growth along a ray
    v, a = CATEGORIES["happy"]
    np.testing.assert_allclose(m.vector(v / 2, a / 2), m.vector(v, a) / 2, atol=1e-6)


def test_expression_change_respects_speech_exclusions():
    m = ExpressionModel.load()
    for c in CATEGORIES:
        ch = m.change(*CATEGORIES[c])
        gaps = ch.offsets[INNER_LIP_PAIRS[:, 1], 1] - ch.offsets[INNER_LIP_PAIRS[:, 0], 1]
        np.testing.assert_allclose(gaps, 0, atol=1e-7)
        for name, val in zip(ch.blendshape_names, ch.blendshapes):
            if name not in EXPRESSION_BLENDSHAPES:
                assert val == 0, (c, name)
    # the measured changes are real expressions: happy smiles, angry lowers the brows
    bs = dict(zip(m.blendshape_names, m.change(*CATEGORIES["happy"]).blendshapes))
    assert bs["mouthSmileLeft"] > 0.1 and bs["mouthSmileRight"] > 0.1
    bs = dict(zip(m.blendshape_names, m.change(*CATEGORIES["angry"]).blendshapes))
    assert bs["browDownLeft"] > 0.1 and bs["browDownRight"] > 0.1


def test_map_is_continuous_over_the_disc():
    m = ExpressionModel.load()

    def max_step(n: int) -> float:
        th = np.linspace(-math.pi, math.pi, n)
        ring = np.stack([m.vector(0.9 * math.cos(t), 0.9 * math.sin(t)) for t in th])
        return float(np.linalg.norm(np.diff(ring, axis=0), axis=1).max())

    # a jump would keep its size at any sampling; a continuous map's largest step shrinks with it
    assert max_step(7201) < 0.2 * max_step(721)
