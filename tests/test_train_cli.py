"""The train and render commands end to end on the shared clip (tiny sizes, CPU)."""

from __future__ import annotations

import json

import pytest

from emotalk.__main__ import main
from tests.conftest import shared


@pytest.mark.slow
def test_train_then_render_commands(may_dataset_64, tmp_path, capsys) -> None:
    out = tmp_path / "ident"
    rc = main(["train", str(may_dataset_64.root), "--out", str(out), "--preset", "test", "--steps", "6",
               "--device", "cpu", "--size", "48"])
    assert rc == 0
    meta = json.loads((out / "identity.json").read_text())
    assert meta["settings"]["steps"] == 6 and meta["model"]["size"] == 48
    assert (out / "thumbnail.png").is_file()
    wav = shared("audio/speech_obama_5s.wav")
    video = tmp_path / "out.mp4"
    rc = main(["render", str(out), "--audio", str(wav), "--valence", "1.2", "--arousal", "0.5",
               "-o", str(video), "--device", "cpu"])
    assert rc == 0
    assert "outside the unit disc" in capsys.readouterr().err  # clamped with a notice, not an error
    from emotalk import media

    info = media.probe(video)
    assert info.has_video and info.width == 48
    assert abs(info.duration - 5.0) < 0.3


def test_render_refuses_a_nan_emotion(tmp_path, capsys) -> None:
    rc = main(["render", "obama", "--text", "hello", "--valence", "nan", "-o", str(tmp_path / "o.mp4")])
    assert rc == 1
    assert "finite" in capsys.readouterr().err
