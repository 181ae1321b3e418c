"""The app over HTTP with the real pipeline: launch it on localhost and call its API with gradio_client.

The rendering test uses the first installed identity (shipped, or the user's), else the tiny test identity
(tests/conftest.py: installed_identity).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from emotalk import media
from tests.conftest import REPO, shared


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


def _path(out) -> str:
    return out["video"] if isinstance(out, dict) else out


def test_convert_endpoint_returns_25fps_h264_aac(client):
    from gradio_client import handle_file

    clip = shared("clips/grid/bbaf2n.mpg")
    info = media.probe(_path(client.predict(handle_file(str(clip)), api_name="/convert")))
    assert info.video_codec == "h264" and info.audio_codec == "aac" and info.fps == 25.0
    assert abs(info.duration - 3.0) < 0.2


def test_model_files_endpoint(client):
    rows = client.predict(api_name="/model_files")
    data = rows["data"] if isinstance(rows, dict) else rows
    assert {r[0] for r in data} >= {"face_landmarker.task", "whisper-tiny.en"}


def test_speak_endpoint_says_which_engine_spoke(client):
    wav, note = client.predict("Testing one two three.", "espeak", api_name="/speak")
    x = media.read_audio(wav)
    assert 0.8 < len(x) / 16000 < 4.0 and float(abs(x).max()) > 0.05
    assert "espeak" in note


def test_generate_rejects_bad_input_with_the_pipeline_message(client, installed_identity):
    from gradio_client.exceptions import AppError

    name = installed_identity.name
    with pytest.raises(AppError, match="limit is 2000"):
        client.predict(identity=name, source="text", text="word " * 500, api_name="/generate")
    with pytest.raises(AppError, match="Type some text"):
        client.predict(identity=name, source="text", text="  ", api_name="/generate")
    with pytest.raises(AppError) as e:  # titled, and no HTML escapes in what API callers read
        client.predict(identity="trump", source="text", text="Hi.", api_name="/generate")
    assert str(e.value) == ("Check your input: Unknown identity 'trump'; pick one from the gallery or load "
                            "one from the Hub.") and e.value.title == "Check your input"
    with pytest.raises(AppError, match="Expected a `float`.*'nan'"):  # not an empty error
        client.predict(identity="trump", source="text", text="Hi.", valence="nan", api_name="/generate")


def speech_video(path: Path, seconds: float) -> Path:
    """A phone-style .mp4 (grey picture) whose sound is `seconds` of speech: the speech box takes videos."""
    import numpy as np

    x = media.read_audio(REPO / "examples" / "hello.wav")
    with media.VideoWriter(path, fps=25.0, audio=x[: int(seconds * 16000)], sr=16000) as w:
        w.write_batch(np.full((int(seconds * 25), 64, 64, 3), 128, np.uint8))
    return path


@pytest.mark.slow
def test_generate_endpoint_renders_an_mp4_with_the_speech(client, tmp_path, installed_identity):
    from gradio_client import handle_file

    video, wav, files, notes = client.predict(
        identity=installed_identity.name, source="audio",
        audio=handle_file(str(speech_video(tmp_path / "two_seconds.mp4", 2.0))),
        valence=0.8, arousal=0.5, size=128, api_name="/generate")
    info = media.probe(_path(video))
    assert info.has_audio and info.audio_codec == "aac" and info.video_codec == "h264"
    assert abs(info.duration - 2.0) < 0.15 and info.fps == 25.0
    frames = media.read_frames(_path(video))
    assert abs(len(frames) - 50) <= 1 and frames.shape[1:] == (128, 128, 3)
    assert frames.std() > 5  # a picture, not a blank
    assert f"s clip**, {len(frames)} frames · made in" in notes, notes  # the clip's length, then the wait
    assert {Path(f).name.split(".")[-1] for f in files} >= {"mp4", "wav", "json"}


def test_uploads_over_the_size_limit_are_refused():
    from gradio_client import Client, handle_file

    import app

    demo = app.build()
    _, url, _ = app.launch(demo, server_name="127.0.0.1", server_port=None, prevent_thread_lock=True,
                           quiet=True, max_file_size="10kb", warm_up=False)
    try:
        with pytest.raises(ValueError, match="exceeds the maximum file size"):
            Client(url, verbose=False).predict(identity="x", source="audio", api_name="/generate",
                                               audio=handle_file(str(REPO / "examples" / "hello.wav")))
    finally:
        demo.close()
