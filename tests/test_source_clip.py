"""identity.json names the clip an identity was trained on by its file name and sha256 only: never a
folder of the machine that trained it (the identity may be shared), whether it was trained from a
dataset folder or from a clip."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest

from emotalk.identity.checkpoint import save_identity, source_record
from emotalk.training.loop import train
from emotalk.training.settings import PRESETS

SECRET = "/home/alice/private/clips"
SHA = "ab" * 32


def test_source_record_keeps_only_the_name_and_sha(tmp_path):
    meta = {"path": f"{SECRET}/talk.mp4", "name": "talk.mp4", "sha256": SHA}
    assert source_record(None, meta) == ("talk.mp4", SHA)
    assert source_record(None, {"path": f"{SECRET}/talk.mp4"}) == ("talk.mp4", None)
    assert source_record(None, {}) == (None, None)
    clip = tmp_path / "talk.mp4"
    clip.write_bytes(b"not really a video")
    assert source_record(str(clip), meta) == ("talk.mp4", hashlib.sha256(clip.read_bytes()).hexdigest())
    assert source_record("C:\\Users\\alice\\talk.mp4", meta) == ("talk.mp4", SHA)  # a Windows path


@pytest.mark.parametrize("given", [None, "clip"])
def test_identity_json_has_no_absolute_clip_path(tmp_path, given):
    from emotalk.gaussians.synthetic import make_synthetic

    ds = make_synthetic(size=32, n_frames=6)
    ds.root = tmp_path / "users" / "alice" / "datasets" / "talk"
    ds.meta = dict(ds.meta, source={"path": f"{SECRET}/talk.mp4", "name": "talk.mp4", "sha256": SHA})
    s = replace(PRESETS["test"], steps=0, batch=1, size=32,
                model=replace(PRESETS["test"].model, n_face_init=60, n_mouth_init=20))
    model, summary = train(ds, s, tmp_path / "w")
    clip = None
    if given:
        clip = tmp_path / "uploads" / "talk.mp4"
        clip.parent.mkdir()
        clip.write_bytes(b"the uploaded clip")
    out = save_identity(tmp_path / "ident", model, ds, s, summary, name="t",
                        source_clip=str(clip) if clip else None)
    text = (out / "identity.json").read_text()
    src = json.loads(text)["source"]
    assert src["clip"] == "talk.mp4" and src["name"] == "talk.mp4"
    assert src["sha256"] == (hashlib.sha256(clip.read_bytes()).hexdigest() if clip else SHA)
    assert src["dataset"] == "talk"
    assert SECRET not in text and str(tmp_path) not in text
