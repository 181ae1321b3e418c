"""Media I/O on real shared clips, converted containers, VFR/rotated files and broken inputs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import correlate

from emotalk import media
from emotalk.errors import MediaError
from tests.conftest import shared

CLIPS = [
    "clips/may_5s_512px_25fps.mp4",
    "clips/obama_styletalk_30s_256px_30fps.mp4",
    "clips/retalking_face2_5s_844px_25fps.mp4",
    "clips/hdtf_aoc_8s_512px_25fps.mp4",
    "clips/grid/bbaf2n.mpg",
]


def ffmpeg(*args: str) -> None:
    subprocess.run([media.ffmpeg_exe(), "-v", "error", "-y", *args], check=True, timeout=120)


def assert_same_sound(got: np.ndarray, ref: np.ndarray, sr: int = 16000, min_corr: float = 0.95) -> None:
    """`got` is `ref` after an encode/decode round trip: same length and level, and the same waveform
    (correlation >= min_corr, a lossy codec's loss) at a lag under one video frame (a codec's start delay).
    """
    assert abs(got.size - ref.size) < sr * 0.1, (got.size, ref.size)
    lag_max = sr // 25
    a, b = lag_max, min(got.size, ref.size) - lag_max
    seg, win = ref[a:b].astype(np.float64), got[a - lag_max:b + lag_max].astype(np.float64)
    dots = correlate(win, seg, mode="valid", method="fft")  # [2*lag_max+1]: got shifted by -lag_max..lag_max
    run = np.concatenate([[0.0], np.cumsum(win**2)])
    energy = run[seg.size:] - run[:-seg.size]  # energy of each window of `got` the dots were taken over
    corr = dots / np.sqrt(energy * (seg**2).sum() + 1e-12)
    assert corr.max() >= min_corr, (float(corr.max()), int(corr.argmax()) - lag_max)
    level = np.sqrt((got**2).mean() / (ref**2).mean())
    assert 0.8 < level < 1.25, level


@pytest.mark.parametrize("rel", CLIPS)
def test_shared_clips_decode_at_25fps(rel):
    p = shared(rel)
    info = media.probe(p)
    assert info.has_video and info.has_audio and info.duration > 2
    frames = media.read_frames(p, fps=25.0, size=(96, 96), max_frames=40)
    assert frames.shape == (40, 96, 96, 3) and frames.dtype == np.uint8
    assert frames.std() > 5  # real picture, not a blank
    wav = media.read_audio(p)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert abs(wav.size / 16000 - info.duration) < 0.1


def test_frame_count_follows_duration_at_25fps():
    p = shared("clips/obama_styletalk_30s_256px_30fps.mp4")  # 30 fps source
    info = media.probe(p)
    n = sum(1 for _ in media.iter_frames(p, size=(32, 32)))
    assert abs(n - info.duration * 25) <= 2


@pytest.fixture(scope="module")
def src_clip(tmp_path_factory) -> Path:
    """A 3 s excerpt of a shared clip at a small size (made at test time, never committed)."""
    p = shared("clips/may_5s_512px_25fps.mp4")
    out = tmp_path_factory.mktemp("media") / "src.mp4"
    ffmpeg("-i", str(p), "-t", "3", "-vf", "scale=128:128", "-c:v", "libx264", "-c:a", "aac", str(out))
    return out


@pytest.mark.parametrize("ext,vcodec,acodec", [
    (".mov", "libx264", "aac"), (".mkv", "libx264", "libvorbis"), (".webm", "libvpx-vp9", "libopus"),
    (".avi", "mpeg4", "libmp3lame"), (".mpg", "mpeg1video", "mp2"),
])
def test_containers(src_clip, tmp_path, ext, vcodec, acodec):
    out = tmp_path / f"clip{ext}"
    ffmpeg("-i", str(src_clip), "-c:v", vcodec, "-c:a", acodec, str(out))
    frames = media.read_frames(out)
    assert frames.shape[1:] == (128, 128, 3)
    assert abs(len(frames) - 75) <= 2
    assert_same_sound(media.read_audio(out), media.read_audio(src_clip))


def test_variable_frame_rate_becomes_constant(src_clip, tmp_path):
    vfr = tmp_path / "vfr.mkv"  # drop 2 of every 3 frames in the first half: timestamps get gaps
    ffmpeg("-i", str(src_clip), "-vf", r"select='gt(n\,37)+not(mod(n\,3))'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-an", str(vfr))
    n = sum(1 for _ in media.iter_frames(vfr))
    assert abs(n - 75) <= 3


def test_rotation_metadata_is_applied(src_clip, tmp_path):
    wide = tmp_path / "wide.mp4"
    ffmpeg("-i", str(src_clip), "-vf", "scale=160:96", "-c:v", "libx264", "-an", str(wide))
    rot = tmp_path / "rot.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(wide), "-c", "copy", str(rot))
    info = media.probe(rot)
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (96, 160)
    f = next(media.iter_frames(rot))
    assert f.shape == (160, 96, 3)


@pytest.mark.parametrize("ext,codec", [
    (".wav", "pcm_s16le"), (".mp3", "libmp3lame"), (".m4a", "aac"), (".ogg", "libvorbis"), (".flac", "flac"),
])
def test_audio_formats_any_rate_stereo(tmp_path, ext, codec):
    src = shared("audio/speech_hallo_7s.wav")  # 44.1 kHz stereo
    out = tmp_path / f"a{ext}"
    ffmpeg("-i", str(src), "-ar", "22050", "-ac", "2", "-c:a", codec, str(out))
    assert_same_sound(media.read_audio(out, sr=16000), media.read_audio(src, sr=16000))


def test_write_video_durations_agree(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (37, 64, 48, 3), dtype=np.uint8)
    audio = (0.3 * np.sin(np.linspace(0, 2000, 16000 * 2))).astype(np.float32)  # 2 s, longer than video
    out = media.write_video(tmp_path / "o.mp4", frames, fps=25.0, audio=audio)
    info = media.probe(out)
    assert info.video_codec == "h264" and info.audio_codec == "aac"
    got = media.read_frames(out)
    assert len(got) == 37
    a = media.read_audio(out)
    assert abs(a.size / 16000 - 37 / 25) <= 1 / 25
    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat")  # index playable before the data has arrived


def top_level_boxes(path: Path) -> list[str]:
    """The types of an MP4 file's top-level boxes, in file order (the boxes must tile the whole file)."""
    data, i, kinds = path.read_bytes(), 0, []
    while i < len(data):
        size, kind = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8].decode("latin-1")
        if size == 1:  # 64-bit size follows the type
            size = int.from_bytes(data[i + 8:i + 16], "big")
        elif size == 0:  # the box runs to the end of the file
            size = len(data) - i
        assert size >= 8, (kind, size, i)
        kinds.append(kind)
        i += size
    assert i == len(data)
    return kinds


