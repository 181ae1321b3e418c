"""Gallery thumbnails: the identity's own, or a generated placeholder with its initial."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

_CACHE = Path(tempfile.gettempdir()) / "emotalk-ui-thumbs"


def thumbnail_for(name: str, thumbnail: Path | None) -> str:
    """Path of an image for the identity gallery (a placeholder when the identity has none).

    The identity's own thumbnail is copied into the UI cache: Gradio serves files only from its allowed
    folders, and a fine-tuned identity lives in the user's folder, which must not be served whole."""
    _CACHE.mkdir(parents=True, exist_ok=True)
    if thumbnail is not None and Path(thumbnail).is_file():
        data = Path(thumbnail).read_bytes()
        path = _CACHE / f"id-{hashlib.sha1(data).hexdigest()[:16]}{Path(thumbnail).suffix or '.png'}"
        if not path.exists():
            tmp = path.with_suffix(path.suffix + ".part")
            tmp.write_bytes(data)
            tmp.replace(path)
        return str(path)
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    path = _CACHE / f"{digest}.png"
    if not path.exists():
        hue = np.frombuffer(bytes.fromhex(digest[:6]), dtype=np.uint8)
        img = Image.new("RGB", (128, 128), tuple(int(c) // 2 + 64 for c in hue))
        draw = ImageDraw.Draw(img)
        draw.text((64, 64), (name[:1] or "?").upper(), fill=(255, 255, 255), font_size=48, anchor="mm")
        img.save(path)
    return str(path)
