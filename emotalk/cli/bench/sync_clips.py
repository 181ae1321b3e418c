"""The shared real clips as data for the sync model: mouth opening, speech and phones of each (cached),
audio shifts, and the sync estimate with a given (held-out) sync model.

Used by the lip-sync benchmark (`python -m emotalk bench sync real`) and the training scripts
scripts/train_syncnet.py and scripts/train_lip_driver.py. The cache holds data derived from the shared
clips: never commit it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emotalk.avsync import lipsync, syncnet
from emotalk.media import SR
from emotalk.speech.align import Phone

FPS = 25.0
NON_ENGLISH = ("macron", "german")  # clip name prefixes spoken in other languages (no phone timings)
SHIFTS = (-6, -4, -2, 2, 4, 6)  # audio shifts of the shift test, frames
LAMBDA = 1000.0  # ridge strength of the sync model


def clips(data: Path) -> list[Path]:
    """The real clips under DATA/clips: the mp4s, then grid/*.mpg."""
    c = data / "clips"
    return sorted(c.glob("*.mp4")) + sorted((c / "grid").glob("*.mpg"))


def load_clip(path: Path, cache: Path) -> dict:
    """Mouth opening [T], audio [N] and phones of a clip, from the cache or computed (then cached)."""
    from emotalk import media

    cache.mkdir(parents=True, exist_ok=True)
    f = cache / f"{path.stem}.npz"
    if not f.is_file():
        info = media.probe(path)
        size = None
        if max(info.width, info.height) > 512:
            k = 512 / max(info.width, info.height)
            size = (2 * round(info.width * k / 2), 2 * round(info.height * k / 2))
        from emotalk.face.tracking import track_video

        tr = track_video(media.iter_frames(path, fps=FPS, size=size), fps=FPS)
        wav = media.read_audio(path, SR)
        np.savez_compressed(f, lmk=tr.lmk, found=tr.found, bs=tr.blendshapes, wav=wav.astype(np.float32))
    z = np.load(f)
    out = {"name": path.stem, "mouth": lipsync.mouth_opening(z["lmk"]), "wav": z["wav"], "phones": [],
           "found": float(z["found"].mean())}
    pj = cache / f"{path.stem}.phones.json"
    if not path.stem.startswith(NON_ENGLISH):
        if not pj.is_file():
            ph, text, notes = lipsync.phones_for(out["wav"])
            pj.write_text(json.dumps({"text": text, "notes": notes, "phones": [p.__dict__ for p in ph]}))
        d = json.loads(pj.read_text())
        out["phones"] = [Phone(**p) for p in d["phones"]]
        out["text"] = d["text"]
    return out


def shift_wav(wav: np.ndarray, k: int) -> np.ndarray:
    """Audio made k frames later (k > 0) or earlier (k < 0), same length."""
    s = int(round(k * SR / FPS))
    if s > 0:
        return np.concatenate([np.zeros(s, wav.dtype), wav[:-s]])
    if s < 0:
        return np.concatenate([wav[-s:], np.zeros(-s, wav.dtype)])
    return wav


def shift_phones(phones: list, k: int) -> list:
    """Phone timings moved k frames later (k > 0) or earlier."""
    from dataclasses import replace

    return [replace(p, start=p.start + k / FPS, end=p.end + k / FPS) for p in phones]


def features(clip: dict) -> tuple[np.ndarray, np.ndarray]:
    """(audio features, band-passed mouth opening) of a loaded clip: one training pair of the sync model."""
    T = len(clip["mouth"])
    return syncnet.audio_features(clip["wav"], T, FPS), syncnet.bandpass(clip["mouth"], FPS)


def evaluate(clip: dict, model: syncnet.MouthPredictor, shift: int = 0) -> lipsync.SyncEstimate:
    """The combined estimate of `estimate_sync`, with `model` as the sync model (held out of its training).

    estimate_sync asks `syncnet.load()` for its model and takes no model argument, so `load` is swapped
    for the length of this call (and restored).
    """
    syncnet.load.cache_clear()
    wav, phones = shift_wav(clip["wav"], shift), shift_phones(clip["phones"], shift)
    orig = syncnet.load
    try:
        syncnet.load = lambda *a, **k: model
        return lipsync.estimate_sync(clip["mouth"], wav, phones or None)
    finally:
        syncnet.load = orig
