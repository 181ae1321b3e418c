"""Rotation maths of the head pose: rotation vectors <-> matrices, angles between rotations, and the
similarity (scale, rotation, translation) that best maps one point set onto another (Umeyama)."""

from __future__ import annotations

import numpy as np


def rodrigues(rv: np.ndarray) -> np.ndarray:
    """Rotation vectors [...,3] -> matrices [...,3,3]."""
    th = np.linalg.norm(rv, axis=-1, keepdims=True)[..., None]  # [...,1,1]
    k = rv / np.maximum(th[..., 0], 1e-12)
    kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
    z = np.zeros_like(kx)
    K = np.stack([np.stack([z, -kz, ky], -1), np.stack([kz, z, -kx], -1), np.stack([-ky, kx, z], -1)], -2)
    eye = np.broadcast_to(np.eye(3), K.shape)
    return eye + np.sin(th) * K + (1 - np.cos(th)) * (K @ K)


def rotvec(R: np.ndarray) -> np.ndarray:
    """Matrices [...,3,3] -> rotation vectors [...,3] (angles below pi)."""
    cos = np.clip((np.trace(R, axis1=-2, axis2=-1) - 1) / 2, -1, 1)
    th = np.arccos(cos)
    w = np.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], -1)
    s = np.sin(th)[..., None]
    small = s < 1e-8
    return np.where(small, w / 2, w * (th[..., None] / np.maximum(2 * s, 1e-12)))


def rotation_angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """Angle between rotations [...,3,3], degrees."""
    rel = np.swapaxes(Ra, -1, -2) @ Rb
    return np.degrees(np.arccos(np.clip((np.trace(rel, axis1=-2, axis2=-1) - 1) / 2, -1, 1)))


def umeyama(src: np.ndarray, dst: np.ndarray, scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Similarity (s, R, t) minimising |s R src + t - dst|² for point sets [N,3] (Umeyama); scale=False
    fixes s = 1 (a rigid fit)."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    d = np.sign(np.linalg.det(U @ Vt))
    D = np.diag([1.0, 1.0, d])
    R = U @ D @ Vt
    s = float((S * np.diag(D)).sum() / (a**2).sum() * len(src)) if scale else 1.0
    return s, R, md - s * R @ ms
