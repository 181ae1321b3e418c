"""Matplotlib figures for the app: the emotion track and the fine-tuning loss curve."""

from __future__ import annotations

import matplotlib
import numpy as np

from emotalk.emotion import EmotionTrack

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def emotion_track_figure(track: list[tuple[float, float, float]] | None, valence: float = 0.0,
                         arousal: float = 0.0) -> Figure:
    """Valence and arousal over time: the keyframes (linear between them), or the constant emotion."""
    fig, ax = plt.subplots(figsize=(5, 2.2), dpi=100)
    if track:
        curve = EmotionTrack.from_keyframes(track)  # the pipeline's own blend and disc clamping
        end = max(1.0, float(curve.times[-1]) * 1.1)
        ts = np.linspace(0.0, end, 200)
        va = curve.at(ts)
        ax.plot(ts, va[:, 0], label="valence", color="#2a6fdb")
        ax.plot(ts, va[:, 1], label="arousal", color="#db4a2a")
        ax.plot(curve.times, curve.va[:, 0], "o", color="#2a6fdb")
        ax.plot(curve.times, curve.va[:, 1], "s", color="#db4a2a")
        ax.set_xlim(0, end)
        ax.set_title("emotion track (eased between keyframes, held after the last)", fontsize=9)
    else:
        ax.axhline(valence, label=f"valence {valence:+.2f}", color="#2a6fdb")
        ax.axhline(arousal, label=f"arousal {arousal:+.2f}", color="#db4a2a", linestyle="--")
        ax.set_xlim(0, 1)
        ax.set_xticks([])
        ax.set_title("constant emotion (add keyframes for a track)", fontsize=9)
    ax.set_ylim(-1.05, 1.05)
    ax.set_xlabel("t (s)", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    plt.close(fig)
    return fig


def loss_figure(history: list[float]) -> Figure:
    """Training loss, one point per progress report (log scale when it spans more than a decade)."""
    fig, ax = plt.subplots(figsize=(5, 2.4), dpi=100)
    if history:
        ax.plot(range(1, len(history) + 1), history, color="#6a3ddb", linewidth=1)
        lo, hi = min(history), max(history)
        if lo > 0 and hi / lo > 10:
            ax.set_yscale("log")
        ax.set_title(f"loss: {history[-1]:.4g} (latest)", fontsize=9)
    else:
        ax.set_title("loss (waiting for the first steps)", fontsize=9)
    ax.set_xlabel("progress report", fontsize=8)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    plt.close(fig)
    return fig
