"""The Fine-tune tab's adapter: pipeline.fine_tune runs in a worker thread and streams to the page.

The page shows its own status block, once (stage k of n, its detail, a bar, time since the start, time
left), the loss curve and the sample frames; Gradio's progress overlay would cover them, so that overlay
is off for this event. One fine-tune runs per GPU at a time (`GpuQueue`); the others wait, shown their
place in line. A run stops when the visitor presses Stop or closes the tab: the worker's next progress
report raises (a waiting run leaves the line). The same name again resumes a crashed run (the pipeline's
work folder), unless the clip is another one.
"""

from __future__ import annotations

import html
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from emotalk import pipeline
from emotalk.errors import EmoTalkError, InputError
from emotalk.ui import gpu
from emotalk.ui.messages import duration_words, user_error
from emotalk.ui.plots import loss_figure

MAX_SAMPLES = 8  # sample frames kept in the gallery (the latest)
TICK_S = 1.0  # the status line (its clock) is refreshed at least this often
PLOT_EVERY_S = 2.0  # the loss plot is redrawn at most this often (the curve grows with every step)


class FineTuneStopped(EmoTalkError):
    """The visitor stopped the fine-tune (Stop button or closed tab); nothing was saved."""


_RUNNING: dict[str, threading.Event] = {}  # page session -> stop flag of its fine-tune
_LOCK = threading.Lock()
MAX_WAITING = 16  # fine-tune events Gradio lets in at once (running + waiting in GpuQueue's line)


class GpuQueue:
    """First come, first served: `slots` fine-tunes run at once (one per GPU); the others wait in line."""

    def __init__(self, slots: int | None = None):
        self._slots = slots
        self._line: list[object] = []  # waiting tickets, first in line first
        self._running: set[object] = set()
        self._lock = threading.Lock()

    @property
    def slots(self) -> int:
        if self._slots is None:
            import torch

            self._slots = max(1, torch.cuda.device_count())
        return self._slots

    def join(self) -> object:
        """A ticket at the end of the line."""
        ticket = object()
        with self._lock:
            self._line.append(ticket)
        return ticket

    def place(self, ticket: object) -> int:
        """0: the ticket may run (it holds a slot until `leave`); else its place in line (1: next)."""
        with self._lock:
            if ticket in self._running:
                return 0
            i = self._line.index(ticket)
            if i == 0 and len(self._running) < self.slots:
                self._line.pop(0)
                self._running.add(ticket)
                return 0
            return i + 1

    def leave(self, ticket: object) -> None:
        """The run ended, or the visitor stopped waiting: its slot or place goes to the next."""
        with self._lock:
            self._running.discard(ticket)
            if ticket in self._line:
                self._line.remove(ticket)


QUEUE = GpuQueue()


def stage_words(stage: str) -> tuple[str, str]:
    """The pipeline's progress text -> (part of the run, detail), the time left taken out (the status
    block says it once): "train [face] step 9/40, ..., ETA 1.2 min" -> ("Training", "step 9/40, ...")."""
    import re

    text = re.sub(r",?\s*ETA [0-9.]+ ?(min|s)\b", "", stage).strip()
    if text.startswith("preprocess: "):
        return "Preprocessing", text[len("preprocess: "):]
    if text.startswith("train ["):
        return "Training", text.split("] ", 1)[-1]
    if text.startswith("emotion"):
        return "Emotions", text
    if text.startswith(("checking the clip", "resuming the fine-tune", "another clip")):
        return "Starting", text
    return "", text


PARTS = ("Starting", "Preprocessing", "Training", "Emotions")  # the parts of a run, in order


def stop_run(request: gr.Request | None = None) -> None:
    """Stops this page's fine-tune (Stop button; Gradio's unload event when the tab closes)."""
    with _LOCK:
        flag = _RUNNING.get(getattr(request, "session_hash", None) or "")
    if flag is not None:
        flag.set()


