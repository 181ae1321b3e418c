"""Preprocessing's decode-once frame store and parallel tracking: the same track, in order, as one
landmarker over the whole clip; a clip too large for the store is scaled; parsing streams frames.mp4.
The per-frame work spread over threads (plate, body frames) gives exactly what the serial path gives."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from emotalk.dataset.bodyframes import body_frames
from emotalk.dataset.pool import cpu_workers, ordered_map
from emotalk.dataset.stages import plate
from emotalk.dataset.stages.store import LabelWriter, read_labels
from emotalk.face.parsing import BG
from tests.conftest import MAY, shared


@pytest.fixture(scope="module")
def may_store(tmp_path_factory):
    """The shared 5 s clip (125 frames), decoded once into a frame store."""
    from emotalk import media
    from emotalk.dataset.framestore import decode_clip

    clip = shared(MAY)
    info = media.probe(clip)
    dec = decode_clip(clip, 25.0, info.duration, info.width, info.height, 8000.0, 32, 4,
                      tmp_path_factory.mktemp("st"), lambda m, f: None)
    yield dec
    dec.remove()


def test_decode_once_keeps_frames_thumbs_and_samples(may_store, tmp_path):
    from emotalk import media
    from emotalk.dataset.framestore import decode_clip

    dec = may_store
    assert dec.n_frames == 125 and dec.scale == 1.0 and dec.thumbs.shape == (125, 32, 32)
    assert len(dec.samples) == 4
    first = next(iter(media.iter_frames(shared(MAY), fps=25.0)))
    assert np.array_equal(dec.frames()[0], first)  # the decoder's own frames, unchanged
    small = decode_clip(shared(MAY), 25.0, 5.0, 512, 512, 20.0, 32, 4, tmp_path, lambda m, f: None)
    try:  # 20 MB cannot hold 185 frames of 512²: scaled to fit, even sides
        h, w = small.frames().shape[1:3]
        assert small.scale < 0.5 and w % 2 == 0 and h % 2 == 0 and w == round(512 * small.scale)
        assert small.n_frames == 125
    finally:
        small.remove()
    assert not small.path.exists()


def test_parallel_tracking_matches_one_landmarker_in_order(may_store):
    from emotalk.face import tracking

    dec = may_store
    frames = dec.frames()
    one = tracking.track_video((frames[i] for i in range(dec.n_frames)), dec.n_frames, 25.0)
    reports = []
    with tracking.ParallelTracker(2, min_range=20) as tr:
        two = tr.track(str(dec.path), dec.n_frames, 25.0, lambda m, f: reports.append(f))
        assert tr.used == 2
    assert two.lmk.shape == one.lmk.shape == (125, 478, 3) and two.blendshapes.shape == (125, 52)
    assert two.blendshape_names == one.blendshape_names and two.found.all()
    assert (two.width, two.height) == (one.width, one.height)
    assert np.array_equal(two.lmk[:62], one.lmk[:62])  # the first range: the very same landmarker run
    err = np.linalg.norm(two.lmk[62:, :, :2] - one.lmk[62:, :, :2], axis=-1).mean(1)
    assert err.max() < 2.0, err  # the second range starts warm: frames in order, no jump at the seam
    assert reports and reports == sorted(reports) and reports[-1] <= 1.0


class _CountingParser:
    """FaceParser's streaming on a stand-in network: frame i's 'probabilities' are the constant i."""

    def __init__(self, step: int, batch: int):
        from emotalk.face.parsing import ParsingSettings

        self.settings = ParsingSettings(batch=batch, frame_step=step, temporal_weights=(0.0, 1.0, 0.0))
        self.seen: list[int] = []

    def _probs_t(self, frames):
        import torch

        self.seen += [int(f[0, 0, 0]) for f in frames]
        return [torch.full((2, 1, 1), float(f[0, 0, 0]), dtype=torch.float16) for f in frames]


@pytest.mark.parametrize("T,step,batch", [(8, 2, 3), (7, 2, 2), (10, 3, 4), (5, 1, 2), (1, 2, 4)])
def test_parsing_every_kth_frame_blends_the_frames_between_in_order(T, step, batch):
    from emotalk.face.parsing import FaceParser

    fake = _CountingParser(step, batch)
    frames = [np.full((1, 1, 3), i, np.uint8) for i in range(T)]
    probs = [float(p[0, 0, 0]) for p in FaceParser._prob_stream(fake, iter(frames))]
    assert probs == pytest.approx(list(range(T)), abs=0.02)  # linear blend of i-1 and i+1 gives i, in order
    keys = sorted(set(range(0, T, step)) | {T - 1})
    assert fake.seen == keys  # the network saw every k-th frame and the last, each once


def test_av_offset_uses_estimate_sync_and_the_plain_estimator_only_without_librosa(monkeypatch):
    import importlib.util

    from emotalk.dataset import prepare
    from emotalk.dataset.settings import PreprocessSettings

    rng = np.random.default_rng(0)
    T = 400
    mouth = np.convolve(rng.random(T) ** 3, np.hanning(5), mode="same")
    env = np.repeat(np.roll(mouth, 3), 640)  # speech whose loudness follows the mouth 3 frames later
    wav = (rng.normal(size=T * 640) * env).astype(np.float32)
    est, name, _ = prepare._estimate(mouth, wav, PreprocessSettings())
    assert name == "avsync.lipsync.estimate_sync" and len(est.corr) == 21
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "librosa" else real(n, *a))
    est, name, sure = prepare._estimate(mouth, wav, PreprocessSettings())
    assert name.startswith("avsync.offset.estimate_offset") and est.offset == 3 and sure


# --- per-frame work over threads: the same arrays as the serial path ---

def _tiny(T: int = 60, S: int = 48, seed: int = 0):
    """Frames [T,S,S,3] uint8 and label maps [T,S,S] of a moving 'person' (head over a torso)."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (T, S, S, 3), dtype=np.uint8)
    labs = np.zeros((T, S, S), np.uint8)
    yy, xx = np.mgrid[:S, :S]
    for t in range(T):
        cx = S // 2 + int(3 * np.sin(t / 5))
        labs[t][(yy - S // 3) ** 2 + (xx - cx) ** 2 < (S // 6) ** 2] = 1  # skin (head)
        labs[t][(yy > S // 2) & (np.abs(xx - cx) < S // 8)] = 14  # neck
        labs[t][(yy > 2 * S // 3) & (np.abs(xx - cx) < S // 3)] = 16  # cloth
        labs[t][rng.random((S, S)) < 0.01] = 17  # hair specks: flicker
    return frames, labs


def _plate_reference(frames, labels, s):
    """The plate as the serial code computed it before threads (median along the first axis)."""
    import cv2

    N, S = frames.shape[:2]
    k = plate._disk(s.person_grow * S)
    vals = frames.astype(np.uint16)
    for i in range(N):
        vals[i][cv2.dilate((labels[i] != BG).astype(np.uint8), k) > 0] = 1000
    vals.sort(axis=0)
    n_valid = (vals[..., 0] < 1000).sum(0)
    seen = n_valid > 0
    pick = np.maximum(n_valid - 1, 0) // 2
    out = np.take_along_axis(vals, pick[None, :, :, None].repeat(3, -1), 0)[0]
    out = np.where(seen[..., None], out, 0).astype(np.uint8)
    return (plate.inpaint(out, ~seen) if (~seen).any() else out), float((~seen).mean())


def test_plate_parallel_equals_serial_and_reference():
    frames, labs = _tiny()
    labs[:, :10, :20] = 1  # a corner that is person in every frame: inpainted
    s = plate.PlateSettings()
    ref, ref_frac = _plate_reference(frames, labs, s)
    one, f1 = plate.background_plate(frames, labs, s, workers=1)
    many, f3 = plate.background_plate(frames, labs, s, workers=3)
    assert ref_frac > 0 and f1 == f3 == ref_frac
    np.testing.assert_array_equal(one, ref)
    np.testing.assert_array_equal(many, ref)


def test_body_frames_parallel_equals_serial(tmp_path):
    T = 60  # 3 label chunks, the last one short
    frames, labs = _tiny(T)
    lw = LabelWriter(tmp_path / "parsing.npz")
    for lab in labs:
        lw.write(lab)
    lw.close()
    np.testing.assert_array_equal(read_labels(tmp_path / "parsing.npz"), labs)
    bg = frames[0].copy()
    s = plate.PlateSettings()
    expect = [plate.body_frame(f, lab, bg, s) for f, lab in zip(frames, labs)]
    runs = {}
    for w in (1, 3):
        got: list[np.ndarray] = []
        runs[w] = (got, body_frames(iter(frames), tmp_path / "parsing.npz", T, bg, s, got.append, w,
                                    keep={0, 26, T - 1}))
    for got, res in runs.values():
        assert len(got) == T
        for a, b in zip(got, expect):
            np.testing.assert_array_equal(a, b)
        assert len(res.flicker) == T - 1 and max(res.flicker) > 0
        assert sorted(res.body) == [0, 26, T - 1]
        np.testing.assert_array_equal(res.crop[26], frames[26])
    assert runs[1][1].flicker == runs[3][1].flicker
    assert not [t for t in threading.enumerate() if t.name.startswith("emotalk-frames")]


def test_ordered_map_keeps_order_bounds_work_and_raises():
    taken = []

    def items():
        for i in range(50):
            taken.append(i)
            yield i

    out = []
    for r in ordered_map(lambda i: i * i, items(), workers=4, in_flight=5):
        out.append(r)
        assert len(taken) <= len(out) + 5  # no more than in_flight ahead
    assert out == [i * i for i in range(50)]

    def bad(i):
        if i == 7:
            raise ValueError("frame 7")
        return i

    with pytest.raises(ValueError, match="frame 7"):
        list(ordered_map(bad, range(20), workers=3))
    assert cpu_workers(5) == 5 and cpu_workers(0) >= 1


class _FakeParser:
    """FaceParser stand-in: frame i's labels are the tiny clip's label map i with specks (to be cleaned)."""

    labs: np.ndarray

    def __init__(self, settings, device="cpu"):
        pass

    def stream(self, frames):
        for i, _ in enumerate(frames):
            yield self.labs[i]


def test_parse_cleaning_pipelined_in_processes_equals_serial(tmp_path, monkeypatch):
    import json

    from emotalk.dataset.parse import parse
    from emotalk.face import parsing as fparse

    T, S = 30, 48
    frames, labs = _tiny(T, S, seed=1)
    _FakeParser.labs = labs
    monkeypatch.setattr(fparse, "FaceParser", _FakeParser)
    got = {}
    for w in (1, 2):
        work = tmp_path / f"w{w}"
        work.mkdir()
        (work / "state.json").write_text(json.dumps({"T": T, "size": S, "fps": 25.0, "timings_s": {}}))
        parse(work, frames=frames, device="cpu", workers=w)
        got[w] = read_labels(work / "parsing.npz")
    expect = np.stack([fparse.clean_labels(lab) for lab in labs])
    assert not np.array_equal(expect, labs)  # the cleaning did something
    np.testing.assert_array_equal(got[1], expect)
    np.testing.assert_array_equal(got[2], expect)
