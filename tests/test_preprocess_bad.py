"""Bad input is refused with a clear message before any long work (no tracking, no parsing).

Each bad clip is made at run time from a shared clip (never stored): faces cropped away, two clips side
by side or joined, audio dropped, shrunk, trimmed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from emotalk.dataset.build import preprocess
from emotalk.dataset.stages import checks
from emotalk.errors import EmoTalkError, InputError, MediaError
from emotalk.face import tracking
from emotalk.face.rotations import rodrigues
from emotalk.training.settings import PREPROCESS_PRESETS as PRESETS
from tests.conftest import MAY, shared

OBAMA = "clips/obama_address_20s_450px_25fps.mp4"


def ffmpeg(*args: str) -> None:
    """Run ffmpeg; the last argument is the output, encoded fast (the picture matters, not the file size)."""
    from emotalk.media import ffmpeg_exe

    cmd = [ffmpeg_exe(), "-v", "error", "-nostdin", "-y", *args[:-1], "-preset", "ultrafast", args[-1]]
    subprocess.run(cmd, check=True, timeout=120)


def refuse(clip: Path, out: Path, match: str, exc=EmoTalkError, checked: bool = True, **over) -> str:
    """Run preprocess and expect `exc` matching `match` from the early checks: the progress shows the
    check stage only (with `checked=False`, nothing at all) and no folder, not even a temporary one, is
    left behind."""
    import dataclasses

    stages: list[str] = []
    s = dataclasses.replace(PRESETS["test"], **over)
    with pytest.raises(exc, match=match) as e:
        preprocess(clip, out, s, progress=lambda msg, f: stages.append(msg))
    if checked:
        assert stages and all(m.startswith("checking") for m in stages), stages
    else:
        assert stages == []
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))
    return str(e.value)


def test_no_audio(tmp_path):
    clip = tmp_path / "silent_film.mp4"
    ffmpeg("-i", str(shared(MAY)), "-an", "-c:v", "copy", str(clip))
    refuse(clip, tmp_path / "ds", "no audio track", MediaError)


def test_too_short(tmp_path):
    clip = tmp_path / "short.mp4"
    ffmpeg("-i", str(shared(MAY)), "-t", "2", str(clip))
    refuse(clip, tmp_path / "ds", "at least 4 s", InputError)


def test_too_long_setting(tmp_path):
    refuse(shared(MAY), tmp_path / "ds", "the limit is 4 s", InputError, max_seconds=4.0)


def test_not_media(tmp_path):
    clip = tmp_path / "notes.mp4"
    clip.write_text("this is not a video\n" * 100)
    msg = refuse(clip, tmp_path / "ds", r"\w", MediaError)
    assert "notes.mp4" in msg


def test_missing_file(tmp_path):
    refuse(tmp_path / "nothing.mp4", tmp_path / "ds", "does not exist", MediaError, checked=False)


def test_no_face(tmp_path):
    clip = tmp_path / "collar.mp4"  # the strip below the chin: neck and collar, no face
    ffmpeg("-i", str(shared(MAY)), "-vf", "crop=512:76:0:436", "-c:a", "copy", str(clip))
    refuse(clip, tmp_path / "ds", "No face found", InputError)


def test_two_faces(tmp_path):
    clip = tmp_path / "two.mp4"
    ffmpeg("-i", str(shared(MAY)), "-i", str(shared(OBAMA)), "-filter_complex",
           "[1:v]scale=512:512,setsar=1[b];[0:v][b]hstack=inputs=2[v]", "-map", "[v]", "-map", "0:a",
           "-t", "5", str(clip))
    refuse(clip, tmp_path / "ds", "two or more faces", InputError)


def test_face_too_small(tmp_path):
    clip = tmp_path / "small.mp4"
    ffmpeg("-i", str(shared(MAY)), "-vf", "scale=160:160", "-c:a", "copy", str(clip))
    refuse(clip, tmp_path / "ds", "too small", InputError)


def test_face_cut_by_edge(tmp_path):
    clip = tmp_path / "cut.mp4"  # the right quarter of the face is outside the picture
    ffmpeg("-i", str(shared(MAY)), "-vf", "crop=300:512:0:0", "-c:a", "copy", str(clip))
    refuse(clip, tmp_path / "ds", "cut by the frame edge", InputError)


def test_scene_cut(tmp_path):
    clip = tmp_path / "joined.mp4"
    ffmpeg("-i", str(shared(MAY)), "-i", str(shared(OBAMA)), "-filter_complex",
           "[0:v]trim=0:3,setpts=PTS-STARTPTS[v0];[1:v]trim=0:3,scale=512:512,setsar=1,setpts=PTS-STARTPTS[v1];"
           "[0:a]atrim=0:3,aresample=16000,asetpts=PTS-STARTPTS[a0];"
           "[1:a]atrim=0:3,aresample=16000,asetpts=PTS-STARTPTS[a1];"
           "[v0][a0][v1][a1]concat=n=2:v=1:a=1[v][a]", "-map", "[v]", "-map", "[a]", str(clip))
    msg = refuse(clip, tmp_path / "ds", "scene cut", InputError)
    assert "3.0 s" in msg


def _rotate_yaw(lmk: np.ndarray, deg: float) -> np.ndarray:
    """Turn MediaPipe-style landmarks [478,3] (px, z in x's scale) about the vertical axis."""
    c = lmk.mean(0)
    R = rodrigues(np.array([0.0, np.radians(deg), 0.0]))
    return ((lmk - c) @ R.T + c).astype(np.float32)


def test_head_turned_away():
    """Decision on real landmarks, turned in 3-D (a 2-D edit of a video cannot turn a head)."""
    from emotalk import media

    frames = media.read_frames(shared(MAY), max_frames=6)
    faces = tracking.detect_faces(list(frames), max_faces=3)
    s = checks.CheckSettings()
    h, counts, yaws = checks.judge_faces(faces, 512, 512, s, "may")
    assert counts == [1] * 6 and max(abs(y) for y in yaws) < 15
    turned = [[_rotate_yaw(f[0], 60.0)] for f in faces]
    with pytest.raises(InputError, match="turned away"):
        checks.judge_faces(turned, 512, 512, s, "may")
    slight = [[_rotate_yaw(f[0], 25.0)] for f in faces]
    checks.judge_faces(slight, 512, 512, s, "may")


@pytest.mark.parametrize("lost,match,frac", [(slice(30, 70), "lost for 1.6 s in a row", 0.5),
                                             (slice(0, 125, 5), "lost in 25 of 125 frames", 0.1)])
def test_face_lost_too_long_or_too_often(tmp_path, monkeypatch, may_track, lost, match, frac):
    """The tracker's real output on a real clip (tracked once per session), with the face dropped from
    some frames: refused right after tracking, before the pose fit."""
    import dataclasses

    def track_with_losses(self, path, n_frames, *args, **kwargs):
        assert n_frames == len(may_track.found)  # the session's tracking of these very frames stands in
        found = may_track.found.copy()
        found[lost] = False
        return dataclasses.replace(may_track, found=found)

    monkeypatch.setattr(tracking.ParallelTracker, "track", track_with_losses)
    stages: list[str] = []
    s = dataclasses.replace(PRESETS["test"], size=64, max_lost_fraction=frac)
    with pytest.raises(InputError, match=match):
        preprocess(shared(MAY), tmp_path / "ds", s, progress=lambda msg, f: stages.append(msg))
    assert stages[-1] == "tracking the face" and may_track.found.all()
    assert not (tmp_path / "ds").exists() and not list(tmp_path.iterdir())


def test_short_gap_is_interpolated():
    found = np.ones(50, bool)
    found[20:24] = False
    x = np.linspace(0, 1, 50)[:, None, None] * np.ones((1, 478, 3))
    y = tracking.fill_gaps(np.where(found[:, None, None], x, 0), found)
    assert np.allclose(y, x)
