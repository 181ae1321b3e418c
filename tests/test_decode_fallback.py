"""Video decoding where the ffmpeg binary is missing (GPU hosts): OpenCV gives the same frames."""

from __future__ import annotations

import numpy as np
import pytest

from emotalk import media
from emotalk.errors import MediaError
from tests.conftest import shared


def _hide_ffmpeg(monkeypatch) -> None:
    """Make the lookup of the ffmpeg binary fail, as on a host where imageio-ffmpeg has none."""
    import imageio_ffmpeg

    def missing():
        raise RuntimeError("No ffmpeg exe could be found (hidden by the test).")

    monkeypatch.delenv("IMAGEIO_FFMPEG_EXE", raising=False)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", missing)
    available, why = media.ffmpeg_status()
    assert not available and "No ffmpeg binary" in why
    with pytest.raises(MediaError, match="No ffmpeg binary"):  # ffmpeg really is out of reach now
        media.ffmpeg_exe()


def _per_frame_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=(1, 2, 3))


def test_frames_agree_with_ffmpeg_on_a_real_clip(monkeypatch):
    clip = shared("clips/reagan_address_26s_256px_30fps.mp4")  # 30 fps: resampled to 25 both ways
    want = media.read_frames(clip, fps=25, max_frames=100)
    want_small = media.read_frames(clip, fps=25, size=(64, 48), max_frames=100)
    _hide_ffmpeg(monkeypatch)
    got = media.read_frames(clip, fps=25, max_frames=100)
    got_small = media.read_frames(clip, fps=25, size=(64, 48), max_frames=100)
    assert got.shape == want.shape == (100, 256, 256, 3) and got.dtype == np.uint8
    assert got_small.shape == want_small.shape == (100, 48, 64, 3)
    d = _per_frame_diff(got, want)
    assert np.median(d) < 0.5 and d.max() < 4.0, d  # same frames picked, same colour conversion
    d = _per_frame_diff(got_small, want_small)
    assert np.median(d) < 2.0 and d.max() < 4.0, d  # area resizing in both
    assert np.abs(got.astype(np.int16) - got[::-1]).mean() > 1.0  # the clip moves: the check has teeth


def test_whole_clip_gives_as_many_frames_both_ways(monkeypatch):
    clip = shared("clips/obama_styletalk_30s_256px_30fps.mp4")
    n_ffmpeg = sum(1 for _ in media.iter_frames(clip, fps=25, size=(32, 32)))
    _hide_ffmpeg(monkeypatch)
    n_cv = sum(1 for _ in media.iter_frames(clip, fps=25, size=(32, 32)))
    assert n_cv == n_ffmpeg > 700


def test_dataset_frames_decode_without_ffmpeg(tmp_path, monkeypatch):
    """IdentityDataset reads its videos through media, so a dataset opens the same on a GPU host."""
    from emotalk.dataset.format import IdentityDataset

    rng = np.random.default_rng(0)
    frames = np.repeat(np.repeat(rng.integers(0, 255, (12, 8, 8, 3), dtype=np.uint8), 8, 1), 8, 2)
    media.write_video(tmp_path / "frames.mp4", frames, fps=25.0, crf=10)
    ds = IdentityDataset(root=tmp_path, meta={}, size=64, fps=25.0, n_frames=12, K=None, world_to_cam=None,
                         lmk2d=None, lmk3d=None, blendshapes=None, blendshape_names=[], upper_face=None,
                         upper_face_names=[], train_idx=None, val_idx=None, background=None, found=None,
                         head_template=None)
    want = ds.frames([7, 2, 7])
    _hide_ffmpeg(monkeypatch)
    got = ds.frames([7, 2, 7])
    assert got.shape == (3, 64, 64, 3)
    assert _per_frame_diff(got, want).max() < 1.0
    assert _per_frame_diff(got[:1], frames[7:8]).max() < 8.0  # and they are the frames asked for
    assert _per_frame_diff(got[1:2], frames[7:8]).max() > 20.0


def test_unreadable_file_is_a_clear_error_without_ffmpeg(tmp_path, monkeypatch):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video at all")
    _hide_ffmpeg(monkeypatch)
    with pytest.raises(MediaError, match="notes.mp4"):
        list(media.iter_frames(bad))


def test_resize_frames_of_images_and_label_maps():
    """media.resize_frames: square or (W,H); area averaging for images, nearest for label maps."""
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 255, (3, 40, 60, 3), dtype=np.uint8)
    assert media.resize_frames(imgs, (60, 40)) is imgs  # already that size: untouched
    out = media.resize_frames(imgs, (30, 20))
    assert out.shape == (3, 20, 30, 3) and out.dtype == np.uint8
    assert abs(float(out.mean()) - float(imgs.mean())) < 1.0  # area averaging keeps the mean
    labels = rng.choice(np.array([0, 7, 19], np.uint8), (2, 40, 40))
    small = media.resize_frames(labels, 16, "nearest")
    assert small.shape == (2, 16, 16) and set(np.unique(small)) <= {0, 7, 19}  # no blended labels
    with pytest.raises(ValueError, match="interpolation"):
        media.resize_frames(imgs, 8, "bicubic-ish")
