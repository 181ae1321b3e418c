"""Pipeline request validation and housekeeping (no model needed)."""

from __future__ import annotations

import os
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
    ({"intensity": 1.5}, "Intensity"),
    ({"size": 63}, "Resolution"),
    ({"size": 30}, "Resolution"),
    ({"device": "tpu"}, "Device"),
    ({"size": 4096}, "Resolution"),
    ({"yaw": 90.0}, "yaw"),
    ({"blink_rate": -1.0}, "Blink rate"),
    ({"valence": float("nan")}, "finite"),
    ({"emotion_track": [(1.0, 0.1, 0.1), (0.5, 0.2, 0.2)]}, "sorted"),
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


def test_gpu_seconds_estimate_grows_with_speech():
    assert pipeline.estimate_gpu_seconds(req(text="x" * 1400)) > pipeline.estimate_gpu_seconds(req(text="hi"))


def test_bench_command_runs_a_benchmark_script(capsys):
    from emotalk.__main__ import main

    assert main(["bench", "speech", "--help"]) == 0
    assert "audio-code speed" in capsys.readouterr().out
