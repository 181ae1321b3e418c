"""The clip check (`emotalk.dataset.clip_check`, `python -m emotalk check`): real clips from ../shared/data
are accepted with the right measures; clips that cannot work are refused with a reason and a fix, never
with a traceback."""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest

from emotalk import media
from emotalk.dataset.clip_check import ClipReport, check_clip
from emotalk.errors import InputError
from tests.conftest import shared

MAY = "clips/may_5s_512px_25fps.mp4"


def _topics(rep: ClipReport, level: str) -> list[str]:
    return [f.topic for f in rep.findings if f.level == level]


@pytest.fixture(scope="module")
def may():
    """The shared 5 s clip's frames [T,512,512,3] and 16 kHz audio."""
    p = shared(MAY)
    return media.read_frames(p, 25.0), media.read_audio(p)


@pytest.fixture(scope="module")
def clips(tmp_path_factory, may):
    """Bad clips made from the shared 5 s clip (lossless enough for the checks), by name."""
    import cv2

    frames, wav = may
    out = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    shake = [np.roll(f, tuple(rng.integers(-14, 15, 2)), axis=(0, 1)) for f in frames]
    made = {
        "two_faces": (np.concatenate([frames, frames[:, :, ::-1]], axis=2), wav),
        "small_face": (np.stack([cv2.resize(f, (176, 176), interpolation=cv2.INTER_AREA) for f in frames]),
                       wav),
        "silent": (frames, np.zeros_like(wav)),
        "no_audio": (frames, None),
        "short": (frames[:50], wav[: 2 * media.SR]),
        "dark": ((frames * 0.15).astype(np.uint8), wav),
        "bright": (np.clip(frames * 2.5, 0, 255).astype(np.uint8), wav),
        "shaky": (np.stack(shake), wav),
    }
    paths = {}
    for name, (fr, audio) in made.items():
        paths[name] = media.write_video(out / f"{name}.mp4", fr, 25.0, audio=audio)
    return paths


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (ffmpeg): unlike wall time, not inflated when
    other jobs share the machine."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def test_real_clip_is_ready_with_measures_in_seconds():
    """The ~50 s shared clip: every check ok, one face of ~250 px, speech, in sync, and cheap."""
    clip = shared("clips/macron_address_50s_512px_30fps.mp4")
    t0, c0 = time.monotonic(), _cpu_seconds()
    rep = check_clip(clip)
    took, cpu = time.monotonic() - t0, _cpu_seconds() - c0
    assert rep.ok, rep.markdown()
    assert _topics(rep, "warning") == [] and _topics(rep, "unsure") == [], rep.markdown()
    assert (rep.width, rep.height, round(rep.fps)) == (512, 512, 30)
    assert 50 < rep.duration_s < 51
    assert rep.sampled_frames >= 20 and rep.face_frac == 1.0
    assert 200 < rep.face_px < 300
    assert 0.3 < rep.voiced_frac < 0.8
    assert rep.av_sure and abs(rep.av_offset_frames) <= 1
    assert rep.jitter < 0.01 and rep.wander < 0.2
    # target: 5 s wall on an idle 2-core CPU, i.e. at most 10 CPU seconds (cold imports included)
    assert cpu < 10, f"the check used {cpu:.1f} CPU s ({took:.1f} s wall)"
    md = rep.markdown()
    assert md.startswith(f"**{clip.name}: ready**") and "refused" not in md


def test_audio_late_clip_is_warned_about():
    """The shared clip whose audio is ~7 frames late (its manifest) gets an AV-sync warning with a fix."""
    rep = check_clip(shared("clips_more/liveportrait_youngman_zh_7s_480px_25fps.mp4"))
    assert rep.ok
    assert rep.av_sure and 5 <= rep.av_offset_frames <= 9, rep.markdown()
    sync = next(f for f in rep.findings if f.topic == "AV sync")
    assert sync.level == "warning" and "late" in sync.text and sync.fix


