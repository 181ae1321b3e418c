"""The identity dataset contract, end to end on a real clip at a small working size, and load errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from emotalk.dataset.format import DATASET_VERSION, IdentityDataset, load_dataset
from emotalk.errors import DatasetError
from emotalk.face.parsing import BG, HAIR, NECK, SKIN
from tests.conftest import MAY


@pytest.fixture(scope="module")
def may_ds(may_dataset_64) -> IdentityDataset:
    """The shared clip preprocessed at 64 px: conftest's session fixture, shared with training tests."""
    return may_dataset_64


def test_progress_moves_forward_through_every_stage(may_preprocessed_64):
    calls = may_preprocessed_64.progress
    fr = [f for _, f in calls]
    assert fr == sorted(fr) and 0 <= fr[0] < 0.05 and fr[-1] > 0.95  # only forward, start to end
    said = " | ".join(m for m, _ in calls)
    for words in ("checking", "tracking frame", "fitting camera", "parsing frame", "body frame", "writing"):
        assert words in said, words
    # stages in order: every parsing message comes after every tracking message
    last_track = max(i for i, (m, _) in enumerate(calls) if "tracking" in m)
    first_parse = min(i for i, (m, _) in enumerate(calls) if "parsing" in m)
    assert last_track < first_parse


def test_av_warning_is_given_and_recorded(may_preprocessed_64):
    """What preprocess warns about the AV offset is what meta.json records (no warning: none recorded)."""
    meta = may_preprocessed_64.dataset.meta
    audio, min_confidence = meta["audio"], meta["settings"]["av_min_confidence"]
    given = [w for w in may_preprocessed_64.warnings if "AV offset" in w or "out of sync" in w]
    assert given == ([f"{MAY.rsplit('/', 1)[-1]}: {audio['warning']}"] if audio["warning"] else [])
    # the offset (avsync.lipsync.estimate_sync) is applied only when its peak is clear and confident
    assert audio["av_estimator"] == "avsync.lipsync.estimate_sync"
    sure = audio["av_clear"] and audio["av_confidence"] >= min_confidence
    applied = audio["av_offset_frames"] if sure else 0
    assert audio["shift_applied_frames"] == applied


def test_debug_sheet_shows_parsing_body_and_plate(may_preprocessed_64):
    """settings.debug_dir gets a contact sheet, 4 tiles a row: parsing overlays of 8 frames spread over the
    clip, the body frames of the first 3 of them, and the background plate."""
    from PIL import Image

    from emotalk.face.parsing import overlay

    ds = may_preprocessed_64.dataset
    sheets = list(may_preprocessed_64.debug_dir.glob("*.png"))
    assert [p.name for p in sheets] == [f"{ds.root.name}_parsing.png"]
    with Image.open(sheets[0]) as im:
        img = np.asarray(im.convert("RGB")).astype(int)
    S = ds.size
    assert img.shape == (3 * S, 4 * S, 3)
    tiles = [img[r:r + S, c:c + S] for r in range(0, 3 * S, S) for c in range(0, 4 * S, S)]
    idx = np.linspace(0, ds.n_frames - 1, 8).round().astype(int)
    overlays = [overlay(ds.frames([i])[0], ds.parsing([i])[0]).astype(int) for i in idx]
    bodies = ds.body(idx[:3]).astype(int)
    for k, tile in enumerate(tiles[:8]):  # (the dataset's frames went through the video codec: not exact)
        d = [np.abs(tile - o).mean() for o in overlays]
        assert np.argmin(d) == k and d[k] < 3, d
    for k, tile in enumerate(tiles[8:11]):
        assert np.argmin([np.abs(tile - b).mean() for b in bodies]) == k
    assert np.array_equal(tiles[11], ds.background)  # the plate, exactly as saved


@pytest.mark.slow
def test_contract_shapes_and_types(may_ds):
    ds = may_ds
    T, S = ds.n_frames, ds.size
    assert (S, ds.fps, T) == (64, 25.0, 125)
    assert ds.K.shape == (3, 3) and ds.K.dtype == np.float32
    assert ds.K[0, 2] == pytest.approx(S / 2) and ds.K[0, 0] > 0
    assert ds.world_to_cam.shape == (T, 4, 4) and ds.world_to_cam.dtype == np.float32
    assert np.allclose(ds.world_to_cam[:, 3], [0, 0, 0, 1])
    assert ds.lmk2d.shape == (T, 478, 2) and ds.lmk3d.shape == (T, 478, 3)
    assert ds.blendshapes.shape == (T, 52) and len(ds.blendshape_names) == 52
    assert ds.upper_face.shape == (T, 7) and all(("eye" in n or "brow" in n) for n in ds.upper_face_names)
    assert not any("mouth" in n.lower() or "jaw" in n.lower() for n in ds.upper_face_names)
    assert ds.background.shape == (S, S, 3) and ds.background.dtype == np.uint8
    # split: last 1/11 held out, disjoint, covering every frame
    assert len(ds.val_idx) == round(T / 11) and ds.val_idx[0] == ds.train_idx[-1] + 1
    assert np.array_equal(np.concatenate([ds.train_idx, ds.val_idx]), np.arange(T))
    fr = ds.frames([0, 5, 124])
    assert fr.shape == (3, S, S, 3) and fr.dtype == np.uint8
    assert np.array_equal(ds.frames()[[0, 5, 124]], fr)
    assert ds.body([3]).shape == (1, S, S, 3)
    lab = ds.parsing([0, 124])
    assert lab.shape == (2, S, S) and lab.max() < 19
    assert len(ds.audio()) == T * 640 and ds.audio().dtype == np.float32


