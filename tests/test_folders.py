"""emotalk.folders: file hashes, atomic writes and folder swaps (a reader never sees half a file)."""

from __future__ import annotations

import hashlib
import json

import pytest

from emotalk import folders
from emotalk.errors import DatasetError


def test_sha256_file_matches_hashlib_across_chunks(tmp_path):
    data = bytes(range(256)) * 9000  # > 2 MiB: several 1 MiB chunks
    p = tmp_path / "blob.bin"
    p.write_bytes(data)
    assert folders.sha256_file(p) == hashlib.sha256(data).hexdigest()
    p.write_bytes(data[:-1])
    assert folders.sha256_file(p) != hashlib.sha256(data).hexdigest()


def test_atomic_write_creates_parents_and_replaces(tmp_path):
    p = tmp_path / "a" / "b" / "doc.json"
    assert folders.atomic_write_text(p, "one") == p
    assert p.read_text() == "one"
    folders.atomic_write_bytes(p, b"two")
    assert p.read_bytes() == b"two"
    assert sorted(x.name for x in p.parent.iterdir()) == ["doc.json"]  # no temporary left behind


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "video.mp4"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="encoder died"):
        with folders.atomic_path(p) as tmp:
            assert tmp.parent == p.parent and tmp.suffix == ".mp4" and tmp != p  # tools read the suffix
            tmp.write_bytes(b"half")
            raise RuntimeError("encoder died")
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["video.mp4"]


def test_swap_folder_replaces_a_folder_whole(tmp_path):
    dst = tmp_path / "out" / "ds"
    new = tmp_path / "out" / ".ds.tmp"
    new.mkdir(parents=True)
    (new / "meta.json").write_text("{}")
    assert folders.swap_folder(new, dst) == dst  # no folder there yet
    assert (dst / "meta.json").is_file() and not new.exists()
    new.mkdir()
    (new / "tracks.npz").write_bytes(b"x")
    folders.swap_folder(new, dst)
    assert sorted(p.name for p in dst.iterdir()) == ["tracks.npz"]  # the old contents are gone
    assert sorted(p.name for p in dst.parent.iterdir()) == ["ds"]  # and so is the old folder


def test_read_folder_json_says_what_is_wrong(tmp_path):
    root = tmp_path / "ds"
    with pytest.raises(DatasetError, match="No identity dataset at .*Create one: make it"):
        folders.read_folder_json(root, ["meta.json"], "meta.json", "identity dataset", "make it", "Redo.")
    root.mkdir()
    (root / "meta.json").write_text("{not json")
    with pytest.raises(DatasetError, match="incomplete \\(missing a.bin\\). Redo."):
        folders.read_folder_json(root, ["meta.json", "a.bin"], "meta.json", "identity dataset", "x", "Redo.")
    (root / "a.bin").write_bytes(b"")
    with pytest.raises(DatasetError, match="unreadable"):
        folders.read_folder_json(root, ["meta.json", "a.bin"], "meta.json", "identity dataset", "x", "Redo.")
    (root / "meta.json").write_text(json.dumps({"n": 3}))
    got = folders.read_folder_json(root, ["meta.json"], "meta.json", "identity dataset", "x", "Redo.")
    assert got == {"n": 3}
