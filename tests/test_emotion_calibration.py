"""Per-identity emotion strengths: the recogniser picks each category's strength on the identity's frames."""

from __future__ import annotations

import numpy as np

from emotalk.emotion import FER_CLASSES
from emotalk.face.generator import GeneratorSettings
from emotalk.training.emotion_calibration import Candidate, calibrate, calibrated, grid, identity_bar, pick
from emotalk.training.settings import EMOTION_PRESETS, CalibrationSettings
from tests.conftest import shared


def test_pick_reads_best_within_the_identity_floor_and_keeps_the_base_on_a_tie():
    base = Candidate(1.0, 1.0, 0.30, 0.2, 0.96)
    strong = Candidate(1.8, 1.0, 0.60, 0.8, 0.95)
    stronger = Candidate(1.8, 0.5, 0.70, 0.9, 0.90)  # reads best but loses the person
    assert pick([base, strong, stronger], floor=0.94, min_lift=0.03) is strong
    assert pick([base, strong, stronger], floor=0.89, min_lift=0.03) is stronger
    small = Candidate(1.4, 1.0, 0.32, 0.2, 0.96)
    assert pick([base, small], floor=0.9, min_lift=0.03) is base  # no real lift
    assert pick([base, strong], floor=0.99, min_lift=0.03) is base  # nothing keeps the person: unchanged
    reads = Candidate(1.0, 1.0, 0.60, 0.9, 0.96)
    assert pick([reads, Candidate(1.4, 1.0, 0.75, 1.0, 0.95)], 0.9, 0.03, enough=0.8) is reads  # enough

def test_grid_starts_at_the_base_and_presets_say_where_it_runs():
    pairs = grid(CalibrationSettings(gain_factors=(1.0, 2.0), texture_factors=(0.5, 1.0)))
    assert pairs[0] == (1.0, 1.0) and len(pairs) == 4 and len(set(pairs)) == 4
    assert EMOTION_PRESETS["full"].calibration.enabled and not EMOTION_PRESETS["test"].calibration.enabled
    bar = identity_bar()
    assert set(FER_CLASSES) <= set(bar) and all(0.9 < v < 1.0 for v in bar.values())

def test_calibration_on_a_real_face_picks_a_stronger_happy_and_keeps_the_person():
    """On a real neutral MEAD frame with the real recogniser and dlib: happy needs more than the stage's
    strength to read on a calm face, and whatever is picked stays within the identity floor."""
    from emotalk.face.tracking import track_video
    from emotalk.media import read_frames

    frame = read_frames(shared("emotion/mead_video/M030_front_neutral_level1_001.mp4"), max_frames=1)[0]
    tr = track_video([frame], 1)
    assert tr.found[0]
    s = CalibrationSettings(gain_factors=(1.0, 1.8), texture_factors=(1.0,), n_frames=1)
    base = GeneratorSettings(gain=2.5)
    cal = calibrate(frame[None], tr.lmk[:1], None, base, s)
    bar = identity_bar()
    assert set(cal.category_gain) == {c for c in FER_CLASSES if c != "neutral"}
    for c, cands in cal.candidates.items():
        assert [(x.gain_factor, x.texture_factor) for x in cands] == [(1.0, 1.0), (1.8, 1.0)]
        assert all(0.0 <= x.p_target <= 1.0 and np.isfinite(x.identity) for x in cands)
        if cal.category_gain[c] != 1.0:  # a change is only made if it reads better and keeps the person
            k = cands[1]
            assert k.p_target >= cands[0].p_target + s.min_lift and cands[0].accuracy < s.enough
            assert k.identity >= bar[c] - s.identity_slack
    assert cal.candidates["happy"][1].p_target > cal.candidates["happy"][0].p_target  # a bigger smile reads
    assert cal.rest["reads"] in FER_CLASSES and 0.0 <= cal.rest["share"] <= 1.0  # how the frame reads
    g = calibrated(base, cal)
    assert g.gain == 2.5 and g.category_gain == cal.category_gain
    summ = cal.summary()
    assert set(summ["categories"]["happy"]) == {"base", "chosen"}


