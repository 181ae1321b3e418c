"""Self-supervised lip-sync data: a dataset's own words, re-spoken by other voices, as audio codes
aligned to the dataset's frames.

Why: a model that only ever heard one speaker ties the lips to that voice. Other voices saying the same
words at the same frames teach it to listen to *what* is said. We never warp video: the re-spoken
audio's code is warped in time onto the original frames.

Steps (`respeak`):
1. Whisper transcript of the original speech; pocketsphinx forced alignment of that text to the
   original audio and to each re-spoken version (same dictionary, so the same word list).
2. Words of the two alignments are matched in order (difflib); matched words give time anchors
   (word starts and ends, and phone boundaries where both sides have the same phones).
3. A monotone piecewise-linear map from original time to re-spoken time passes through the anchors;
   before the first and after the last anchor it continues with slope 1.
4. For frame t and window step i the original code looks at time t/fps + (i - W/2)/rate; the warped
   code looks at map(that time) in the re-spoken audio's feature sequence (linear interpolation;
   silence outside it), giving a code [T,W,C] on the original frames.
Quality per voice (`respoken/index.json`): words matched; mean |time error| of an independent check
(Whisper's own word times on the re-spoken audio vs the mapped original Whisper word times); and the
validation that the warped speech still "moves" with the original mouth (correlations at lag 0).

Besides the TTS voices there are "perturbed" versions of the original recording itself (pitch and
formants moved together, tempo changed; `engine="perturb"`): their time map is exact and they need no
transcript, so they work for any language (the TTS voices need English).

Storage: respoken/{voice}.npz holds the re-spoken feature sequence (float16 [S,C]), its start time and
the anchors of the time map; `load_respoken` samples the [T,W,C] codes from them (about 15x smaller than
storing codes, whose windows overlap).

Where the parts live: the voices and the perturbation in `emotalk.speech.voices`; word matching, the time
map and code sampling (steps 2-4) in `emotalk.speech.time_warp`; this module runs them on a dataset's
speech, measures each voice's quality and stores the result.

Training (`emotalk.training.loop`, TrainSettings.respeak_prob): per step, each sampled frame is driven with
probability p by one of these codes instead of its own (voice random); the target stays the frame's own
pixels, so the lips learn to follow *what* is said in any of the voices.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from emotalk.errors import InputError, MediaError
from emotalk.media import SR
from emotalk.speech.features import KINDS
from emotalk.speech.time_warp import (
    anchors,
    feature_sequence,
    guess_times,
    match_words,
    sample_code,
    time_map,
    warped_signal,
)
from emotalk.speech.voices import DEFAULT_VOICES, VOICES, Voice, perturb, speak

Progress = Callable[[str, float], None]


# --- one voice ----------------------------------------------------------------------------------------

@dataclass
class VoiceQuality:
    """How well one re-spoken version lines up with the original."""

    voice: str  # Voice.name
    words: int  # aligned words in the original
    matched: int  # of them, matched in the re-spoken version
    anchors: int  # time anchors of the map
    check_words: int  # Whisper words matched between the two for the independent check
    mean_abs_error_s: float  # mean |Whisper word centre in re-spoken - map(original Whisper centre)|
    mean_abs_error_unwarped_s: float  # the same with no map (the TTS's own timing), for comparison
    duration_ratio: float  # re-spoken duration / original duration
    corr0_energy: float  # band-energy of the warped speech vs original mouth opening, lag 0
    corr0_model: float  # sync model's predicted opening of the warped speech vs the mouth, lag 0
    peak_lag_model: int  # lag (frames, +-10) where that correlation peaks: 0 when the warp is in sync
    code_cosine: float  # mean cosine of warped vs original code (centre step), per frame
    code_cosine_unwarped: float  # the same for the re-spoken code with no warp
    seconds: float  # time taken
    alignment: str = "whole text"  # how the re-spoken audio was force-aligned (align_robust's notes)


def _lag0_corr(mouth: np.ndarray, sig: np.ndarray, fps: float) -> float:
    from emotalk.avsync.syncnet import bandpass

    a, b = bandpass(mouth, fps, (1.0, 6.0)), bandpass(sig, fps, (1.0, 6.0))
    return float(np.corrcoef(a, b)[0, 1])


def _peak_lag(mouth: np.ndarray, sig: np.ndarray, fps: float, max_lag: int = 10) -> int:
    from emotalk.avsync.lipsync import lag_correlation
    from emotalk.avsync.syncnet import bandpass

    c = lag_correlation(bandpass(mouth, fps, (1.0, 6.0)), bandpass(sig, fps, (1.0, 6.0)), max_lag)
    return int(np.argmax(c)) - max_lag


def _energy_100hz(wav: np.ndarray) -> np.ndarray:
    from emotalk.avsync.lipsync import speech_band_energy

    n = int(math.ceil(len(wav) / SR * 100)) + 1
    return speech_band_energy(wav, n, fps=100.0)


def _model_100hz(wav: np.ndarray) -> np.ndarray:
    """The sync model's expected opening at 100 Hz (unfiltered), to be sampled at warped times."""
    from emotalk.avsync import syncnet

    m = syncnet.load()
    n = int(math.ceil(len(wav) / SR * 100)) + 1
    X = syncnet.audio_features(wav, n, 100.0, m.mel)
    return (X - m.mean) @ m.weight


