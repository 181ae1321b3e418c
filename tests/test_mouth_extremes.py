"""The mouth-at-the-extremes measurement (emotalk/evaluation/mouth_extremes.py, scripts/mouth_extremes.py):
crop metrics, classes, tracked lip code, and the whole run on a synthetic lip-code identity (CPU, seconds);
the real preprocessed clip (../shared/data) in a slow test."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from emotalk.evaluation import mouth_extremes as me
from emotalk.face.landmarks import MOUTH_LANDMARKS


def _textured(n: int = 3, size: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Frames [n,S,S,3] uint8 of smooth noise with fine detail, and landmarks [n,478,2] whose mouth
    points span the middle of the image (so the lip box lies inside it)."""
    import cv2

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (n, size, size, 3)).astype(np.uint8)
    frames = np.stack([cv2.GaussianBlur(f, (0, 0), 0.7) for f in base])
    lmk = np.full((n, 478, 2), size / 2, np.float32)
    m = list(MOUTH_LANDMARKS)
    lmk[:, m, 0] = np.linspace(size * 0.3, size * 0.7, len(m))
    lmk[:, m, 1] = size / 2 + np.tile([-size * 0.05, size * 0.05], len(m) // 2)
    return frames, lmk


def test_identical_images_score_zero_and_blur_lowers_sharpness():
    import cv2

    frames, lmk = _textured()
    d = me.crop_stlpips(frames, frames, lmk)
    assert d.shape == (3,) and np.all(np.abs(d) < 1e-5)
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in frames])
    assert np.all(me.crop_stlpips(blurred, frames, lmk) > 0.02)
    sharp, soft = me.crop_sharpness(frames, lmk), me.crop_sharpness(blurred, lmk)
    assert np.all(sharp > 0) and np.all(soft < 0.5 * sharp)


def test_frame_measures_of_a_copy_and_of_a_blur():
    import cv2

    frames, lmk = _textured(2)
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in frames])
    per = me.frame_measures(frames, frames.copy(), blurred, lmk)
    np.testing.assert_allclose(per["ratio_tracked"], 1.0)
    assert np.all(per["ratio_audio"] < 0.5)
    assert np.all(per["stlpips_tracked"] < 1e-5) and np.all(per["stlpips_audio"] > 0.02)
    assert set(per) >= {"sharp_real", "sharp_tracked", "sharp_audio", "open_real", "open_audio"}
    assert np.all(np.isnan(per["open_real"]))  # no face in noise: NaN, not a number made up
    assert np.all(per["psnr_frame_tracked"] >= 99) and np.all(per["psnr_lips_tracked"] >= 99)  # a copy
    assert np.all(per["psnr_lips_audio"] < 40) and np.all(per["psnr_face_audio"] < 40)


def test_region_psnr_finds_where_the_error_is():
    frames, lmk = _textured(2)
    S = frames.shape[1]
    lmk[:, [10, 152, 234, 454]] = [[S / 2, 0.15 * S], [S / 2, 0.9 * S], [0.1 * S, S / 2], [0.9 * S, S / 2]]
    assert not {10, 152, 234, 454} & set(MOUTH_LANDMARKS)  # forehead, chin, cheeks: the face's box only
    x0, y0, x1, y1 = (int(v) for v in me.lip_box(lmk[0]))
    outside = frames.copy()
    outside[:, :3] = 255 - outside[:, :3]  # the top rows: outside the lip box and the face box
    inside = frames.copy()
    inside[:, y0 + 1:y1 - 1, x0 + 1:x1 - 1] //= 2  # inside the lip box only
    p_out, p_in = me.region_psnr(outside, frames, lmk), me.region_psnr(inside, frames, lmk)
    assert np.all(p_out["lips"] >= 99) and np.all(p_out["face"] >= 99) and np.all(p_out["frame"] < 30)
    assert np.all(p_in["lips"] < p_in["face"]) and np.all(p_in["face"] <= p_in["frame"] + 1e-9)


@pytest.mark.parametrize("n,k", [(45, 11), (59, 15), (4, 1), (1, 1)])
def test_classes_take_the_extreme_quarters(n, k):
    gap = np.random.default_rng(n).random(n)
    c = me.mouth_classes(gap)
    assert len(c["open"]) == k and len(c["closed"]) == k and len(c["all"]) == n
    assert gap[c["open"]].min() >= np.sort(gap)[n - k] and gap[c["closed"]].max() <= np.sort(gap)[k - 1]
    if n >= 2:
        assert not set(c["open"]) & set(c["closed"])


def test_class_summary_is_the_median_and_skips_nan():
    per = {"x": np.array([1.0, 2.0, 3.0, np.nan]), "y": np.full(4, np.nan)}
    s = me.class_summary(per, {"all": np.arange(4), "two": np.array([0, 1])})
    assert s["all"] == {"n": 4, "x": 2.0, "y": None} and s["two"]["x"] == 1.5


