"""Identity datasets: `preprocess` turns a talking-head clip into one (a folder); `format.load_dataset`
reads it. The folder layout is documented in docs/DATASET.md.

Three parts, each its own module, so face parsing can run on another machine: `prepare` (early checks of
the whole clip -> MediaPipe tracking -> crop, head pose and intrinsics -> AV-sync check and audio shift),
`parse` (cropped frames -> face parsing), `finish` (background plate -> head-removed body frames ->
dataset files). They work in a temporary folder that is renamed into place at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from emotalk.dataset.finish import finish
from emotalk.dataset.format import IdentityDataset
from emotalk.dataset.parse import parse
from emotalk.dataset.prepare import prepare
from emotalk.dataset.progress import Progress, sub_progress
from emotalk.dataset.settings import PreprocessSettings

__all__ = ["PreprocessSettings", "finish", "parse", "prepare", "preprocess"]

def preprocess(clip: str | os.PathLike, out_dir: str | os.PathLike,
               settings: PreprocessSettings = PreprocessSettings(),
               progress: Progress | None = None, work: str | os.PathLike | None = None,
               until: str | None = None) -> IdentityDataset | None:
    """Turn a talking-head clip into an identity dataset folder at out_dir (replaced atomically).

    prepare -> parse -> finish in a work folder. `work` None: a temporary sibling of out_dir, removed on
    any error. `work` given: a folder kept between runs, where each finished stage stays (prepare's
    state.json, parse's parsing.npz), so a run after a crash continues after the last one; finish turns
    it into out_dir. `until` ("prepare" | "parse"): stop after that stage and return None.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if work is not None:
        work = Path(work)
        if not (work / "state.json").is_file():
            shutil.rmtree(work, ignore_errors=True)  # a prepare that did not finish
            prepare(clip, work, settings, sub_progress(progress, 0.0, 0.25))
        if until == "prepare":
            return None
        if not (work / "parsing.npz").is_file():
            parse(work, settings, sub_progress(progress, 0.25, 0.85))
        if until == "parse":
            return None
        return finish(work, out_dir, settings, sub_progress(progress, 0.85, 1.0))
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        prepare(clip, work, settings, sub_progress(progress, 0.0, 0.25))
        parse(work, settings, sub_progress(progress, 0.25, 0.85))
        return finish(work, out_dir, settings, sub_progress(progress, 0.85, 1.0))
    finally:
        shutil.rmtree(work, ignore_errors=True)
