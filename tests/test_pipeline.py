"""Pipeline request validation and housekeeping (no model needed)."""

from __future__ import annotations

import os
import shutil
import time

import pytest

from emotalk import pipeline
from emotalk.errors import InputError, MediaError
from emotalk.pipeline import RenderRequest
from tests.conftest import shared


def req(**kw) -> RenderRequest:
    base = {"identity": "obama", "text": "Hello there."}
    base.update(kw)
    return RenderRequest(**base)


def test_valid_text_request_keeps_size_open_until_the_identity_is_known():
    r = pipeline.validate_request(req())
    assert r.size is None
    assert pipeline.validate_request(req(device="cpu")).size is None  # size chosen later, no notice needed
    assert pipeline._default_size(512, "cpu") == pipeline.SIZE_CPU
    assert pipeline._default_size(48, "cpu") == 48 and pipeline._default_size(512, "cuda") == 512


@pytest.mark.parametrize("kw,msg", [
    ({"text": "", "audio": None}, "Give some speech"),
    ({"text": "   "}, "Give some speech"),
    ({"identity": ""}, "Pick an identity"),
    ({"text": "x" * 5000}, "limit is"),
    ({"intensity": 1.6}, "Intensity"),
    ({"lips": "visemes"}, "Lip source"),
    ({"size": 63}, "Resolution"),
    ({"size": 30}, "Resolution"),
    ({"device": "tpu"}, "Device"),
    ({"size": 4096}, "Resolution"),
    ({"yaw": 90.0}, "yaw"),
    ({"blink_rate": -1.0}, "Blink rate"),
    ({"valence": float("nan")}, "finite"),
    ({"emotion_track": [(1.0, 0.1, 0.1), (0.5, 0.2, 0.2)]}, "sorted"),
    ({"engine": "festival"}, "Unknown TTS engine"),
    ({"engine": "piper", "voice": "en-US-GuyNeural"}, "online voice"),
])
def test_bad_requests_are_refused_with_a_reason(kw, msg):
    with pytest.raises(InputError, match=msg):
        pipeline.validate_request(req(**kw))


def test_audio_and_text_together_refused():
    with pytest.raises(InputError, match="not both"):
        pipeline.validate_request(req(audio=str(shared("audio/speech_obama_5s.wav"))))


def test_outside_disc_is_clamped_with_notice():
    r = pipeline.validate_request(req(valence=1.0, arousal=1.0))
    assert abs((r.valence ** 2 + r.arousal ** 2) ** 0.5 - 1.0) < 1e-6
    assert any("outside the unit disc" in n for n in r.notices)


def test_broken_audio_is_a_media_error(tmp_path):
    p = tmp_path / "x.wav"
    p.write_bytes(b"RIFF0000WAVEjunk" * 10)
    with pytest.raises(MediaError):
        pipeline.validate_request(req(text=None, audio=str(p)))


@pytest.mark.parametrize("name", ["../evil", "a/b", "", " ", ".hidden", "x" * 80, "na me"])
def test_identity_names_are_safe(name):
    with pytest.raises(InputError):
        pipeline.validate_identity_name(name, shipped=set())


def test_shipped_name_cannot_be_overwritten():
    with pytest.raises(InputError, match="shipped"):
        pipeline.validate_identity_name("Obama", shipped={"obama"})
    assert pipeline.validate_identity_name("my_clip-2", shipped={"obama"}) == "my_clip-2"


@pytest.mark.parametrize("rid,ok", [("owner/name", True), ("hf:owner/name", True), ("owner", False),
                                    ("https://x/y", False), ("a/../b", False), ("o/n/x", False)])
def test_repo_ids(rid, ok):
    if ok:
        assert pipeline.validate_repo_id(rid) == "owner/name"
    else:
        with pytest.raises(InputError):
            pipeline.validate_repo_id(rid)


def test_cleanup_old_outputs(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "v.mp4").write_bytes(b"x")
    past = time.time() - 7200
    os.utime(old, (past, past))
    assert pipeline.cleanup_old_outputs(tmp_path, 3600) == 1
    assert not old.exists() and new.exists()


def _long_wav(path, seconds: float):
    """A quiet 8 kHz mono wav of `seconds` (small enough to write quickly, long enough to be refused)."""
    import wave

    import numpy as np

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes((128 + np.zeros(int(seconds * 8000), np.uint8)).tobytes())
    return str(path)


def test_one_limit_for_uploaded_speech_on_every_path(tmp_path):
    """200 s and 30 min are refused with the same limit and words (not 900 s from the decoder's bound)."""
    messages = []
    for seconds in (200, 1800):
        wav = _long_wav(tmp_path / f"talk_{seconds}.wav", seconds)
        for check in (pipeline.validate_request, pipeline.estimate_seconds):
            with pytest.raises(InputError) as e:
                check(req(text=None, audio=wav))
            messages.append(str(e.value).replace(str(seconds), "N"))
    assert f"limited to {pipeline.MAX_SPEECH_S:.0f} s" in messages[0] and "900" not in messages[-1]
    assert len(set(messages)) == 1, messages  # the same words on every path, for both lengths