@pytest.mark.slow
def test_geometry_and_quality(may_ds):
    ds, q = may_ds, may_ds.meta["quality"]
    assert q["frames_lost"] == 0
    assert q["reproj_err_px_at512"] < 2.0 and q["jitter_deg"] < 0.5
    # the 3-D landmarks, put through world_to_cam and K, land on the 2-D landmarks (float16 storage)
    idx = [1, 33, 263, 168]
    R, t = ds.world_to_cam[:, :3, :3], ds.world_to_cam[:, None, :3, 3]
    X = np.einsum("tij,tnj->tni", R, ds.lmk3d[:, idx]) + t
    uv = np.einsum("ij,tnj->tni", ds.K, X)
    uv = uv[..., :2] / uv[..., 2:]
    assert np.linalg.norm(uv - ds.lmk2d[:, idx], axis=-1).mean() * 512 / ds.size < 0.5


@pytest.mark.slow
def test_parsing_matches_landmarks(may_ds):
    """Labels and landmarks agree: the nose tip is on skin/nose, the top of the frame is hair/bg."""
    ds = may_ds
    lab = ds.parsing(np.arange(0, ds.n_frames, 10))
    lm = ds.lmk2d[::10]
    chin = []
    for k in range(len(lab)):
        x, y = np.clip(lm[k, 1].round().astype(int), 0, ds.size - 1)  # nose tip
        assert lab[k, y, x] in (SKIN, 10)
        cx, cy = np.clip(lm[k, 152].round().astype(int) + [0, 3], 0, ds.size - 1)  # just below the chin
        chin.append(lab[k, cy, cx] in (NECK, SKIN))
    # (parsing reads the frames as stored in frames.mp4: at 64 px, H.264's half-size colour moves the
    # neck's shadow border by a pixel in a few frames; at 512 px labels agree with raw crops on 99 %)
    assert np.mean(chin) >= 0.75, chin
    assert np.isin(lab[:, 0, :], (BG, HAIR)).mean() > 0.9


@pytest.mark.slow
def test_body_frames_have_no_head(may_ds):
    ds = may_ds
    idx = [10, 60]
    body, frames, lab = ds.body(idx).astype(np.float32), ds.frames(idx).astype(np.float32), ds.parsing(idx)
    face = lab == SKIN
    bg = ds.background.astype(np.float32)
    # face pixels differ from the source and look like the plate (or the continued neck); torso is kept
    assert np.abs(body - frames)[face].mean() > 20
    assert np.abs(body - bg[None])[face].mean() < np.abs(frames - bg[None])[face].mean()
    torso = lab == 16
    assert np.abs(body - frames)[torso].mean() < 8


@pytest.mark.slow
def test_meta_and_size(may_ds):
    m = may_ds.meta
    assert m["format_version"] == DATASET_VERSION and m["units"] == "metres"
    assert len(m["source"]["sha256"]) == 64 and m["source"]["name"] == "may_5s_512px_25fps.mp4"
    assert set(m["audio"]) >= {"av_offset_frames", "av_confidence", "shift_applied_frames"}
    assert m["settings"]["size"] == 64 and "mediapipe" in m["versions"]
    total = sum(p.stat().st_size for p in may_ds.root.iterdir())
    assert total < 3e6
    assert not [p for p in may_ds.root.parent.iterdir() if p.name.startswith(".")]  # no temp leftovers


@pytest.mark.slow
def test_load_errors(may_ds, tmp_path):
    with pytest.raises(DatasetError, match="No identity dataset"):
        load_dataset(tmp_path / "nope")
    bad = tmp_path / "copy"
    shutil.copytree(may_ds.root, bad)
    meta = json.loads((bad / "meta.json").read_text())
    meta["format_version"] = 999
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="format version 999"):
        load_dataset(bad)
    meta["format_version"] = DATASET_VERSION
    (bad / "meta.json").write_text(json.dumps(meta))
    assert load_dataset(bad).n_frames == may_ds.n_frames
    (bad / "tracks.npz").unlink()
    with pytest.raises(DatasetError, match="tracks.npz"):
        load_dataset(bad)
