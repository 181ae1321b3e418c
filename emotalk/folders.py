"""Open a project folder (identity dataset, identity checkpoint): files present, its JSON readable."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from emotalk.errors import DatasetError


def read_folder_json(root: Path, files: Iterable[str], json_name: str, kind: str, create: str,
                     redo: str) -> dict:
    """Check that `root` holds `files` and return its parsed `json_name`; DatasetError otherwise.

    kind: what the folder is ("identity dataset"); create: the command that makes one;
    redo: what to do when it is damaged ("Run preprocess again.").
    """
    if not root.is_dir():
        raise DatasetError(f"No {kind} at {root}. Create one: {create}")
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        raise DatasetError(f"The {kind} at {root} is incomplete (missing {', '.join(missing)}). {redo}")
    try:
        return json.loads((root / json_name).read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"{root / json_name} is unreadable ({e}). {redo}") from e