@dataclass
class RunView:
    """What the page shows of one running fine-tune."""

    name: str  # the new identity's name
    expected_s: float | None  # the up-front estimate of the whole run (None: unknown)
    started: float = field(default_factory=time.monotonic)  # monotonic clock at the start
    stage: str = "starting"  # the pipeline's words for what it is doing
    fraction: float = 0.0  # of the whole run, 0..1
    history: list[float] = field(default_factory=list)  # loss per step so far
    samples: list[Any] = field(default_factory=list)  # the latest sample frames
    shown: float = 0.0  # monotonic clock of the last update sent to the page
    plotted: float = 0.0  # monotonic clock of the last loss plot sent
    new_curve: bool = False  # the loss curve grew since the last plot
    new_frame: bool = False  # a sample frame arrived since the last update

    def take(self, ev: tuple) -> None:
        """Takes one report of the worker: ("progress", stage, fraction) or ("sample", losses, frame)."""
        if ev[0] == "progress":
            self.stage, self.fraction = ev[1], max(self.fraction, min(1.0, float(ev[2])))
        elif ev[0] == "sample":
            self.history, self.new_curve = ev[1], True
            if ev[2] is not None:  # most reports carry only the loss curve
                self.samples, self.new_frame = (self.samples + [ev[2]])[-MAX_SAMPLES:], True

    def update(self) -> tuple:
        """(status, loss plot, samples, identity) for the page; the plot at most every PLOT_EVERY_S."""
        now = time.monotonic()
        plot = gr.skip()
        if self.new_curve and (self.new_frame or now - self.plotted >= PLOT_EVERY_S):
            plot, self.plotted, self.new_curve = loss_figure(self.history), now, False
        samples = list(self.samples) if self.new_frame else gr.skip()
        self.shown, self.new_frame = now, False
        return self.status_html(), plot, samples, gr.skip()

    def left_s(self) -> float | None:
        """Seconds left: from the pace so far once there is some, else from the estimate."""
        spent = time.monotonic() - self.started
        if self.fraction >= 0.05:
            return spent * (1.0 - self.fraction) / self.fraction
        return None if self.expected_s is None else max(0.0, self.expected_s - spent)

    def status_html(self) -> str:
        """One status block: name, clock, time left, a bar and the stage in words (each said once)."""
        spent = int(time.monotonic() - self.started)
        left = self.left_s()
        head = f"<b>Fine-tuning {html.escape(self.name)}</b> · {spent // 60}:{spent % 60:02d} so far"
        if left is not None:
            head += f" · about {duration_words(left)} left"
        pct = round(100 * min(1.0, max(0.0, self.fraction)))
        part, detail = stage_words(self.stage)
        where = f"{part} ({PARTS.index(part) + 1} of {len(PARTS)}): " if part else ""
        return (f'<div class="ft-status">{head}<div class="ft-bar" role="progressbar" aria-valuenow="{pct}" '
                f'aria-valuemin="0" aria-valuemax="100"><div style="width:{pct}%"></div></div>'
                f'<div class="ft-stage">{html.escape(where + detail)} ({pct} %)</div></div>')


def waiting_html(name: str, place: int) -> str:
    """The status block of a run waiting for the GPU: its place in line."""
    ahead = "you are next" if place == 1 else f"{place - 1} ahead of you"
    return (f'<div class="ft-status"><b>Waiting to fine-tune {html.escape(name)}</b> · number {place} in '
            f'line ({ahead}); one fine-tune runs per GPU at a time. Stop leaves the line.</div>')


def _worker(clip: str, name: str, preset: str, consent: bool, events: queue.Queue,
            stop: threading.Event, ticket: object | None = None, design: str = "mouth") -> None:
    """Runs the fine-tune; every report goes to `events`, and raises FineTuneStopped once stopped. Its GPU
    slot (`ticket`) is given to the next in line when it has ended, not before."""
    def check() -> None:
        if stop.is_set():
            raise FineTuneStopped(f"The fine-tune of {name} was stopped; nothing was saved.")

    def progress(stage: str, fraction: float) -> None:
        check()
        events.put(("progress", stage, float(fraction)))

    def on_sample(history: list[float], frame: Any) -> None:
        check()
        events.put(("sample", list(history), frame))

    info, err = None, None
    try:
        info = gpu.fine_tune(clip, name, preset, consent, progress, on_sample, design)
    except BaseException as e:  # noqa: BLE001 - handed to the page's thread, which raises it
        err = e
    finally:
        if ticket is not None:
            QUEUE.leave(ticket)
    events.put(("done", info, err))


def refuse_checked_clip(clip: str) -> None:
    """InputError with the reasons and fixes when the clip check (run as the clip was uploaded) refused
    this clip: Fine-tune says why at once. An unchecked clip is checked by the pipeline's fine-tune."""
    from emotalk.identity.fit import remembered_report

    report = remembered_report(clip)
    if report is not None:
        report.raise_if_refused()