@dataclass
class Original:
    """The original speech, analysed once for all voices."""

    wav: np.ndarray  # [N] 16 kHz
    n_frames: int  # T video frames
    fps: float  # video frame rate
    text: str  # Whisper transcript
    whisper_words: list  # Whisper words with times
    words: list  # forced-aligned words
    phones: list  # forced-aligned phones
    code: np.ndarray | None  # [T,W,C] original audio code (for the cosine check), or None
    mouth: np.ndarray | None  # [T] mouth opening of the original frames, or None


def plain_original(wav: np.ndarray, n_frames: int, fps: float, kind: str = "whisper",
                   mouth: np.ndarray | None = None, device: str = "cpu") -> Original:
    """The original speech without transcript (all that perturbed voices need)."""
    seq, t0 = feature_sequence(wav, kind, device)
    code = sample_code(seq, t0, kind, np.arange(n_frames) / fps)
    return Original(np.asarray(wav, np.float32), n_frames, fps, "", [], [], [], code, mouth)


def analyse_original(wav: np.ndarray, n_frames: int, fps: float, kind: str = "whisper",
                     mouth: np.ndarray | None = None, device: str = "cpu",
                     min_word_prob: float = 0.6, max_repetition: float = 2.4) -> Original:
    """Transcript, forced alignment and code of the original speech. Refuses speech that Whisper tiny.en
    does not understand as English: a greedy transcript (deterministic: sampled decodings once let French
    through by chance) with a mean word probability under `min_word_prob` (measured on 15 s: 0.29 on the
    French clip, 0.87-0.94 on the English ones) or a segment repeating itself, compression ratio over
    `max_repetition` (5.9 on the German clip, whose looping words score 0.66; at most 1.5 on English)."""
    from emotalk.avsync.lipsync import align_robust
    from emotalk.speech.align import transcribe

    tr = transcribe(wav, greedy=True)
    prob = float(np.mean([w.score for w in tr.words])) if tr.words else 0.0
    if prob < min_word_prob or tr.repetition > max_repetition:
        raise MediaError(f"The speech does not sound like English to Whisper (mean word probability "
                         f"{prob:.2f}, needs {min_word_prob}; repetition {tr.repetition:.1f}, at most "
                         f"{max_repetition}); re-speaking with TTS needs English speech (the offline voices "
                         "are English); perturbed voices still work.")
    words, phones, _ = align_robust(wav, tr.words)
    if not words:
        raise MediaError("The original speech could not be aligned to its transcript; nothing to re-speak.")
    base = plain_original(wav, n_frames, fps, kind, mouth, device)
    return replace(base, text=tr.text, whisper_words=tr.words, words=words, phones=phones)


@dataclass
class Respoken:
    """What is stored for one voice: enough to sample its code on the original frames."""

    seq: np.ndarray  # [S,C] feature sequence of the re-spoken audio
    t0: float  # time (s) of seq's step 0
    ta: np.ndarray  # [K] anchor times in the original (s)
    tb: np.ndarray  # [K] the same instants in the re-spoken audio (s)

    def code(self, kind: str, n_frames: int, fps: float) -> np.ndarray:
        """[T,W,C] float32 code on the original frames."""
        return sample_code(self.seq.astype(np.float32), self.t0, kind, np.arange(n_frames) / fps,
                           lambda t: time_map(t, self.ta, self.tb))


