"""Lip-sync metrics for real clips and renders, with no ground truth needed.

- **Mouth opening**: inner-lip gap over outer-eye distance per frame, from MediaPipe FaceLandmarker
  (`emotalk.face.landmarks.mouth_opening`, shared with preprocessing and the lip code).
- **AV offset and confidence**: correlation of the (band-passed) mouth opening with up to three
  speech-derived "expected mouth" signals over lags -max_lag..max_lag, averaged:
  1. the sync model's prediction (`emotalk.syncnet`: log-mel -> mouth opening, trained on real clips),
  2. the rate of change of speech-band (300-3000 Hz) log energy against the rate of change of the
     mouth (onsets: lips open as voicing starts),
  3. an expected opening from phone timings (open vowels open, p/b/m closed), when phones are given.
  Offset = lag of the peak (positive: the audio comes later than the lips, in video frames);
  confidence = peak minus the median over lags; margin = peak minus the best lag outside +-2 of it.
- **Phone contrast**: mean mouth opening on open-vowel frames / mean on p/b/m frames (forced
  alignment of a Whisper transcript), a render's lips should close on p/b/m and open on vowels.
- **LMD**: `emotalk.metrics.lmd` (mouth landmarks vs ground truth), imported on use: it needs torch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emotalk.avsync.syncnet import bandpass
from emotalk.face.landmarks import mouth_opening
from emotalk.media import SR

Progress = Callable[[str, float], None]

# ARPAbet vowels that open the jaw / lips (all vowels and diphthongs); W, Y, R, L are left out.
OPEN_VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH",
                         "UW"})
WIDE_VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "EY", "OW", "OY"})  # the most open ones
CLOSED_PHONES = frozenset({"P", "B", "M"})  # bilabials: the lips touch


@dataclass(frozen=True)
class SyncSettings:
    """How the AV offset is measured."""

    max_lag: int = 10  # lags searched, +- video frames
    fps: float = 25.0  # video frame rate the signals are sampled at
    band: tuple[float, float] = (1.0, 6.0)  # band-pass of every signal, Hz (syllable rates)
    energy_band_hz: tuple[float, float] = (300.0, 3000.0)  # speech band of the energy signal, Hz
    model_weight: float = 0.5  # weight of the sync model's predicted opening (0: not used)
    energy_weight: float = 0.25  # weight of the energy-onset signal (0: not used)
    phones_weight: float = 0.25  # weight of the phone-expected opening, when phones are given
    clear_margin: float = 0.1  # a peak beating every lag outside +-2 by this much is "clear"


DEFAULT = SyncSettings()


@dataclass
class SyncEstimate:
    """AV offset of a clip, from the combined lag-correlation curve."""

    offset: int  # lag of the peak, video frames (positive: audio later than the lips)
    confidence: float  # peak correlation minus the median over lags
    peak_corr: float  # combined correlation at the peak
    margin: float  # peak minus the highest correlation outside +-2 frames of it
    clear: bool  # margin >= settings.clear_margin
    corr: list[float]  # combined correlation per lag, -max_lag..max_lag
    signals: dict[str, int] = field(default_factory=dict)  # each signal's own peak lag
    corr0: float = 0.0  # combined correlation at lag 0


# --- signals -----------------------------------------------------------------------------------------

def speech_band_energy(wav: np.ndarray, n_frames: int, fps: float = 25.0,
                       band: tuple[float, float] = (300.0, 3000.0)) -> np.ndarray:
    """Log energy of 16 kHz speech [N] in a frequency band, per video frame [T] (40 ms around t/fps)."""
    from scipy.signal import get_window

    hop, n_fft = SR // 100, 512
    wav = np.asarray(wav, np.float32)
    if len(wav) < n_fft:
        wav = np.pad(wav, (0, n_fft - len(wav)))
    # centred STFT with zero padding and a periodic Hann window (numpy only: renders need no librosa)
    x = np.pad(wav, n_fft // 2)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]  # [S,n_fft] at 100 Hz
    spec = np.fft.rfft(frames * get_window("hann", n_fft, fftbins=True).astype(np.float32), axis=1)
    S = (np.abs(spec) ** 2).T  # [F,S]
    freqs = np.fft.rfftfreq(n_fft, 1.0 / SR)
    e = np.log(S[(freqs >= band[0]) & (freqs <= band[1])].sum(0) + 1e-8)
    e = np.convolve(e, np.ones(4) / 4, mode="same")
    return np.interp(np.arange(n_frames) / fps * 100.0, np.arange(len(e)), e)


def expected_opening(phones: Sequence, n_frames: int, fps: float = 25.0,
                     smooth_s: float = 0.04) -> np.ndarray:
    """Mouth opening expected from phone timings [T]: wide vowels 1, other vowels 0.7, p/b/m 0,
    other consonants 0.35, pauses 0; smoothed by a Gaussian of `smooth_s` (coarticulation).

    `phones`: objects with .phone, .start, .end (seconds), as `emotalk.speech.align.Phone`.
    """
    step = 0.01
    n = int(np.ceil(max(n_frames / fps, max((p.end for p in phones), default=0.0)) / step)) + 1
    curve = np.zeros(n)
    for p in phones:
        a, b = int(round(p.start / step)), int(round(p.end / step))
        name = p.phone.upper()
        v = (1.0 if name in WIDE_VOWELS else 0.7 if name in OPEN_VOWELS else 0.0 if name in CLOSED_PHONES
             else 0.0 if name == "SIL" else 0.35)
        curve[a:max(b, a + 1)] = v
    if smooth_s > 0:
        from scipy.ndimage import gaussian_filter1d

        curve = gaussian_filter1d(curve, smooth_s / step)
    return np.interp(np.arange(n_frames) / fps / step, np.arange(n), curve)


def lag_correlation(mouth: np.ndarray, speech: np.ndarray, max_lag: int) -> np.ndarray:
    """Pearson correlation of mouth[t] with speech[t+lag] for lag = -max_lag..max_lag -> [2L+1]."""
    T = len(mouth)
    out = np.zeros(2 * max_lag + 1)
    for i, lag in enumerate(range(-max_lag, max_lag + 1)):
        a = mouth[max(0, -lag): T - max(0, lag)]
        b = speech[max(0, lag): T - max(0, -lag)]
        if len(a) > 10 and a.std() > 0 and b.std() > 0:
            out[i] = float(np.corrcoef(a, b)[0, 1])
    return out


def _summarise(c: np.ndarray, max_lag: int, settings: SyncSettings) -> tuple[int, float, float, float]:
    k = int(np.argmax(c))
    outside = np.ones(len(c), bool)
    outside[max(0, k - 2): k + 3] = False
    margin = float(c[k] - c[outside].max()) if outside.any() else 0.0
    return k - max_lag, float(c[k] - np.median(c)), float(c[k]), margin


def estimate_sync(mouth: np.ndarray, wav: np.ndarray, phones: Sequence | None = None,
                  settings: SyncSettings = DEFAULT) -> SyncEstimate:
    """AV offset of mouth opening [T] (raw, per frame) against 16 kHz speech [N]; see module docstring."""
    s = settings
    T = len(mouth)
    m = bandpass(mouth, s.fps, s.band)
    curves: dict[str, np.ndarray] = {}
    weights: dict[str, float] = {}
    if s.model_weight > 0:
        from emotalk.avsync import syncnet

        curves["model"] = lag_correlation(m, syncnet.load().predict(wav, T, s.fps, s.band), s.max_lag)
        weights["model"] = s.model_weight
    if s.energy_weight > 0:
        e = bandpass(speech_band_energy(wav, T, s.fps, s.energy_band_hz), s.fps, s.band)
        curves["energy"] = lag_correlation(np.gradient(m), np.gradient(e), s.max_lag)
        weights["energy"] = s.energy_weight
    if s.phones_weight > 0 and phones:
        curves["phones"] = lag_correlation(m, bandpass(expected_opening(phones, T, s.fps), s.fps, s.band),
                                           s.max_lag)
        weights["phones"] = s.phones_weight
    if not curves:
        raise ValueError("SyncSettings enables no signal")
    c = sum(weights[k] * curves[k] for k in curves) / sum(weights.values())
    off, conf, peak, margin = _summarise(c, s.max_lag, s)
    return SyncEstimate(off, conf, peak, margin, margin >= s.clear_margin, [round(float(v), 4) for v in c],
                        {k: int(np.argmax(v)) - s.max_lag for k, v in curves.items()}, float(c[s.max_lag]))


# --- phone contrast ------------------------------------------------------------------------------------

@dataclass
class PhoneContrast:
    """Mouth opening on open vowels vs on p/b/m."""

    ratio: float  # mean opening on open-vowel frames / mean on p/b/m frames (nan when either is missing)
    open_mean: float  # mean mouth opening (inner gap / eye distance) on open-vowel frames
    closed_mean: float  # mean on p/b/m frames
    n_open: int  # frames whose instant falls in an open vowel
    n_closed: int  # frames whose instant falls in p/b/m


def phone_contrast(mouth: np.ndarray, phones: Sequence, fps: float = 25.0, offset: int = 0,
                   floor: float = 0.005) -> PhoneContrast:
    """Phone contrast of mouth opening [T] (raw) given phone timings (audio time).

    `offset`: audio lag in frames (the phone at audio time (t+offset)/fps goes with frame t; 0 = as
    played). Closed means below `floor` are raised to it, so a fully shut mouth gives a large but finite
    ratio.
    """
    T = len(mouth)
    label = np.zeros(T, np.int8)  # 1 open vowel, -1 p/b/m
    for p in phones:
        name = p.phone.upper()
        v = 1 if name in OPEN_VOWELS else -1 if name in CLOSED_PHONES else 0
        if v == 0:
            continue
        a = int(np.ceil(p.start * fps - offset - 1e-9))
        b = int(np.ceil(p.end * fps - offset - 1e-9))
        label[max(a, 0):min(b, T)] = v
    ok = np.isfinite(mouth)
    o, c = mouth[(label == 1) & ok], mouth[(label == -1) & ok]
    om = float(o.mean()) if len(o) else float("nan")
    cm = float(c.mean()) if len(c) else float("nan")
    ratio = om / max(cm, floor) if len(o) and len(c) else float("nan")
    return PhoneContrast(ratio, om, cm, int(len(o)), int(len(c)))


# --- whole clips ---------------------------------------------------------------------------------------

@dataclass
class SyncReport:
    """Every lip-sync number of one video (or render) with its speech."""

    name: str  # clip or render name
    n_frames: int  # video frames measured (at settings.fps)
    face_found: float  # fraction of frames with a face
    sync: SyncEstimate  # AV offset and confidence
    contrast: PhoneContrast | None  # as played (offset 0); None without phones (non-English, failed)
    contrast_at_offset: PhoneContrast | None = None  # with the phones moved by the measured offset
    transcript: str = ""  # what Whisper heard
    notes: list[str] = field(default_factory=list)  # why something is missing
    lmd: float | None = None  # mouth landmark distance to ground truth, px (only when one was given)

    def to_dict(self) -> dict:
        return asdict(self)


def track_mouth(frames: Iterable[np.ndarray], fps: float = 25.0,
                n_frames: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks [T,478,2] (px, NaN where no face) and mouth opening [T] (gaps interpolated)."""
    from emotalk.face.tracking import fill_gaps, track_video

    tr = track_video(frames, n_frames=n_frames, fps=fps)
    lmk = tr.lmk[..., :2].copy()
    m = mouth_opening(fill_gaps(tr.lmk, tr.found)) if tr.found.any() else np.full(len(lmk), np.nan)
    lmk[~tr.found] = np.nan
    return lmk, m


