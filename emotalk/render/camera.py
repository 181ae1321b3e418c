"""Camera moves applied to every head pose of a render."""

from __future__ import annotations


def orbit(w2c, yaw_deg: float, pitch_deg: float):
    """Turn the head frame by (yaw, pitch) degrees: a camera offset applied to every pose. [L,4,4]."""
    import numpy as np

    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    m = np.eye(4)
    m[:3, :3] = ry @ rx
    return (w2c @ m).astype(np.float32)