@pytest.mark.parametrize("name, topic, words", [
    ("two_faces", "faces", "two or more faces"),
    ("small_face", "faces", "too small"),
    ("silent", "audio", "silent"),
    ("no_audio", "audio", "no audio track"),
    ("short", "duration", "at least 4 s"),
])
def test_clips_that_cannot_work_are_refused_with_the_reason(clips, name, topic, words):
    rep = check_clip(clips[name])
    assert not rep.ok
    assert topic in _topics(rep, "refused"), rep.markdown()
    assert any(words in r for r in rep.reasons()), rep.reasons()
    assert f"**{clips[name].name}: refused**" in rep.markdown()
    with pytest.raises(InputError, match="cannot make an identity"):
        rep.raise_if_refused()


@pytest.mark.parametrize("name, topic", [("dark", "lighting"), ("bright", "lighting"), ("shaky", "jitter")])
def test_poor_conditions_are_warnings_with_a_fix(clips, name, topic):
    rep = check_clip(clips[name])
    assert rep.ok, rep.markdown()
    warn = [f for f in rep.findings if f.level == "warning"]
    assert topic in [f.topic for f in warn], rep.markdown()
    assert all(f.fix for f in warn)
    line = next(ln for ln in rep.markdown().splitlines() if ln.startswith(f"- **[warning]** {topic}:"))
    assert "*Fix:*" in line


def test_corrupt_and_faceless_clips_are_refused_without_a_traceback(tmp_path, clips):
    """Random bytes named .mp4, truncated clips and a clip with speech but no face."""
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    rep = check_clip(bad)
    assert not rep.ok and _topics(rep, "refused") == ["file"], rep.markdown()
    assert "not a readable video" in rep.reasons()[0]

    t = np.arange(6 * media.SR) / media.SR
    voice = (0.3 * np.sin(2 * np.pi * 140 * t) * (np.sin(2 * np.pi * 3 * t) > 0)).astype(np.float32)
    yy, xx = np.mgrid[0:240, 0:320]
    frames = [np.stack([(xx + 3 * i) % 256, yy, np.full_like(xx, 128)], -1).astype(np.uint8)
              for i in range(150)]
    faceless = media.write_video(tmp_path / "faceless.mp4", frames, 25.0, audio=voice)
    rep = check_clip(faceless)
    assert not rep.ok and "faces" in _topics(rep, "refused"), rep.markdown()
    assert any("No face found" in r for r in rep.reasons())

    for src, words in ((shared(MAY), "not a readable video"),  # index at the end: nothing decodes
                       (clips["dark"], "truncated")):  # index first (faststart): the start still decodes
        data = src.read_bytes()
        cut = tmp_path / f"cut_{src.name}"
        cut.write_bytes(data[: len(data) // 2])
        rep = check_clip(cut)
        assert not rep.ok and "file" in _topics(rep, "refused"), rep.markdown()
        assert any(words in r for r in rep.reasons()), rep.reasons()


def test_cli_prints_the_report_and_exits_1_when_refused(tmp_path, capsys):
    from emotalk.__main__ import main

    bad = tmp_path / "notavideo.mp4"
    bad.write_text("hello")
    assert main(["check", str(bad)]) == 1
    out, err = capsys.readouterr()
    assert "notavideo.mp4: refused" in out and "Traceback" not in out + err

    js = tmp_path / "rep.json"
    assert main(["check", str(shared(MAY)), "--json", str(js)]) == 0
    out, _ = capsys.readouterr()
    assert "may_5s_512px_25fps.mp4: ready" in out and "duration" in out
    import json

    d = json.loads(js.read_text())
    assert d["ok"] is True and d["face_frac"] > 0.9 and d["findings"][0]["topic"] == "duration"


def test_the_check_never_imports_torch():
    """Importing torch costs ~2 s of the few seconds the check may take (the AV-sync code imports the
    torch-based LMD only when it is given a ground truth)."""
    import subprocess
    import sys

    code = ("import sys; from emotalk.dataset import clip_check as c; "
            f"assert c.check_clip({str(shared(MAY))!r}).ok; c._warm_imports(); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
