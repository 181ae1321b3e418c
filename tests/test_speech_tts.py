"""TTS: text checks, the engine choice (offline unless the online voice is chosen), the fallback chain
(edge-tts faked online and offline), offline engines."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import numpy as np
import pytest

from emotalk.errors import InputError, MediaError
from emotalk.speech import tts, tts_edge, tts_offline
from emotalk.speech.tts import EXPRESSIVE, OFFLINE, TTSSettings, text_to_speech

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed "
                                  "(apt-get install espeak-ng; listed in apt-packages.txt)")
ESPEAK = TTSSettings(engines=("espeak",), align=False)


@pytest.mark.parametrize("text,match", [
    ("", "empty"), ("   \n\t ", "empty"), ("😀🎉👍", "no words"), ("?!... ---", "no words"),
    ("Привет, как дела?", "Latin"), ("你好世界", "Latin"), ("x" * 2001, "limit"), (None, "string"),
])
def test_refuses_bad_text(text, match):
    with pytest.raises(InputError, match=match):
        text_to_speech(text, OFFLINE)


def test_refuses_a_language_no_offline_voice_speaks():
    with pytest.raises(InputError, match="English only"):
        text_to_speech("Bonjour tout le monde.", TTSSettings(engines=("piper", "espeak"), language="fr"))


def test_other_language_only_online(monkeypatch):
    monkeypatch.setattr(tts_edge, "network_reachable", lambda *a, **k: "cannot reach the host (test)")
    with pytest.raises(MediaError, match="Only the online voices speak 'de'"):
        text_to_speech("Guten Tag.", TTSSettings(voice="de-DE-KatjaNeural"))


def test_list_voices_online_faked(monkeypatch):
    import edge_tts

    async def fake_list():
        return [{"ShortName": n} for n in ("en-GB-SoniaNeural", "en-US-GuyNeural", "fr-FR-HenriNeural")]

    monkeypatch.setattr(tts_edge, "network_reachable", lambda *a, **k: None)
    monkeypatch.setattr(edge_tts, "list_voices", fake_list)
    assert tts_edge.list_voices("en") == ["en-GB-SoniaNeural", "en-US-GuyNeural"]
    assert len(tts_edge.list_voices()) == 3


def test_bad_prosody_and_engine():
    with pytest.raises(InputError, match="voice name"):
        text_to_speech("Hello.", TTSSettings(voice="Guy"))
    with pytest.raises(InputError, match="Rate"):
        text_to_speech("Hello.", TTSSettings(rate=300))
    with pytest.raises(InputError, match="engine"):
        text_to_speech("Hello.", TTSSettings(engines=("festival",)))


def test_network_probe_is_bounded(monkeypatch):
    def hang(*a, **k):  # a black-holed connection: nothing for a long time, then a timeout
        time.sleep(4)
        raise TimeoutError("timed out")

    monkeypatch.setattr(tts_edge.socket, "create_connection", hang)
    t0 = time.perf_counter()
    why = tts_edge.network_reachable(timeout_s=1.0)
    assert time.perf_counter() - t0 < 1.5
    assert why and "no answer" in why


@needs_espeak
def test_offline_fallback_within_two_seconds(monkeypatch):
    """No network (DNS fails at once, as here) -> the next engine speaks, and the result says why."""
    def no_dns(*a, **k):
        raise OSError(-2, "Name or service not known")

    monkeypatch.setattr(tts_edge.socket, "create_connection", no_dns)
    t0 = time.perf_counter()
    res = text_to_speech("Hello there.", TTSSettings(engines=("edge", "espeak"), align=False))
    assert time.perf_counter() - t0 < 2.0 + 3.0  # fallback decision + espeak
    assert res.engine == "espeak" and res.fallbacks[0][0] == "edge"
    assert "offline" in res.fallback_reason and "espeak" in res.summary()


class _FakeCommunicate:
    """Stands in for edge_tts.Communicate: yields the given chunks (or hangs)."""

    chunks: list = []
    hang = False
    seen: list = []

    def __init__(self, text, voice, **kw):
        _FakeCommunicate.seen.append((text, voice, kw))

    async def stream(self):
        if _FakeCommunicate.hang:
            await asyncio.sleep(100)
        for c in _FakeCommunicate.chunks:
            yield c


@pytest.fixture
def mp3_speech(tmp_path):
    """An mp3 of espeak saying 'hello world' (what the online service would send)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    from emotalk.media import ffmpeg_exe

    wav = tmp_path / "s.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "hello world"], check=True, timeout=30)
    mp3 = tmp_path / "s.mp3"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(wav), "-ar", "24000", str(mp3)], check=True,
                   timeout=60)
    return mp3.read_bytes()


