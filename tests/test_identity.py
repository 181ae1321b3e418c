"""Identity checkpoint: round trip, and clear errors for other versions, wrong shapes, foreign files.
Synthesis helpers: back-and-forth replay without jumps, natural blinks, emotion checks."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from emotalk.errors import DatasetError, InputError


@pytest.fixture(scope="module")
def ident_dir(tmp_path_factory):
    from emotalk.gaussians.synthetic import make_synthetic
    from emotalk.identity.checkpoint import save_identity
    from emotalk.training.loop import train
    from emotalk.training.settings import PRESETS

    ds = make_synthetic(size=32, n_frames=12)
    s = replace(PRESETS["test"], steps=2, batch=1, size=32,
                model=replace(PRESETS["test"].model, n_face_init=120, n_mouth_init=20))
    work = tmp_path_factory.mktemp("ident")
    model, summary = train(ds, s, work / "w")
    return save_identity(work / "ident", model, ds, s, summary, name="synthetic",
                         thumbnail=np.zeros((32, 32, 3), np.uint8)), ds


def _copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_round_trip_and_size(ident_dir) -> None:
    from emotalk.identity.checkpoint import identity_size_mb, load_identity

    root, ds = ident_dir
    files = {p.name for p in root.iterdir()}
    assert files == {"identity.json", "model.safetensors", "body.mp4", "thumbnail.png"}
    assert identity_size_mb(root) < 10
    ident = load_identity(root)
    assert ident.name == "synthetic" and ident.size == 32
    assert ident.track_w2c.shape[1:] == (4, 4) and ident.track_upper.shape[1] == ds.upper_face.shape[1]
    assert ident.body_frames().shape[1:] == (32, 32, 3)
    # never pickle: the model file is safetensors
    assert (root / "model.safetensors").read_bytes()[8:9] == b"{"


def test_other_format_version_is_refused(ident_dir, tmp_path) -> None:
    from emotalk.identity.checkpoint import load_identity

    root = _copy(ident_dir[0], tmp_path)
    meta = json.loads((root / "identity.json").read_text())
    meta["format_version"] = 0
    (root / "identity.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="version 0"):
        load_identity(root)


def test_wrong_shapes_are_refused(ident_dir, tmp_path) -> None:
    from emotalk.identity.checkpoint import load_identity

    root = _copy(ident_dir[0], tmp_path)
    meta = json.loads((root / "identity.json").read_text())
    meta["model"]["n_face"] += 7
    (root / "identity.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="does not match"):
        load_identity(root)


def test_foreign_file_renamed_safetensors_is_refused(ident_dir, tmp_path) -> None:
    import torch

    from emotalk.identity.checkpoint import load_identity

    root = _copy(ident_dir[0], tmp_path)
    torch.save({"x": torch.zeros(3)}, root / "model.safetensors")  # a pickle, renamed
    with pytest.raises(DatasetError, match="not a readable safetensors"):
        load_identity(root)
    (root / "model.safetensors").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    with pytest.raises(DatasetError, match="not a readable safetensors"):
        load_identity(root)


def test_missing_files_are_named(ident_dir, tmp_path) -> None:
    from emotalk.identity.checkpoint import load_identity

    root = _copy(ident_dir[0], tmp_path)
    (root / "body.mp4").unlink()
    with pytest.raises(DatasetError, match="body.mp4"):
        load_identity(root)


def test_pingpong_has_no_jumps_and_turns_smoothly() -> None:
    from emotalk.render.frames import pingpong_schedule

    s = pingpong_schedule(400, 60)
    assert s.min() >= 0 and s.max() <= 59 and s.max() >= 55
    assert np.abs(np.diff(s)).max() <= 1  # never skips a frame: no jump at loop points
    v = np.diff(s)
    flips = np.nonzero(v[1:] * v[:-1] < 0)[0]
    assert len(flips) == 0  # the direction changes only through a stop (velocity 0), never abruptly
    assert np.count_nonzero(v == 0) >= 4
    assert np.array_equal(pingpong_schedule(30, 60), np.arange(30))


def test_blinks_added_only_when_the_track_rarely_blinks() -> None:
    from emotalk.render.frames import add_blinks

    names = ["eyeBlinkLeft", "eyeBlinkRight", "browInnerUp"]
    calm = np.zeros((250, 3), np.float32)
    out = add_blinks(calm, names, 25.0)
    b = out[:, 0]
    closed = b > 0.5
    n = int(np.sum(closed[1:] & ~closed[:-1]))
    assert 1 <= n <= 5  # natural rate: every 2-6 s over 10 s
    assert np.array_equal(out[:, 2], calm[:, 2])  # brows untouched
    blinky = calm.copy()
    for t in range(10, 250, 40):
        blinky[t:t + 5, :2] = 0.9
    assert np.array_equal(add_blinks(blinky, names, 25.0), blinky)


def test_render_checks_audio_code_and_emotion(ident_dir) -> None:
    from emotalk.identity.checkpoint import load_identity
    from emotalk.render.frames import render_frames

    root, ds = ident_dir
    ident = load_identity(root)
    with pytest.raises(InputError, match="audio code"):
        next(render_frames(ident, np.zeros((3, 2, 2), np.float32)))
    with pytest.raises(InputError, match="Valence"):
        next(render_frames(ident, ds.audio_code[:3], (2.0, 0.0)))
    frames = list(render_frames(ident, ds.audio_code[:5], np.zeros((5, 2)), batch=2))
    assert [f.shape[0] for f in frames] == [2, 2, 1]


def test_blink_rate_setting_asks_for_more_blinks() -> None:
    from emotalk.render.frames import add_blinks

    names = ["eyeBlinkLeft", "eyeBlinkRight"]
    sparse = np.zeros((250, 2), np.float32)
    sparse[50:55] = sparse[180:185] = 0.9  # two blinks in 10 s: enough at the natural rate (1 per 8 s)
    assert np.array_equal(add_blinks(sparse, names, 25.0, min_rate_hz=1 / 8), sparse)
    more = add_blinks(sparse, names, 25.0, min_rate_hz=3 / 8)  # the app's blink rate 3
    closed = more[:, 0] > 0.5
    assert int(np.sum(closed[1:] & ~closed[:-1])) > 2


def test_body_loop_is_decoded_once_per_file_and_size(ident_dir, tmp_path) -> None:
    """Requests reuse the decoded body loop (read-only); another size or a replaced file is read anew."""
    import os

    from emotalk.identity.checkpoint import load_identity, write_video_file

    root = _copy(ident_dir[0], tmp_path)
    ident = load_identity(root)
    a, b = ident.body_frames(), ident.body_frames()
    assert a is b and not a.flags.writeable
    small = ident.body_frames(16)
    assert small.shape[1:] == (16, 16, 3) and ident.body_frames(16) is small
    write_video_file(root / "body.mp4", 255 - np.asarray(a), 25.0)
    st = os.stat(root / "body.mp4")
    os.utime(root / "body.mp4", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    c = ident.body_frames()
    assert c is not a and abs(float(c.mean()) - (255 - float(a.mean()))) < 10