def align_robust(wav: np.ndarray, words: Sequence, chunk_words: int = 6) -> tuple[list, list, list[str]]:
    """Forced alignment of `words` (objects with .text/.start/.end, e.g. Whisper's) in 16 kHz `wav`.

    The whole text at once; else without the last word or two (clips often end mid-word); else in
    chunks of words cut at the given word times (a chunk that still fails is left out and noted).
    Returns (aligned words, phones, notes); times in seconds of `wav`.
    """
    from dataclasses import replace

    from emotalk.errors import EmoTalkError
    from emotalk.speech.align import align_phones

    texts = [w.text for w in words]
    for drop in (0, 1, 2):
        if len(texts) - drop < 1:
            break
        try:
            al = align_phones(wav, " ".join(texts[:len(texts) - drop]))
            return al.words, al.phones, ([f"phone alignment without the last {drop} word(s)"] if drop else [])
        except EmoTalkError:
            continue
    out_words: list = []
    phones: list = []
    failed: list[str] = []
    dur = len(wav) / SR
    for i in range(0, len(words), chunk_words):
        g = words[i:i + chunk_words]
        a, b = max(0.0, g[0].start - 0.15), min(dur, g[-1].end + 0.15)
        try:
            al = align_phones(wav[int(a * SR):int(b * SR)], " ".join(w.text for w in g))
        except EmoTalkError:
            failed.append(" ".join(w.text for w in g))
            continue
        n0 = len(out_words)
        out_words += [replace(w, start=round(w.start + a, 3), end=round(w.end + a, 3)) for w in al.words]
        phones += [replace(p, start=round(p.start + a, 3), end=round(p.end + a, 3),
                           word=p.word + n0 if p.word >= 0 else -1) for p in al.phones]
    notes = ["phone alignment in word chunks"] + ([f"not aligned: {'; '.join(failed)}"] if failed else [])
    return out_words, phones, notes


