"""Background plate and body frames on a synthetic scene with known background, head and torso."""

from __future__ import annotations

import numpy as np

from emotalk.dataset.stages import plate
from emotalk.dataset.stages.crop import Crop, CropSettings, choose_crop
from emotalk.face.parsing import BG, CLOTH, HAIR, NECK, SKIN


def _scene(T: int = 12, S: int = 96):
    """A striped background, a head (skin + hair) moving sideways over it, a fixed torso and neck."""
    yy, xx = np.mgrid[0:S, 0:S]
    bg = np.stack([(yy * 2) % 256, (xx * 3) % 256, np.full_like(xx, 90)], -1).astype(np.uint8)
    frames, labels = [], []
    for t in range(T):
        lab = np.zeros((S, S), np.uint8)
        cx = 30 + 3 * t
        head = (xx - cx) ** 2 + (yy - 35) ** 2 < 14**2
        lab[head] = SKIN
        lab[head & (yy < 28)] = HAIR
        lab[(yy >= 49) & (yy < 70) & (abs(xx - 48) < 7)] = NECK
        lab[yy >= 70] = CLOTH
        f = bg.copy()
        f[lab == SKIN] = (220, 180, 150)
        f[lab == HAIR] = (40, 30, 20)
        f[lab == NECK] = (200, 160, 130)
        f[lab == CLOTH] = (20, 60, 20)
        frames.append(f)
        labels.append(lab)
    return bg, np.stack(frames), np.stack(labels)


def test_plate_recovers_background_where_seen():
    bg, frames, labels = _scene()
    p, frac = plate.background_plate(frames, labels, plate.PlateSettings(person_grow=1 / 96))
    seen = (labels == BG).any(0)
    # pixels uncovered in some frame (the head moves) get the true background back
    ok = seen & (np.arange(96)[:, None] < 65)
    assert ok.sum() > 2000
    assert np.abs(p.astype(int) - bg.astype(int))[ok].mean() < 2
    assert 0 < frac < 0.5  # behind the torso: never seen, inpainted


def test_body_frame_removes_head_keeps_torso():
    bg, frames, labels = _scene()
    p, _ = plate.background_plate(frames, labels)
    b = plate.body_frame(frames[5], labels[5], p, plate.PlateSettings(neck_extend=0.1))
    skin = labels[5] == SKIN
    cloth = labels[5] == CLOTH
    assert np.array_equal(b[cloth], frames[5][cloth])
    assert np.abs(b[skin].astype(int) - frames[5][skin].astype(int)).mean() > 40
    # the neck continues a few rows up under the chin, in a neck colour
    col = 48
    top = np.argmax(labels[5][:, col] == NECK)
    above = b[top - 3, col].astype(int)
    assert np.abs(above - np.array([200, 160, 130]) * 0.9).max() < 30


def test_crop_is_square_inside_the_frame_and_holds_the_face():
    T = 20
    lmk = np.zeros((T, 478, 2), np.float32)
    rng = np.random.default_rng(0)
    base = rng.uniform([150, 100], [250, 230], size=(478, 2))
    base[10] = [200, 100]
    base[152] = [200, 230]  # forehead-to-chin 130 px
    for t in range(T):
        lmk[t] = base + [2 * t, 0]
    c = choose_crop(lmk, np.ones(T, bool), 640, 360, CropSettings())
    assert isinstance(c, Crop) and c.side <= 360
    assert 0 <= c.x0 and c.x0 + c.side <= 640 and 0 <= c.y0 and c.y0 + c.side <= 360
    pts = c.to_crop(lmk, 128)
    assert pts.min() >= 0 and pts.max() <= 128
