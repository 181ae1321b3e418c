"""The app's handlers and validators as plain functions, over a stand-in pipeline that follows the API.

The stand-in records what the app asks of the pipeline, so these tests check the UI wiring: what is
rejected before any GPU call and with which message, which request reaches the pipeline, and that every
request gets its own folder. The real pipeline is exercised by tests/test_app.py and test_browser.py.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

import app
from emotalk import pipeline
from emotalk.errors import InputError, MediaError


@dataclasses.dataclass
class Req:
    identity: str
    audio: str | None = None
    text: str | None = None
    voice: str | None = None
    valence: float = 0.0
    arousal: float = 0.0
    intensity: float = 1.0
    emotion_track: list | None = None
    size: int | None = None
    yaw: float = 0.0
    pitch: float = 0.0
    blink_rate: float = 1.0
    seed: int = 0
    watermark: bool = True


@dataclasses.dataclass
class Res:
    video: Path
    speech_wav: Path
    n_frames: int
    seconds: float
    tts_engine: str | None
    notice: str | None
    timings: dict


@dataclasses.dataclass
class Info:
    name: str
    path: Path
    thumbnail: Path | None
    source: str


@dataclasses.dataclass
class Speech:
    wav: Path
    engine: str
    notice: str | None
    duration: float


class FakePipeline:
    """Follows the pipeline contract; records calls; writes small placeholder outputs."""

    def __init__(self, root: Path):
        self.root, self.calls = root, []
        self.identities = [Info("alice", root, None, "shipped"), Info("bob", root, None, "user")]

    def install(self, mp):
        mp.setattr(pipeline, "RenderRequest", Req, raising=False)
        for name in ("list_identities", "device_info", "voices", "validate_request", "synthesize",
                     "speak", "preview", "load_hub_identity", "validate_identity_name", "fine_tune",
                     "push_identity", "estimate_gpu_seconds", "cleanup_old_outputs"):
            mp.setattr(pipeline, name, getattr(self, name), raising=False)

    def list_identities(self):
        return list(self.identities)

    def device_info(self):
        return {"device": "cpu", "default_size": 256, "notice": "No GPU: renders are small and slow."}

    def voices(self):
        return ["joe", "amy"]

    def validate_request(self, req):
        self.calls.append(("validate", req))
        if req.audio is None and req.text is None:
            raise InputError("Give speech: upload a recording or type text.")
        if req.text is not None and len(req.text) > 50:
            raise InputError("Text is too long: at most 50 characters.")
        return dataclasses.replace(req, valence=max(-1.0, min(1.0, req.valence)))

    def synthesize(self, req, workdir=None, progress=None):
        self.calls.append(("synthesize", req, workdir))
        for i in range(3):
            progress(f"rendering frame {i + 1}/3", (i + 1) / 3)
        video, wav = Path(workdir) / "out.mp4", Path(workdir) / "speech.wav"
        video.write_bytes(b"mp4")
        wav.write_bytes(b"wav")
        return Res(video, wav, 3, 0.12, "piper" if req.text else None, None, {"render": 0.1})

    def speak(self, text, voice=None, workdir=None):
        self.calls.append(("speak", text, voice, workdir))
        wav = Path(workdir) / "tts.wav"
        wav.write_bytes(b"wav")
        return Speech(wav, "espeak", "edge-tts unreachable; fell back to espeak-ng", 1.5)

    def preview(self, req):
        self.calls.append(("preview", req))
        return np.full((8, 8, 3), int(127 * (req.valence + 1)), np.uint8)

    def load_hub_identity(self, repo_id, token=None):
        self.calls.append(("hub", repo_id, token))
        info = Info(f"hf:{repo_id}", self.root, None, "hub")
        self.identities.append(info)
        return info

    def validate_identity_name(self, name):
        if not name or "/" in name or name == "alice":
            raise InputError(f"'{name}' cannot be used as a new identity name.")
        return name

    def fine_tune(self, clip, name, preset="fast", consent=False, workdir=None, progress=None,
                  on_sample=None):
        self.calls.append(("fine_tune", clip, name, preset, consent, workdir))
        hist = []
        for i in range(4):
            hist.append(1.0 / (i + 1))
            progress("training", (i + 1) / 4)
            on_sample(hist, np.zeros((8, 8, 3), np.uint8) if i % 2 else None)  # loss-only updates too
        assert workdir is None  # the pipeline's resumable folder, out of reach of output cleanup
        info = Info(name, self.root / name, None, "user")
        self.identities.append(info)
        return info

    def push_identity(self, name, repo_id, token):
        self.calls.append(("push", name, repo_id, token))
        return f"https://huggingface.co/{repo_id}"

    def estimate_gpu_seconds(self, req):
        return 30

    def cleanup_old_outputs(self, root, max_age_s):
        self.calls.append(("cleanup", Path(root), max_age_s))
        return 0


@pytest.fixture
def fake(monkeypatch, tmp_path):
    fp = FakePipeline(tmp_path)
    fp.install(monkeypatch)
    monkeypatch.setattr(app, "OUT_ROOT", tmp_path / "out")
    return fp


def _gen(**kw):
    args = dict(identity="alice", source="text", audio=None, text="Hello there.", voice="joe",
                valence=0.5, arousal=-0.25, intensity=0.8, track=[], size=0, yaw=5, pitch=-3,
                blink_rate=1.0, seed=7, watermark=True, names=["alice", "bob"], spoken=None,
                progress=lambda *a, **k: None)
    args.update(kw)
    return app.generate(**args)


def test_generate_builds_the_request_and_writes_each_request_into_its_own_folder(fake):
    v1, wav1, files1, md1 = _gen()
    v2, _, _, _ = _gen(valence=-0.5)
    req = next(c[1] for c in fake.calls if c[0] == "synthesize")
    assert (req.identity, req.text, req.voice, req.valence, req.arousal) == ("alice", "Hello there.", "joe",
                                                                            0.5, -0.25)
    assert (req.size, req.yaw, req.pitch, req.seed, req.watermark) == (None, 5.0, -3.0, 7, True)
    d1, d2 = Path(v1).parent, Path(v2).parent
    assert d1 != d2 and d1.parent == d2.parent == app.OUT_ROOT
    assert {Path(f).name for f in files1} == {"out.mp4", "speech.wav", "settings.json"}
    assert "piper" in md1 and "3 frames" in md1
    assert any(c[0] == "cleanup" and c[1] == app.OUT_ROOT for c in fake.calls)


@pytest.mark.parametrize("kw, message", [
    (dict(text="   "), "Type some text"),
    (dict(text="x" * 60), "Text is too long"),
    (dict(identity=""), "Pick an identity"),
    (dict(identity="../../etc"), "Unknown identity"),
    (dict(identity="hf:not a repo"), "not a Hugging Face repo id"),
    (dict(source="audio", audio=None), "Upload a speech recording"),
    (dict(track=[[0, 0.5, 0.1], ["soon", 0, 0]]), "row 2"),
])
def test_generate_rejects_bad_input_before_the_gpu_with_the_message(fake, kw, message):
    with pytest.raises(gr.Error, match=message):
        _gen(**kw)
    assert not any(c[0] == "synthesize" for c in fake.calls)


def test_audio_upload_checks_extension_and_uses_the_file(fake, tmp_path):
    exe = tmp_path / "speech.exe"
    exe.write_bytes(b"x")
    with pytest.raises(gr.Error, match="not a supported"):
        _gen(source="audio", audio=str(exe))
    wav = tmp_path / "speech.wav"
    wav.write_bytes(b"RIFF")
    _gen(source="audio", audio=str(wav), text="ignored")
    req = next(c[1] for c in fake.calls if c[0] == "synthesize")
    assert req.audio == str(wav) and req.text is None


def test_spoken_text_is_rendered_from_the_wav_the_user_heard(fake):
    wav, note, spoken = app.speak("Hello there.", "amy")
    assert "espeak" in note and "fell back" in note and Path(wav).is_file()
    _gen(voice="amy", spoken=spoken)
    req = next(c[1] for c in fake.calls if c[0] == "synthesize")
    assert req.audio == wav and req.text is None
    _gen(voice="joe", spoken=spoken)  # another voice: speak again, through the pipeline
    req = [c[1] for c in fake.calls if c[0] == "synthesize"][-1]
    assert req.audio is None and req.text == "Hello there."


def test_emotion_track_is_parsed_sorted_and_empty_rows_skipped():
    assert app.parse_track([[2, 0.1, 0.2], ["", None, ""], ["0", "-0.5", "0.5"]]) == [
        (0.0, -0.5, 0.5), (2.0, 0.1, 0.2)]
    assert app.parse_track([]) is None and app.parse_track(None) is None
    with pytest.raises(InputError, match="negative"):
        app.parse_track([[-1, 0, 0]])


def test_emotion_errors_from_the_pipeline_are_shown_escaped(fake, monkeypatch):
    def bad(req):
        raise MediaError("<b>clip.wav</b> is 900 s long; the limit is 60 s.")
    monkeypatch.setattr(pipeline, "validate_request", bad)
    with pytest.raises(gr.Error) as e:
        _gen()
    assert "&lt;b&gt;clip.wav&lt;/b&gt; is 900 s long" in e.value.message
    assert e.value.title == "Check your file"


def test_identity_gallery_and_device_notice(fake):
    items, names, dropdown, voices, notice = app.on_load()
    assert names == ["alice", "bob"] and dropdown.value == "alice" and voices.value == ""
    assert [v for _, v in voices.choices] == ["", "joe", "amy"]
    assert all(Path(img).is_file() for img, _ in items) and items[1][1] == "bob · user"
    assert "CPU" in notice and "No GPU" in notice
    assert app.pick_identity(names, gr.SelectData(None, {"index": 1, "value": None})) == "bob"
    assert "No identity installed" not in notice
    fake.identities.clear()
    items, names, dropdown, _, notice = app.on_load()
    assert items == [] and dropdown.value is None and "No identity installed yet" in notice


def test_hub_repo_ids_are_validated_before_download(fake):
    for bad in ["", "noslash", "a/b/c", "../x", "owner/..", "a b/c", "https://huggingface.co/a/b"]:
        with pytest.raises(gr.Error, match="not a Hugging Face repo id"):
            app.load_hub(bad, None, [])
    assert not any(c[0] == "hub" for c in fake.calls)
    _, names, dropdown = app.load_hub(" hf:alice/my-head ", "tok", ["alice"])
    assert ("hub", "alice/my-head", "tok") in fake.calls and dropdown.value == "hf:alice/my-head"


def test_preview_is_quiet_without_identity_and_follows_the_emotion(fake):
    assert app.preview(None, 0.5, 0, 1, 0, 0) is None
    a = app.preview("alice", -1.0, 0, 1, 0, 0, ["alice"])
    b = app.preview("alice", 1.0, 0, 1, 0, 0, ["alice"])
    assert a.shape == (8, 8, 3) and a[0, 0, 0] < b[0, 0, 0]
    req = [c[1] for c in fake.calls if c[0] == "preview"][-1]
    assert req.size == 128 and req.identity == "alice"  # half the CPU default: a still within a second


def test_fine_tune_needs_consent_a_clip_and_a_valid_name(fake, tmp_path):
    clip = tmp_path / "me.mp4"
    clip.write_bytes(b"x")
    cases = [(dict(consent=False), "right to use"), (dict(clip=None), "Upload a video clip"),
             (dict(name="alice"), "cannot be used"), (dict(name="a/b"), "cannot be used")]
    for kw, message in cases:
        args = dict(clip=str(clip), name="me", preset="fast", consent=True)
        args.update(kw)
        with pytest.raises(gr.Error, match=message):
            next(app.fine_tune(**args, progress=lambda *a, **k: None))
    assert not any(c[0] == "fine_tune" for c in fake.calls)


def test_fine_tune_streams_loss_and_samples_then_selects_the_new_identity(fake, tmp_path):
    clip = tmp_path / "me.mp4"
    clip.write_bytes(b"x")
    seen = []
    t0 = time.monotonic()
    updates = list(app.fine_tune(str(clip), "me", "quality", True,
                                 progress=lambda f, desc=None: seen.append(f)))
    assert time.monotonic() - t0 < 10
    assert any("training" in u[0] for u in updates[:-1])  # the stage in words while it runs
    status, loss, samples, identity = updates[-1]
    assert "me" in status and "ready" in status and identity == "me"
    assert len(samples) == 2 and loss.axes[0].lines[0].get_ydata()[-1] == pytest.approx(0.25)
    assert all(isinstance(u[2], dict) or all(x is not None for x in u[2]) for u in updates)  # dict: skip
    call = next(c for c in fake.calls if c[0] == "fine_tune")
    assert call[2:5] == ("me", "quality", True) and seen[-1] == 1.0


def test_fine_tune_failure_reaches_the_user(fake, monkeypatch, tmp_path):
    def broken(*a, **k):
        raise MediaError("No face found in the first 5 s of me.mp4.")
    monkeypatch.setattr(pipeline, "fine_tune", broken)
    clip = tmp_path / "me.mp4"
    clip.write_bytes(b"x")
    with pytest.raises(gr.Error, match="No face found"):
        list(app.fine_tune(str(clip), "me", "fast", True, progress=lambda *a, **k: None))


def test_push_needs_a_token_and_a_valid_repo(fake):
    with pytest.raises(gr.Error, match="token"):
        app.push("me", "you/me", "")
    with pytest.raises(gr.Error, match="not a Hugging Face repo id"):
        app.push("me", "you", "hf_x")
    assert "you/me" in app.push("me", "you/me", " hf_x ")
    assert ("push", "me", "you/me", "hf_x") in fake.calls


def test_gpu_decorator_is_a_no_op_without_spaces():
    try:
        import spaces  # noqa: F401
        pytest.skip("the spaces package is installed: the decorator is real here")
    except ImportError:
        pass

    def f(x):
        return x
    assert app.gpu(duration=5)(f) is f


def test_examples_are_our_tts_speech_with_an_installed_identity(fake):
    from emotalk import media

    rows = app.examples_rows()
    assert len(rows) >= 3 and {r[0] for r in rows} == {"alice"}  # no named identity installed: the first
    assert len({(r[3], r[4]) for r in rows}) == len(rows)  # each example a different emotion
    for _, wav, text, *_ in rows:
        seconds = len(media.read_audio(wav)) / 16000
        assert 1.0 < seconds < 8.0 and len(text.split()) >= 4
