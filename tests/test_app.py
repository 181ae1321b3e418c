"""The app over HTTP: launch it on localhost and call its API with gradio_client."""

from __future__ import annotations

import pytest

from emotalk import media
from tests.conftest import shared


@pytest.fixture(scope="module")
def app_url():
    import app

    demo = app.build().queue(max_size=8, default_concurrency_limit=1)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=None, prevent_thread_lock=True,
                            quiet=True)
    yield url
    demo.close()


def test_convert_endpoint_returns_25fps_h264_aac(app_url):
    from gradio_client import Client, handle_file

    clip = shared("clips/grid/bbaf2n.mpg")
    client = Client(app_url, verbose=False)
    out = client.predict(handle_file(str(clip)), api_name="/convert")
    path = out["video"] if isinstance(out, dict) else out
    info = media.probe(path)
    assert info.video_codec == "h264" and info.audio_codec == "aac" and info.fps == 25.0
    assert abs(info.duration - 3.0) < 0.2


def test_model_files_endpoint(app_url):
    from gradio_client import Client

    rows = Client(app_url, verbose=False).predict(api_name="/model_files")
    data = rows["data"] if isinstance(rows, dict) else rows
    assert {r[0] for r in data} >= {"face_landmarker.task", "whisper-tiny.en"}