def test_edge_success_faked(monkeypatch, mp3_speech):
    import edge_tts

    monkeypatch.setattr(tts_edge, "network_reachable", lambda *a, **k: None)
    monkeypatch.setattr(edge_tts, "Communicate", _FakeCommunicate)
    half = len(mp3_speech) // 2
    _FakeCommunicate.hang, _FakeCommunicate.seen = False, []
    _FakeCommunicate.chunks = [
        {"type": "WordBoundary", "offset": 1_000_000, "duration": 3_500_000, "text": "hello"},
        {"type": "audio", "data": mp3_speech[:half]},
        {"type": "WordBoundary", "offset": 5_000_000, "duration": 4_000_000, "text": "world"},
        {"type": "audio", "data": mp3_speech[half:]},
    ]
    res = text_to_speech("Hello world.", TTSSettings(voice="en-US-GuyNeural", rate=10, pitch=-5))
    assert res.engine == "edge" and res.voice == "en-US-GuyNeural" and res.fallback_reason is None
    assert [(w.text, w.start, w.end) for w in res.words] == [("hello", 0.1, 0.45), ("world", 0.5, 0.9)]
    assert res.phones and res.duration > 0.5 and res.wav.dtype == np.float32
    text, voice, kw = _FakeCommunicate.seen[0]
    assert voice == "en-US-GuyNeural" and kw["rate"] == "+10%" and kw["pitch"] == "-5Hz"
    assert kw["boundary"] == "WordBoundary"
    assert "00:00:00,100 --> 00:00:00,900\nHello world." in res.srt()


@needs_espeak
def test_edge_failures_fall_back(monkeypatch):
    import edge_tts

    monkeypatch.setattr(tts_edge, "network_reachable", lambda *a, **k: None)
    monkeypatch.setattr(edge_tts, "Communicate", _FakeCommunicate)
    _FakeCommunicate.hang = True  # connected, then no answer
    t0 = time.perf_counter()
    res = text_to_speech("Hello.", TTSSettings(engines=("edge", "espeak"), connect_timeout_s=1.0,
                                               align=False))
    assert time.perf_counter() - t0 < 4.0 + 3.0  # connect + first-answer bound, then espeak
    assert res.engine == "espeak" and "stopped answering" in res.fallback_reason
    _FakeCommunicate.hang, _FakeCommunicate.chunks = False, []  # answers with no audio
    res = text_to_speech("Hello.", TTSSettings(engines=("edge", "espeak"), align=False))
    assert res.engine == "espeak" and "no audio" in res.fallback_reason


def test_all_engines_failing_is_an_error(monkeypatch):
    monkeypatch.setattr(tts_edge, "network_reachable", lambda *a, **k: "offline (test)")
    monkeypatch.setattr(tts_offline, "piper_available", lambda: "piper missing (test)")
    monkeypatch.setattr(tts_offline, "espeak_available", lambda: "espeak missing (test)")
    with pytest.raises(MediaError, match="piper missing") as e:
        text_to_speech("Hello.", tts.ONLINE)
    assert "espeak missing" in str(e.value) and "edge: offline: offline (test)" in str(e.value)


