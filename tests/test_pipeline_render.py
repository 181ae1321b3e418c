"""End to end through the pipeline API on CPU: a tiny real identity speaks a file and typed text."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emotalk import media, pipeline
from emotalk.errors import InputError
from emotalk.pipeline import RenderRequest
from tests.conftest import shared

pytestmark = pytest.mark.slow


@pytest.fixture
def home(tiny_identity, tmp_path, monkeypatch):
    """A user folder holding the tiny identity, as a fine-tune would leave it."""
    import shutil

    monkeypatch.setenv("EMOTALK_HOME", str(tmp_path / "home"))
    dest = pipeline.user_dir() / "may-tiny"
    shutil.copytree(tiny_identity, dest)
    return dest


def _cd_quality(src, dst):
    """The recording as a 44.1 kHz stereo wav (what a visitor might upload)."""
    import subprocess

    subprocess.run([media.ffmpeg_exe(), "-v", "error", "-y", "-i", str(src), "-ar", "44100", "-ac", "2",
                    str(dst)], check=True, timeout=60)
    return dst


def test_audio_file_to_mp4_with_emotion_track(home, tmp_path):
    from emotalk.render import speed

    speech = _cd_quality(shared("audio/speech_obama_5s.wav"), tmp_path / "upload.wav")
    stages: list[tuple[str, float]] = []
    speed.forget()
    req = RenderRequest(identity="may-tiny", audio=str(speech), size=64,
                        emotion_track=[(0.0, 0.0, 0.0), (2.0, 0.8, 0.5)])
    r = pipeline.synthesize(req, tmp_path / "req", progress=lambda s, f: stages.append((s, f)))
    expected = pipeline.estimate_seconds(req)  # the next estimate follows the pace this render had
    speed.forget()
    assert abs(expected - r.seconds) < 0.05 * r.seconds
    info = media.probe(r.video)
    assert info.video_codec == "h264" and info.audio_codec == "aac" and info.fps == 25.0
    assert abs(info.duration - media.probe(speech).duration) < 0.1
    assert (info.audio_rate, info.audio_channels) == (44100, 2)  # the upload's quality, not 16 kHz mono
    assert abs(r.audio_seconds - media.probe(speech).duration) < 0.05  # the clip's length ...
    assert r.seconds > 0 and r.seconds != r.audio_seconds  # ... and, apart, the request's wall time
    assert not any(p.name == "frames.mp4" for p in (tmp_path / "req").iterdir())
    frames = media.read_frames(r.video)
    assert len(frames) == r.n_frames and frames.shape[1:] == (64, 64, 3)
    assert frames.std() > 10  # a face over a body, not a blank
    assert stages[-1][1] == 1.0 and r.tts_engine is None
    assert set(r.timings) >= {"speech", "features", "render_encode"}


def test_text_is_spoken_offline_and_rendered(home, tmp_path, monkeypatch):
    from emotalk.speech import tts_edge

    def no_network(*a, **k):
        raise AssertionError("the typed text was about to be sent online")

    monkeypatch.setattr(tts_edge, "network_reachable", no_network)
    r = pipeline.synthesize(RenderRequest(identity="may-tiny", text="Hello, this is a test.", size=64,
                                          engine="espeak", valence=2.0, arousal=0.0),
                            tmp_path / "req")
    assert r.tts_engine.startswith("espeak")
    assert "outside the unit disc" in r.notice and "could not speak" not in r.notice  # espeak was chosen
    assert abs(media.probe(r.video).duration - r.n_frames / 25) < 0.1
    assert abs(r.audio_seconds - r.n_frames / 25) < 0.05


def test_a_video_as_speech_gives_its_sound(home, tmp_path):
    clip = shared("clips/may_5s_512px_25fps.mp4")
    r = pipeline.synthesize(RenderRequest(identity="may-tiny", audio=str(clip), size=64), tmp_path / "req")
    info = media.probe(r.video)
    assert r.n_frames == 125 and (info.audio_rate, info.audio_channels) == (48000, 2)
    assert r.tts_engine is None and abs(info.duration - 5.0) < 0.1


def test_preview_changes_with_emotion_and_labels(home):
    a = pipeline.preview(RenderRequest(identity="may-tiny", size=64, watermark=False))
    b = pipeline.preview(RenderRequest(identity="may-tiny", size=64, watermark=True))
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.abs(a.astype(int) - b.astype(int)).sum() > 0  # the label is drawn


def test_camera_offset_changes_the_render(home):
    a = pipeline.preview(RenderRequest(identity="may-tiny", size=64, watermark=False))
    b = pipeline.preview(RenderRequest(identity="may-tiny", size=64, watermark=False, yaw=15.0))
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0


def test_identities_listed_and_unknown_refused(home):
    names = [i.name for i in pipeline.list_identities()]
    assert "may-tiny" in names
    with pytest.raises(InputError, match="No identity named"):
        pipeline.resolve_identity("nobody")


def test_hub_offline_is_a_clear_error(home):
    from emotalk.errors import AssetError

    with pytest.raises(AssetError, match="cannot be reached"):
        pipeline.load_hub_identity("someone/some-identity")


def test_fine_tune_needs_consent_and_a_safe_name(home, tmp_path):
    clip = str(shared("clips/may_5s_512px_25fps.mp4"))
    with pytest.raises(InputError, match="consent"):
        pipeline.fine_tune(clip, "mine", consent=False)
    with pytest.raises(InputError, match="not allowed"):
        pipeline.fine_tune(clip, "../mine", consent=True)
    with pytest.raises(InputError, match="already have"):
        pipeline.fine_tune(clip, "may-tiny", consent=True)


def test_fine_tune_resumes_from_its_dataset_and_appears_in_the_picker(home, may_dataset_64, tmp_path):
    import shutil

    work = tmp_path / "work"
    shutil.copytree(may_dataset_64.root, work / "dataset")  # as if preprocessing had finished before a crash
    stages: list[tuple[str, float]] = []
    samples: list[tuple[int, object]] = []
    info = pipeline.fine_tune(str(shared("clips/may_5s_512px_25fps.mp4")), "mine", preset="test",
                              consent=True, workdir=work, steps=8, size=48,
                              progress=lambda s, f: stages.append((s, f)),
                              on_sample=lambda losses, frame: samples.append((len(losses), frame)))
    assert info.source == "user" and (info.path / "model.safetensors").is_file()
    assert stages[0][0] == "checking the clip"
    assert not any(s.startswith("preprocess") for s, _ in stages)
    assert any(s.startswith("train") for s, _ in stages)
    assert any(s.startswith("emotion stage") for s, _ in stages)  # the recipe's emotion stage ran
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    frames = [f for _, f in samples if f is not None]
    assert len(frames) >= 2 and all(f.shape == (48, 48, 3) for f in frames)  # during training and the end
    assert samples[0][1] is not None and samples[0][0] >= 1  # the first sample came before the end
    assert info.recipe["name"] == "test" and info.recipe["size"] == 48 and info.recipe["emotions"]
    assert "small preview" in info.notice and "48 px" in info.notice
    import json

    meta = json.loads((info.path / "identity.json").read_text())
    assert meta["metrics"]["recipe"]["name"] == "test" and meta["metrics"]["emotion_stage"]["steps"] == 2
    assert "duration: 5.0 s" in meta["metrics"]["clip_check"]  # the clip was checked first; its warning kept
    assert "mine" in [i.name for i in pipeline.list_identities()]
    frame = pipeline.preview(RenderRequest(identity="mine", size=64))
    assert frame.shape == (64, 64, 3)


def _no_preprocessing(*a, **k):
    raise AssertionError("preprocessing started")


def test_a_refused_clip_is_said_before_any_work_and_leaves_no_folder(home, tmp_path, monkeypatch):
    from emotalk.dataset import build

    monkeypatch.setattr(build, "preprocess", _no_preprocessing)
    src = shared("clips/may_5s_512px_25fps.mp4")
    short = media.write_video(tmp_path / "short.mp4", media.read_frames(src, 25.0)[:50], 25.0,
                              audio=media.read_audio(src)[: 2 * media.SR])
    stages: list[str] = []
    with pytest.raises(InputError, match=r"short.mp4 cannot make an identity: .*at least 4 s of talking is "
                                         r"needed\. Use a longer clip") as e:
        pipeline.fine_tune(str(short), "mine", preset="test", consent=True,
                           progress=lambda s, f: stages.append(s))
    assert "Traceback" not in str(e.value) and stages == ["checking the clip"]
    assert not (home.parent.parent / "work").exists()  # no work folder was made
    assert sorted(p.name for p in pipeline.user_dir().iterdir()) == ["may-tiny"]


class _Stopped(Exception):
    """What the app's Stop raises from a progress report."""