@pytest.mark.parametrize("kw,msg", [
    ({"valence": "nan"}, "Valence must be a finite number"),
    ({"arousal": "inf"}, "Arousal must be a finite number"),
    ({"valence": "abc"}, "Valence must be a number"),
    ({"intensity": None}, "Intensity must be a number"),
    ({"yaw": float("nan")}, "Camera yaw must be a finite number"),
    ({"pitch": "nan"}, "Camera pitch must be a finite number"),
    ({"blink_rate": "nan"}, "Blink rate must be a finite number"),
    ({"size": "nan"}, "Resolution must be a finite number"),
    ({"seed": 1.5}, "Seed must be a whole number"),
])
def test_api_values_that_are_not_numbers_are_refused_by_name(kw, msg):
    with pytest.raises(InputError, match=msg):
        pipeline.validate_request(req(**kw))


def test_numbers_sent_as_text_are_read():
    r = pipeline.validate_request(req(valence="0.5", arousal="-0.25", size="128", seed="3", device="cpu"))
    assert (r.valence, r.arousal, r.size, r.seed) == (0.5, -0.25, 128, 3)


def test_each_notice_is_said_once(monkeypatch):
    from emotalk import requests

    cpu = {"device": "cpu", "default_size": 256, "notice": "No GPU here: test."}
    monkeypatch.setattr(requests, "device_info", lambda: cpu)
    r = pipeline.validate_request(pipeline.validate_request(req(valence=2.0)))  # the app validates twice
    assert len(r.notices) == 2 and r.notices.count("No GPU here: test.") == 1
    assert pipeline.join_notices(r.notices + ["No GPU here: test."]).count("No GPU here") == 1


def test_tts_engines_offer_the_offline_voice_first():
    engines = pipeline.tts_engines()
    assert engines[0][0] == "piper" and {e for e, _ in engines} == {"piper", "espeak", "edge"}
    labels = dict(engines)
    assert "online service" in labels["edge"]
    assert "offline" in labels["piper"] and "offline" in labels["espeak"]


def _no_network(*a, **k):
    raise AssertionError("the typed text was about to be sent online")


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_speak_says_a_notice_only_when_the_chosen_engine_did_not_speak(monkeypatch, tmp_path):
    from emotalk.speech import tts_edge, tts_offline

    monkeypatch.setattr(tts_edge, "network_reachable", _no_network)  # offline engines never go online
    sp = pipeline.speak("Hello there.", engine="espeak", workdir=tmp_path)
    assert sp.engine.startswith("espeak") and sp.notice is None and sp.wav.is_file()
    monkeypatch.setattr(tts_offline, "piper_available", lambda: "piper missing (test)")
    sp = pipeline.speak("Hello there.", workdir=tmp_path)  # the default, Piper, cannot speak here
    assert sp.engine.startswith("espeak")
    assert "Piper" in sp.notice and "piper missing (test)" in sp.notice and "espeak" in sp.notice


@pytest.fixture
def fresh_speed():
    from emotalk.render import speed

    speed.forget()
    yield speed
    speed.forget()


def test_expected_seconds_grow_with_speech_and_size(monkeypatch, fresh_speed):
    speed = fresh_speed
    monkeypatch.setattr(speed.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    cpu = {n: pipeline.estimate_seconds(req(text="word " * n, device="cpu", size=256)) for n in (20, 200)}
    small = pipeline.estimate_seconds(req(text="word " * 200, device="cpu", size=128))
    gpu = pipeline.estimate_seconds(req(text="word " * 200, device="cuda", size=256))
    assert 0 < gpu < small < cpu[200] and cpu[20] < cpu[200]
    speech = str(shared("audio/speech_obama_5s.wav"))
    assert pipeline.estimate_seconds(req(text=None, audio=speech, device="cpu", size=256)) < cpu[200]
    monkeypatch.setattr(speed.os, "getloadavg", lambda: (8.0 * (speed.os.cpu_count() or 1),) * 3)
    assert pipeline.estimate_seconds(req(text="word " * 200, device="cpu", size=256)) > 2 * cpu[200]


def test_expected_seconds_follow_the_speed_renders_really_had(monkeypatch, fresh_speed):
    """After a render, its real pace replaces the load guess: 10x slower than the model -> ~10x estimates."""
    speed = fresh_speed
    monkeypatch.setattr(speed.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    before = pipeline.estimate_seconds(req(text="word " * 100, device="cpu", size=128))
    speed.observe(5.0, 256, "cpu", 10 * speed.model_seconds(5.0, 256, "cpu"))
    after = pipeline.estimate_seconds(req(text="word " * 100, device="cpu", size=128))
    assert 9.5 < after / before < 10.5
    assert pipeline.estimate_seconds(req(text="word " * 100, device="cuda", size=128)) < before  # per device


def test_gpu_seconds_estimate_grows_with_speech():
    assert pipeline.estimate_gpu_seconds(req(text="x" * 1400)) > pipeline.estimate_gpu_seconds(req(text="hi"))


def test_bench_command_runs_a_benchmark_script(capsys):
    from emotalk.__main__ import main

    assert main(["bench", "speech", "--help"]) == 0
    assert "audio-code speed" in capsys.readouterr().out
