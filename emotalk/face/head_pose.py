"""Camera and head pose from tracked landmarks: intrinsics and a rigid head->camera transform per frame.

A rigid head template of stable landmarks is refined with a small bundle adjustment over sampled frames
(focal length included), then every frame is solved by PnP and the pose track is smoothed with a
zero-phase filter (no lag). The landmarks come from `emotalk.face.tracking`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from emotalk.face.landmarks import STABLE_IDX, head_frame
from emotalk.face.rotations import rodrigues, rotation_angle_deg, rotvec, umeyama

Progress = Callable[[str, float], None]

EYE_OUTER_M = 0.09  # typical adult outer eye-corner distance in metres: sets the head frame's scale
HEAD_CENTRE_BEHIND_M = 0.08  # head-frame origin: this far behind the stable landmarks' centroid


@dataclass
class PoseSettings:
    """Camera and head-pose fitting."""

    fovs_deg: tuple[float, ...] = (10.0, 15.0, 20.0, 27.0, 36.0, 48.0)  # crop fields of view tried
    fov_prior_deg: float = 20.0  # preferred when the clip cannot tell fields of view apart
    fov_tolerance: float = 0.03  # fovs whose error is within this fraction of the best count as equal
    ba_frames: int = 80  # frames sampled for the template / focal bundle adjustment
    template_prior: float = 0.3  # pull of the refined template towards MediaPipe's mean shape (px units)
    smooth_window: int = 9  # Savitzky-Golay window (frames, odd) for rotation and translation
    smooth_order: int = 2  # its polynomial order (zero-phase: no lag)


@dataclass
class HeadPoses:
    """Intrinsics and per-frame head->camera transforms at the crop's working size."""

    K: np.ndarray  # [3,3] float32
    world_to_cam: np.ndarray  # [T,4,4] float32 (smoothed)
    template: np.ndarray  # [478,3] float32 head-frame mean shape, metres
    lmk3d: np.ndarray  # [T,478,3] float32 per-frame landmarks in the head frame (with expression), metres
    quality: dict  # reprojection errors (px), jitter (deg), focal, fov


def _project(P: np.ndarray, rv: np.ndarray, t: np.ndarray, f: float, c: float) -> np.ndarray:
    """Points [N,3] by poses rv,t [M,3] -> [M,N,2]."""
    R = rodrigues(rv)  # [M,3,3]
    X = np.einsum("mij,nj->mni", R, P) + t[:, None, :]
    z = np.maximum(X[..., 2:3], 1e-6)
    return f * X[..., :2] / z + c


