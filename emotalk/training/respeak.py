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

Training (`emotalk/train.py`, TrainSettings.respeak_prob): per step, each sampled frame is driven with
probability p by one of these codes instead of its own (voice random); the target stays the frame's own
pixels, so the lips learn to follow *what* is said in any of the voices.
"""

from __future__ import annotations

import difflib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from emotalk.errors import InputError, MediaError
from emotalk.speech.features import KINDS, SR

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class Voice:
    """One offline TTS voice setting used for re-speaking."""

    name: str  # file stem under respoken/
    engine: str  # "piper", "espeak" or "perturb" (the original recording, pitch/formants/tempo changed)
    voice: str = ""  # espeak-ng voice (with +variant); ignored by Piper (one voice, en_US-joe-medium)
    rate: float = 0.0  # speaking-rate change, percent (perturb: tempo change, percent)
    pitch: float = 0.0  # pitch change, Hz (espeak only)
    tone: float = 1.0  # perturb only: factor on pitch and formants together (1.2: a smaller vocal tract)

    @property
    def needs_text(self) -> bool:
        """TTS voices re-speak the transcript; perturbed ones transform the recording itself."""
        return self.engine != "perturb"


# Voices that pocketsphinx (en-US acoustic model) aligns reliably; measured on the Obama and Reagan clips.
# espeak-ng en-gb+f3 (high), en-gb-scotland (low, slow) and en-029 were tried and dropped: too few of
# their words aligned (BENCHMARKS.md, Lip-sync).
VOICES: dict[str, Voice] = {v.name: v for v in (
    Voice("piper-joe", "piper"),
    Voice("piper-joe-fast", "piper", rate=25.0),
    Voice("espeak-en-us", "espeak", "en-us"),
    Voice("espeak-en-us-f2", "espeak", "en-us+f2"),
    Voice("espeak-en-us-m3-fast-low", "espeak", "en-us+m3", rate=15.0, pitch=-20.0),
    Voice("espeak-en-gb-rp-f4-high", "espeak", "en-gb-x-rp+f4", pitch=15.0),
    Voice("espeak-en-us-klatt3", "espeak", "en-us+klatt3"),
    Voice("orig-tone125", "perturb", tone=1.25),
    Voice("orig-tone080-fast", "perturb", tone=0.8, rate=15.0),
    Voice("orig-tone112-slow", "perturb", tone=1.12, rate=-12.0),
)}
PERTURBED_VOICES = tuple(k for k, v in VOICES.items() if v.engine == "perturb")
# Default: the perturbed recordings only. In the H100 ablation (BENCHMARKS.md, Lip-sync §4) they kept or
# improved held-out quality and sync on obama and macron, while adding the TTS voices (aligned to within
# 47-93 ms) made obama's held-out LMD and other-speaker offsets worse. TTS voices stay available by name.
DEFAULT_VOICES = PERTURBED_VOICES


def perturb(wav: np.ndarray, v: Voice) -> np.ndarray:
    """The recording with pitch and formants times `v.tone` and the tempo times 1 + v.rate/100:
    a resample (moves everything, like tape speed) then a phase-vocoder time stretch (restores tempo)."""
    import librosa

    tempo = 1.0 + v.rate / 100.0
    if not (0.5 <= v.tone <= 2.0 and 0.5 <= tempo <= 2.0):
        raise InputError(f"Voice {v.name}: tone {v.tone} / tempo {tempo} outside 0.5..2.")
    y = np.asarray(wav, np.float32)
    if v.tone != 1.0:
        y = librosa.resample(y, orig_sr=SR, target_sr=int(round(SR / v.tone)), res_type="soxr_hq")
    if tempo / v.tone != 1.0:
        y = librosa.effects.time_stretch(y, rate=tempo / v.tone)
    return y.astype(np.float32)


def speak(text: str, v: Voice) -> np.ndarray:
    """16 kHz speech of `text` in voice `v` (MediaError when the engine cannot run here)."""
    from emotalk.speech.tts_offline import EngineUnavailable, speak_espeak, speak_piper

    try:
        if v.engine == "piper":
            return speak_piper(text, v.rate)
        if v.engine == "espeak":
            return speak_espeak(text, v.rate, v.pitch, v.voice or "en-us")
    except EngineUnavailable as e:
        raise MediaError(f"Voice {v.name} could not speak: {e}") from e
    raise InputError(f"Unknown engine {v.engine!r} for voice {v.name}; use piper or espeak "
                     f"(perturbed voices transform the recording: see `perturb`).")


# --- time map -----------------------------------------------------------------------------------------

def _key(word: str) -> str:
    return "".join(c for c in word.lower() if c.isalnum())


def match_words(a: Sequence, b: Sequence) -> list[tuple[int, int]]:
    """Pairs (i, j) of words with the same text, in order (longest matching blocks of difflib)."""
    sm = difflib.SequenceMatcher(a=[_key(w.text) for w in a], b=[_key(w.text) for w in b], autojunk=False)
    return [(blk.a + k, blk.b + k) for blk in sm.get_matching_blocks() for k in range(blk.size)]


def anchors(words_a: Sequence, phones_a: Sequence, words_b: Sequence, phones_b: Sequence,
            pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Time anchors (ta [K] in a, tb [K] in b), strictly increasing in both, from matched words.

    Each matched word gives its start and end; when both sides have the same phone sequence for it,
    the inner phone boundaries too.
    """
    def by_word(phones: Sequence) -> dict[int, list]:
        out: dict[int, list] = {}
        for p in phones:
            if p.word >= 0 and p.phone != "SIL":
                out.setdefault(p.word, []).append(p)
        return out

    pa, pb = by_word(phones_a), by_word(phones_b)
    pts: list[tuple[float, float]] = []
    for i, j in pairs:
        wa, wb = words_a[i], words_b[j]
        pts.append((wa.start, wb.start))
        qa, qb = pa.get(i, []), pb.get(j, [])
        if qa and [p.phone for p in qa] == [p.phone for p in qb]:
            pts += [(x.end, y.end) for x, y in zip(qa[:-1], qb[:-1], strict=True)]
        pts.append((wa.end, wb.end))
    pts.sort()
    ta: list[float] = []
    tb: list[float] = []
    for x, y in pts:  # keep a strictly increasing chain (drop anchors that would fold time back)
        if not ta or (x > ta[-1] + 1e-4 and y > tb[-1] + 1e-4):
            ta.append(x)
            tb.append(y)
    return np.array(ta), np.array(tb)


