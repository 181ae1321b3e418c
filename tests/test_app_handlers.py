"""The app's Gradio adapter (emotalk.ui.handlers, ui.finetune, ui.messages) as plain functions, over a
stand-in pipeline that follows the API.

The stand-in records what the app asks of the pipeline, so these tests check the UI wiring: what is
rejected before any GPU call and with which message, which request reaches the pipeline, that every
request gets its own folder, and how a fine-tune streams, stops and fails. The real pipeline is exercised
by tests/test_app.py and test_browser.py.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from emotalk import pipeline
from emotalk.errors import InputError, MediaError
from emotalk.identity.store import validate_repo_id
from emotalk.ui import finetune, gpu, handlers, messages, serving


@dataclasses.dataclass
class Req:
    identity: str
    audio: str | None = None
    text: str | None = None
    engine: str | None = None
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
    audio_seconds: float
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
class Fitted(Info):
    notice: str | None  # what a preview is
    report: list[str] = dataclasses.field(default_factory=list)  # what the fit made of it


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
        self.fine_tune_steps = 4
        self.step_pause_s = 0.0

    def install(self, mp):
        mp.setattr(pipeline, "RenderRequest", Req, raising=False)
        for name in ("list_identities", "device_info", "tts_engines", "validate_request", "synthesize",
                     "speak", "preview", "load_hub_identity", "fine_tune", "push_identity",
                     "estimate_gpu_seconds", "estimate_seconds", "estimate_fine_tune_seconds",
                     "fine_tune_recipe", "cleanup_old_outputs", "warm_up"):
            mp.setattr(pipeline, name, getattr(self, name), raising=False)

    def list_identities(self):
        return list(self.identities)

    def device_info(self):
        return {"device": "cpu", "default_size": 256, "notice": "No GPU: renders are small and slow."}

    def tts_engines(self):
        return [("piper", "Piper (offline, default)"), ("edge", "Online voice (text leaves this machine)")]

    def validate_request(self, req):
        self.calls.append(("validate", req))
        if req.audio is None and req.text is None:
            raise InputError("Give speech: upload a recording or type text.")
        if req.text is not None and len(req.text) > 50:
            raise InputError("Text is too long: at most 50 characters.")
        return dataclasses.replace(req, valence=max(-1.0, min(1.0, req.valence)))

    def estimate_seconds(self, req):
        return 12.0 * len(req.text or "x" * 20) / (1 if (req.size or 256) > 128 else 4)

    def synthesize(self, req, workdir=None, progress=None):
        self.calls.append(("synthesize", req, workdir))
        for i in range(3):
            progress(f"rendering frame {i + 1}/3", (i + 1) / 3)
        video, wav = Path(workdir) / "out.mp4", Path(workdir) / "speech.wav"
        video.write_bytes(b"mp4")
        wav.write_bytes(b"wav")
        return Res(video, wav, 3, 72.3, 0.12, "piper" if req.text else None, "No GPU: once.", {"render": 0.1})

    def speak(self, text, voice=None, engine=None, workdir=None):
        self.calls.append(("speak", text, voice, engine, workdir))
        wav = Path(workdir) / "tts.wav"
        wav.write_bytes(b"wav")
        return Speech(wav, "espeak", "the online voice is unreachable; espeak-ng spoke", 1.5)

    def warm_up(self, identity, size=None, device=None):
        self.preview(Req(identity=identity, size=size))

    def preview(self, req):
        self.calls.append(("preview", req))
        return np.full((8, 8, 3), int(127 * (req.valence + 1)), np.uint8)

    def load_hub_identity(self, repo_id, token=None):
        rid = validate_repo_id(repo_id)  # the real pipeline checks the id first
        self.calls.append(("hub", rid, token))
        info = Info(f"hf:{rid}", self.root, None, "hub")
        self.identities.append(info)
        return info

    def estimate_fine_tune_seconds(self, clip, preset):
        return 600.0 if preset == "fast" else 5.0

    def fine_tune_recipe(self, preset, device=None):
        preview = preset in ("cpu", "test") or pipeline.device_info()["device"] == "cpu"
        name = "cpu" if preset in ("fast", "quality") and preview else preset  # a CPU runs the preview
        return {"name": name, "preview": preview, "size": 128 if preview else 512,
                "emotions": preset != "test"}

    def fine_tune(self, clip, name, preset="fast", consent=False, workdir=None, progress=None,
                  on_sample=None, emotion_design=None):
        self.calls.append(("fine_tune", clip, name, preset, consent, workdir, emotion_design))
        if not consent:  # the real pipeline's own checks, before any work
            raise InputError("Tick the consent box: you must have the right to use this person's likeness.")
        if not name or "/" in name or name == "alice":
            raise InputError(f"Identity name {name!r} is not allowed.")
        hist = []
        for i in range(self.fine_tune_steps):
            time.sleep(self.step_pause_s)
            hist.append(1.0 / (i + 1))
            progress("training", (i + 1) / self.fine_tune_steps)
            on_sample(hist, np.zeros((8, 8, 3), np.uint8) if i % 2 else None)  # loss-only updates too
        assert workdir is None  # the pipeline's resumable folder, out of reach of output cleanup
        info = Fitted(name, self.root / name, None, "user", "a small preview (128 px)" if preset else None,
                      ["mouth opening: gain 1.2", "phone lips: <own>"])
        self.identities.append(info)
        return info

    def push_identity(self, name, repo_id, token):
        rid = validate_repo_id(repo_id)
        if not token:
            raise InputError("Pushing to the Hub needs your own write token.")
        self.calls.append(("push", name, rid, token))
        return f"https://huggingface.co/{rid}"

    def estimate_gpu_seconds(self, req):
        return 30

    def cleanup_old_outputs(self, root, max_age_s):
        self.calls.append(("cleanup", Path(root), max_age_s))
        return 0


@pytest.fixture
def fake(monkeypatch, tmp_path):
    fp = FakePipeline(tmp_path)
    fp.install(monkeypatch)
    monkeypatch.setattr(serving, "SETTINGS", dataclasses.replace(serving.SETTINGS, out_root=tmp_path / "out"))
    return fp


def _gen(**kw):
    args = dict(identity="alice", source="text", audio=None, text="Hello there.", voice="joe",
                valence=0.5, arousal=-0.25, intensity=0.8, track=[], size=0, yaw=5, pitch=-3,
                blink_rate=1.0, seed=7, watermark=True, engine="piper", mic=None, spoken=None,
                progress=lambda *a, **k: None)
    args.update(kw)
    return handlers.generate(**args)


def _renders(fake):
    return [c[1] for c in fake.calls if c[0] == "synthesize"]


def test_generate_builds_the_request_and_writes_each_request_into_its_own_folder(fake):
    v1, wav1, files1, md1 = _gen()
    v2, _, _, _ = _gen(valence=-0.5)
    req = _renders(fake)[0]
    assert (req.identity, req.text, req.engine, req.voice, req.valence, req.arousal) == (
        "alice", "Hello there.", "piper", "joe", 0.5, -0.25)
    assert (req.size, req.yaw, req.pitch, req.seed, req.watermark) == (None, 5.0, -3.0, 7, True)
    d1, d2 = Path(v1).parent, Path(v2).parent
    out_root = serving.SETTINGS.out_root
    assert d1 != d2 and d1.parent == d2.parent == out_root
    assert {Path(f).name for f in files1} == {"out.mp4", "speech.wav", "settings.json"}
    assert any(c[0] == "cleanup" and c[1] == out_root for c in fake.calls)


def test_result_notes_tell_clip_length_from_request_time_and_each_notice_once(fake):
    *_, md = _gen()
    assert "**0.1 s clip**, 3 frames" in md and "made in 72 s" in md  # not "72.3 s, 3 frames"
    assert "Voice: piper" in md and md.count("No GPU") == 1


def test_generate_progress_starts_with_the_expected_wait(fake):
    seen = []
    _gen(progress=lambda f, desc=None: seen.append((f, desc)))
    assert seen[0] == (0.0, "queued (expected about 2 min)")  # 12 chars × 12 s, said before the work


@pytest.mark.parametrize("kw, message", [
    (dict(text="   "), "Check your input: Type some text"),
    (dict(text="x" * 60), "Text is too long"),
    (dict(identity=""), "Pick an identity"),
    (dict(identity="../../etc"), "Unknown identity"),
    (dict(identity="hf:not a repo"), "not a Hugging Face repo id"),
    (dict(source="audio", audio=None), "Upload a speech recording or a video"),
    (dict(track=[[0, 0.5, 0.1], ["soon", 0, 0]]), "row 2"),
    (dict(valence="abc"), "Valence must be a number, got 'abc'"),
])
def test_generate_rejects_bad_input_before_the_gpu_with_the_message(fake, kw, message):
    with pytest.raises(gr.Error, match=message) as e:
        _gen(**kw)
    assert not _renders(fake)
    assert e.value.title == "Check your input" and not e.value.print_exception  # no traceback in the log


def test_a_video_file_or_a_recording_is_the_speech(fake, tmp_path):
    clip = tmp_path / "talk.mp4"
    clip.write_bytes(b"x")
    _gen(source="audio", audio=str(clip), text="ignored")
    req = _renders(fake)[-1]
    assert req.audio == str(clip) and req.text is None  # the pipeline takes a video's sound
    rec = tmp_path / "mic.wav"
    rec.write_bytes(b"x")
    _gen(source="auto", audio=None, mic=str(rec))
    assert _renders(fake)[-1].audio == str(rec)
    assert ".mp4" in handlers.SPEECH_EXTS and ".wav" in handlers.SPEECH_EXTS


def test_spoken_text_is_rendered_from_the_wav_the_user_heard(fake):
    wav, note, spoken = handlers.speak("Hello there.", "edge", "amy")
    assert "espeak" in note and "unreachable" in note and Path(wav).is_file()
    assert ("speak", "Hello there.", "amy", "edge") == fake.calls[-1][:4]
    _gen(engine="edge", voice="amy", spoken=spoken)
    req = _renders(fake)[-1]
    assert req.audio == wav and req.text is None
    _gen(engine="piper", voice="amy", spoken=spoken)  # another engine: speak again, through the pipeline
    req = _renders(fake)[-1]
    assert req.audio is None and req.text == "Hello there." and req.engine == "piper"


def test_the_timeline_table_is_read_by_the_one_keyframe_parser():
    assert handlers.parse_track([[2, 0.1, 0.2], ["", None, ""], ["0", "-0.5", "0.5"]]) == [
        (0.0, -0.5, 0.5), (2.0, 0.1, 0.2)]
    assert handlers.parse_track([]) is None and handlers.parse_track(None) is None
    with pytest.raises(InputError, match="CSV row 1 has a value that is not a number"):
        handlers.parse_track([["x", 0, 0]])  # a first row is data, never taken for a header
    with pytest.warns(UserWarning, match="must be >= 0 s"):  # the track's own check, shown as a warning
        assert isinstance(handlers.update_track_plot([[-1, 0, 0]], 0, 0), dict)  # gr.skip(): the plot stays


def test_pipeline_errors_become_titled_toasts_without_html_escapes(fake, monkeypatch):
    def bad(req):
        raise MediaError("<b>clip.wav</b> lasts 900 s; the limit is 120 s (>= 2 min). No identity named 'x'.")
    monkeypatch.setattr(pipeline, "validate_request", bad)
    with pytest.raises(gr.Error) as e:
        _gen()
    assert e.value.title == "Check your file"
    assert e.value.message == ("Check your file: &lt;b>clip.wav&lt;/b> lasts 900 s; the limit is 120 s "
                               "(>= 2 min). No identity named 'x'.")


def test_identity_gallery_highlights_the_choice_and_the_device_notice_is_said_once(fake):
    gallery, names, dropdown, notice = handlers.on_load()
    assert names == ["alice", "bob"] and dropdown.value == "alice" and gallery.selected_index == 0
    items = gallery.value
    assert all(Path(item["image"]["path"]).is_file() for item in items)
    assert [item["caption"] for item in items] == ["alice", "bob · yours"]
    assert "CPU" in notice and notice.count("No GPU") == 1 and "No identity installed" not in notice
    assert handlers.pick_identity(names, gr.SelectData(None, {"index": 1, "value": None})) == "bob"
    assert handlers.highlight_identity("bob", names).selected_index == 1
    assert handlers.highlight_identity("zed", names).selected_index is None
    fake.identities.clear()
    gallery, names, dropdown, notice = handlers.on_load()
    assert gallery.value == [] and dropdown.value is None and "No identity installed yet" in notice


def test_engines_are_offered_with_the_default_first_and_voices_only_for_the_online_one(fake, monkeypatch):
    assert handlers.engine_choices() == [("Piper (offline, default)", "piper"),
                                         ("Online voice (text leaves this machine)", "edge")]
    monkeypatch.setattr(pipeline, "voices", lambda: ["offline:piper", "en-US-AriaNeural"], raising=False)
    assert handlers.online_voices() == [("default", ""), ("en-US-AriaNeural", "en-US-AriaNeural")]
    assert handlers.voice_box("edge").visible is True
    hidden = handlers.voice_box("piper")
    assert hidden.visible is False and hidden.value == ""  # a hidden voice never reaches the pipeline


def test_hub_repo_ids_are_checked_by_the_pipeline_before_download(fake):
    for bad in ["", "noslash", "a/b/c", "../x", "owner/..", "a b/c", "https://huggingface.co/a/b"]:
        with pytest.raises(gr.Error, match="not a Hugging Face repo id"):
            handlers.load_hub(bad, None)
    assert not any(c[0] == "hub" for c in fake.calls)
    gallery, names, dropdown = handlers.load_hub(" hf:alice/my-head ", "tok")
    assert ("hub", "alice/my-head", "tok") in fake.calls and dropdown.value == "hf:alice/my-head"
    assert gallery.selected_index == names.index("hf:alice/my-head")


def test_preview_is_quiet_without_identity_and_follows_the_emotion(fake):
    assert handlers.preview(None, 0.5, 0, 1, 0, 0) is None
    a = handlers.preview("alice", -1.0, 0, 1, 0, 0)
    b = handlers.preview("alice", 1.0, 0, 1, 0, 0)
    assert a.shape == (8, 8, 3) and a[0, 0, 0] < b[0, 0, 0]
    req = [c[1] for c in fake.calls if c[0] == "preview"][-1]
    assert req.size == 128 and req.identity == "alice"  # half the CPU default: a still within a second
    with pytest.warns(UserWarning, match="Unknown identity"):
        assert isinstance(handlers.preview("mallory", 0, 0, 1, 0, 0), dict)  # a warning, the still stays


def test_warm_up_renders_a_still_of_the_first_identity_and_never_fails(fake, monkeypatch, caplog):
    handlers.warm_up()
    assert [(c[1].identity, c[1].size) for c in fake.calls if c[0] == "preview"] == [("alice", 128)]

    def broken(identity, size=None, device=None):
        raise RuntimeError("no model")
    monkeypatch.setattr(pipeline, "warm_up", broken)
    handlers.warm_up()  # only a speed-up: logged, not raised
    assert "warm-up of alice failed: no model" in caplog.text


def test_the_expected_time_is_said_before_starting_with_a_smaller_size_offered(fake):
    assert handlers.estimate("alice", "text", None, None, "", "piper", 0) == ""  # nothing to render yet
    long = handlers.estimate("alice", "text", None, None, "Hello there.", "piper", 0)
    assert long.startswith("Expected: about **2 min** of compute on this CPU") and "128 px" in long
    small = handlers.estimate("alice", "text", None, None, "Hello there.", "piper", 128)
    assert "**36 s**" in small and "128 px" not in small


def test_durations_in_words():
    assert [messages.duration_words(s) for s in (0.2, 42.4, 89, 150, 1130, 3900)] == [
        "1 s", "42 s", "89 s", "2 min", "19 min", "1 h 5 min"]


def test_push_only_listed_identities_and_the_pipeline_checks_token_and_repo(fake):
    with pytest.raises(gr.Error, match="token"):
        handlers.push("bob", "you/bob", "")
    with pytest.raises(gr.Error, match="not a Hugging Face repo id"):
        handlers.push("bob", "you", "hf_x")
    with pytest.raises(gr.Error, match="Unknown identity"):
        handlers.push("/srv/secret", "you/x", "hf_x")  # never a server folder
    assert "you/bob" in handlers.push("bob", "you/bob", " hf_x ")
    assert ("push", "bob", "you/bob", "hf_x") in fake.calls


def test_gpu_decorator_is_a_no_op_without_spaces():
    try:
        import spaces  # noqa: F401
        pytest.skip("the spaces package is installed: the decorator is real here")
    except ImportError:
        pass

    def f(x):
        return x
    assert gpu.gpu(duration=5)(f) is f


def test_examples_are_our_tts_speech_with_an_installed_identity(fake):
    from emotalk import media
    from tests.conftest import REPO

    rows = handlers.examples_rows(REPO / "examples")
    assert len(rows) >= 3 and {r[0] for r in rows} == {"alice"}  # no named identity installed: the first
    assert len({(r[3], r[4]) for r in rows}) == len(rows)  # each example a different emotion
    for _, wav, text, *_ in rows:
        seconds = len(media.read_audio(wav)) / 16000
        assert 1.0 < seconds < 8.0 and len(text.split()) >= 4


def test_serving_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("EMOTALK_QUEUE_SIZE", "3")
    monkeypatch.setenv("EMOTALK_APP_OUT", str(tmp_path))
    monkeypatch.setenv("EMOTALK_TEST_RECIPES", "1")
    s = serving.ServeSettings.from_env()
    assert (s.queue_size, s.out_root, s.test_recipes, s.gpu_concurrency) == (3, tmp_path, True, 1)
    monkeypatch.delenv("EMOTALK_TEST_RECIPES")
    assert not serving.ServeSettings.from_env().test_recipes


# ---------------------------------------------------------------- fine-tune

def _clip(tmp_path) -> str:
    clip = tmp_path / "me.mp4"
    clip.write_bytes(b"x")
    return str(clip)


def test_fine_tune_says_the_expected_time_and_a_cpu_preview_before_starting(fake, tmp_path, monkeypatch):
    assert finetune.plan(None, "fast") == ""
    assert finetune.plan(_clip(tmp_path), "fast") == ("Expected: about **10 min** on this CPU. It makes a "
                                                      "small preview: 128 px, with emotions.")
    assert "128 px, no emotions (every emotion looks neutral)" in finetune.plan(_clip(tmp_path), "test")
    monkeypatch.setattr(pipeline, "device_info", lambda: {"device": "cuda", "default_size": 512,
                                                          "notice": None})
    assert finetune.plan(_clip(tmp_path), "fast") == "Expected: about **10 min** on this CUDA."

    def unreadable(clip, preset):
        raise MediaError("me.mp4 is not a readable video or audio file.")
    monkeypatch.setattr(pipeline, "estimate_fine_tune_seconds", unreadable)
    assert finetune.plan(_clip(tmp_path), "fast") == "⚠️ me.mp4 is not a readable video or audio file."


@pytest.fixture
def checks(monkeypatch):
    """A stand-in clip check (no decoding): stem "mute" is refused, "broken" cannot be checked, any other
    clip is ready with a warning. Returns the names checked, in order."""
    from emotalk.dataset import clip_check
    from emotalk.errors import AssetError
    from emotalk.identity import fit

    monkeypatch.setattr(fit, "_REPORTS", {})  # nothing remembered from other tests
    checked = []

    def check(path):
        checked.append(Path(path).name)
        rep = clip_check.ClipReport(Path(path).name)
        if Path(path).stem == "broken":
            raise AssetError("The face landmark model is missing. Run scripts/fetch_models.py.")
        if Path(path).stem == "mute":
            rep.add("audio", "refused", "the clip has no audio track.", "Use a clip with speech.")
        else:
            rep.add("duration", "warning", "5.0 s: few head poses.", "Use a longer clip.")
        return rep

    monkeypatch.setattr(clip_check, "check_clip", check)
    return checked


def test_an_uploaded_clip_is_checked_at_once_and_a_refused_one_says_why_on_fine_tune(fake, tmp_path,
                                                                                     checks):
    assert list(handlers.check_clip(None)) == [""]  # the box cleared: no report
    good = _clip(tmp_path)
    shown = list(handlers.check_clip(good))
    assert shown[0].startswith("_Checking the clip") and len(shown) == 2  # said at once, then the report
    assert shown[1].startswith("**me.mp4: ready** (1 to look at)") and "*Fix:* Use a longer clip." in shown[1]
    mute = tmp_path / "mute.mp4"
    mute.write_bytes(b"x")
    assert list(handlers.check_clip(str(mute)))[-1].startswith("**mute.mp4: refused**")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"x")
    assert list(handlers.check_clip(str(broken)))[-1] == (
        "⚠️ The clip could not be checked: The face landmark model is missing. Run scripts/fetch_models.py.")
    with pytest.raises(gr.Error, match="mute.mp4 cannot make an identity: the clip has no audio track. Use a "
                                       "clip with speech.") as e:
        list(finetune.fine_tune(str(mute), "me", "fast", True))
    assert e.value.title == "Check your input"
    assert not [c for c in fake.calls if c[0] == "fine_tune"] and not finetune._RUNNING  # refused at once
    assert list(finetune.fine_tune(good, "me", "fast", True))[-1][3] == "me"  # a checked, ready clip runs
    assert checks == ["me.mp4", "mute.mp4", "broken.mp4"]  # each once: Fine-tune read the remembered report
    Path(good).write_bytes(b"xy")  # a new file under the same name is checked again
    list(handlers.check_clip(good))
    assert checks[-1] == "me.mp4" and len(checks) == 4


def test_fine_tune_errors_of_the_pipeline_reach_the_user(fake, tmp_path):
    cases = [(dict(consent=False), "right to use"), (dict(clip=None), "Upload a video clip"),
             (dict(name="alice"), "not allowed"), (dict(name="a/b"), "not allowed")]
    for kw, message in cases:
        args = dict(clip=_clip(tmp_path), name="me", preset="fast", consent=True)
        args.update(kw)
        with pytest.raises(gr.Error, match=message):
            list(finetune.fine_tune(**args))
    assert [i.name for i in fake.identities] == ["alice", "bob"]  # nothing trained
    assert not finetune._RUNNING  # no run left registered


def test_fine_tune_streams_loss_and_samples_then_selects_the_new_identity(fake, tmp_path):
    fake.step_pause_s = 0.05  # reports spread in time, as in a real run
    t0 = time.monotonic()
    updates = list(finetune.fine_tune(_clip(tmp_path), "me", "quality", True))
    assert time.monotonic() - t0 < 10
    assert any("training" in u[0] and "Fine-tuning me" in u[0] for u in updates[:-1])
    assert any('style="width:75%"' in u[0] for u in updates[:-1])  # the app's own bar, as it goes
    status, loss, samples, identity = updates[-1]
    assert "me" in status and "ready" in status and identity == "me"
    assert "⚠️ a small preview (128 px)" in status  # the pipeline's word on what a preview is, after
    assert "<li>mouth opening: gain 1.2</li><li>phone lips: &lt;own&gt;</li>" in status  # the fit's report
    assert len(samples) == 2 and loss.axes[0].lines[0].get_ydata()[-1] == pytest.approx(0.25)
    call = next(c for c in fake.calls if c[0] == "fine_tune")
    assert call[2:5] == ("me", "quality", True) and call[6] == "mouth"  # the default emotion design
    fake.calls.clear()
    list(finetune.fine_tune(_clip(tmp_path), "me2", "fast", True, design="face"))  # whole face, as chosen
    assert next(c for c in fake.calls if c[0] == "fine_tune")[6] == "face"


def test_fine_tune_clock_keeps_running_between_reports(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(finetune, "TICK_S", 0.05)
    fake.fine_tune_steps, fake.step_pause_s = 2, 0.6
    updates = list(finetune.fine_tune(_clip(tmp_path), "me", "fast", True))
    clocks = [u[0].split("</b> · ")[1].split(" so far")[0] for u in updates[:-1]]
    assert clocks[0] == "0:00" and clocks[-1] == "0:01"  # counted from the start, never restarted
    ticks = [u for u in updates[:-1] if isinstance(u[1], dict)]  # status-only updates while waiting
    assert len(ticks) >= 10
    assert "about 10 min left" in updates[1][0]  # before any progress: the up-front estimate


def test_a_stopped_fine_tune_ends_with_a_message_and_saves_nothing(fake, tmp_path, monkeypatch):
    fake.fine_tune_steps, fake.step_pause_s = 50, 0.05
    req = gr.Request(session_hash="page-1")
    run = finetune.fine_tune(_clip(tmp_path), "me", "fast", True, req)
    next(run)
    assert "page-1" in finetune._RUNNING
    finetune.stop_run(gr.Request(session_hash="someone-else"))  # another page: no effect
    time.sleep(0.2)
    assert not finetune._RUNNING["page-1"].is_set()
    finetune.stop_run(req)
    with pytest.raises(gr.Error, match="stopped; nothing was saved") as e:
        list(run)
    assert e.value.title == "Fine-tune stopped"
    assert [i.name for i in fake.identities] == ["alice", "bob"] and not finetune._RUNNING


def test_closing_the_page_stops_the_worker(fake, tmp_path):
    fake.fine_tune_steps, fake.step_pause_s = 200, 0.02
    run = finetune.fine_tune(_clip(tmp_path), "me", "fast", True)
    next(run)
    worker = next(t for t in threading.enumerate() if t.name == "fine-tune-me")
    run.close()  # what Gradio does to a generator whose page went away
    worker.join(timeout=5)
    assert not worker.is_alive() and [i.name for i in fake.identities] == ["alice", "bob"]


def test_fine_tune_recipes_are_those_that_run_here_and_test_only_when_asked(fake, monkeypatch):
    monkeypatch.setattr(pipeline, "FINE_TUNE_PRESETS", ("fast", "quality", "cpu", "test"))
    assert [p for _, p in finetune.recipe_choices()] == ["cpu"]  # on a CPU, fast and quality become it
    assert [p for _, p in finetune.recipe_choices(with_test=True)] == ["cpu", "test"]
    monkeypatch.setattr(pipeline, "device_info", lambda: {"device": "cuda", "default_size": 512,
                                                          "notice": None})
    assert [p for _, p in finetune.recipe_choices()] == ["fast", "quality", "cpu"]
    assert finetune.lock(True)[0].interactive is False and finetune.lock(True)[1].visible is True
    assert finetune.lock(False)[0].interactive is True and finetune.lock(False)[1].visible is False


def test_the_loss_plot_is_redrawn_at_most_every_few_seconds_and_with_each_frame():
    run = finetune.RunView("me", None)
    run.take(("sample", [1.0], None))
    assert not isinstance(run.update()[1], dict)  # the first curve: drawn
    run.take(("sample", [1.0, 0.5], None))
    status, plot, samples, _ = run.update()
    assert isinstance(plot, dict) and isinstance(samples, dict)  # a second later: skipped (gr.skip())
    run.take(("progress", "train [face] step 2/40", 0.3))
    run.take(("sample", [1.0, 0.5, 0.4], np.zeros((4, 4, 3), np.uint8)))
    status, plot, samples, _ = run.update()
    assert plot.axes[0].lines[0].get_ydata()[-1] == pytest.approx(0.4) and len(samples) == 1
    assert "step 2/40 (30 %)" in status and 'style="width:30%"' in status


def test_the_page_passes_the_emotion_design_after_the_request_gradio_inserts():
    """The Fine-tune button sends [clip, name, recipe, consent, design]; Gradio puts the request in the
    handler's own `request` parameter, so the design still lands in `design`."""
    from gradio.helpers import special_args

    req = gr.Request()
    args = special_args(finetune.fine_tune, inputs=["clip.mp4", "me", "fast", True, "face"], request=req)[0]
    assert args[4] is req and args[5] == "face"
