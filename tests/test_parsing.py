"""Face parsing: the BiSeNet weights load into our network and label a real face sensibly; cleaning
removes islands and holes; the label store round-trips exactly."""

from __future__ import annotations

import numpy as np
import pytest

from emotalk.dataset.stages.store import LabelWriter, read_labels
from emotalk.face import parsing as fp
from tests.conftest import shared


@pytest.fixture(scope="module")
def may_frames() -> np.ndarray:
    from emotalk import media

    return media.read_frames(shared("clips/may_5s_512px_25fps.mp4"), size=(256, 256), max_frames=3)


def test_bisenet_labels_a_real_face(may_frames):
    parser = fp.FaceParser(fp.ParsingSettings(input_size=512, batch=3))
    p = parser.probs(may_frames)
    assert p.shape == (3, 19, 256, 256)
    assert np.allclose(p.astype(np.float32).sum(1), 1.0, atol=0.02)
    labs = list(parser.stream(iter(may_frames)))
    assert len(labs) == 3
    lab = fp.clean_labels(labs[0])
    frac = np.bincount(lab.ravel(), minlength=19) / lab.size
    # a close-up of a face: lots of skin and hair, a nose, lips, eyes, neck, some background
    for c in (fp.SKIN, fp.HAIR, 10, fp.U_LIP, fp.L_LIP, fp.NECK, fp.BG):
        assert frac[c] > 0.002, (fp.LABELS[c], frac[c])
    assert 0.1 < frac[fp.SKIN] < 0.5
    # the nose sits in the middle third of the picture, the hair above the lips
    ys, xs = np.nonzero(lab == 10)
    assert 256 / 3 < xs.mean() < 2 * 256 / 3
    assert np.nonzero(lab == fp.HAIR)[0].mean() < np.nonzero(lab == fp.U_LIP)[0].mean()


def test_clean_labels_islands_and_holes():
    lab = np.zeros((100, 100), np.uint8)
    lab[20:80, 20:80] = fp.SKIN
    lab[40:45, 40:45] = fp.BG  # hole inside the face
    lab[5:7, 5:7] = fp.HAIR  # stray island in the background
    lab[60:62, 30:32] = fp.HAIR  # stray island inside the skin
    out = fp.clean_labels(lab, fp.ParsingSettings(min_island_frac=1e-3, max_hole_frac=0.01))
    assert (out[40:45, 40:45] == fp.SKIN).all()
    assert out[5, 5] == fp.BG and out[60, 30] == fp.SKIN
    assert (out[0:10, 90:100] == fp.BG).all()  # real background stays
    assert (out == fp.HAIR).sum() == 0


def test_label_store_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    T, S = 57, 48
    labs = np.zeros((T, S, S), np.uint8)
    for t in range(T):
        labs[t, 10 + t % 7: 30 + t % 5, 8:40] = 1 + t % 18
        labs[t, rng.integers(0, S, 5), rng.integers(0, S, 5)] = rng.integers(0, 19, 5)
    w = LabelWriter(tmp_path / "p.npz", chunk=25)
    for lab in labs:
        w.write(lab)
    w.close()
    assert np.array_equal(read_labels(tmp_path / "p.npz"), labs)
    idx = np.array([56, 0, 26, 25, 24])
    assert np.array_equal(read_labels(tmp_path / "p.npz", idx), labs[idx])
    with pytest.raises(IndexError):
        read_labels(tmp_path / "p.npz", [T])
