"""Stage 5 of building a dataset: face parsing of the cropped frames (the slow stage; it may run on
another machine, e.g. a GPU host, between prepare and finish)."""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np

from emotalk.dataset.crops import decode_crops
from emotalk.dataset.progress import Progress, StageClock
from emotalk.dataset.settings import PreprocessSettings
from emotalk.errors import DatasetError
from emotalk.folders import atomic_path


def parse(work: str | os.PathLike, settings: PreprocessSettings = PreprocessSettings(),
          progress: Progress | None = None, frames: np.ndarray | None = None,
          device: str | None = None, workers: int = 1) -> None:
    """Face parsing of the work folder's crops -> parsing.npz. `frames` [T,S,S,3] may be given (decoded
    elsewhere); otherwise crops.npy or frames.mp4 is read (by OpenCV where there is no ffmpeg).
    `workers` > 1 cleans labels in that many processes."""
    import torch

    from emotalk.dataset.stages.store import LabelWriter
    from emotalk.face import parsing as fparse

    work = Path(work)
    state = json.loads((work / "state.json").read_text())
    T, S = state["T"], state["size"]
    st = StageClock(progress, ("parse",), (1.0,))
    rep = st.begin("parse", "parsing faces")
    if frames is None:
        if (work / "crops.npy").is_file():
            frames = np.load(work / "crops.npy", mmap_mode="r")
        else:
            frames = decode_crops(work / "frames.mp4", None, S, state["fps"], T, work / "crops.npy", rep)
    if len(frames) != T or frames.shape[1:] != (S, S, 3):
        raise DatasetError(f"parse: got frames {frames.shape}, expected ({T}, {S}, {S}, 3).")
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    parser = fparse.FaceParser(settings.parsing, device=dev)
    clean = partial(fparse.clean_labels, settings=settings.parsing)
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    pending: list[np.ndarray] = []
    with atomic_path(work / "parsing.npz") as tmp:
        lw = LabelWriter(tmp)

        def drain(n_done: int) -> None:
            done = pool.map(clean, pending, chunksize=8) if pool else map(clean, pending)
            for lab in done:
                lw.write(lab)
            pending.clear()
            rep(f"parsing frame {n_done}/{T}", n_done / T)

        try:
            for i, lab in enumerate(parser.stream(frames[j] for j in range(T))):
                pending.append(lab)
                if len(pending) >= (16 * workers if pool else 10):
                    drain(i + 1)
            drain(T)
        finally:
            if pool:
                pool.shutdown()
        lw.close()
    state["timings_s"].update(st.end() | {"parse_device": dev})
    state["timings_s"].pop("total", None)
    (work / "state.json").write_text(json.dumps(state, indent=1))
