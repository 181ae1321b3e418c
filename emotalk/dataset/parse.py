"""Stage 5 of building a dataset: face parsing of the cropped frames (the slow stage; it may run on
another machine, e.g. a GPU host, between prepare and finish). The frames stream from frames.mp4."""

from __future__ import annotations

import dataclasses
import json
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from emotalk.dataset.crops import iter_crops
from emotalk.dataset.progress import Progress, StageClock
from emotalk.dataset.settings import PreprocessSettings
from emotalk.errors import DatasetError
from emotalk.folders import atomic_path


def clean_workers() -> int:
    """Label-cleaning processes for this machine: one per core but one (the parser's), at least 1."""
    from emotalk.face.tracking import default_workers

    return default_workers()


def parse(work: str | os.PathLike, settings: PreprocessSettings = PreprocessSettings(),
          progress: Progress | None = None, frames: np.ndarray | None = None,
          device: str | None = None, workers: int = 0) -> None:
    """Face parsing of the work folder's frames.mp4 (streamed; OpenCV decodes where there is no ffmpeg)
    -> parsing.npz. `frames` [T,S,S,3] may be given instead. BiSeNet runs in batches on `device` (CUDA
    when available); labels are cleaned in `workers` spawned processes (0: one per core but one; 1: a
    thread), beside the network."""
    import multiprocessing as mp

    import torch

    from emotalk.dataset.stages.store import LabelWriter
    from emotalk.face import parsing as fparse

    work = Path(work)
    state = json.loads((work / "state.json").read_text())
    T, S = state["T"], state["size"]
    st = StageClock(progress, ("parse",), (1.0,))
    rep = st.begin("parse", "parsing faces")
    if frames is not None and (len(frames) != T or frames.shape[1:] != (S, S, 3)):
        raise DatasetError(f"parse: got frames {frames.shape}, expected ({T}, {S}, {S}, 3).")
    source = (frames[j] for j in range(T)) if frames is not None else iter_crops(work / "frames.mp4", S,
                                                                                 state["fps"], T)
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    ps = settings.parsing
    if dev.startswith("cuda"):
        ps = dataclasses.replace(ps, batch=ps.batch_cuda)
    else:  # the network is most of a CPU's preprocessing time: it sees every k-th frame there
        ps = dataclasses.replace(ps, frame_step=max(ps.frame_step, ps.frame_step_cpu))
    parser = fparse.FaceParser(ps, device=dev)
    clean = partial(fparse.clean_labels, settings=settings.parsing)
    workers = workers or clean_workers()
    # cleaning (OpenCV, which releases the GIL) in spawned processes, or with one worker in a thread: in
    # both cases beside the network, which goes on with the next frames meanwhile
    pool = (ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) if workers > 1 else
            ThreadPoolExecutor(1, thread_name_prefix="emotalk-clean"))
    pending: deque = deque()  # futures of cleaned labels, in frame order, not yet written
    limit = 8 * workers
    with atomic_path(work / "parsing.npz") as tmp:
        lw = LabelWriter(tmp)
        try:
            # labels are written in frame order as soon as the oldest is cleaned (at most `limit` waiting)
            for i, lab in enumerate(parser.stream(source)):
                pending.append(pool.submit(clean, lab))
                while pending and (len(pending) >= limit or pending[0].done()):
                    lw.write(pending.popleft().result())
                if i % 25 == 24:
                    rep(f"parsing frame {i + 1}/{T}", (i + 1) / T)
            while pending:
                lw.write(pending.popleft().result())
            rep(f"parsing frame {T}/{T}", 1.0)
        finally:
            pool.shutdown(cancel_futures=True)
        lw.close()
    state["timings_s"].update(st.end() | {"parse_device": dev})
    state["parse"] = {"device": dev, "batch": ps.batch, "frame_step": ps.frame_step, "clean_workers": workers}
    state["timings_s"].pop("total", None)
    (work / "state.json").write_text(json.dumps(state, indent=1))
