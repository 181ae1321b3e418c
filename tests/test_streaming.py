"""Streamed renders (issue 18): segments that play, add up to the whole clip and equal `synthesize`;
typed text spoken sentence by sentence; the emotion steered mid-stream; the CLI's --stream."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from emotalk import media, pipeline
from emotalk.media.segments import Segment, encode_segment, playlist_text
from emotalk.pipeline import RenderRequest
from emotalk.render.stream import EmotionSteer, prefetch
from emotalk.speech.textnorm import split_sentences
from tests.conftest import REPO, shared


@pytest.fixture
def home(tiny_identity, tmp_path, monkeypatch):
    """A user folder holding the tiny identity."""
    import shutil

    monkeypatch.setenv("EMOTALK_HOME", str(tmp_path / "home"))
    shutil.copytree(tiny_identity, pipeline.user_dir() / "may-tiny")


@pytest.fixture
def speech(tmp_path):
    """1.6 s of real speech as a wav (a short clip keeps the CPU render small)."""
    wav = media.read_audio(shared("audio/speech_obama_5s.wav"))[: int(1.6 * media.SR)]
    return media.write_wav(tmp_path / "speech.wav", wav)


def _stream(req, workdir, **kw):
    parts = list(pipeline.synthesize_stream(req, workdir, **kw))
    assert all(isinstance(p, Segment) for p in parts[:-1]) and not isinstance(parts[-1], Segment)
    return parts[:-1], parts[-1]


# ---- units (no identity) ----------------------------------------------------------------------


def test_a_segment_is_a_playable_ts_with_sound_placed_in_the_clip(tmp_path):
    frames = (np.random.default_rng(0).random((7, 32, 32, 3)) * 255).astype(np.uint8)
    p = encode_segment(tmp_path / "s.ts", frames, 25.0, np.zeros(4000, np.float32), start_s=2.0)
    info = media.probe(p)
    assert (info.video_codec, info.audio_codec, info.fps) == ("h264", "aac", 25.0)
    assert len(media.read_frames(p)) == 7
    text = playlist_text([Segment(p, 0, 50, 7, 25.0)], ended=True)
    assert "#EXTINF:0.280," in text and text.rstrip().endswith("#EXT-X-ENDLIST") and "s.ts" in text


def test_sentences_are_split_at_stops_and_long_ones_at_commas():
    assert split_sentences("Hello there. How are you? Fine!") == ["Hello there.", "How are you?", "Fine!"]
    long = "word, " * 100
    assert all(len(s) <= 400 for s in split_sentences(long)) and len(split_sentences(long)) == 2


def test_the_steer_keeps_the_plan_until_the_live_value_changes_then_ramps_to_it():
    live = {"va": (0.0, 0.0)}
    steer = EmotionSteer(lambda: live["va"], intensity=0.5, ramp=4)
    plan = np.tile(np.float32([[0.2, 0.1]]), (3, 1))
    assert np.array_equal(steer(plan), plan)  # the start value is no change: a track plays as planned
    live["va"] = (0.8, 0.0)
    out = steer(plan)
    assert np.allclose(out[:, 0], [0.2 + 0.2 * 0.25 * k for k in (1, 2, 3)])  # ramps from the last frame
    assert np.allclose(steer(plan)[:, 0], 0.4)  # then holds 0.8 x intensity 0.5
    gain = np.float32([[0.0, 0.0, 1.3]] * 2)  # a [b,3] plan keeps its gain column, no intensity applied
    live["va"] = (0.0, 0.6)
    out = EmotionSteer(lambda: live["va"], 0.5, ramp=1)(gain)
    assert np.allclose(out, gain)


def test_prefetch_keeps_order_and_raises_the_producers_error_in_place():
    def items():
        yield 1
        yield 2
        raise ValueError("bad sentence")

    got = []
    with pytest.raises(ValueError, match="bad sentence"):
        for x in prefetch(items()):
            got.append(x)
    assert got == [1, 2]


# ---- through the pipeline (tiny identity, 64 px) -----------------------------------------------


@pytest.mark.slow
def test_segments_play_add_up_and_the_final_mp4_equals_synthesize(home, speech, tmp_path):
    req = RenderRequest(identity="may-tiny", audio=str(speech), size=64, watermark=False)
    segs, res = _stream(req, tmp_path / "s", chunk_s=0.5)
    whole = pipeline.synthesize(req, tmp_path / "w")
    assert len(segs) >= 3 and segs[0].n_frames == 10 and segs[1].n_frames == 12  # 0.4 s first, then 0.5
    counts = [len(media.read_frames(s.path)) for s in segs]
    assert counts == [s.n_frames for s in segs] and sum(counts) == res.n_frames == whole.n_frames
    assert [s.start_frame for s in segs] == list(np.cumsum([0] + counts[:-1]))
    for s in segs:
        info = media.probe(s.path)
        assert (info.video_codec, info.audio_codec, info.width) == ("h264", "aac", 64)
    a, b = media.probe(res.video), media.probe(whole.video)
    assert abs(a.duration - b.duration) < 0.02 and a.audio_rate == b.audio_rate
    streamed = np.concatenate([media.read_frames(s.path) for s in segs]).astype(int)
    final = media.read_frames(res.video).astype(int)
    assert np.array_equal(final, media.read_frames(whole.video).astype(int))  # same frames as synthesize
    assert np.abs(streamed - final).mean() < 3  # the segments show them (another encode)


@pytest.mark.slow
def test_typed_text_is_spoken_sentence_by_sentence(home, tmp_path, monkeypatch):
    from emotalk.pipeline import render
    from emotalk.speech.tts import TTSResult

    spoken = []

    def fake_tts(text, voice, arousal, engine, progress=None):
        spoken.append(text)
        wav = 0.1 * np.sin(np.arange(int(0.5 * media.SR)) * 0.05).astype(np.float32)
        return TTSResult(wav, "espeak", "en-us", text, []), None

    monkeypatch.setattr(render, "_tts", fake_tts)
    req = RenderRequest(identity="may-tiny", text="One. Two. Three.", size=64, watermark=False)
    segs, res = _stream(req, tmp_path / "s", chunk_s=1.0)
    assert spoken == ["One.", "Two.", "Three."]
    n = round(0.75 * 25) * 2 + round(0.5 * 25)  # each sentence, a pause after all but the last
    assert res.n_frames == n == sum(s.n_frames for s in segs)
    assert [s.n_frames for s in segs][:2] == [10, 9]  # the first 0.4 s alone, then the rest of sentence 1
    assert abs(media.probe(res.video).duration - n / 25) < 0.05 and res.tts_engine == "espeak (en-us)"


@pytest.mark.slow
def test_an_emotion_change_mid_stream_changes_later_segments_only(home, speech, tmp_path, monkeypatch):
    import emotalk.render.frames as frames_mod

    emotions = []
    real = frames_mod.render_frames

    def spy(*a, **kw):
        emotions.append(np.array(kw["emotion"]))
        return real(*a, **kw)

    monkeypatch.setattr(frames_mod, "render_frames", spy)
    req = RenderRequest(identity="may-tiny", audio=str(speech), size=64, watermark=False)
    plain, _ = _stream(req, tmp_path / "a", chunk_s=0.5)
    live = {"va": (0.0, 0.0)}
    steered = []
    emotions.clear()
    for part in pipeline.synthesize_stream(req, tmp_path / "b", chunk_s=0.5, emotion=lambda: live["va"]):
        steered.append(part)
        live["va"] = (-0.7, 0.6)  # moved on the pad while the first segment plays
    steered = steered[:-1]
    assert np.allclose(emotions[0][:, :2], 0) and np.allclose(emotions[-1][-1, :2], [-0.7, 0.6], atol=1e-5)
    a0, b0 = media.read_frames(plain[0].path), media.read_frames(steered[0].path)
    assert np.array_equal(a0, b0)  # what already played is untouched
    late = [np.abs(media.read_frames(p.path).astype(int) - media.read_frames(q.path)).mean()
            for p, q in zip(plain[1:], steered[1:], strict=True)]
    assert max(late) > 0.5, late  # the rest shows the new emotion


@pytest.mark.slow
def test_the_cli_streams_segments_and_a_playlist_and_writes_the_mp4(home, speech, tmp_path):
    out, seg_dir = tmp_path / "out.mp4", tmp_path / "live"
    r = subprocess.run([sys.executable, "-m", "emotalk", "render", "may-tiny", "--audio", str(speech),
                        "--size", "64", "-o", str(out), "--stream", str(seg_dir), "--chunk", "0.5"],
                       capture_output=True, text=True, timeout=600, cwd=REPO)
    assert r.returncode == 0, r.stderr[-2000:]
    segs = sorted(seg_dir.glob("seg_*.ts"))
    playlist = (seg_dir / "playlist.m3u8").read_text()
    assert len(segs) >= 3 and all(s.name in playlist for s in segs) and "#EXT-X-ENDLIST" in playlist
    n = media.probe(out).duration * 25
    assert sum(len(media.read_frames(s)) for s in segs) == round(n)
    piped = subprocess.run([sys.executable, "-m", "emotalk", "render", "may-tiny", "--audio", str(speech),
                            "--size", "64", "-o", str(tmp_path / "o2.mp4"), "--stream", "-"],
                           capture_output=True, timeout=600, cwd=REPO)
    assert piped.returncode == 0 and piped.stdout[:1] == b"\x47"  # MPEG-TS on stdout, nothing else
    (tmp_path / "piped.ts").write_bytes(piped.stdout)
    assert _decoded_frames(tmp_path / "piped.ts") == round(n)  # every frame, as a player shows them


def _decoded_frames(path) -> int:
    """Frames a player decodes from `path` (no resampling to a frame rate, unlike media.read_frames)."""
    import re

    r = subprocess.run([media.ffmpeg_exe(), "-nostdin", "-i", str(path), "-map", "0:v", "-f", "null", "-"],
                       capture_output=True, text=True, timeout=120)
    return int(re.findall(r"frame=\s*(\d+)", r.stderr)[-1])


def test_the_app_streams_segments_then_the_mp4_and_the_sliders_steer_the_running_stream(tmp_path,
                                                                                      monkeypatch):
    pytest.importorskip("gradio")
    from types import SimpleNamespace

    from emotalk.ui import handlers, streaming

    seen = []

    def fake_stream(req, workdir, progress=None, live=None):
        seen.append(live())
        yield Segment(tmp_path / "seg_00000.ts", 0, 0, 10, 25.0)
        streaming.steer(-0.5, 0.4, SimpleNamespace(session_hash="s1"))  # the pad moved meanwhile
        seen.append(live())
        yield Segment(tmp_path / "seg_00001.ts", 1, 10, 25, 25.0)
        yield "the result"

    req = RenderRequest(identity="x", text="Hi.", valence=0.2, arousal=0.1)
    monkeypatch.setattr(streaming, "_stream", fake_stream)
    monkeypatch.setattr(handlers, "checked_request", lambda *a: (req, 3.0))
    monkeypatch.setattr(handlers, "request_dir", lambda: tmp_path)
    monkeypatch.setattr(handlers, "result_outputs", lambda r, w, result, spoken: (result, "wav", [], "notes"))
    out = list(streaming.generate("x", request=SimpleNamespace(session_hash="s1"),
                                  progress=lambda *a, **k: None))
    assert [o[0] for o in out[:2]] == [str(tmp_path / "seg_00000.ts"), str(tmp_path / "seg_00001.ts")]
    assert out[-1][1:] == ("the result", "wav", [], "notes")
    assert seen == [(0.2, 0.1), (-0.5, 0.4)]
    streaming.steer(0.9, 0.0, SimpleNamespace(session_hash="s1"))  # no stream running: nothing kept
    assert streaming._LIVE == {}


@pytest.mark.slow
def test_a_long_upload_finds_its_phones_piece_by_piece_and_streams_the_same_frames(home, tmp_path,
                                                                                  monkeypatch):
    """An upload longer than a first piece: phones are asked for each piece (the first at most 4 s, so a
    stream starts early), cuts fall in its pauses, and the stream's frames still equal `synthesize`."""
    from emotalk.render import speech_lips

    real = media.read_audio(shared("audio/speech_obama_5s.wav"))
    wav = np.concatenate([real[: int(3.0 * media.SR)], np.zeros(int(0.4 * media.SR), np.float32),
                          real[: int(3.5 * media.SR)]])
    path = media.write_wav(tmp_path / "long.wav", wav)
    asked = []

    def fake_phones(piece, text=None, **kw):
        asked.append(len(piece) / media.SR)
        return None

    monkeypatch.setattr(speech_lips, "speech_phones", fake_phones)
    req = RenderRequest(identity="may-tiny", audio=str(path), size=32, watermark=False)
    segs, res = _stream(req, tmp_path / "s", chunk_s=1.0)
    assert len(asked) == 2 and asked[0] <= 4.0 and 3.0 <= asked[0] <= 3.4  # cut inside the pause
    assert abs(sum(asked) - len(wav) / media.SR) < 0.05
    whole = pipeline.synthesize(req, tmp_path / "w")
    assert res.n_frames == whole.n_frames == sum(s.n_frames for s in segs) == round(len(wav) / media.SR * 25)
    final = media.read_frames(res.video).astype(int)
    assert np.array_equal(final, media.read_frames(whole.video).astype(int))


def test_a_long_uploads_keyframes_are_checked_against_the_whole_recording(home, tmp_path, monkeypatch):
    from emotalk.errors import InputError
    from emotalk.render import speech_lips

    real = media.read_audio(shared("audio/speech_obama_5s.wav"))
    path = media.write_wav(tmp_path / "long.wav", np.concatenate([real, real[: int(2 * media.SR)]]))
    monkeypatch.setattr(speech_lips, "speech_phones", lambda *a, **k: None)
    req = RenderRequest(identity="may-tiny", audio=str(path), size=32, watermark=False,
                        emotion_track=[(0.0, 0.0, 0.0), (30.0, 0.5, 0.5)])
    with pytest.raises(InputError, match="after the end of the speech"):
        pipeline.synthesize(req, tmp_path / "w")