def test_a_failed_or_stopped_fine_tune_leaves_no_folder_but_a_built_dataset_resumes(home, may_dataset_64,
                                                                                    monkeypatch):
    import shutil

    from emotalk.dataset import build
    from emotalk.errors import MediaError
    from emotalk.identity import checkpoint

    clip = str(shared("clips/may_5s_512px_25fps.mp4"))
    work_root = pipeline.user_dir().parent / "work"

    def half_preprocess(clip, out_dir, settings, progress, **kw):
        (out_dir.parent / ".dataset.tmp-1").mkdir(parents=True)  # as preprocess's own temporary folder
        progress("tracking", 0.5)  # the app's Stop raises here
        raise MediaError("tracking failed")

    def stop(stage, fraction):
        if stage.startswith("preprocess"):
            raise _Stopped

    monkeypatch.setattr(build, "preprocess", half_preprocess)
    for progress, error in ((stop, _Stopped), (None, MediaError)):
        with pytest.raises(error):
            pipeline.fine_tune(clip, "mine", preset="test", consent=True, progress=progress)
        assert not work_root.exists()  # neither work/mine nor the work folder made for it
        assert sorted(p.name for p in pipeline.user_dir().iterdir()) == ["may-tiny"]

    # a crash while saving the trained identity: the preprocessed dataset stays, half an identity does not
    shutil.copytree(may_dataset_64.root, work_root / "mine" / "dataset")
    monkeypatch.setattr(build, "preprocess", _no_preprocessing)

    real_swap, crashed = checkpoint.swap_folder, []

    def crash_once(new, dst):
        if not crashed:
            crashed.append(new)
            assert (new / "identity.json").is_file()  # the identity was written, in its temporary folder
            raise OSError("disk full")
        return real_swap(new, dst)

    monkeypatch.setattr(checkpoint, "swap_folder", crash_once)
    with pytest.raises(OSError, match="disk full"):
        pipeline.fine_tune(clip, "mine", preset="test", consent=True, steps=2, size=32)
    assert not crashed[0].exists() and sorted(p.name for p in pipeline.user_dir().iterdir()) == ["may-tiny"]
    assert (work_root / "mine" / "dataset" / "meta.json").is_file()
    info = pipeline.fine_tune(clip, "mine", preset="test", consent=True, steps=2, size=32,
                              emotion_design="face")  # no preprocess; emotions drawn by the whole-face warp
    assert (info.path / "model.safetensors").is_file()
    saved = json.loads((info.path / "identity.json").read_text())["settings"]["model"]
    assert saved["emotion_warp_region"] == "face" and saved["emotion_field_colour_only"] is True
    assert "mine" in [i.name for i in pipeline.list_identities()]