def respeak_voice(orig: Original, v: Voice, kind: str = "whisper",
                  device: str = "cpu") -> tuple[np.ndarray, VoiceQuality, np.ndarray, Respoken]:
    """Code [T,W,C] of `orig`'s words spoken by `v`, warped onto the original frames; its quality; the
    re-spoken wav; what to store."""
    from emotalk.avsync.lipsync import align_robust
    from emotalk.speech.align import transcribe

    t_start = time.time()
    if not v.needs_text:  # the recording itself, transformed: the time map is known exactly
        wav_b = perturb(orig.wav, v)
        dur = len(orig.wav) / SR
        ta, tb = np.array([0.0, dur]), np.array([0.0, dur / (1.0 + v.rate / 100.0)])
        pairs, tr_b, notes = [(i, i) for i in range(len(orig.words))], None, ["exact (signal transform)"]
    else:
        if not orig.text:
            raise MediaError(f"Voice {v.name} needs the transcript of English speech; there is none.")
        wav_b = speak(orig.text, v)
        tr_b = transcribe(wav_b)
        words_b, phones_b, notes = align_robust(wav_b, guess_times(orig.words, tr_b.words, len(wav_b) / SR))
        pairs = match_words(orig.words, words_b)
        ta, tb = anchors(orig.words, orig.phones, words_b, phones_b, pairs)

    def warp(t):
        return time_map(t, ta, tb)

    seq, t0 = feature_sequence(wav_b, kind, device)
    frame_times = np.arange(orig.n_frames) / orig.fps
    code = sample_code(seq, t0, kind, frame_times, warp)
    unwarped = sample_code(seq, t0, kind, frame_times)

    # independent timing check: Whisper's own word times on both sides (exact for perturbed voices)
    wp = match_words(orig.whisper_words, tr_b.words) if tr_b is not None else []
    ca = np.array([(orig.whisper_words[i].start + orig.whisper_words[i].end) / 2 for i, _ in wp])
    cb = np.array([(tr_b.words[j].start + tr_b.words[j].end) / 2 for _, j in wp])
    err = float(np.mean(np.abs(warp(ca) - cb))) if len(wp) else (0.0 if tr_b is None else float("nan"))
    err_raw = float(np.mean(np.abs(ca - cb))) if len(wp) else float("nan")

    def cos(x: np.ndarray, y: np.ndarray) -> float:
        c = KINDS[kind].window // 2
        a, b = x[:, c], y[:, c]
        norm = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-9
        return float(np.mean((a * b).sum(-1) / norm))

    c0e = c0m = float("nan")
    lag = 0
    if orig.mouth is not None:
        tw = warp(frame_times)
        c0e = _lag0_corr(orig.mouth, warped_signal(_energy_100hz(wav_b), 100.0, tw), orig.fps)
        pred = warped_signal(_model_100hz(wav_b), 100.0, tw)
        c0m, lag = _lag0_corr(orig.mouth, pred, orig.fps), _peak_lag(orig.mouth, pred, orig.fps)
    q = VoiceQuality(v.name, len(orig.words), len(pairs), len(ta), len(wp), round(err, 4), round(err_raw, 4),
                     round(len(wav_b) / max(len(orig.wav), 1), 3), round(c0e, 4), round(c0m, 4), lag,
                     round(cos(code, orig.code), 4) if orig.code is not None else float("nan"),
                     round(cos(unwarped, orig.code), 4) if orig.code is not None else float("nan"),
                     round(time.time() - t_start, 1), "; ".join(notes) or "whole text")
    return code, q, wav_b, Respoken(seq.astype(np.float16), float(t0), np.asarray(ta, np.float64),
                                    np.asarray(tb, np.float64))


def original_quality(orig: Original) -> dict:
    """The same lag-0 correlations for the original speech itself (the bar the voices are held to)."""
    if orig.mouth is None:
        return {}
    t = np.arange(orig.n_frames) / orig.fps
    pred = warped_signal(_model_100hz(orig.wav), 100.0, t)
    return {"corr0_energy": round(_lag0_corr(orig.mouth, warped_signal(_energy_100hz(orig.wav), 100.0, t),
                                             orig.fps), 4),
            "corr0_model": round(_lag0_corr(orig.mouth, pred, orig.fps), 4),
            "peak_lag_model": _peak_lag(orig.mouth, pred, orig.fps)}


# --- datasets -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Checks:
    """When a re-spoken version is too poorly aligned to train on (it is then not written)."""

    min_matched: float = 0.8  # least fraction of the original's words matched in the re-spoken audio
    max_error_s: float = 0.15  # largest mean |time error| of the independent Whisper check, s


def _rejected(q: VoiceQuality, checks: Checks) -> str | None:
    if q.matched < checks.min_matched * q.words:
        return f"only {q.matched}/{q.words} words matched"
    if not q.mean_abs_error_s <= checks.max_error_s:
        return f"mean time error {q.mean_abs_error_s:.3f} s > {checks.max_error_s} s ({q.alignment})"
    return None