def test_tracked_lips_use_the_model_statistics_and_range():
    from emotalk.face.tracking import BLENDSHAPE_NAMES
    from emotalk.lips import LIP_NAMES, lip_params
    from tests.test_lips import _face

    lmk, bs = _face(5, np.array([0.0, 5.0, 10.0, 20.0, 40.0], np.float32))
    ds = SimpleNamespace(lmk2d=lmk[..., :2], blendshapes=bs, blendshape_names=BLENDSHAPE_NAMES)
    M = len(LIP_NAMES)
    raw = lip_params(lmk, bs, BLENDSHAPE_NAMES)
    model = SimpleNamespace(lip_mean=torch.as_tensor(raw.mean(0)), lip_std=torch.full((M,), 0.05),
                            lip_lo=torch.full((M,), -2.0), lip_hi=torch.full((M,), 2.0))
    z, n_clamped = me.tracked_lips(model, ds, np.arange(5))
    want = (raw - raw.mean(0)) / 0.05
    np.testing.assert_allclose(z, np.clip(want, -2, 2), atol=1e-5)
    assert n_clamped == int((np.abs(want) > 2).any(1).sum()) > 0


def _synthetic_identity(tmp_path):
    """A lip-code identity built (untrained) on the synthetic dataset, and that dataset."""
    from emotalk.gaussians.model import ModelSettings, build_model
    from emotalk.gaussians.synthetic import make_synthetic
    from emotalk.identity.checkpoint import Identity
    from emotalk.lips import LipDriver

    ds = make_synthetic(size=48, n_frames=44, window=4, channels=8)
    torch.manual_seed(0)
    drv = LipDriver(4, 8)
    torch.nn.init.normal_(drv.mlp[-1].weight, std=2.0)  # predictions that vary with the audio
    model = build_model(ds, ModelSettings(n_face_init=300, n_mouth_init=60, sh_degree=0, lip_code=True),
                        (4, 8), lip_driver=drv).eval()
    with torch.no_grad():
        model.lip_enc[-2].weight.normal_(0, 1.0)  # the lip code moves the Gaussians
        model.fields["face"].mlp[-1].weight.normal_(0, 0.05)
    ident = Identity(root=tmp_path, meta={"model": {"audio_kind": "mel"}}, model=model, K=ds.K, size=ds.size,
                     fps=ds.fps, track_w2c=ds.world_to_cam, track_upper=ds.upper_face, upper_names=[],
                     body_path=tmp_path / "body.mp4")
    return ident, ds


def test_whole_run_on_a_synthetic_identity(tmp_path):
    ident, ds = _synthetic_identity(tmp_path)
    calls = []
    res, arr = me.measure_mouth_extremes(ident, ds, progress=lambda s, f: calls.append((s, f)))
    n = len(ds.val_idx)
    assert res["heldout_frames"] == n and len(res["per_frame"]) == n and res["size"] == 48
    assert arr["real"].shape == arr["tracked"].shape == arr["audio"].shape == (n, 48, 48, 3)
    assert not np.array_equal(arr["tracked"], arr["audio"])  # only the lip code differs, and it does
    assert set(res["classes"]) == {"open", "closed", "all"} and res["classes"]["all"]["n"] == n
    assert res["classes"]["open"]["n"] == res["classes"]["closed"]["n"] == max(1, round(n / 4))
    assert any("rendering tracked-code frames" in s for s, _ in calls) and calls[-1] == ("done", 1.0)
    assert any("audio lips: the identity's LipDriver alone" in x for x in res["notes"])
    md = me.markdown({"synthetic": res})
    assert md.count("\n| open |") == md.count("\n| closed |") == md.count("\n| all |") == 1
    assert set(res["psnr"]) == {"tracked", "audio"} and set(res["psnr"]["audio"]) == set(me.REGIONS)
    assert "| tracked code |" in md and "| audio code |" in md
    sheet = me.contact_sheet(arr, "synthetic", k=2)
    assert sheet.dtype == np.uint8 and sheet.shape == (56 + 4 * me.SHEET_CELL[1], 3 * me.SHEET_CELL[0], 3)


def test_audio_code_identities_are_refused(tmp_path):
    from emotalk.errors import InputError

    ident = SimpleNamespace(root=tmp_path, model=SimpleNamespace(settings=SimpleNamespace(lip_code=False)))
    with pytest.raises(InputError, match="no lip code"):
        me.measure_mouth_extremes(ident, SimpleNamespace())


@pytest.mark.slow
def test_real_clip_open_frames_are_open(may_dataset_64, tmp_path):
    """The real preprocessed clip (../shared/data; skipped without it) with an untrained lip-code model:
    the classes follow the real mouth, and MediaPipe finds it more open in the open class."""
    from dataclasses import replace

    from emotalk.gaussians.model import ModelSettings, build_model
    from emotalk.identity.checkpoint import Identity
    from emotalk.lips import LipDriver
    from emotalk.training.data import dataset_audio_code

    ds = replace(may_dataset_64, val_idx=np.arange(0, may_dataset_64.n_frames, 6))  # a spread of mouths
    code = dataset_audio_code(ds, "mel")
    drv = LipDriver(*code.shape[1:])
    model = build_model(ds, ModelSettings(n_face_init=200, n_mouth_init=40, sh_degree=0, lip_code=True),
                        code.shape[1:], lip_driver=drv).eval()
    ident = Identity(root=tmp_path, meta={"model": {"audio_kind": "mel"}}, model=model, K=ds.K, size=ds.size,
                     fps=ds.fps, track_w2c=ds.world_to_cam, track_upper=ds.upper_face, upper_names=[],
                     body_path=tmp_path / "body.mp4")
    res, arr = me.measure_mouth_extremes(ident, ds)
    c = res["classes"]
    assert c["open"]["gap"] > c["closed"]["gap"]
    assert c["open"]["open_real"] > c["closed"]["open_real"]  # MediaPipe on the real crops agrees
    assert c["all"]["sharp_real"] > 0