def time_map(t: np.ndarray, ta: np.ndarray, tb: np.ndarray) -> np.ndarray:
    """Piecewise-linear, monotone map of times t (any shape) through anchors; slope 1 outside them."""
    t = np.asarray(t, np.float64)
    if len(ta) == 0:
        return t.copy()
    if len(ta) == 1:
        return t + (tb[0] - ta[0])
    out = np.interp(t, ta, tb)
    out = np.where(t < ta[0], tb[0] + (t - ta[0]), out)
    return np.where(t > ta[-1], tb[-1] + (t - ta[-1]), out)


def guess_times(words: Sequence, heard: Sequence, duration: float) -> list:
    """`words` (the text to align) with rough times in another recording, from what Whisper `heard` in it:
    matched words take the heard times, the others are interpolated (only used to cut alignment chunks)."""
    from emotalk.speech.align import Word

    pairs = match_words(words, heard)
    if not pairs:
        step = duration / max(len(words), 1)
        return [Word(w.text, i * step, (i + 1) * step) for i, w in enumerate(words)]
    ia = np.array([i for i, _ in pairs], np.float64)
    starts = np.interp(np.arange(len(words)), ia, [heard[j].start for _, j in pairs])
    ends = np.interp(np.arange(len(words)), ia, [heard[j].end for _, j in pairs])
    return [Word(w.text, float(a), float(max(a, b))) for w, a, b in zip(words, starts, ends, strict=True)]


# --- features -----------------------------------------------------------------------------------------

def feature_sequence(wav: np.ndarray, kind: str = "whisper", device: str = "cpu") -> tuple[np.ndarray, float]:
    """Per-step features of 16 kHz speech [S,C] and the time (s) of step 0's centre (negative: the
    silence padded in front, as `compute_audio_code` does, so windows near 0 s see real context)."""
    from emotalk.speech.features import mel_sequence, whisper_sequence

    k = KINDS[kind]
    lead = k.window // 2 + 2
    tail = k.window // 2 + 2
    lead_samples = int(round(lead * SR / k.rate_hz))
    padded = np.concatenate([np.zeros(lead_samples, np.float32), np.asarray(wav, np.float32),
                             np.zeros(int(round(tail * SR / k.rate_hz)), np.float32)])
    seq = whisper_sequence(padded, device) if kind == "whisper" else mel_sequence(padded, device)
    return seq, -lead / k.rate_hz


def sample_code(seq: np.ndarray, t0: float, kind: str, frame_times: np.ndarray,
                warp: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Code [T,W,C] from a feature sequence seq [S,C] (step s centred at t0 + s/rate): frame t's window
    step i reads time warp(frame_times[t] + (i - W/2)/rate), interpolated linearly; times outside the
    sequence read its end steps (padded silence, from `feature_sequence`)."""
    k = KINDS[kind]
    tau = frame_times[:, None] + (np.arange(k.window)[None, :] - k.window // 2) / k.rate_hz  # [T,W]
    if warp is not None:
        tau = warp(tau)
    pos = np.clip((tau - t0) * k.rate_hz, 0, len(seq) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(seq) - 1)
    frac = (pos - lo)[..., None].astype(np.float32)
    return ((1 - frac) * seq[lo] + frac * seq[hi]).astype(np.float32)


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


def warped_signal(x: np.ndarray, rate_hz: float, times: np.ndarray) -> np.ndarray:
    """Sample a per-step signal x [S] (step s at s/rate_hz) at `times` (s) -> [len(times)]."""
    return np.interp(np.asarray(times) * rate_hz, np.arange(len(x)), x)


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
                     min_word_prob: float = 0.6) -> Original:
    """Transcript, forced alignment and code of the original speech. Refuses speech that Whisper tiny.en
    hears with a mean word probability under `min_word_prob` (other languages: measured 0.38 on the
    French and 0.46 on the German clip, 0.88-0.91 on English ones)."""
    from emotalk.avsync.lipsync import align_robust
    from emotalk.speech.align import transcribe

    tr = transcribe(wav)
    prob = float(np.mean([w.score for w in tr.words])) if tr.words else 0.0
    if prob < min_word_prob:
        raise MediaError(f"The speech does not sound like English to Whisper (mean word probability "
                         f"{prob:.2f} < {min_word_prob}); re-speaking with TTS needs English speech (the "
                         "offline voices are English); perturbed voices still work.")
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
    """Re-speak an identity dataset's words: writes ds.root/respoken/{voice}.npy + index.json."""
    from emotalk.avsync.offset import mouth_opening

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
