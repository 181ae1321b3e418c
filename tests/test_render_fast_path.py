"""The fast render path (emotalk.gaussians.fast_render) gives what the plain `TalkingGaussians.render` gives:
deformed Gaussians and images on tiny synthetic models of every kind (audio / lip code, with / without the
emotion field, lip lock, lip offset), at neutral, one emotion for the batch and one per frame; its emotion
memo and model-change detection; `render_frames` on both paths; the single-stream benchmark on the CPU."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from emotalk.errors import InputError
from emotalk.gaussians.fast_render import FastRenderer, FastSettings, _bucket, fast_renderer, path_settings
from emotalk.gaussians.fields import FieldSettings
from emotalk.gaussians.model import BRANCHES, Frames, ModelSettings, build_model
from emotalk.gaussians.synthetic import make_synthetic
from emotalk.lips import LipDriver

S = 24  # render side (px)
EMOTIONS = {  # (valence, arousal) per frame of a batch of 3, gain per frame (None: no gain given)
    "neutral": ([[0.0, 0.0]] * 3, None),
    "one emotion": ([[0.5, -0.3]] * 3, [1.2] * 3),
    "per frame": ([[0.5, -0.3], [0.0, 0.0], [-0.7, 0.2]], [1.0, 0.5, 1.5]),
    "jaw drop": ([[0.2, 0.85], [-0.6, 0.75], [0.4, 0.7]], [1.0, 1.5, 0.7]),  # surprise and fear open the lips
}


@pytest.fixture(scope="module")
def ds():
    return make_synthetic(size=S, n_frames=8, window=4, channels=8)


def _model(ds, lip_code: bool, emotion_field: bool, lip_offset: bool = False):
    """A tiny model whose fields all move the Gaussians (their last layers are no longer zero)."""
    s = ModelSettings(n_face_init=200, n_mouth_init=40, field=FieldSettings(plane_res=(8, 16), plane_ch=2,
                      hidden=16), emotion_field=emotion_field, lip_code=lip_code)
    torch.manual_seed(0)
    m = build_model(ds, s, (4, 8), lip_driver=LipDriver(4, 8) if lip_code else None).eval()
    with torch.no_grad():
        for f in [*m.fields.values()] + ([m.emotion_field] if emotion_field else []):
            for p in f.mlp[-1].parameters():
                p.normal_(0, 0.05)
        if emotion_field:  # a lip lock on some Gaussians: the mouth mask comes from it (as the shipped obama)
            w = torch.zeros(m.n_gaussians("face"))
            w[:30] = torch.rand(30)
            m.set_lip_lock(w, torch.tensor([0.0, 1.0, 0.0]))
    m.switches.lip_offset = lip_offset
    return m


def _frames(ds, emotion, gain, lips: torch.Tensor | None = None) -> Frames:
    B = len(emotion)
    idx = np.arange(B)
    return Frames(torch.as_tensor(ds.world_to_cam[idx]), torch.as_tensor(ds.K)[None].expand(B, 3, 3),
                  torch.as_tensor(ds.audio_code[idx]), torch.as_tensor(ds.upper_face[idx]),
                  torch.tensor(emotion, dtype=torch.float32), lips=lips,
                  gain=None if gain is None else torch.tensor(gain, dtype=torch.float32))


def _plain_deform(m, fr):
    with torch.no_grad():
        if m.settings.lip_code:
            fr = replace(fr, lips=m.lips(fr, emotional=True))
        return {b: m.deform(b, fr) for b in BRANCHES}


def _max_diff(a: dict, b: dict) -> float:
    return max(float((x - y).detach().abs().max()) for k in BRANCHES for x, y in zip(a[k], b[k]))


@pytest.mark.parametrize("lip_code,emotion_field,lip_offset", [(False, False, False), (False, True, False),
                                                               (True, True, False), (True, True, True)])
def test_fast_path_matches_plain_deform_and_images(ds, lip_code, emotion_field, lip_offset):
    m = _model(ds, lip_code, emotion_field, lip_offset)
    fast = FastRenderer(m)
    fused = FastRenderer(m, FastSettings(fused=True))  # on a CPU: references, both layers in one call
    body = torch.full((3, S, S, 3), 0.3)
    body_u8 = torch.full((3, S, S, 3), 77, dtype=torch.uint8)
    imgs = {}
    for name, (emo, gain) in EMOTIONS.items():
        fr = _frames(ds, emo, gain)
        assert _max_diff(fast.deform(fr), _plain_deform(m, fr)) <= 1e-6, name
        assert _max_diff(fused.deform(fr), _plain_deform(m, fr)) <= 1e-6, name
        with torch.no_grad():
            want = m.render(fr, S, S, body).rgb
            got = fast.render(fr, S, S, body).rgb
            want_u8 = (m.render(fr, S, S, body_u8.float() / 255).rgb.clamp(0, 1) * 255 + 0.5).to(torch.uint8)
            got_u8 = fused.render_u8(fr, S, S, body_u8, one_call=True)  # the CUDA layout, on a CPU
        assert float((got - want).abs().max()) <= 1e-6, name
        assert int((got_u8.int() - want_u8.int()).abs().max()) <= 1, name
        imgs[name] = got
    # the emotion really is drawn (the comparison above is not between two neutral faces)
    if emotion_field or not lip_code:
        assert float((imgs["one emotion"] - imgs["neutral"]).abs().max()) > 1e-3
    if lip_code:  # so is the jaw drop (the same renderer: its memo keys on the switch)
        fr = _frames(ds, *EMOTIONS["jaw drop"])
        on = fast.deform(fr)["face"][0]
        m.switches.jaw_drop = False
        assert float((fast.deform(fr)["face"][0] - on).abs().max()) > 1e-4


def test_given_lip_track_and_host_emotion_rows(ds):
    m = _model(ds, True, True, lip_offset=True)
    lips = torch.randn(3, m.lip_lo.numel()).clamp(-2, 2)
    emo, gain = EMOTIONS["one emotion"]
    fr = _frames(ds, emo, gain, lips=lips)
    rows = np.array([[*e, g] for e, g in zip(emo, gain)], np.float32)
    assert _max_diff(FastRenderer(m).deform(fr, emotion=rows), _plain_deform(m, fr)) <= 1e-6
    with pytest.raises(ValueError, match="emotion rows"):
        FastRenderer(m).deform(fr, emotion=rows[:2])


def test_emotion_terms_are_memoised_per_emotion_and_switches(ds, monkeypatch):
    m = _model(ds, True, True)
    fast = FastRenderer(m)
    calls = []
    real = m.emotion_delta
    monkeypatch.setattr(m, "emotion_delta", lambda *a: calls.append(1) or real(*a))
    one = _frames(ds, *EMOTIONS["one emotion"])
    for _ in range(3):
        fast.deform(one)
    assert len(calls) == 1  # one emotion for a whole stream: its deltas are computed once
    m.switches.mouth_mask = False  # a switch changes the deltas: computed again, and still as the plain path
    got = fast.deform(one)
    assert len(calls) == 2
    assert _max_diff(got, _plain_deform(m, one)) <= 1e-6
    calls.clear()
    fast.deform(_frames(ds, *EMOTIONS["per frame"]))
    fast.deform(_frames(ds, *EMOTIONS["per frame"]))
    assert len(calls) == 2  # a batch of different emotions is not memoised
    fast.deform(_frames(ds, *EMOTIONS["neutral"]))
    assert len(calls) == 2  # neutral: no emotion field at all


def test_fast_renderer_is_kept_and_rebuilt_when_the_model_changes(ds):
    m = _model(ds, False, True)
    r = fast_renderer(m)
    assert fast_renderer(m) is r
    fr = _frames(ds, *EMOTIONS["one emotion"])
    r.deform(fr)
    with torch.no_grad():
        m.branches["face"]["means"].add_(0.05)  # e.g. an optimizer step: in place
        m.emotion_field.mlp[-1].weight.mul_(2)
    r2 = fast_renderer(m)
    assert r2 is not r
    assert _max_diff(r2.deform(fr), _plain_deform(m, fr)) <= 1e-6


def test_compiled_core_matches_plain(ds):
    """The torch.compile switch (the 'eager' backend here: the same graph capture by dynamo, no codegen)."""
    m = _model(ds, True, True)
    fast = FastRenderer(m, FastSettings(compile="eager"))
    for emo, gain in EMOTIONS.values():
        fr = _frames(ds, emo, gain)
        assert _max_diff(fast.deform(fr), _plain_deform(m, fr)) <= 1e-6


def test_render_paths_and_graph_buckets(monkeypatch):
    assert path_settings("plain") is None
    assert path_settings("graphs") == FastSettings(graphs=True)
    monkeypatch.delenv("EMOTALK_RENDER_PATH", raising=False)
    assert path_settings(None) == FastSettings(graphs=True, fused=True)  # the measured default
    monkeypatch.setenv("EMOTALK_RENDER_PATH", "compile")
    assert path_settings(None).compile == "inductor"
    monkeypatch.setenv("EMOTALK_RENDER_PATH", "warp")
    with pytest.raises(InputError, match="EMOTALK_RENDER_PATH"):
        path_settings(None)
    assert [_bucket(b) for b in (1, 5, 8, 9, 33, 64)] == [1, 5, 8, 16, 64, 64]


def _identity(ds, m, tmp_path: Path):
    from emotalk.identity.checkpoint import Identity

    return Identity(root=tmp_path, meta={"model": {"audio_kind": "synthetic"}}, model=m, K=ds.K, size=S,
                    fps=ds.fps, track_w2c=ds.world_to_cam, track_upper=ds.upper_face,
                    upper_names=["eyeBlinkLeft", "eyeBlinkRight"], body_path=tmp_path / "body.mp4")


@pytest.mark.parametrize("lip_code", [False, True])
def test_render_frames_fast_equals_plain(ds, tmp_path, lip_code):
    from emotalk.render.frames import render_frames

    m = _model(ds, lip_code, True)
    ident = _identity(ds, m, tmp_path)
    T = 7
    code = np.resize(ds.audio_code, (T, *ds.audio_code.shape[1:]))
    emo = np.stack([np.linspace(-0.6, 0.6, T), np.full(T, 0.3), np.linspace(0.5, 1.5, T)], 1)
    kw = dict(batch=3, body=ds.body(), blinks=False)
    rng = np.random.default_rng(0)
    lips = rng.normal(0, 1, (T, m.lip_lo.numel())).astype(np.float32) if lip_code else None
    for e in ((0.4, 0.2), emo):
        plain = np.concatenate(list(render_frames(ident, code, e, render_path="plain", lips=lips, **kw)))
        for path in ("fast", "graphs+fused"):
            fast = np.concatenate(list(render_frames(ident, code, e, render_path=path, lips=lips, **kw)))
            assert plain.shape == (T, S, S, 3)
            assert np.abs(plain.astype(int) - fast.astype(int)).max() <= 1, path
    with pytest.raises(InputError, match="render path"):
        next(render_frames(ident, code, render_path="nope", **kw))


def test_single_stream_bench_runs_on_cpu(tmp_path):
    """The GPU benchmark's code path at a token size on the CPU (shipped obama, 2 frames, 16 px)."""
    from emotalk.cli.bench import single_stream

    ident = Path(__file__).resolve().parents[1] / "checkpoints" / "obama"
    if not (ident / "model.safetensors").is_file():
        pytest.skip(f"no shipped identity at {ident}")
    out = tmp_path / "ss.json"
    args = ["--out", str(out), "--identity", str(ident), "--device", "cpu", "--sizes", "16", "--batches", "1",
            "--bare-batches", "1", "--frames", "2", "--emotions", "0.3,0.2", "--paths", "fast,plain,graphs"]
    assert single_stream.main(args) == 0
    doc = json.loads(out.read_text())
    runs = doc["sizes"]["16"]["runs"]["emotion0.3,0.2_batch1"]
    assert list(runs) == ["plain", "fast", "graphs"] and "skipped" in runs["graphs"]
    assert runs["fast"]["max_abs_diff_vs_plain"] <= 1e-5 and runs["fast"]["render_fps"] > 0
    assert runs["fast"]["overhead_ratio"] > 0 and doc["sizes"]["16"]["bare_raster_fps"]["batch1"] > 0
    assert doc["sizes"]["16"]["stream"]["emotion0.3,0.2_fast"]["frames"] >= 2
    assert doc["summary"]["16px_emotion0.3,0.2_batch1"]["fast"]["speedup_vs_plain"] > 0
