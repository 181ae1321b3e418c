"""Fine-tune reliability: one run per GPU with the place in line shown, Stop leaves the line, progress said
once, and resumption after a crash (same clip: continue after the last finished stage; another clip under
the same name: start fresh)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import gradio as gr
import pytest

from emotalk.ui import finetune
from tests.test_app_handlers import _clip, fake  # noqa: F401  (the stand-in pipeline fixture)


def test_gpu_queue_is_first_come_first_served_per_slot():
    q = finetune.GpuQueue(slots=1)
    a, b, c = q.join(), q.join(), q.join()
    assert [q.place(a), q.place(b), q.place(c)] == [0, 1, 2]
    assert q.place(a) == 0  # still running: keeps its slot
    q.leave(b)  # b stopped waiting: c moves up, but a still runs
    assert q.place(c) == 1
    q.leave(a)
    assert q.place(c) == 0
    two = finetune.GpuQueue(slots=2)
    x, y = two.join(), two.join()
    assert two.place(x) == 0 and two.place(y) == 0  # two GPUs: two runs at once


def test_a_second_fine_tune_waits_with_its_place_in_line_then_runs(fake, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(finetune, "QUEUE", finetune.GpuQueue(slots=1))
    monkeypatch.setattr(finetune, "TICK_S", 0.05)
    fake.fine_tune_steps, fake.step_pause_s = 10, 0.05
    first = finetune.fine_tune(_clip(tmp_path), "me", "fast", True)
    assert "Fine-tuning me" in next(first)[0]  # running: holds the GPU
    second = finetune.fine_tune(_clip(tmp_path), "you", "fast", True)
    waiting = next(second)[0]
    assert "Waiting to fine-tune you" in waiting and "number 1 in line (you are next)" in waiting
    assert [c[2] for c in fake.calls if c[0] == "fine_tune"] == ["me"]  # the second has not started
    assert list(first)[-1][3] == "me"
    rest = list(second)
    assert any("Fine-tuning you" in u[0] for u in rest) and rest[-1][3] == "you"


def test_stop_while_waiting_leaves_the_line_and_starts_nothing(fake, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(finetune, "QUEUE", finetune.GpuQueue(slots=1))
    monkeypatch.setattr(finetune, "TICK_S", 0.05)
    fake.fine_tune_steps, fake.step_pause_s = 40, 0.05
    first = finetune.fine_tune(_clip(tmp_path), "me", "fast", True)
    next(first)
    req = gr.Request(session_hash="page-2")
    second = finetune.fine_tune(_clip(tmp_path), "you", "fast", True, req)
    assert "number 1 in line" in next(second)[0]
    finetune.stop_run(req)
    with pytest.raises(gr.Error, match="left the line"):
        list(second)
    assert [c[2] for c in fake.calls if c[0] == "fine_tune"] == ["me"] and "page-2" not in finetune._RUNNING
    first.close()  # the page of the first run went away: its worker ends and frees the GPU
    deadline = time.monotonic() + 5
    while finetune.QUEUE._running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not finetune.QUEUE._running and not finetune.QUEUE._line


def test_progress_says_part_detail_and_time_left_once():
    assert finetune.stage_words("train [face] step 9/40, loss 0.1, 900 Gaussians, ETA 1.2 min") == (
        "Training", "step 9/40, loss 0.1, 900 Gaussians")
    assert finetune.stage_words("preprocess: parsing frame 1/5") == ("Preprocessing", "parsing frame 1/5")
    run = finetune.RunView("me", 600.0)
    run.take(("progress", "train [face] step 9/40, loss 0.1, ETA 1.2 min", 0.5))
    html = run.status_html()
    assert "ETA" not in html and html.count(" left") == 1 and html.count("step 9/40") == 1
    assert "Training (3 of 4): step 9/40" in html


# ------------------------------------------------------------------ resumption (identity.fit)

@pytest.fixture
def staged(monkeypatch):
    """fit's dataset stages replaced by stand-ins that record their calls (and can crash once)."""
    from emotalk.dataset import build
    from emotalk.folders import sha256_file

    calls: list[str] = []
    crash = {"stage": None}

    def prepare(clip, work, settings, progress=None):
        calls.append("prepare")
        Path(work).mkdir(parents=True, exist_ok=True)
        state = {"source": {"sha256": sha256_file(clip)}, "timings_s": {}}
        (Path(work) / "state.json").write_text(json.dumps(state))

    def parse(work, settings, progress=None):
        calls.append("parse")
        if crash["stage"] == "parse":
            crash["stage"] = None
            raise RuntimeError("the machine went away")
        (Path(work) / "parsing.npz").write_bytes(b"x")

    def finish(work, out_dir, settings, progress=None):
        calls.append("finish")
        Path(work).rename(out_dir)  # (the stand-in dataset: training is not part of these tests)
        return "a dataset"

    monkeypatch.setattr(build, "prepare", prepare)
    monkeypatch.setattr(build, "parse", parse)
    monkeypatch.setattr(build, "finish", finish)
    return calls, crash


