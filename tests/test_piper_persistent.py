"""The kept Piper process (emotalk.speech.piper_process): one process serves many texts, a hung or dead
one gives a clear error and is replaced, concurrent callers get their own audio, and nothing outlives
close_all. Most tests drive a tiny fake Piper (same protocol: a line in, a WAV in -d DIR, "Wrote PATH"
on stderr); the last one runs the real voice when piper-tts is installed."""

from __future__ import annotations

import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from emotalk.errors import MediaError
from emotalk.speech import piper_process as pp

FAKE = textwrap.dedent('''
    import sys, wave, time, numpy as np
    out = sys.argv[sys.argv.index("-d") + 1]
    print("INFO:fake:loaded", file=sys.stderr, flush=True)
    for n, line in enumerate(sys.stdin):
        line = line.strip()
        if not line:
            continue
        if "HANG" in line:
            time.sleep(120)
        if "DIE" in line:
            print("RuntimeError: fake voice broke", file=sys.stderr, flush=True)
            sys.exit(3)
        k = 2205 * len(line.split())  # 0.1 s at 22.05 kHz per word
        x = (8000 * np.sin(np.arange(k) * 0.1)).astype("<i2")
        path = f"{out}/{n}.wav"
        with wave.open(path, "wb") as w:
            w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050); w.writeframes(x.tobytes())
        print(f"INFO:__main__:Wrote {path}", file=sys.stderr, flush=True)
''')

FAST = pp.PiperTimeouts(load_s=20.0, base_s=2.0, per_char_s=0.0)  # a hang is noticed in ~2 s


@pytest.fixture
def fake_cmd(tmp_path):
    script = tmp_path / "fake_piper.py"
    script.write_text(FAKE)
    yield [sys.executable, str(script)]
    pp.close_all()


def _words_s(wav: np.ndarray) -> float:
    return len(wav) / 16000 / 0.1  # the fake speaks 0.1 s per word


def test_one_process_serves_consecutive_texts(fake_cmd):
    p = pp.PiperProcess(fake_cmd, FAST)
    starts = pp.STATS["starts"]
    a = p.speak("one two three")
    pid = p.pid
    b = p.speak("four five\nsix seven")  # a newline stays inside one line
    assert pp.STATS["starts"] == starts + 1 and p.pid == pid
    assert round(_words_s(a)) == 3 and round(_words_s(b)) == 4
    assert a.dtype == np.float32 and 0.1 < np.abs(a).max() <= 1.0
    assert list(p.outdir.iterdir()) == []  # each WAV is removed once read
    outdir = p.outdir
    p.close()
    assert not p.alive() and not outdir.exists()


def test_hung_process_times_out_and_is_replaced(fake_cmd):
    p = pp.PiperProcess(fake_cmd, FAST)
    p.speak("warm up")
    old = p.proc
    t = time.monotonic()
    with pytest.raises(pp.EngineUnavailable, match="took longer than 2 s") as e:
        p.speak("please HANG now")
    assert isinstance(e.value, MediaError)  # an emotalk.errors error: shown without a traceback
    assert time.monotonic() - t < 8
    assert old.poll() is not None  # the hung child was killed and reaped
    assert round(_words_s(p.speak("back again"))) == 2 and p.proc is not old


def test_dead_process_says_why_and_is_replaced(fake_cmd):
    p = pp.PiperProcess(fake_cmd, FAST)
    p.speak("hello")
    old = p.proc
    with pytest.raises(pp.EngineUnavailable, match=r"exit 3: RuntimeError: fake voice broke"):
        p.speak("DIE")
    assert old.poll() == 3
    old.kill()  # already gone: only to be sure nothing is left
    assert round(_words_s(p.speak("alive once more"))) == 3 and p.proc is not old


def test_empty_text_is_refused(fake_cmd):
    with pytest.raises(pp.EngineUnavailable, match="no text"):
        pp.PiperProcess(fake_cmd, FAST).speak(" \n ")


def test_two_threads_each_get_their_own_audio(fake_cmd):
    p = pp.PiperProcess(fake_cmd, FAST)
    got: dict[int, float] = {}

    def say(n: int) -> None:
        for _ in range(3):
            got.setdefault(n, 0)
            got[n] += round(_words_s(p.speak(" ".join(["w"] * n))))

    threads = [threading.Thread(target=say, args=(n,)) for n in (2, 5)]
    [t.start() for t in threads]
    [t.join(30) for t in threads]
    assert got == {2: 6, 5: 15}


def test_pool_reuses_per_command_and_evicts_the_oldest(fake_cmd, monkeypatch):
    monkeypatch.setattr(pp, "MAX_PROCESSES", 2)
    a = pp.process_for(fake_cmd + ["--length-scale", "1.000"])
    assert pp.process_for(fake_cmd + ["--length-scale", "1.000"]) is a
    a.speak("first")
    b = pp.process_for(fake_cmd + ["--length-scale", "0.800"])
    b.speak("second")
    c = pp.process_for(fake_cmd + ["--length-scale", "0.900"])  # a (the oldest) goes
    assert not a.alive() and b.alive() and c is not a
    pp.close_all()
    assert not b.alive()


def test_real_piper_loads_the_voice_once():
    from emotalk.speech import tts_offline

    why = tts_offline.piper_available()
    if why:
        pytest.skip(why)
    try:
        cmd = tts_offline.piper_command(0.0)
    except pp.EngineUnavailable as e:
        pytest.skip(str(e))
    pp.close_all()
    starts = pp.STATS["starts"]
    try:
        a = tts_offline.speak_piper("Hello there.")
        pid = pp.process_for(cmd).pid
        b = tts_offline.speak_piper("It is a calm day. We talk.")  # two sentences, one line, a pause
        assert pp.STATS["starts"] == starts + 1 and pp.process_for(cmd).pid == pid
        for w in (a, b):
            assert w.dtype == np.float32 and np.sqrt(np.mean(w ** 2)) > 0.01
        assert 0.4 < len(a) / 16000 < 3.0 and len(b) > len(a)
        tts_offline.speak_piper("Faster now.", rate=25.0)  # another rate: its own process
        assert pp.STATS["starts"] == starts + 2
    finally:
        pp.close_all()
    assert pp.process_for(cmd).pid is None


def test_interpreter_exit_stops_the_child_and_removes_its_folder(fake_cmd):
    """No orphan, zombie or temp folder once the Python that kept Piper exits (atexit close_all)."""
    import os
    import subprocess
    from pathlib import Path

    code = ("import sys; from emotalk.speech import piper_process as pp; p = pp.process_for(sys.argv[1:]); "
            "p.speak('a b'); q = pp.PiperProcess(sys.argv[1:]); q.speak('c'); "
            "print(p.pid, p.outdir, q.pid, q.outdir)")
    out = subprocess.run([sys.executable, "-c", code, *fake_cmd], capture_output=True, text=True, timeout=60,
                         check=True).stdout.split()
    for pid, folder in zip(out[0::2], out[1::2]):
        assert not Path(folder).exists()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"Piper child {pid} outlived its parent")


def test_missing_program_is_a_clear_error(tmp_path):
    p = pp.PiperProcess([str(tmp_path / "no-such-piper")], FAST)
    with pytest.raises(pp.EngineUnavailable, match="could not start"):
        p.speak("hello")
    assert p.outdir is None and not p.alive()