def test_eye_shrink_finds_a_field_that_shrinks_the_eyes_and_the_report_warns():
    """german_anchor's fine-tuned field shrank its eyes' Gaussians and they rendered white: the stage
    measures it per category and the fit report warns."""
    import torch

    from emotalk.face.expression import ExpressionModel
    from emotalk.face.landmarks import EYE_RINGS
    from emotalk.identity.report import eye_line
    from emotalk.training.emotion_stage import eye_distance, eye_shrink

    face = ExpressionModel.load().neutral_shape.astype(np.float32)  # [478,3]
    means = torch.as_tensor(np.concatenate([face[EYE_RINGS[0]], face[EYE_RINGS[1]], face[[1, 152, 10]]]))
    n_eye = len(EYE_RINGS[0]) + len(EYE_RINGS[1])

    class Field:  # the emotion field's output: happy shrinks the eyes' Gaussians, sad grows the chin's
        branches = {"face": {"means": means}}

        def emotion_delta(self, cache, emotion, warp=True):
            d = torch.zeros(len(emotion), len(means), 13)
            for k, (v, a) in enumerate(emotion.tolist()):
                if v > 0.5 and a > 0:
                    d[k, :n_eye, 7:10] = -0.3
                if v < 0 and a < 0:
                    d[k, n_eye:, 7:10] = -0.5
            return d

    dist = eye_distance(means.numpy(), face[None])
    assert (dist[:n_eye] < 0.8).all() and (dist[n_eye:] > 0.8).all()  # eye rings near, nose tip and chin far
    shrink = eye_shrink(Field(), face[None])
    assert abs(shrink["happy"] + 0.3) < 1e-6 and shrink["sad"] == 0.0 and shrink["angry"] == 0.0
    line = eye_line({"emotion_stage": {"eye_shrink": shrink}})
    assert line.startswith("warning: the emotion field shrinks the eyes' Gaussians at happy (-0.30)")
    assert "sad" not in line
    assert eye_line({"emotion_stage": {"eye_shrink": {"happy": -0.01}}}) == ""


def test_shrink_penalty_charges_only_shrink_beyond_the_allowance():
    """The stage's shrink penalty: free for growth, for flattening along one axis and for a shrink within
    the allowance; charged, and pushed back to the allowance by its gradient, for a shrink beyond it."""
    import torch

    from emotalk.training.emotion_stage import shrink_penalty

    free = torch.tensor([[[0.3, 0.3, 0.3], [-0.05, -0.05, -0.05], [-0.25, 0.1, 0.1]]])  # [1,3,3]
    assert float(shrink_penalty(free, 0.1)) == 0.0
    d = torch.full((1, 2, 3), -0.5, requires_grad=True)
    assert abs(float(shrink_penalty(d, 0.1)) - 0.4 ** 2) < 1e-6
    opt = torch.optim.SGD([d], lr=1.0)
    for _ in range(200):
        opt.zero_grad()
        shrink_penalty(d, 0.1).backward()
        opt.step()
    assert abs(float(d.mean()) + 0.1) < 0.01


def test_every_emotion_preset_limits_the_shrink():
    from emotalk.training.settings import EMOTION_PRESETS

    assert all(s.shrink_weight > 0 for s in EMOTION_PRESETS.values())


def test_a_resting_expression_is_taken_out_away_from_it_and_nowhere_else():
    """"rest_happy": f subtracts f x happy's change in proportion to the distance from neutral and from
    happy: nothing at neutral or at happy, f x r at the other categories, continuous in between."""
    from emotalk.emotion import CATEGORIES
    from emotalk.face.expression import ExpressionModel

    m = ExpressionModel.load()
    h = m.categories.index("happy")
    rest = {"rest_happy": 0.5}
    assert not m.weights(0.0, 0.0, rest).any()
    assert np.allclose(m.weights(*CATEGORIES["happy"], rest), m.weights(*CATEGORIES["happy"]))
    va = np.asarray(CATEGORIES["angry"]) * 0.6
    w0, w1 = m.weights(*va), m.weights(*va, rest)
    r = float(np.hypot(*va))  # the distance from neutral
    assert abs((w1 - w0)[h] + 0.5 * r) < 1e-6 and np.allclose(np.delete(w1 - w0, h), 0)
    assert np.allclose(m.weights(*va, {"rest_happy": 0.5, "angry": 1.4})[m.categories.index("angry")],
                       1.4 * w0[m.categories.index("angry")])
    th = np.arctan2(*CATEGORIES["happy"][::-1])  # walk away from happy: the taken-out share grows smoothly
    steps = [m.weights(np.cos(t), np.sin(t), rest)[h] - m.weights(np.cos(t), np.sin(t))[h]
             for t in th + np.linspace(0, 0.6, 25)]
    assert abs(steps[0]) < 1e-9 and np.all(np.diff(steps) <= 1e-9) and np.abs(np.diff(steps)).max() < 0.15
    d = m.change(*va, rest).offsets - m.change(*va).offsets  # the generator and the mouth warp get it
    assert np.abs(d).max() > 0


