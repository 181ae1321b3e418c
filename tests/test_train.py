"""Training: a tiny identity from a real shared clip improves and round-trips; resume, NaN and OOM paths."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from emotalk.errors import EmoTalkError
from emotalk.training.data import load_train_data
from emotalk.training.loop import SampleHook, TrainingError, evaluate, train
from emotalk.training.settings import PRESETS
from tests.conftest import REPO, shared

TINY = replace(PRESETS["test"], steps=12, batch=1, size=32, checkpoint_every=4,
               densify=replace(PRESETS["test"].densify, start=4, every=4),
               model=replace(PRESETS["test"].model, n_face_init=250, n_mouth_init=40))


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
    """Also: held-out samples during training leave the result alone, and densification (a strategy
    object since #14) grows the set exactly as the loop's own code did before (counts pinned from then)."""
    full, _ = train(synth, TINY, tmp_path / "a")
    assert (full.n_gaussians("face"), full.n_gaussians("mouth")) == (504, 83)

    class Crash(Exception):
        pass

    def crash(stage: str, frac: float) -> None:
        if frac >= 10 / 12:
            raise Crash

    seen: list[tuple[int, tuple]] = []
    hook = SampleHook(4, lambda st, frame: seen.append((st.step, frame.shape, frame.dtype)))
    with pytest.raises(Crash):
        train(synth, TINY, tmp_path / "b", progress=crash, samples=hook)
    assert seen == [(4, (32, 32, 3), np.uint8), (8, (32, 32, 3), np.uint8)]  # during training
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
    assert "at step 6 " in str(e.value) and "after step 4;" in str(e.value)
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
    from emotalk.dataset import format as data
    from emotalk.errors import DatasetError

    old = tmp_path / "old"
    old.mkdir()
    for f in data.FILES:
        (old / f).write_bytes(b"")
    (old / "meta.json").write_text(json.dumps({"format_version": data.DATASET_VERSION - 1, "size": 64}))
    with pytest.raises(DatasetError, match="version") as e:
        data.load_dataset(old)
    assert "preprocess" in str(e.value)  # says what to do


def test_settings_load_from_the_grouped_and_the_old_flat_identity_json() -> None:
    """The shipped obama stores the flat settings of before #14 (reagan, re-shipped since, the grouped
    form); the flat form loads to the same values as the grouped form written now."""
    from dataclasses import asdict

    from emotalk.training.settings import FLAT_NAMES, TrainSettings, settings_from_dict

    regrouped = json.loads((REPO / "checkpoints" / "reagan" / "identity.json").read_text())["settings"]
    assert "lr" in regrouped and settings_from_dict(regrouped).model.lip_code
    for name, max_g in (("obama", 40000),):
        flat = json.loads((REPO / "checkpoints" / name / "identity.json").read_text())["settings"]
        assert "lr_means" in flat and "lr" not in flat  # really the old form
        old = settings_from_dict(flat)
        grouped = asdict(old)
        assert "lr" in grouped and "lr_means" not in grouped
        new = settings_from_dict(json.loads(json.dumps(grouped)))  # through JSON, as identity.json
        assert new == old and isinstance(new.stage_frac, tuple)
        assert isinstance(new.model.field.plane_res, tuple)
        moved = [n for n in FLAT_NAMES if n in flat]
        assert len(moved) >= 20  # reagan predates the lip code's two
        for flat_name in moved:
            group, field = FLAT_NAMES[flat_name]
            assert getattr(getattr(new, group), field) == flat[flat_name], flat_name
        assert new.densify.max_gaussians == max_g and new.steps == flat["steps"]
        assert new.model.emotion_field == flat["model"]["emotion_field"]
    assert settings_from_dict(asdict(TrainSettings())) == TrainSettings()


def test_recipes_carry_their_size_and_emotions_and_a_cpu_runs_the_preview() -> None:
    from emotalk import pipeline
    from emotalk.training.settings import RECIPES, override, recipe_for

    assert pipeline.FINE_TUNE_PRESETS == tuple(RECIPES)
    cpu = recipe_for("fast", "cpu")
    assert cpu is recipe_for("quality", "cpu") is RECIPES["cpu"] and recipe_for("fast", "cuda").name == "fast"
    assert cpu.preview and cpu.emotions and cpu.size == 128 and cpu.train.steps == 600
    assert cpu.train.batch == 2 and not cpu.train.loss.lpips
    assert (cpu.train.model.n_face_init, cpu.train.model.n_mouth_init) == (3000, 400)
    assert cpu.emotion.size < cpu.size  # emotions taught at a smaller size
    s = pipeline.fine_tune_recipe("fast", device="cpu")
    assert s["preview"] and s["size"] == 128 and s["emotions"] and "128 px" in s["description"]
    assert pipeline.fine_tune_recipe("fast", device="cuda")["size"] == 512
    assert not RECIPES["fast"].preview and RECIPES["fast"].emotions
    o = override(RECIPES["test"], steps=8, size=48, emotion_steps=0)
    assert (o.train.steps, o.size, o.emotions, o.emotion) == (8, 48, False, None)
    assert RECIPES["test"].train.steps == 40  # the preset itself is unchanged
    with pytest.raises(EmoTalkError, match="Unknown recipe"):
        recipe_for("slow", "cpu")
    clip = str(shared("clips/may_5s_512px_25fps.mp4"))
    on_cpu = pipeline.estimate_fine_tune_seconds(clip, "fast", device="cpu")
    assert 60 < on_cpu < 600 and pipeline.estimate_fine_tune_seconds(clip, "test", device="cpu") < on_cpu
    fast, quality = (pipeline.estimate_fine_tune_seconds(clip, p, device="cuda") for p in ("fast", "quality"))
    assert 60 < fast < quality < 900
