"""A small audio-to-mouth sync model: speech -> the mouth opening it should produce, per video frame.

Why: the raw speech envelope correlates only weakly with the lips (loud is not the same as open), so
AV-offset peaks from it are noisy. A ridge regression from speaker-normalised log-mel spectra, with
+-100 ms of context, to the band-passed mouth opening predicts the lips much better, and it is linear,
tiny (a few hundred weights) and has no lag of its own beyond what its training clips had. It is
trained on the shared real clips (`scripts/train_syncnet.py`); the weights ship as
`emotalk/models/sync_mouth_ridge.safetensors`.

Frame t of a video shows the instant t/fps (as in `emotalk.speech.features`); its feature vector holds
the mel frames at t/fps + j*step for j = -context..context.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from emotalk.errors import AssetError
from emotalk.media import SR

WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "sync_mouth_ridge.safetensors"


@dataclass(frozen=True)
class MelSettings:
    """Audio features of the sync model."""

    n_mels: int = 40  # mel bands
    fmin: float = 80.0  # lowest band edge, Hz
    fmax: float = 7600.0  # highest band edge, Hz
    hop_s: float = 0.01  # mel frame step, s
    context: int = 5  # mel frames taken each side of the video frame's instant
    step: int = 2  # mel frames between taken frames (2 -> every 20 ms, +-100 ms in all)


def log_mel(wav: np.ndarray, s: MelSettings = MelSettings()) -> np.ndarray:
    """Speaker-normalised log-mel of 16 kHz audio [N] -> [S,n_mels] (each band: zero mean, unit std)."""
    import librosa

    hop = int(round(s.hop_s * SR))
    wav = np.asarray(wav, np.float32)
    if len(wav) < 4 * hop:
        wav = np.pad(wav, (0, 4 * hop - len(wav)))
    M = librosa.feature.melspectrogram(y=wav, sr=SR, n_fft=512, hop_length=hop, n_mels=s.n_mels,
                                       fmin=s.fmin, fmax=s.fmax)
    L = np.log(M + 1e-6).T.astype(np.float64)  # [S,n_mels]
    return (L - L.mean(0)) / (L.std(0) + 1e-6)


def audio_features(wav: np.ndarray, n_frames: int, fps: float = 25.0,
                   s: MelSettings = MelSettings()) -> np.ndarray:
    """Per-video-frame features [T, n_mels*(2*context+1)] (mel frames around each frame's instant)."""
    L = log_mel(wav, s)
    base = np.arange(n_frames) / fps / s.hop_s  # mel frame index of each video frame's instant
    cols = []
    for j in range(-s.context, s.context + 1):
        idx = np.clip(np.round(base + j * s.step).astype(np.int64), 0, len(L) - 1)
        cols.append(L[idx])
    return np.concatenate(cols, axis=1)


def bandpass(x: np.ndarray, fps: float = 25.0, band: tuple[float, float] = (0.5, 6.0)) -> np.ndarray:
    """Zero-phase band-pass (2nd-order Butterworth) of a per-frame signal [T], then unit variance.

    Removes slow drifts (head distance, loudness) and frame-to-frame jitter; keeps syllable rates.
    """
    from scipy.signal import butter, sosfiltfilt

    x = np.asarray(x, np.float64)
    x = np.where(np.isfinite(x), x, np.nanmean(x) if np.isfinite(x).any() else 0.0)
    hi = min(band[1], 0.45 * fps)
    if len(x) < 16:
        y = x - x.mean()
    else:
        sos = butter(2, [band[0] / (fps / 2), hi / (fps / 2)], btype="band", output="sos")
        y = sosfiltfilt(sos, x - x.mean(), padlen=min(len(x) - 1, 3 * 7))
    return (y - y.mean()) / (y.std() + 1e-9)


@dataclass
class MouthPredictor:
    """Linear map from `audio_features` to the band-passed mouth opening (unit variance)."""

    mean: np.ndarray  # [F] feature mean over the training frames
    weight: np.ndarray  # [F] ridge weights
    mel: MelSettings  # feature settings it was trained with
    fps: float  # video frame rate of the training frames
    info: dict  # training provenance (clips, lambda, held-out scores)

    def predict(self, wav: np.ndarray, n_frames: int, fps: float | None = None,
                band: tuple[float, float] = (0.5, 6.0)) -> np.ndarray:
        """Expected mouth opening [T] (band-passed to `band` Hz, unit variance) for 16 kHz speech [N]."""
        X = audio_features(wav, n_frames, fps or self.fps, self.mel)
        return bandpass((X - self.mean) @ self.weight, fps or self.fps, band)

    def save(self, path: str | Path = WEIGHTS) -> Path:
        from safetensors.numpy import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"mel": json.dumps(asdict(self.mel)), "fps": str(self.fps), "info": json.dumps(self.info)}
        save_file({"mean": self.mean.astype(np.float32), "weight": self.weight.astype(np.float32)},
                  str(path), metadata=meta)
        return path


def fit(pairs: list[tuple[np.ndarray, np.ndarray]], lam: float = 1000.0, mel: MelSettings = MelSettings(),
        fps: float = 25.0, info: dict | None = None) -> MouthPredictor:
    """Ridge fit on (features [T,F], band-passed mouth opening [T]) pairs, one per clip."""
    X = np.concatenate([p[0] for p in pairs])
    y = np.concatenate([p[1] for p in pairs])
    mu = X.mean(0)
    Xc = X - mu
    w = np.linalg.solve(Xc.T @ Xc + lam * np.eye(X.shape[1]), Xc.T @ (y - y.mean()))
    return MouthPredictor(mu, w, mel, fps, dict(info or {}, lam=lam, frames=int(len(y))))


@lru_cache(maxsize=2)
def load(path: str | Path = WEIGHTS) -> MouthPredictor:
    """The shipped predictor (AssetError naming the training script when the file is missing)."""
    path = Path(path)
    if not path.is_file():
        raise AssetError(f"The sync model {path} is missing. Recreate it: python scripts/train_syncnet.py")
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        mean, weight = f.get_tensor("mean"), f.get_tensor("weight")
    mel = MelSettings(**json.loads(meta.get("mel", "{}")))
    return MouthPredictor(mean.astype(np.float64), weight.astype(np.float64), mel,
                          float(meta.get("fps", 25.0)), json.loads(meta.get("info", "{}")))
