"""Training on CUDA (gsplat) improves a tiny identity; gsplat and the reference render it alike."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gpu


def test_tiny_training_on_cuda(tmp_path) -> None:
    import gsplat_prebuilt  # noqa: F401  (optional: a prebuilt kernel on the lent GPU hosts)

    from emotalk.gaussians.synthetic import make_synthetic
    from emotalk.training.data import load_train_data
    from emotalk.training.loop import evaluate, train
    from emotalk.training.settings import PRESETS

    ds = make_synthetic(size=64, n_frames=24)
    s = replace(PRESETS["test"], steps=150, batch=4, size=64)
    before, _ = train(ds, replace(s, steps=0), tmp_path / "a", device="cuda")
    data = load_train_data(ds, 64, ds.audio_code, "cuda")
    _, m0 = evaluate(before, data, data.train_idx)
    model, summary = train(ds, s, tmp_path / "b", device="cuda")
    imgs_g, m1 = evaluate(model, data, data.train_idx, backend="gsplat")
    imgs_t, m2 = evaluate(model, data, data.train_idx, backend="torch")
    print(m0, m1, m2, summary)
    assert m1["psnr"] > m0["psnr"] + 3.0
    diff = np.abs(imgs_g.astype(int) - imgs_t.astype(int))
    assert diff.mean() < 0.5 and abs(m1["psnr"] - m2["psnr"]) < 0.2
    assert torch.cuda.max_memory_allocated() < 8e9