def respeak(wav: np.ndarray, n_frames: int, fps: float, out_dir: str | Path,
            voices: Sequence[str] = DEFAULT_VOICES, kind: str = "whisper", mouth: np.ndarray | None = None,
            device: str = "cpu", progress: Progress | None = None, keep_wav: bool = False,
            checks: Checks = Checks()) -> list[Path]:
    """Write out_dir/{voice}.npz (see `Respoken`) for each voice and out_dir/index.json; return the .npz
    paths. A voice whose engine cannot run here, that needs a transcript the speech cannot give (not
    English), or whose alignment fails `checks`, is skipped and recorded (with its quality) in index.json."""
    unknown = [v for v in voices if v not in VOICES]
    if unknown:
        raise InputError(f"Unknown voice(s) {unknown}; choose from {', '.join(VOICES)}.")
    if kind not in KINDS:
        raise InputError(f"Unknown audio code kind {kind!r}; choose one of: {', '.join(KINDS)}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if progress:
        progress("transcribing and aligning the original speech", 0.0)
    skipped: dict[str, str] = {}
    if any(VOICES[v].needs_text for v in voices):
        try:
            orig = analyse_original(wav, n_frames, fps, kind, mouth, device)
        except MediaError as e:
            skipped.update({v: str(e) for v in voices if VOICES[v].needs_text})
            orig = plain_original(wav, n_frames, fps, kind, mouth, device)
    else:
        orig = plain_original(wav, n_frames, fps, kind, mouth, device)
    index = {"kind": kind, "fps": fps, "n_frames": n_frames, "text": orig.text, "voices": [],
             "skipped": skipped, "original": original_quality(orig)}
    paths: list[Path] = []
    todo = [v for v in voices if v not in skipped]
    for i, name in enumerate(todo):
        if progress:
            progress(f"re-speaking with {name}", (i + 0.5) / (len(todo) + 1))
        try:
            code, q, wav_b, store = respeak_voice(orig, VOICES[name], kind, device)
        except MediaError as e:
            index["skipped"][name] = str(e)
            continue
        why = _rejected(q, checks)
        if why:
            index["skipped"][name] = why
            index.setdefault("rejected", []).append(asdict(q))
            continue
        p = out / f"{name}.npz"
        tmp = out / f".{name}.tmp.npz"
        np.savez(tmp, seq=store.seq, t0=store.t0, ta=store.ta, tb=store.tb)
        tmp.replace(p)
        (out / f"{name}.npy").unlink(missing_ok=True)  # an older run's stored code
        if keep_wav:
            from emotalk.media import write_wav

            write_wav(out / f"{name}.wav", wav_b, SR)
        paths.append(p)
        index["voices"].append(dict(asdict(q), voice_settings=asdict(VOICES[name])))
    tmp = out / ".index.tmp.json"
    tmp.write_text(json.dumps(index, indent=1))
    tmp.replace(out / "index.json")
    if progress:
        progress("re-spoken codes written", 1.0)
    return paths


def respeak_dataset(ds, voices: Sequence[str] = DEFAULT_VOICES, kind: str = "whisper",
                    progress: Progress | None = None, device: str = "cpu") -> list[Path]:
    """Re-speak an identity dataset's words: writes ds.root/respoken/{voice}.npz + index.json."""
    from emotalk.face.landmarks import mouth_opening

    return respeak(ds.audio(), ds.n_frames, ds.fps, Path(ds.root) / "respoken", voices, kind,
                   mouth_opening(ds.lmk2d), device, progress)


def load_respoken(ds, kind: str | None = None) -> list[np.ndarray]:
    """The re-spoken codes of a dataset ([T,W,C] float32 each; [] when there are none). With `kind`,
    only when they were made with that code kind."""
    d = Path(ds.root) / "respoken"
    f = d / "index.json"
    if not f.is_file():
        return []
    index = json.loads(f.read_text())
    if kind is not None and index.get("kind") != kind:
        return []
    out = []
    for q in index["voices"]:
        pz, p = d / f"{q['voice']}.npz", d / f"{q['voice']}.npy"
        if pz.is_file():
            with np.load(pz) as z:
                r = Respoken(z["seq"], float(z["t0"]), z["ta"], z["tb"])
            a = r.code(index["kind"], ds.n_frames, float(index.get("fps", ds.fps)))
        elif p.is_file():  # stored by an older version: the code itself
            a = np.load(p).astype(np.float32)
        else:
            continue
        if a.shape[0] == ds.n_frames:
            out.append(a)
    return out
