"""Helpers of the scripts that make docs/ images from renders (scripts/emotion_grid.py, phone_strip.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_grid_takes_the_same_moments_of_the_middle_of_the_clip_and_crops_without_upscaling() -> None:
    grid = _script("emotion_grid")
    rows = grid.pick_frames(100, 3)
    assert rows.tolist() == [15, 50, 84] and grid.pick_frames(1, 2).tolist() == [0, 0]
    y0, y1, x0, x1 = grid.zoom_box(384, 1.5)
    assert (y1 - y0, x1 - x0) == (256, 256) and x0 == 64 and 0 <= y0 and y1 <= 384
    assert grid.zoom_box(256, 1.0) == (0, 256, 0, 256)  # no zoom: the whole frame
    assert grid.zoom_box(256, 4.0, centre_y=0.0)[0] == 0  # kept inside the frame


def test_the_phone_strip_labels_frames_with_their_phone_and_starts_before_the_first_closure() -> None:
    from emotalk.speech.align import Phone

    strip = _script("phone_strip")
    phones = [Phone("SIL", 0.0, 0.3), Phone("HH", 0.3, 0.4), Phone("AY1", 0.4, 0.6), Phone("M", 0.6, 0.7),
              Phone("AA1", 0.7, 0.9)]
    assert strip.phone_at(phones, 0.1) == "" and strip.phone_at(phones, 0.5) == "AY"
    assert strip.phone_at(phones, 2.0) == ""
    assert strip.window_start(phones, 100, 25.0, 13) == 12  # frame 15 is the M's start, 3 frames before
    assert strip.window_start(phones, 20, 25.0, 13) == 7  # the window stays inside the clip
    assert strip.window_start(phones[:3], 100, 25.0, 13) == 0  # no p, b or m: from the start
