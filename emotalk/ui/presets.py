"""Emotion presets shown as buttons: a subset of the shared category coordinates (valence, arousal)."""

from __future__ import annotations

from emotalk.emotion import CATEGORIES

PRESET_NAMES = ("neutral", "happy", "sad", "angry", "surprised", "calm", "fear")
PRESETS: dict[str, tuple[float, float]] = {n: CATEGORIES[n] for n in PRESET_NAMES}