def fine_tune(clip: str | None, name: str, preset: str, consent: bool, request: gr.Request | None = None,
              design: str = "mouth"):
    """Trains an identity from the visitor's clip, yielding status, loss plot, sample frames and, at the
    end, the new identity's name. The pipeline checks consent, name, preset and the emotion design (the
    page's fifth input: Gradio puts the request in its own parameter's place, before it)."""
    try:
        if not clip:
            raise InputError("Upload a video clip of one person talking to the camera first.")
        refuse_checked_clip(clip)
        expected = pipeline.estimate_fine_tune_seconds(clip, preset)
    except EmoTalkError as e:
        raise user_error(e) from e
    run, events, stop = RunView((name or "").strip(), expected), queue.Queue(), threading.Event()
    key = getattr(request, "session_hash", None) or f"direct-{id(stop)}"
    with _LOCK:
        _RUNNING[key] = stop
    ticket, started = QUEUE.join(), False
    try:
        place = QUEUE.place(ticket)
        while place:  # others are fine-tuning on this GPU: say where this run is in line
            yield waiting_html(run.name, place), gr.skip(), gr.skip(), gr.skip()
            if stop.wait(TICK_S):
                raise user_error(FineTuneStopped(f"You left the line; the fine-tune of {run.name} did not "
                                                 "start."))
            place = QUEUE.place(ticket)
        run.started = time.monotonic()
        threading.Thread(target=_worker, args=(clip, run.name, preset, bool(consent), events, stop, ticket,
                                               design or "mouth"),
                         daemon=True, name=f"fine-tune-{run.name}").start()
        started = True
        yield run.status_html(), loss_figure([]), [], gr.skip()
        while True:
            try:
                ev = events.get(timeout=TICK_S)
            except queue.Empty:
                ev = ("tick",)  # nothing new: the clock still moves on
            if ev[0] == "done":
                break
            run.take(ev)
            if events.empty() or time.monotonic() - run.shown >= TICK_S:  # a backlog: skip to the latest
                yield run.update()
    finally:
        stop.set()  # the page went away (the generator was closed): the worker stops at its next report
        with _LOCK:
            _RUNNING.pop(key, None)
        if not started:  # else the worker gives its slot up when it has ended
            QUEUE.leave(ticket)
    info, err = ev[1], ev[2]
    if err is not None:
        if isinstance(err, EmoTalkError):
            raise user_error(err) from err
        raise err
    done = (f"<b>Done:</b> {html.escape(info.name)} is ready and selected in the Generate tab "
            f"({duration_words(time.monotonic() - run.started)}).")
    if getattr(info, "notice", None):  # a preview says what it is: its size, and whether it has emotions
        done += f"<br>⚠️ {html.escape(info.notice)}"
    if getattr(info, "report", None):  # what the fit made: quality, mouth opening, phone targets, emotions
        items = "".join(f"<li>{html.escape(x)}</li>" for x in info.report)
        done += f'<ul class="ft-report">{items}</ul>'
    yield f'<div class="ft-status">{done}</div>', loss_figure(run.history), list(run.samples), info.name


def lock(lock_it: bool):
    """The Fine-tune button off and Stop on while a run goes (and back after it)."""
    return gr.Button(interactive=not lock_it), gr.Button(visible=lock_it)


DESIGN_CHOICES = [("standard", "mouth"), ("whole-face warp", "face")]  # (label, id): how emotions are
# drawn (training.settings.EMOTION_DESIGNS)
RECIPE_LABELS = {"fast": "fast", "quality": "quality (slower, sharper)", "cpu": "CPU preview (small, quick)",
                 "test": "test (tiny; for automated tests)"}


def recipe_choices(with_test: bool = False) -> list[tuple[str, str]]:
    """(label, id) of the fine-tune recipes that run as themselves here (on a CPU only the preview: the
    GPU recipes would turn into it), the tiny test recipe only when asked for."""
    ids = [p for p in pipeline.FINE_TUNE_PRESETS
           if p != "test" and pipeline.fine_tune_recipe(p)["name"] == p] + (["test"] if with_test else [])
    return [(RECIPE_LABELS.get(p, p), p) for p in ids]


def plan(clip: str | None, preset: str) -> str:
    """Said before starting: the expected time of this clip with this recipe, and what it will make."""
    if not clip:
        return ""
    try:
        seconds = pipeline.estimate_fine_tune_seconds(clip, preset)
        recipe = pipeline.fine_tune_recipe(preset)
    except EmoTalkError as e:
        return f"⚠️ {e}"
    device = pipeline.device_info()["device"].upper()
    line = f"Expected: about **{duration_words(seconds)}** on this {device}."
    if recipe["preview"]:
        line += (f" It makes a small preview: {recipe['size']} px, "
                 + ("with emotions." if recipe["emotions"] else "no emotions (every emotion looks neutral)."))
    return line