def _fit(clip, tmp_path, until=None):
    from emotalk.identity import fit
    from emotalk.training.settings import RECIPES

    return fit.fit_identity(clip, tmp_path / "out", RECIPES["test"], tmp_path / "work", until=until)


def test_a_crashed_fit_resumes_after_its_last_finished_stage(staged, tmp_path,
                                                                                    monkeypatch):
    from emotalk.identity import fit

    calls, crash = staged
    checked = []
    monkeypatch.setattr(fit, "check_clip", lambda c: checked.append(c) or _ReadyReport())
    clip = tmp_path / "me.mp4"
    clip.write_bytes(b"clip one")
    crash["stage"] = "parse"
    with pytest.raises(RuntimeError, match="went away"):
        _fit(clip, tmp_path)
    assert calls == ["prepare", "parse"] and (tmp_path / "work" / "dataset.partial" / "state.json").is_file()
    assert _fit(clip, tmp_path, until="parse") is None  # the same clip again: prepare is not run again
    assert calls == ["prepare", "parse", "parse"] and len(checked) == 2
    assert (tmp_path / "work" / "dataset.partial" / "parsing.npz").is_file()
    said = []
    from emotalk.training.settings import RECIPES

    assert fit.fit_identity(clip, tmp_path / "out", RECIPES["test"], tmp_path / "work", until="prepare",
                            progress=lambda m, f: said.append(m), check=False) is None
    assert said == ["resuming the fine-tune of this clip"] and len(checked) == 2  # check=False: none
    assert _fit(clip, tmp_path, until="finish") is None  # stops there: no training
    assert calls[-1] == "finish" and not (tmp_path / "out").exists()


def test_another_clip_under_the_same_name_starts_fresh(staged, tmp_path, monkeypatch):
    from emotalk.identity import fit

    calls, _ = staged
    monkeypatch.setattr(fit, "check_clip", lambda c: _ReadyReport())
    one, two = tmp_path / "one.mp4", tmp_path / "two.mp4"
    one.write_bytes(b"clip one")
    two.write_bytes(b"clip two")
    assert _fit(one, tmp_path, until="parse") is None
    (tmp_path / "work" / "train").mkdir()
    (tmp_path / "work" / "train" / "state.json").write_text("{}")  # a training state of clip one
    assert _fit(two, tmp_path, until="prepare") is None
    assert calls == ["prepare", "parse", "prepare"]  # clip two was prepared anew ...
    assert not (tmp_path / "work" / "dataset.partial" / "parsing.npz").exists()  # ... nothing of one kept
    assert not (tmp_path / "work" / "train").exists()
    assert fit.resumes_clip(tmp_path / "work", two) and not fit.resumes_clip(tmp_path / "work", one)


class _ReadyReport:
    """A clip check report with nothing to say."""

    findings: list = []
    ok = True

    def raise_if_refused(self) -> None:
        pass



def test_bench_finetune_is_registered_and_refuses_unknown_stages(tmp_path):
    from emotalk.cli import bench
    from emotalk.cli.bench import finetune as bench_ft
    from emotalk.errors import InputError

    assert "finetune" in bench.SCRIPTS
    clip = tmp_path / "me.mp4"
    clip.write_bytes(b"x")
    with pytest.raises(InputError, match="Unknown stages bogus"):
        bench_ft.main([str(clip), "--name", "me", "--out", str(tmp_path / "b"), "--stages", "prepare,bogus"])
    assert bench_ft._phase("train [face] step 1/2") == "train" and bench_ft._phase("emotion targets 1/8") == \
        "emotion" and bench_ft._phase("preprocess: parsing frame 1/5") is None
