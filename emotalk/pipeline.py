"""The API that the app and the CLI call. It knows nothing of the UI."""

from __future__ import annotations

import tempfile
from pathlib import Path

from emotalk import assets, media


def new_workdir(prefix: str = "emotalk-") -> Path:
    """A fresh private folder for one request's files (no fixed paths, no shared state)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def convert_clip(path: str | Path, workdir: str | Path | None = None, max_side: int = 720) -> Path:
    """Any uploaded clip -> 25 fps H.264 + AAC mp4 (the format everything downstream reads)."""
    out_dir = Path(workdir) if workdir else new_workdir()
    return media.standardize(path, out_dir / (Path(path).stem + "_25fps.mp4"), fps=25.0, max_side=max_side)


def model_files() -> list[list[str]]:
    """One row per model file: name, state in the cache, size, licence, carrier package."""
    return [[n, assets.status(n), f"{a.size / 1e6:.1f} MB", a.licence, a.carrier]
            for n, a in sorted(assets.REGISTRY.items())]
