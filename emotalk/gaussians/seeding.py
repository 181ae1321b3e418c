"""Seeding the two Gaussian branches from an identity dataset: head pixels back-projected at the depth of
the tracked 3-D landmarks (face), mouth-interior pixels of the widest open mouths (inside-mouth)."""

from __future__ import annotations

import numpy as np

from emotalk.face.landmarks import INNER_LIP_RING

# CelebAMask-HQ parsing classes drawn by the face branch (skin, brows, eyes, glasses, ears, earring,
# nose, lips, hair, hat); 11 (mouth interior) belongs to the mouth branch; neck/cloth to the body.
FACE_CLASSES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 17, 18)
MOUTH_CLASS = 11


def _backproject(uv: np.ndarray, z: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """Pixels uv [M,2] at camera depths z [M] -> head-frame points [M,3]."""
    x = (uv[:, 0] - K[0, 2]) / K[0, 0] * z
    y = (uv[:, 1] - K[1, 2]) / K[1, 1] * z
    pc = np.stack([x, y, z], -1)
    c2w = np.linalg.inv(w2c)
    return pc @ c2w[:3, :3].T + c2w[:3, 3]


def landmark_depth(lmk3d: np.ndarray, K: np.ndarray, w2c: np.ndarray, uv: np.ndarray,
                   k: int = 6) -> np.ndarray:
    """Camera depth at pixels uv [M,2], interpolated (inverse distance, k nearest) from the landmarks."""
    from scipy.spatial import cKDTree

    pc = lmk3d @ w2c[:3, :3].T + w2c[:3, 3]
    puv = pc[:, :2] / pc[:, 2:3] * np.diag(K)[:2] + K[:2, 2]
    d, i = cKDTree(puv).query(uv, k=min(k, len(puv)))
    w = 1.0 / np.maximum(d, 1e-3) ** 2
    return (pc[i, 2] * w).sum(1) / w.sum(1)


def seed_points(ds, n_face: int, n_mouth: int, seed: int = 0, n_views: int = 6
                ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Seed both branches from the dataset: per branch (points [N,3], colours [N,3] in [0,1], scales [N]).

    Face: pixels of the head classes in a few training frames spread over the clip, back-projected at
    the depth interpolated from the tracked 3-D landmarks. Mouth: mouth-interior pixels of the frames
    with the widest open mouth, pushed a little behind the lips; inner-lip landmarks if none is open.
    """
    rng = np.random.default_rng(seed)
    tr = np.asarray(ds.train_idx)
    parse_all = None
    views = tr[np.linspace(0, len(tr) - 1, min(n_views, len(tr))).round().astype(int)]
    face_w = float(np.ptp(ds.lmk3d[tr[0]][:, 0]))  # head-frame size of the face
    out: dict[str, list] = {"face": [[], [], []], "mouth": [[], [], []]}
    frames = ds.frames(views)
    parse = ds.parsing(views)
    per_view = int(np.ceil(n_face / len(views)))
    for i, t in enumerate(views):
        mask = np.isin(parse[i], FACE_CLASSES)
        vv, uu = np.nonzero(mask)
        if len(uu) == 0:
            continue
        pick = rng.choice(len(uu), size=min(per_view, len(uu)), replace=False)
        uv = np.stack([uu[pick], vv[pick]], -1).astype(np.float64) + 0.5
        uv += rng.uniform(-0.5, 0.5, uv.shape)
        z = landmark_depth(ds.lmk3d[t].astype(np.float64), ds.K.astype(np.float64),
                           ds.world_to_cam[t].astype(np.float64), uv)
        pts = _backproject(uv, z, ds.K, ds.world_to_cam[t].astype(np.float64))
        col = frames[i][vv[pick], uu[pick]] / 255.0
        footprint = z / ds.K[0, 0] * np.sqrt(len(uu) / len(pick))  # px spacing of samples, in head units
        out["face"][0].append(pts)
        out["face"][1].append(col)
        out["face"][2].append(footprint * 0.7)
    # mouth: frames with the most mouth-interior pixels
    if n_mouth > 0:
        parse_all = ds.parsing(tr)
        area = (parse_all == MOUTH_CLASS).reshape(len(tr), -1).sum(1)
        open_t = tr[np.argsort(-area)[:n_views]]
        open_t = [t for t, a in zip(open_t, np.sort(area)[::-1][:n_views]) if a >= 8]
        if open_t:
            fr = ds.frames(np.asarray(open_t))
            pm = ds.parsing(np.asarray(open_t))
            per = int(np.ceil(n_mouth / len(open_t)))
            for i, t in enumerate(open_t):
                vv, uu = np.nonzero(pm[i] == MOUTH_CLASS)
                pick = rng.choice(len(uu), size=min(per, len(uu)), replace=len(uu) < per)
                uv = np.stack([uu[pick], vv[pick]], -1) + 0.5 + rng.uniform(-0.5, 0.5, (len(pick), 2))
                z = landmark_depth(ds.lmk3d[t].astype(np.float64), ds.K.astype(np.float64),
                                   ds.world_to_cam[t].astype(np.float64), uv)
                z = z + face_w * rng.uniform(0.02, 0.12, len(z))  # behind the lips, inside the mouth
                out["mouth"][0].append(_backproject(uv, z, ds.K, ds.world_to_cam[t].astype(np.float64)))
                out["mouth"][1].append(fr[i][vv[pick], uu[pick]] / 255.0)
                out["mouth"][2].append(np.full(len(pick), face_w * 0.01))
        else:
            ring = ds.lmk3d[tr][:, INNER_LIP_RING].mean(0)  # [20,3]
            base = ring[rng.integers(0, len(ring), n_mouth)]
            back = np.array([0, 0, -1.0]) * face_w * rng.uniform(0.02, 0.12, (n_mouth, 1))
            out["mouth"][0].append(base + back + rng.normal(0, face_w * 0.01, (n_mouth, 3)))
            out["mouth"][1].append(np.full((n_mouth, 3), 0.3))
            out["mouth"][2].append(np.full(n_mouth, face_w * 0.01))
    res = {}
    for b, (p, c, s) in out.items():
        if not p:
            raise ValueError(f"no pixels to seed the {b} branch")
        res[b] = (np.concatenate(p).astype(np.float32), np.concatenate(c).astype(np.float32),
                  np.concatenate(s).astype(np.float32))
    return res