def phones_for(wav: np.ndarray, language: str = "en", text: str | None = None) -> tuple[list, str, list[str]]:
    """Phone timings of 16 kHz speech: Whisper transcript (word times), then pocketsphinx alignment.

    With `text` given, that text is aligned instead of a transcript. Returns (phones, transcript, notes);
    phones is empty, with a note saying why, when it fails.
    """
    from emotalk.errors import EmoTalkError
    from emotalk.speech.align import Word, transcribe

    if language.split("-")[0].lower() != "en":
        return [], "", [f"no phone timings: language {language!r} (alignment is English only)"]
    try:
        if text is None:
            tr = transcribe(wav)
            text, words = tr.text, tr.words
        else:
            words = [Word(t, 0.0, len(wav) / SR) for t in text.split()]
        _, phones, notes = align_robust(wav, words)
        return phones, text, notes + ([] if phones else ["no phone timings: alignment failed"])
    except EmoTalkError as e:
        return [], text or "", [f"no phone timings: {e}"]


def measure(mouth: np.ndarray, wav: np.ndarray, name: str = "", phones: Sequence | None = None,
            transcript: str = "", found: float = 1.0, settings: SyncSettings = DEFAULT,
            notes: list[str] | None = None) -> SyncReport:
    """SyncReport from a mouth-opening track [T] and its 16 kHz speech [N]. With a face in under half of
    the frames (or a mouth that never moves) the numbers mean nothing: a note says so and `clear` is False."""
    notes = list(notes or [])
    est = estimate_sync(mouth, wav, phones, settings)
    still = not np.isfinite(mouth).any() or float(np.nanstd(mouth)) < 1e-6
    if found < 0.5 or still:
        est.clear = False
        notes.append(f"face found in {100 * found:.0f} % of frames{', mouth never moves' if still else ''}: "
                     "the sync numbers are not meaningful")
    pc = phone_contrast(mouth, phones, settings.fps) if phones else None
    pco = phone_contrast(mouth, phones, settings.fps, est.offset) if phones else None
    return SyncReport(name, len(mouth), found, est, pc, pco, transcript, notes)