def test_writer_streams_and_is_atomic(tmp_path):
    target = tmp_path / "s.mp4"
    with pytest.raises(RuntimeError):
        with media.VideoWriter(target) as w:
            w.write(np.zeros((32, 32, 3), np.uint8))
            raise RuntimeError("render failed")
    assert not target.exists() and not list(tmp_path.glob("*.mp4"))
    with media.VideoWriter(target) as w:
        for i in range(10):
            w.write(np.full((32, 32, 3), i * 20, np.uint8))
    assert len(media.read_frames(target)) == 10


def test_write_wav_roundtrip(tmp_path):
    x = (0.5 * np.sin(np.arange(8000) / 5)).astype(np.float32)
    p = media.write_wav(tmp_path / "x.wav", x)
    y = media.read_audio(p)
    assert np.abs(x - y).max() < 1e-3


def test_standardize_any_clip(tmp_path):
    p = shared("clips/grid/bbaf2n.mpg")
    out = media.standardize(p, tmp_path / "std.mp4", max_side=128)
    info = media.probe(out)
    assert info.video_codec == "h264" and info.audio_codec == "aac" and info.fps == 25.0
    assert max(info.width, info.height) == 128


# ---- bad input: one clear error type, never an ffmpeg traceback or a hang ----

def test_zero_byte(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        media.probe(p)


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="does not exist"):
        media.read_audio(tmp_path / "nope.wav")


def test_non_media(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 100)
    with pytest.raises(MediaError, match="not a readable video or audio"):
        media.read_frames(p)


def test_random_bytes(tmp_path):
    p = tmp_path / "noise.mov"
    p.write_bytes(np.random.default_rng(1).integers(0, 255, 50000, dtype=np.uint8).tobytes())
    with pytest.raises(MediaError):
        media.read_frames(p)


def test_truncated(src_clip, tmp_path):
    p = tmp_path / "trunc.mp4"
    data = src_clip.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(MediaError):
        media.read_frames(p)


def test_still_image(tmp_path):
    from PIL import Image

    p = tmp_path / "face.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(p)
    with pytest.raises(MediaError, match="still image"):
        media.probe(p)


def test_no_audio_stream(src_clip, tmp_path):
    p = tmp_path / "silent.mp4"
    ffmpeg("-i", str(src_clip), "-an", "-c:v", "copy", str(p))
    with pytest.raises(MediaError, match="no audio track"):
        media.read_audio(p)


def test_audio_only_has_no_video():
    with pytest.raises(MediaError, match="no video stream"):
        media.read_frames(shared("audio/speech_obama_5s.wav"))


def test_size_and_duration_limits(src_clip, monkeypatch):
    monkeypatch.setattr(media.ffmpeg, "LIMITS", media.MediaLimits(max_bytes=1000))
    with pytest.raises(MediaError, match="limit"):
        media.probe(src_clip)
    monkeypatch.setattr(media.ffmpeg, "LIMITS", media.MediaLimits(max_seconds=1.0))
    with pytest.raises(MediaError, match="lasts 3 s; the limit is 1 s"):
        media.probe(src_clip)


def test_odd_frame_size_is_refused(tmp_path):
    with pytest.raises(MediaError, match="even"):
        media.write_video(tmp_path / "odd.mp4", np.zeros((2, 31, 32, 3), np.uint8))


def test_stalled_decoder_is_killed(src_clip, monkeypatch):
    monkeypatch.setattr(media.ffmpeg, "LIMITS", media.MediaLimits(min_timeout_s=0.0, stall_timeout_s=0.0))
    with pytest.raises(MediaError, match="too long"):
        list(media.iter_frames(src_clip))


def test_slow_consumer_is_not_killed(src_clip, monkeypatch):
    import time

    monkeypatch.setattr(media.ffmpeg, "LIMITS", media.MediaLimits(min_timeout_s=0.0, stall_timeout_s=0.6,
                                                                  timeout_per_media_s=0.0))
    n = 0
    for _ in media.iter_frames(src_clip, size=(32, 32)):
        n += 1
        if n <= 5:
            time.sleep(0.3)  # 1.5 s of consuming in all, well past the stall limit, but never stalled
    assert n == 75
