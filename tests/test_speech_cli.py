"""`python -m emotalk speak`: speak, transcribe, features; bad input gives a one-line error."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from emotalk.__main__ import build_parser, main

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def test_help_lists_the_modes(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["speak", "--help"])
    out = capsys.readouterr().out
    for flag in ("--text", "--transcribe", "--features", "--voice", "--engine", "--kind"):
        assert flag in out


@needs_espeak
def test_speak_transcribe_and_features(tmp_path, capsys):
    wav = tmp_path / "hello.wav"
    rc = main(["speak", "--text", "Hello there, nice to meet you.", "--engine", "espeak", "-o", str(wav),
               "--srt", str(tmp_path / "h.srt"), "--json", str(tmp_path / "h.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "engine: espeak" in out and "fallback: none" in out
    import soundfile as sf

    x, sr = sf.read(str(wav))
    assert sr == 16000 and x.ndim == 1 and len(x) > 16000
    data = json.loads((tmp_path / "h.json").read_text())
    assert data["engine"] == "espeak" and [w["text"] for w in data["words"]][:2] == ["hello", "there"]
    assert "-->" in (tmp_path / "h.srt").read_text()

    assert main(["speak", "--transcribe", str(wav)]) == 0
    assert "hello" in capsys.readouterr().out.lower()

    npy = tmp_path / "code.npy"
    assert main(["speak", "--features", str(wav), "-o", str(npy), "--kind", "mel"]) == 0
    code = np.load(npy)
    assert code.shape == (round(len(x) / 16000 * 25), 32, 80) and code.dtype == np.float32


def test_list_voices_offline(capsys, monkeypatch):
    from emotalk.speech import tts_edge

    monkeypatch.setattr(tts_edge, "network_reachable", lambda *a, **k: "offline (test)")
    assert main(["speak", "--list-voices"]) == 0
    out = capsys.readouterr().out
    assert "en-US-AriaNeural" in out and "en_US-joe-medium" in out and "fr-FR" not in out


def test_errors_are_one_line(tmp_path, capsys):
    assert main(["speak", "--text", "😀😀", "-o", str(tmp_path / "x.wav")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no words" in err and "Traceback" not in err
    assert main(["speak", "--text", "Hi there.", "-o", str(tmp_path / "x.mp3")]) == 1
    assert ".wav" in capsys.readouterr().err
    assert main(["speak", "--features", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "c.npy")]) == 1
    assert "Traceback" not in capsys.readouterr().err


@needs_espeak
def test_speak_keeps_the_text_local_by_default(tmp_path, capsys, monkeypatch):
    """No --engine: an offline voice speaks; the online service is used only when chosen."""
    from emotalk.speech import tts_edge, tts_offline

    def no_network(*a, **k):
        raise AssertionError("the text was about to be sent online")

    monkeypatch.setattr(tts_edge, "network_reachable", no_network)
    monkeypatch.setattr(tts_offline, "piper_available", lambda: "piper missing (test)")
    assert main(["speak", "--text", "Hello there.", "--no-align", "-o", str(tmp_path / "x.wav")]) == 0
    out = capsys.readouterr().out
    assert "engine: espeak" in out and "fallback: piper: piper missing (test)" in out