def measure_video(path: str | Path, language: str = "en", text: str | None = None,
                  wav: np.ndarray | None = None, settings: SyncSettings = DEFAULT,
                  progress: Progress | None = None, gt_lmk: np.ndarray | None = None) -> SyncReport:
    """Track a video's mouth at settings.fps and measure its sync against its own audio (or `wav`).

    `gt_lmk` [T,478,2] (px of this video's frames, e.g. a dataset's lmk2d for a render of its held-out
    frames at the dataset's size): also the LMD of the tracked mouth against it, over the common frames.
    """
    from emotalk import media

    info = media.probe(path)
    size = None
    if max(info.width, info.height) > 640:  # the landmarker works on small faces too; decode less
        k = 640 / max(info.width, info.height)
        size = (2 * round(info.width * k / 2), 2 * round(info.height * k / 2))
    if progress:
        progress("tracking the mouth", 0.0)
    lmk, mouth = track_mouth(media.iter_frames(path, fps=settings.fps, size=size), settings.fps)
    if wav is None:
        wav = media.read_audio(path, SR)
    if progress:
        progress("transcribing and aligning phones", 0.6)
    phones, transcript, notes = phones_for(wav, language, text)
    if progress:
        progress("measuring", 0.9)
    found = float(np.isfinite(lmk[:, 0, 0]).mean())
    rep = measure(mouth, wav, Path(path).name, phones, transcript, found, settings, notes)
    if gt_lmk is not None:
        n = min(len(lmk), len(gt_lmk))
        from emotalk.metrics import lmd  # torch: only when a ground truth is given

        rep.lmd = lmd(lmk[:n], np.asarray(gt_lmk)[:n])
    return rep