def _template_init(lmk: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Procrustes mean of MediaPipe's per-frame 3-D landmarks [M,478,3] (px) -> [478,3] in the same px."""
    ref = lmk[len(lmk) // 2]
    for _ in range(2):
        acc = np.zeros_like(ref, dtype=np.float64)
        for x in lmk:
            s, R, t = umeyama(x[idx], ref[idx])
            acc += (s * x @ R.T) + t
        ref = acc / len(lmk)
    return ref


def _head_frame(template_px: np.ndarray) -> np.ndarray:
    """The template [478,3] (px) in the head frame: metres, x along the eyes, y down, z back (into the head),
    origin HEAD_CENTRE_BEHIND_M behind the stable landmarks' centroid."""
    R, origin, unit = head_frame(template_px)
    q = (template_px - origin) @ R.T * (EYE_OUTER_M / unit)
    q[:, 2] -= HEAD_CENTRE_BEHIND_M
    return q


def _solve_pnp_all(P: np.ndarray, uv: np.ndarray, f: float, c: float,
                   init: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame PnP: P [N,3], uv [M,N,2] -> rv, t [M,3] (each frame starts from the previous)."""
    import cv2

    K = np.array([[f, 0, c], [0, f, c], [0, 0, 1]], np.float64)
    rvs, ts = np.zeros((len(uv), 3)), np.zeros((len(uv), 3))
    prev = None
    for m in range(len(uv)):
        if init is not None:
            guess = (init[0][m].reshape(3, 1).copy(), init[1][m].reshape(3, 1).copy())
        else:
            guess = prev
        if guess is None:
            ok, r, t = cv2.solvePnP(P, uv[m].astype(np.float64), K, None, flags=cv2.SOLVEPNP_SQPNP)
        else:
            ok, r, t = cv2.solvePnP(P, uv[m].astype(np.float64), K, None, guess[0], guess[1],
                                    useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE)
        rvs[m], ts[m] = r.ravel(), t.ravel()
        prev = (r, t)
    return rvs, ts


def _bundle_adjust(P0: np.ndarray, uv: np.ndarray, f0: float, c: float, prior: float,
                   rv0: np.ndarray, t0: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, np.ndarray]:
    """Refine template P [N,3], focal f and poses on sampled frames (reprojection + template prior)."""
    from scipy.optimize import least_squares
    from scipy.sparse import lil_matrix

    M, N = uv.shape[:2]

    def unpack(x):
        f = np.exp(x[0])
        P = x[1:1 + 3 * N].reshape(N, 3)
        poses = x[1 + 3 * N:].reshape(M, 6)
        return f, P, poses[:, :3], poses[:, 3:]

    # prior weight: 1 m of template change moves the image by about f/z px
    w = prior * f0 / max(t0[:, 2].mean(), 1e-6)

    def fun(x):
        f, P, rv, t = unpack(x)
        r1 = (_project(P, rv, t, f, c) - uv).ravel()
        r2 = (w * (P - P0)).ravel()
        return np.concatenate([r1, r2])

    n_par = 1 + 3 * N + 6 * M
    S = lil_matrix((2 * M * N + 3 * N, n_par), dtype=np.int8)
    for m in range(M):
        rows = slice(2 * N * m, 2 * N * (m + 1))
        S[rows, 0] = 1
        S[rows, 1 + 3 * N + 6 * m: 1 + 3 * N + 6 * (m + 1)] = 1
        for n in range(N):
            S[2 * N * m + 2 * n: 2 * N * m + 2 * n + 2, 1 + 3 * n: 4 + 3 * n] = 1
    for n in range(N):
        for k in range(3):
            S[2 * M * N + 3 * n + k, 1 + 3 * n + k] = 1
    x0 = np.concatenate([[np.log(f0)], P0.ravel(), np.concatenate([rv0, t0], 1).ravel()])
    res = least_squares(fun, x0, jac_sparsity=S, method="trf", loss="huber", f_scale=2.0,
                        max_nfev=30, x_scale="jac")
    f, P, rv, t = unpack(res.x)
    return P, float(f), rv, t


def _savgol(x: np.ndarray, window: int, order: int) -> np.ndarray:
    from scipy.signal import savgol_filter

    if len(x) <= window:
        return x
    return savgol_filter(x, window, order, axis=0, mode="interp")


def jitter_deg(R: np.ndarray, rest_quantile: float = 0.3) -> float:
    """Median frame-to-frame rotation change over the calmest frames (head at rest), degrees."""
    if len(R) < 3:
        return 0.0
    step = rotation_angle_deg(R[:-1], R[1:])  # [T-1]
    calm = np.convolve(step, np.ones(9) / 9, mode="same")
    sel = calm <= np.quantile(calm, rest_quantile)
    return float(np.median(step[sel]))


def snap_to_rays(lmk3d: np.ndarray, lmk2d: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """Move head-frame points [T,N,3] along their camera rays, depth kept, onto the 2-D points [T,N,2]."""
    R, t = w2c[:, :3, :3].astype(np.float64), w2c[:, :3, 3].astype(np.float64)
    X = np.einsum("tij,tnj->tni", R, lmk3d.astype(np.float64)) + t[:, None]
    z = np.maximum(X[..., 2:3], 1e-3)
    xy = (lmk2d - K[:2, 2]) / np.array([K[0, 0], K[1, 1]])
    ray = np.concatenate([xy, np.ones(lmk2d.shape[:-1] + (1,))], -1)
    return np.einsum("tnj,tjk->tnk", z * ray - t[:, None], R).astype(np.float32)


def fit_head_poses(lmk: np.ndarray, size: int, settings: PoseSettings = PoseSettings(),
                   progress: Progress | None = None) -> HeadPoses:
    """Fit intrinsics and per-frame head poses to landmarks [T,478,3] given in crop px at `size`.

    Lost frames must already be interpolated. Reprojection errors are measured on STABLE_IDX.
    """
    T = len(lmk)
    c = size / 2.0
    idx = STABLE_IDX
    uv_all = lmk[:, idx, :2].astype(np.float64)  # [T,N,2]
    samp = np.unique(np.linspace(0, T - 1, min(T, settings.ba_frames)).round().astype(int))

    template_px = _template_init(lmk[samp].astype(np.float64), idx)
    P_head = _head_frame(template_px)  # [478,3] metres
    P0 = P_head[idx]

    # focal search: for each field of view, refine template and poses on the sampled frames; the clip
    # rarely pins the focal length down (small head turns), so among near-equal fits take the prior's
    uv_s = uv_all[samp]
    fits, errs = [], []
    for i, fov in enumerate(settings.fovs_deg):
        f0 = c / np.tan(np.radians(fov) / 2)
        rv0, t0 = _solve_pnp_all(P0, uv_s, f0, c)
        P, f, rv, t = _bundle_adjust(P0, uv_s, f0, c, settings.template_prior, rv0, t0)
        fits.append((P, f))
        errs.append(float(np.linalg.norm(_project(P, rv, t, f, c) - uv_s, axis=-1).mean()))
        if progress:
            progress(f"fitting head template, fov {fov:.0f} deg", 0.8 * (i + 1) / len(settings.fovs_deg))
    ok = [i for i, e in enumerate(errs) if e <= min(errs) * (1 + settings.fov_tolerance)]
    best = min(ok, key=lambda i: abs(settings.fovs_deg[i] - settings.fov_prior_deg))
    P_ref, f = fits[best]
    if progress:
        progress("solving head pose per frame", 0.85)

    rv, t = _solve_pnp_all(P_ref, uv_all, f, c)
    R_raw = rodrigues(rv)
    err_raw = np.linalg.norm(_project(P_ref, rv, t, f, c) - uv_all, axis=-1)  # [T,N]

    # zero-phase smoothing of rotation (as small rotation vectors about the median pose) and translation
    R_med = rodrigues(np.median(rv, 0))
    local = rotvec(np.swapaxes(R_med, -1, -2)[None] @ R_raw)
    local_s = _savgol(local, settings.smooth_window, settings.smooth_order)
    R_s = R_med[None] @ rodrigues(local_s)
    t_s = _savgol(t, settings.smooth_window, settings.smooth_order)
    rv_s = rotvec(R_s)
    err_s = np.linalg.norm(_project(P_ref, rv_s, t_s, f, c) - uv_all, axis=-1)

    w2c = np.tile(np.eye(4, dtype=np.float32), (T, 1, 1))
    w2c[:, :3, :3] = R_s
    w2c[:, :3, 3] = t_s
    K = np.array([[f, 0, c], [0, f, c], [0, 0, 1]], np.float32)

    P_all = P_head.copy()
    P_all[idx] = P_ref
    # per-frame landmarks with expression in the head frame: similarity-align MediaPipe's 3-D shape
    # (crop px) onto the refined template through the stable points; then slide each point along its
    # camera ray so it reprojects exactly onto its 2-D landmark (depth kept from the aligned shape)
    lmk3d = np.empty((T, 478, 3), np.float32)
    for i in range(T):
        s, R, tt = umeyama(lmk[i, idx].astype(np.float64), P_ref)
        lmk3d[i] = (s * lmk[i].astype(np.float64) @ R.T) + tt  # [478,3] head frame
    lmk3d = snap_to_rays(lmk3d, lmk[..., :2], K, w2c)

    scale512 = 512.0 / size
    quality = {
        "focal_px": float(f),
        "fov_deg": float(np.degrees(2 * np.arctan(c / f))),
        "focal_search": {f"{v:g}": round(e * scale512, 3) for v, e in zip(settings.fovs_deg, errs)},
        "reproj_err_px": float(err_s.mean()),  # smoothed poses, at the working size
        "reproj_err_px_at512": float(err_s.mean() * scale512),
        "reproj_err_raw_px_at512": float(err_raw.mean() * scale512),
        "reproj_err_p95_px_at512": float(np.percentile(err_s.mean(1), 95) * scale512),
        "jitter_deg": jitter_deg(R_s),
        "jitter_raw_deg": jitter_deg(R_raw),
        "yaw_deg_range": [float(v) for v in np.percentile(np.degrees(rotvec(R_s))[:, 1], [5, 95])],
    }
    return HeadPoses(K, w2c, P_all.astype(np.float32), lmk3d, quality)