def _no_network(*a, **k):
    raise AssertionError("the text was about to be sent to the online voice service")


@needs_espeak
def test_default_keeps_the_text_on_this_machine(monkeypatch):
    """No engine chosen: Piper, else espeak-ng; the online service is never contacted."""
    monkeypatch.setattr(tts_edge, "network_reachable", _no_network)
    monkeypatch.setattr(tts_offline, "piper_available", lambda: "piper missing (test)")
    res = text_to_speech("Hello there.", TTSSettings(align=False))
    assert res.engine == "espeak" and res.fallbacks == [("piper", "piper missing (test)")]
    with pytest.raises(AssertionError, match="online voice service"):  # naming an online voice chooses it
        text_to_speech("Hello there.", TTSSettings(voice="en-US-GuyNeural", align=False))


def test_engine_choice_and_labels():
    assert tts.ENGINES[0] == "piper" and set(tts.ENGINES) == set(tts.ENGINE_LABELS)
    assert "online service" in tts.ENGINE_LABELS["edge"]
    assert not any("online" in tts.ENGINE_LABELS[e] for e in tts.OFFLINE_ENGINES)
    assert tts.engine_chain("edge") == ("edge", "piper", "espeak")
    assert tts.engine_chain("espeak") == ("espeak", "piper")  # a chosen offline engine never goes online
    assert tts.settings_for().engines == ("piper", "espeak")
    assert tts.settings_for(voice="offline:espeak").engines == ("espeak", "piper")
    s = tts.settings_for(voice="en-US-GuyNeural")
    assert s.engines[0] == "edge" and s.voice == "en-US-GuyNeural"
    with pytest.raises(InputError, match="Unknown TTS engine"):
        tts.engine_chain("festival")
    with pytest.raises(InputError, match="online voice"):
        tts.settings_for("piper", "en-US-GuyNeural")


@needs_espeak
def test_espeak_long_text_and_arousal():
    text = "This is the first sentence. " * 6 + "And this is the last one!"
    calm = text_to_speech(text, ESPEAK, arousal=-1.0)
    assert calm.engine == "espeak" and calm.rate == 0.0  # arousal prosody is off by default
    s = TTSSettings(engines=("espeak",), align=False, arousal_prosody=True)
    fast = text_to_speech(text, s, arousal=1.0)
    slow = text_to_speech(text, s, arousal=-1.0)
    assert fast.rate == EXPRESSIVE.arousal_rate and slow.rate == -EXPRESSIVE.arousal_rate
    assert fast.duration < 0.9 * slow.duration


@needs_espeak
def test_espeak_words_and_phones_by_alignment():
    res = text_to_speech("Bob bought a map. 😀", TTSSettings(engines=("espeak",)))
    assert res.text == "Bob bought a map."
    assert [w.text for w in res.words] == ["bob", "bought", "a", "map"]
    assert {"B", "M", "P"} <= {p.phone for p in res.phones}
    assert res.phones[-1].end <= res.duration + 0.05
    srt = res.srt()
    assert "Bob bought a map." in srt  # subtitles keep the written spelling


@pytest.mark.slow
def test_piper_speaks_offline(monkeypatch):
    if tts_offline.piper_available():
        pytest.skip(tts_offline.piper_available())
    monkeypatch.setattr(tts_edge, "network_reachable", lambda *a, **k: "offline (test)")
    res = text_to_speech("The quick brown fox jumps over the lazy dog.", tts.ONLINE)
    assert res.engine == "piper" and res.voice == "en_US-joe-medium"
    assert "offline" in res.fallback_reason
    res = text_to_speech("The quick brown fox jumps over the lazy dog.", tts.DEFAULT)
    assert res.engine == "piper" and res.fallback_reason is None  # the default: no fallback to report
    assert 1.5 < res.duration < 6 and len(res.words) == 9
    from emotalk.speech.align import transcribe

    assert "fox" in transcribe(res.wav).text.lower()  # intelligible, not garbage
