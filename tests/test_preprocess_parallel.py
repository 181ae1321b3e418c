"""Preprocessing's decode-once frame store and parallel tracking: the same track, in order, as one
landmarker over the whole clip; a clip too large for the store is scaled; parsing streams frames.mp4."""

from __future__ import annotations

import numpy as np
import pytest

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
