"""Training: a tiny identity from a real shared clip improves and round-trips; resume, NaN and OOM paths."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from emotalk.errors import EmoTalkError
from emotalk.training.data import load_train_data
from emotalk.training.loop import TrainingError, evaluate, train
from emotalk.training.settings import PRESETS
from tests.conftest import shared

TINY = replace(PRESETS["test"], steps=12, batch=1, size=32, checkpoint_every=4, densify_from=4,
               densify_every=4, model=replace(PRESETS["test"].model, n_face_init=250, n_mouth_init=40))


@pytest.fixture(scope="module")
def synth():
    from emotalk.gaussians.synthetic import make_synthetic

    return make_synthetic(size=48, n_frames=12)


@pytest.fixture(scope="session")
def may_dataset(may_dataset_64):
    """The shared 5 s clip preprocessed at 64 px (conftest's session fixture, shared with other tests)."""
    shared("clips/may_5s_512px_25fps.mp4")
    return may_dataset_64


@pytest.mark.slow
def test_tiny_identity_from_real_clip_improves_saves_loads_renders(may_dataset, tmp_path) -> None:
    from emotalk.identity.checkpoint import load_identity, save_identity
    from emotalk.render.frames import render_frames
    from emotalk.speech.features import compute_audio_code

    ds = may_dataset
    code = compute_audio_code(ds.audio(), 16000, n_frames=ds.n_frames, fps=ds.fps, kind="mel")
    s = replace(PRESETS["test"], steps=30, size=48, audio_kind="mel")
    before, _ = train(ds, replace(s, steps=0), tmp_path / "w0", audio_code=code)
    data = load_train_data(ds, s.size, code, "cpu")
    idx = data.train_idx[::10]
    _, m0 = evaluate(before, data, idx)
    model, summary = train(ds, s, tmp_path / "w1", audio_code=code)
    _, m1 = evaluate(model, data, idx)
    assert m1["psnr"] > m0["psnr"] + 1.0, (m0, m1)  # measurably better
    assert np.isfinite(summary["val_psnr"])
    out = save_identity(tmp_path / "ident", model, ds, s, summary, name="may-test")
    meta = json.loads((out / "identity.json").read_text())
    assert meta["source"]["sha256"] and meta["model"]["n_face"] == model.n_gaussians("face")
    ident = load_identity(out)
    body = ident.body_frames()
    assert body.shape[1:] == (48, 48, 3)
    a = np.concatenate(list(render_frames(ident, code[:4], (0, 0), batch=2, blinks=False, body=body)))
    b = np.concatenate(list(render_frames(load_identity(out), code[:4], (0, 0), batch=4, blinks=False,
                                          body=body)))
    assert a.shape == (4, 48, 48, 3)
    assert np.array_equal(a, b)  # the same image again after another load
    # the loaded identity renders what the trained model rendered (fp16 storage: within 1 level)
    from emotalk.gaussians.model import Frames

    fr = Frames(torch.as_tensor(ident.track_w2c[:2]), torch.as_tensor(ident.K)[None].repeat(2, 1, 1),
                torch.as_tensor(code[:2]), torch.as_tensor(ident.track_upper[:2]), torch.zeros(2, 2))
    bt = torch.as_tensor(body[:2]).float() / 255
    with torch.no_grad():
        x = model.render(fr, 48, 48, bt).rgb
        y = ident.model.render(fr, 48, 48, bt).rgb
    assert float((x - y).abs().mean()) < 1 / 255


def test_resume_after_crash_gives_the_same_model(synth, tmp_path) -> None:
    full, _ = train(synth, TINY, tmp_path / "a")

    class Crash(Exception):
        pass

    def crash(stage: str, frac: float) -> None:
        if frac >= 10 / 12:
            raise Crash

    with pytest.raises(Crash):
        train(synth, TINY, tmp_path / "b", progress=crash)
    st = json.loads((tmp_path / "b" / "train_state" / "state.json").read_text())
    assert st["step"] == 8
    resumed, _ = train(synth, TINY, tmp_path / "b")
    for (k, v), (k2, v2) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert k == k2 and v.shape == v2.shape, k
        assert torch.allclose(v, v2, atol=1e-6), k


def test_nan_loss_stops_without_writing_a_broken_checkpoint(synth, tmp_path, monkeypatch) -> None:
    import emotalk.training.loop as T

    real = T.rasterize
    calls = {"n": 0}

    def poisoned(*a, **k):
        out = real(*a, **k)
        calls["n"] += 1
        if calls["n"] > 6:  # steps 0-5 are fine (checkpoint at 4), then the image turns NaN
            out.rgb = out.rgb * float("nan")
        return out

    monkeypatch.setattr(T, "rasterize", poisoned)
    with pytest.raises(TrainingError, match="learning rates") as e:
        train(synth, TINY, tmp_path)
    assert "step 6" in str(e.value) or "step" in str(e.value)
    st = json.loads((tmp_path / "train_state" / "state.json").read_text())
    assert st["step"] == 4
    from safetensors.torch import load_file

    t = load_file(str(tmp_path / "train_state" / "state.safetensors"))
    assert all(torch.isfinite(v).all() for v in t.values())


def test_gpu_out_of_memory_names_the_settings_to_lower(synth, tmp_path, monkeypatch) -> None:
    import emotalk.training.loop as T

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(T, "rasterize", oom)
    with pytest.raises(TrainingError) as e:
        train(synth, TINY, tmp_path)
    msg = str(e.value)
    assert isinstance(e.value, EmoTalkError)
    assert "--batch" in msg and "max_gaussians" in msg and "--size" in msg


def test_dataset_of_an_older_format_version_is_refused(tmp_path) -> None:
    from emotalk.dataset import build as data
    from emotalk.errors import DatasetError

    old = tmp_path / "old"
    old.mkdir()
    for f in data.FILES:
        (old / f).write_bytes(b"")
    (old / "meta.json").write_text(json.dumps({"format_version": data.DATASET_VERSION - 1, "size": 64}))
    with pytest.raises(DatasetError, match="version") as e:
        data.load_dataset(old)
    assert "preprocess" in str(e.value)  # says what to do
