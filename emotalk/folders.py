"""Files and folders of the project: reading a project folder, hashing files, writing atomically.

Writers never leave half a file or half a folder behind: they write a temporary sibling and rename it
into place (a rename within one folder is atomic), so a crash or a concurrent reader sees old or new.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (model files and clips can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary sibling of `path` (same suffix, so tools that read the format from the name work) to
    write; it replaces `path` when the block ends without error and is removed when it raises."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # not created here: the writer creates it, with the usual permissions (mkstemp would give 0600)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}-{secrets.token_hex(4)}{out.suffix}")
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (parents created); returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically (parents created); returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def swap_folder(new: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Move the finished folder `new` to `dst`, replacing a folder already there.

    The old folder is first renamed aside (a hidden sibling), the new one renamed into place, then the
    old one deleted: at every moment `dst` is either the complete old or the complete new folder.
    `new` must be on the same file system as `dst` (make it a sibling).
    """
    new, dst = Path(new), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(new, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dst
