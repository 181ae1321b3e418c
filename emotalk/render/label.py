"""The visible 'AI-generated' label burnt into rendered frames."""

from __future__ import annotations


def label_frames(frames, text: str = "AI-generated"):
    """Burn a small translucent label into the bottom-right corner of frames [N,H,W,3]."""
    import cv2

    out = frames.copy()
    h, w = out.shape[1:3]
    if w < 256:  # keep the label small on small videos
        text = "AI"
    scale = max(0.3, w / 1100)
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x0, y0 = w - tw - 8, h - 8
    for f in out:
        roi = f[y0 - th - 4:y0 + 4, x0 - 4:x0 + tw + 4]
        roi[:] = (roi * 0.45).astype(roi.dtype)
        cv2.putText(f, text, (x0, y0), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out
