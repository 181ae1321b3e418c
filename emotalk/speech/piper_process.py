"""One long-lived Piper process per speaking setting, fed one text per line, so the voice model loads
once (not per sentence: ~0.5-3 s each on a 2-core CPU). Piper is GPL-3 and never imported here: its own
CLI runs as a child process (`python -m piper -d DIR`), which writes one WAV per input line into a
private folder and logs "Wrote PATH" on stderr when it is complete; we read that WAV back.

Thread-safe (a lock per process; two settings may speak at once), a timeout per text (a hung or dead
Piper is killed and a fresh one starts on the next call), and every child is closed at interpreter exit.
"""

from __future__ import annotations

import atexit
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotalk.errors import MediaError


class EngineUnavailable(MediaError):
    """An offline engine could not speak; the message is the reason shown to the user."""


@dataclass(frozen=True)
class PiperTimeouts:
    """How long Piper may take before it counts as hung (seconds)."""

    load_s: float = 60.0  # extra allowance for the first text of a fresh process (model load)
    base_s: float = 20.0  # per text, on top of the per-character allowance
    per_char_s: float = 0.3  # per character of the text (slow CPU, busy machine)

    def for_text(self, text: str, fresh: bool) -> float:
        return self.base_s + self.per_char_s * len(text) + (self.load_s if fresh else 0.0)


TIMEOUTS = PiperTimeouts()
MAX_PROCESSES = 2  # idle Piper processes kept (one per length scale / pause); ~150 MB each
_WROTE = re.compile(r"Wrote (.+\.wav)\s*$")
_LIVE: set = set()  # every PiperProcess with a running child, pooled or not (closed at exit)
STATS = {"starts": 0}  # how many Piper processes were started (tests check reuse with it)


class PiperProcess:
    """A Piper child that speaks one line of text at a time into `outdir`; `speak` returns the WAV path's
    samples as 16 kHz float32 [N]. `cmd` is the Piper command without the output folder."""

    def __init__(self, cmd: Sequence[str], timeouts: PiperTimeouts = TIMEOUTS, name: str = "Piper"):
        self.cmd, self.timeouts, self.name = list(cmd), timeouts, name
        self.lock = threading.Lock()  # one text at a time through this process
        self.proc: subprocess.Popen | None = None
        self.outdir: Path | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()  # stderr lines; None at end of file
        self._tail: deque[str] = deque(maxlen=5)  # last stderr lines that were not "Wrote" (for errors)
        self._spoken = 0  # texts spoken by the current child (0: the next one also waits for the load)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.alive() else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the child now if it is not running (it loads the voice while nobody waits)."""
        with self.lock:
            if not self.alive():
                self._start()

    def _start(self) -> None:
        self._close()
        self.outdir = Path(tempfile.mkdtemp(prefix="emotalk-piper-"))
        env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUNBUFFERED": "1"}
        try:
            self.proc = subprocess.Popen([*self.cmd, "-d", str(self.outdir)], stdin=subprocess.PIPE,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        except OSError as e:
            self._close()  # removes the folder
            raise EngineUnavailable(f"{self.name} could not start ({e})") from e
        STATS["starts"] += 1
        _LIVE.add(self)
        self._lines, self._spoken = queue.Queue(), 0
        self._tail.clear()
        threading.Thread(target=self._read_stderr, args=(self.proc, self._lines), daemon=True,
                         name="piper-stderr").start()

    @staticmethod
    def _read_stderr(proc: subprocess.Popen, lines: queue.Queue) -> None:
        for raw in proc.stderr:
            lines.put(raw.decode("utf-8", errors="replace").rstrip())
        lines.put(None)

    def speak(self, text: str) -> np.ndarray:
        """16 kHz float32 [N] speech of one line of `text` (newlines become spaces)."""
        line = " ".join(text.split())
        if not line:
            raise EngineUnavailable(f"{self.name} was given no text to speak")
        with self.lock:
            if not self.alive():
                self._start()
            fresh = self._spoken == 0
            limit = self.timeouts.for_text(line, fresh)
            try:
                self.proc.stdin.write((line + "\n").encode("utf-8"))
                self.proc.stdin.flush()
            except OSError:
                self._died("stopped before it could read the text")
            wav_path = self._wait_wrote(limit)
            self._spoken += 1
            try:
                from emotalk.media import read_audio

                return read_audio(wav_path, 16000)
            finally:
                wav_path.unlink(missing_ok=True)

    def _wait_wrote(self, limit: float) -> Path:
        deadline = time.monotonic() + limit
        while True:
            try:
                got = self._lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                self._close(kill=True)
                raise EngineUnavailable(f"{self.name} took longer than {limit:.0f} s on one sentence and was "
                                        "stopped; it starts afresh on the next request (try again, or a "
                                        "shorter text)") from None
            if got is None:
                self._died("stopped")
            m = _WROTE.search(got)
            if m:
                return Path(m.group(1))
            if got.strip():
                self._tail.append(got.strip())

    def _died(self, what: str) -> None:
        try:
            code = self.proc.wait(timeout=5) if self.proc is not None else None
        except subprocess.TimeoutExpired:
            code = "still running"
        last = self._tail[-1] if self._tail else "no message"
        self._close(kill=True)
        raise EngineUnavailable(f"{self.name} {what} (exit {code}: {last}); it starts afresh on the next "
                                "request")

    def close(self) -> None:
        """Stop the child (end of input, then kill after 2 s) and remove its folder; safe to repeat.
        Waits (up to 10 s) for a text being spoken to finish."""
        got = self.lock.acquire(timeout=10)
        try:
            self._close()
        finally:
            if got:
                self.lock.release()

    def _close(self, kill: bool = False) -> None:
        """`kill`: at once (hung or broken); else end its input and give it 2 s to exit."""
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        if proc is not None:
            try:
                if proc.stdin:
                    proc.stdin.close()
            except OSError:
                pass
            if kill and proc.poll() is None:
                proc.kill()
            try:
                proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self.outdir is not None:
            shutil.rmtree(self.outdir, ignore_errors=True)
            self.outdir = None


_POOL: OrderedDict[tuple[str, ...], PiperProcess] = OrderedDict()  # command -> process, oldest first
_POOL_LOCK = threading.Lock()


def process_for(cmd: Sequence[str]) -> PiperProcess:
    """The kept Piper process for this exact command (started on its first text); evicts the oldest
    idle one beyond MAX_PROCESSES."""
    key = tuple(cmd)
    evicted: list[PiperProcess] = []
    with _POOL_LOCK:
        p = _POOL.get(key)
        if p is None:
            p = _POOL[key] = PiperProcess(key)
        _POOL.move_to_end(key)
        for k in list(_POOL)[:-1]:
            if len(_POOL) <= MAX_PROCESSES:
                break
            if _POOL[k].lock.acquire(blocking=False):  # only idle ones; a busy one stays until next time
                _POOL[k].lock.release()
                evicted.append(_POOL.pop(k))
    for e in evicted:
        e.close()
    return p


def close_all() -> None:
    """Stop every kept Piper process (at interpreter exit, and for tests)."""
    procs = list(_LIVE)
    with _POOL_LOCK:
        _POOL.clear()
    for p in procs:
        p.close()


atexit.register(close_all)
