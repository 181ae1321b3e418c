"""Thin-plate splines: a smooth map through control points in any dimension (2-D for the generator's warp
and for mapping the expression texture onto a face; 3-D for emotion's mouth warp of the Gaussians)."""

from __future__ import annotations

import numpy as np


def _tps_kernel(r2: np.ndarray) -> np.ndarray:
    """Thin-plate radial function U = r² log r², with U(0) = 0."""
    return np.where(r2 > 0, r2 * np.log(np.maximum(r2, 1e-20)), 0.0)


def tps_fit(ctrl: np.ndarray, values: np.ndarray, smoothing: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Thin-plate spline through control points [N,D], values [N,C] -> (weights [N,C], affine [D+1,C], scale).
    """
    scale = float(np.abs(ctrl - ctrl.mean(0)).max()) or 1.0
    c = ctrl / scale
    K = _tps_kernel(((c[:, None] - c[None]) ** 2).sum(-1))
    n, q = len(c), c.shape[1] + 1
    lam = smoothing * (np.abs(K).mean() or 1.0)
    P = np.concatenate([np.ones((n, 1)), c], 1)
    A = np.zeros((n + q, n + q))
    A[:n, :n] = K + lam * np.eye(n)
    A[:n, n:] = P
    A[n:, :n] = P.T
    b = np.concatenate([values, np.zeros((q, values.shape[1]))])
    sol = np.linalg.solve(A, b)
    return sol[:n], sol[n:], scale


def tps_eval(ctrl: np.ndarray, w: np.ndarray, aff: np.ndarray, scale: float, pts: np.ndarray,
             chunk: int = 8192) -> np.ndarray:
    """Evaluate a fitted spline at points [M,D] -> [M,C]."""
    c = ctrl / scale
    out = np.empty((len(pts), w.shape[1]))
    for s in range(0, len(pts), chunk):
        p = pts[s:s + chunk] / scale
        K = _tps_kernel(((p[:, None] - c[None]) ** 2).sum(-1))
        out[s:s + chunk] = K @ w + np.concatenate([np.ones((len(p), 1)), p], 1) @ aff
    return out
