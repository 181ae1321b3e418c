"""Face tracking and head pose: rotation helpers, MediaPipe on a real clip, pose fitting on real and
synthetic landmarks (reprojection, recovered rotations), gap filling."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from emotalk.face import tracking as tr
from emotalk.face.head_pose import EYE_OUTER_M, PoseSettings, fit_head_poses
from emotalk.face.landmarks import STABLE_IDX, face_height_px, yaw_deg
from emotalk.face.rotations import rodrigues, rotation_angle_deg, rotvec, umeyama


@pytest.fixture(scope="module")
def may_track_40(may_track) -> tr.RawTrack:
    """The first 40 frames of the session's tracking of the shared clip (conftest's `may_track`)."""
    t = may_track
    return dataclasses.replace(t, lmk=t.lmk[:40], found=t.found[:40], blendshapes=t.blendshapes[:40])


def test_rodrigues_roundtrip():
    rng = np.random.default_rng(0)
    rv = rng.normal(size=(50, 3)) * 0.8
    R = rodrigues(rv)
    assert np.allclose(R @ np.swapaxes(R, -1, -2), np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(R), 1.0)
    assert np.allclose(rotvec(R), rv, atol=1e-7)
    assert np.allclose(rotation_angle_deg(R, R), 0, atol=1e-4)


def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3))
    R = rodrigues(np.array([0.2, -0.5, 0.1]))
    Y = 2.5 * X @ R.T + np.array([1.0, -2.0, 3.0])
    s, R2, t = umeyama(X, Y)
    assert s == pytest.approx(2.5, rel=1e-9)
    assert np.allclose(R2, R, atol=1e-9)
    assert np.allclose(s * X @ R2.T + t, Y, atol=1e-9)


def test_fill_gaps_and_runs():
    found = np.array([True, False, False, True, True, False])
    x = np.arange(6, dtype=np.float32)[:, None] * np.array([[1.0, 2.0]], np.float32)
    x[~found] = 0
    y = tr.fill_gaps(x, found)
    assert tr.lost_runs(found) == [(1, 3), (5, 6)]
    assert np.allclose(y[:, 0], [0, 1, 2, 3, 4, 4])


def test_mediapipe_on_real_clip(may_track_40):
    t = may_track_40
    assert t.lmk.shape == (40, 478, 3) and t.found.all()
    assert len(t.blendshape_names) == 52 and t.blendshapes.shape == (40, 52)
    assert all(n in t.blendshape_names for n in tr.UPPER_FACE_NAMES)
    # landmarks inside the 512² frame; the face is about 290 px tall and frontal
    assert 0 < t.lmk[..., 0].min() and t.lmk[..., 0].max() < 512
    assert 200 < np.median(face_height_px(t.lmk)) < 400
    assert np.abs(np.median(yaw_deg(t.lmk))) < 20


def test_head_pose_reprojects_real_landmarks(may_track_40):
    hp = fit_head_poses(may_track_40.lmk, 512, PoseSettings(ba_frames=30, fovs_deg=(15.0, 20.0, 30.0)))
    q = hp.quality
    assert q["reproj_err_px_at512"] < 2.0
    assert q["jitter_deg"] < 0.5
    assert hp.world_to_cam.shape == (40, 4, 4) and hp.lmk3d.shape == (40, 478, 3)
    # the head is in front of the camera, about a face-size away given the focal length
    z = hp.world_to_cam[:, 2, 3]
    assert (z > 0).all()
    # lmk3d are metres: outer eye corners 9 cm apart
    d = np.linalg.norm(hp.lmk3d[:, 33] - hp.lmk3d[:, 263], axis=-1)
    assert np.allclose(d, EYE_OUTER_M, rtol=0.1)
    # projecting the head template with K and world_to_cam lands on the 2-D landmarks
    P = hp.template[STABLE_IDX]
    X = np.einsum("tij,nj->tni", hp.world_to_cam[:, :3, :3], P) + hp.world_to_cam[:, None, :3, 3]
    uv = np.einsum("ij,tnj->tni", hp.K, X)
    uv = uv[..., :2] / uv[..., 2:]
    assert np.linalg.norm(uv - may_track_40.lmk[:, STABLE_IDX, :2], axis=-1).mean() < 2.0


def test_head_pose_recovers_known_motion(may_track_40):
    """Synthetic clip: a rigid head (the real template) turned through known poses and projected."""
    S, f, c = 256, 600.0, 128.0
    base = fit_head_poses(may_track_40.lmk * 0.5, S, PoseSettings(ba_frames=20, fovs_deg=(20.0,)))
    P = base.template.astype(np.float64)
    T = 30
    ang = np.radians(np.stack([8 * np.sin(np.linspace(0, 3, T)), 15 * np.sin(np.linspace(0, 2, T)),
                               np.zeros(T)], 1))
    R = rodrigues(ang)
    t = np.stack([np.zeros(T), np.zeros(T), np.full(T, 0.9)], 1)
    X = np.einsum("tij,nj->tni", R, P) + t[:, None]
    uv = f * X[..., :2] / X[..., 2:] + c
    z = X[..., 2:] * 0  # MediaPipe-like depth channel: only used for the template's first guess
    lmk = np.concatenate([uv, z + (X[..., 2:] - 0.9) * f / 0.9], -1).astype(np.float32)
    hp = fit_head_poses(lmk, S, PoseSettings(ba_frames=30, smooth_window=5))
    assert hp.quality["reproj_err_px"] < 0.5
    # the head's turn between any frame and frame 0 is recovered (the head frame itself is defined up
    # to a fixed rotation, which this angle does not see)
    Rh = hp.world_to_cam[:, :3, :3].astype(np.float64)
    turn_true = rotation_angle_deg(R[:1], R)
    turn_est = rotation_angle_deg(Rh[:1], Rh)
    assert turn_true.max() > 10
    assert np.abs(turn_true - turn_est).max() < 1.5