class SmileReader:
    """A stand-in recogniser that reads happy while the mouth corners sit above the lip middle (a resting
    smile) and spreads the rest evenly; a stand-in embedder that keeps every face the same person."""

    def probs(self, image, lmk):
        from emotalk.face.landmarks import LIP_MID, MOUTH_CORNERS

        lift = float(lmk[list(LIP_MID), 1].mean() - lmk[list(MOUTH_CORNERS), 1].mean())  # px, + = corners up
        p_happy = 1.0 / (1.0 + np.exp(-lift))
        p = np.full(len(FER_CLASSES), (1 - p_happy) / (len(FER_CLASSES) - 1))
        p[FER_CLASSES.index("happy")] = p_happy
        return p

    def embed(self, images, landmarks=None):
        return np.ones((len(images), 128), np.float32)


def test_a_face_that_rests_smiling_loses_the_smile_at_the_other_emotions():
    """A frame whose corners were lifted (it reads happy to the stand-in recogniser) gets happy's change
    taken out at the other categories when that lifts their reading; a calm frame is left alone."""
    from emotalk.face.expression import ExpressionModel
    from emotalk.face.landmarks import LIP_MID, MOUTH_CORNERS

    neutral = ExpressionModel.load().neutral_shape  # a plausible face: the model's own, scaled into the image
    lmk = np.zeros((478, 3), np.float32)
    lmk[:, :2] = (neutral[:, :2] - neutral[:, :2].mean(0)) * 120 + 256
    frame = np.full((512, 512, 3), 128, np.uint8)
    s = CalibrationSettings(gain_factors=(1.0,), texture_factors=(1.0,), n_frames=1, min_lift=0.01)
    base = GeneratorSettings(gain=2.5, texture=0.0)
    smiling = lmk.copy()
    smiling[list(MOUTH_CORNERS), 1] = lmk[list(LIP_MID), 1].mean() - 3.0  # corners 3 px above the middle
    r = SmileReader()
    cal = calibrate(np.stack([frame]), smiling[None], None, base, s, recognizer=r, embedder=r)
    assert cal.rest["reads"] == "happy" and cal.rest["factor"] in s.rest_factors
    assert cal.category_gain["rest_happy"] == cal.rest["factor"]
    assert cal.rest["p_others"][1] >= cal.rest["p_others"][0] + s.min_lift
    calm = lmk.copy()
    calm[list(MOUTH_CORNERS), 1] = lmk[list(LIP_MID), 1].mean() + 3.0
    cal = calibrate(np.stack([frame]), calm[None], None, base, s, recognizer=r, embedder=r)
    assert cal.rest["factor"] == 0.0 and "rest_happy" not in cal.category_gain


def test_the_fit_estimate_counts_the_calibration():
    """The fine-tune's up-front time includes the strength calibration where the recipe runs it."""
    from dataclasses import replace

    from emotalk.identity.fit import SPEEDS, estimate_parts
    from emotalk.training.settings import RECIPES

    r = RECIPES["cpu"]
    off = replace(r, emotion=replace(r.emotion, calibration=replace(r.emotion.calibration, enabled=False)))
    cal = r.emotion.calibration
    extra = cal.n_frames * (len(grid(cal)) * 6 + len(cal.rest_factors) * 5) * SPEEDS["cpu"].calibration_image
    assert abs(estimate_parts(r, 5.0, "cpu")["emotion"] - estimate_parts(off, 5.0, "cpu")["emotion"]
               - extra) < 1e-6
    assert 30 < extra < 120  # the cpu preset's 3 frames: about a minute (67 s measured)
