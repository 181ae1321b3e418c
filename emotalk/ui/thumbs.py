"""Gallery thumbnails: the identity's own, or a generated placeholder with its initial."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

_CACHE = Path(tempfile.gettempdir()) / "emotalk-ui-thumbs"


def thumbnail_for(name: str, thumbnail: Path | None) -> str:
    """Path of an image for the identity gallery (a placeholder when the identity has none)."""
    if thumbnail is not None and Path(thumbnail).is_file():
        return str(thumbnail)
    _CACHE.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    path = _CACHE / f"{digest}.png"
    if not path.exists():
        hue = np.frombuffer(bytes.fromhex(digest[:6]), dtype=np.uint8)
        img = Image.new("RGB", (128, 128), tuple(int(c) // 2 + 64 for c in hue))
        draw = ImageDraw.Draw(img)
        draw.text((64, 64), (name[:1] or "?").upper(), fill=(255, 255, 255), font_size=48, anchor="mm")
        img.save(path)
    return str(path)
