"""Drive packs: the speech that drives the audio-driven evaluation, prepared once on a CPU so that a GPU
host (no TTS, no Whisper transcripts, no aligner) can render from it and the measuring can use its phones.

A pack is a folder:
    drives.json          index: settings and the drives in order
    <name>.wav           16 kHz mono speech, already as the pipeline reads it (normalised, silence
                         trimmed), cut to at most `max_seconds` at a quiet moment
    <name>.json          the drive: language, text / transcript, phone timings (English only), source
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emotalk.errors import InputError
from emotalk.folders import atomic_write_text
from emotalk.media import AUDIO_EXTS, SR, VIDEO_EXTS

Progress = Callable[[str, float], None]
INDEX = "drives.json"
MAX_SECONDS = 8.0  # drives are cut to at most this long, so renders of every category stay small
TTS_ENGINES = ("piper", "espeak")  # the offline engines; engine k reads TTS sentence k (see tts_drives)
# two-letter language tokens recognised in file names like `source_speaker_en_8s_...` (clips_more)
LANGUAGE_TOKENS = ("en", "de", "fr", "es", "it", "pt", "ru", "zh", "ja", "ko", "ar", "hi", "nl", "pl", "tr")


@dataclass
class Drive:
    """One driving speech of the pack."""

    name: str  # file stem inside the pack (letters, digits, _ and -)
    language: str  # language code of the speech ("en", "zh", ...)
    seconds: float  # length of <name>.wav
    source: str  # where it came from: a file path, or "piper" / "espeak"
    text: str | None = None  # the known text (TTS), else None
    transcript: str = ""  # what is said: the TTS text, or Whisper's transcript (English recordings)
    phones: list[list] = field(default_factory=list)  # [[phone, start s, end s], ...] (ARPAbet, SIL = pause)
    notes: list[str] = field(default_factory=list)  # why phones are missing, how it was cut, ...
    wav_path: Path | None = None  # absolute path of <name>.wav (filled on loading; not stored)

    def phone_objects(self) -> list:
        """The phones as `emotalk.speech.align.Phone` (what the lip-sync metrics take)."""
        from emotalk.speech.align import Phone

        return [Phone(str(p), float(s), float(e)) for p, s, e in self.phones]

    def request_phones(self) -> list[tuple[str, float, float]] | None:
        """The phones as RenderRequest.phones wants them; None when there are none."""
        return [(str(p), float(s), float(e)) for p, s, e in self.phones] or None


def safe_name(stem: str) -> str:
    """A file stem made of letters, digits, _ and - only (what the GPU host's file transfer keeps)."""
    s = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")
    return s[:60] or "drive"


def language_from_name(name: str) -> str | None:
    """The language token of a clips_more-style name (`hdtf_rdradio2_en_8s_...` -> "en"), else None."""
    for tok in Path(name).stem.lower().split("_"):
        if tok in LANGUAGE_TOKENS:
            return tok
    return None


def cut_at_quiet(
    wav: np.ndarray, max_seconds: float, search_s: float = 1.0, win_s: float = 0.05
) -> np.ndarray:
    """wav [N] cut to at most max_seconds, at the quietest `win_s` window of the last `search_s` before the
    limit (so the cut falls in a pause or a weak syllable, not mid-vowel)."""
    n_max = int(round(max_seconds * SR))
    if len(wav) <= n_max:
        return wav
    win = max(1, int(win_s * SR))
    lo = max(win, n_max - int(search_s * SR))
    e = np.convolve(np.asarray(wav, np.float64) ** 2, np.ones(win), mode="valid")  # energy of [i, i+win)
    ends = np.arange(lo, n_max + 1)  # candidate cut points: window [end-win, end)
    best = int(ends[np.argmin(e[ends - win])])
    return wav[:best]


def prepare_speech(wav_or_path, max_seconds: float) -> tuple[np.ndarray, list[str]]:
    """The pipeline's own speech reading (normalise, trim silence), cut, then read again the same way, so
    that the pipeline reading the stored wav changes nothing (no second trim shifts the timeline)."""
    from emotalk.speech.normalize import load_speech

    wav = load_speech(wav_or_path)
    notes = []
    if len(wav) > max_seconds * SR:
        full = len(wav) / SR
        wav = load_speech(cut_at_quiet(wav, max_seconds))
        notes.append(f"cut from {full:.1f} s to {len(wav) / SR:.2f} s")
    return wav, notes


def _write_drive(folder: Path, d: Drive, wav: np.ndarray) -> Drive:
    from emotalk.media import write_wav

    write_wav(folder / f"{d.name}.wav", wav, SR)
    d.seconds = round(len(wav) / SR, 3)
    d.wav_path = folder / f"{d.name}.wav"
    data = {k: v for k, v in asdict(d).items() if k != "wav_path"}
    atomic_write_text(folder / f"{d.name}.json", json.dumps(data, indent=1))
    return d


def _phones(wav: np.ndarray, language: str, text: str | None) -> tuple[list[list], str, list[str]]:
    from emotalk.avsync.lipsync import phones_for

    phones, transcript, notes = phones_for(wav, language, text)
    return [[p.phone, round(float(p.start), 3), round(float(p.end), 3)] for p in phones], transcript, notes


def file_drive(folder: Path, path: Path, language: str, max_seconds: float, name: str | None = None) -> Drive:
    """A recording (or a video's sound) -> a drive: speech read and cut, transcript and phones if English."""
    wav, notes = prepare_speech(path, max_seconds)
    phones, transcript, pnotes = _phones(wav, language, None)
    d = Drive(
        name or safe_name(path.stem), language, 0.0, str(path), None, transcript, phones, notes + pnotes
    )
    return _write_drive(folder, d, wav)


def tts_drive(folder: Path, engine: str, text: str, max_seconds: float) -> Drive:
    """Typed text spoken by an offline engine -> a drive whose phones come from aligning the known text."""
    from emotalk.speech.tts import TTSSettings, text_to_speech

    res = text_to_speech(text, TTSSettings(engines=(engine,), align=False))
    if res.engine != engine:
        raise InputError(f"TTS engine {engine} could not speak ({res.fallback_reason}).")
    wav, notes = prepare_speech(res.wav, max_seconds)
    cut = bool(notes)
    phones, transcript, pnotes = _phones(wav, "en", None if cut else res.text)  # a cut text is not known
    d = Drive(
        f"tts_{engine}",
        "en",
        0.0,
        f"{engine} ({res.voice})",
        None if cut else res.text,
        transcript,
        phones,
        notes + pnotes,
    )
    return _write_drive(folder, d, wav)


def expand_sources(items: Sequence[str], guess_language: bool = False) -> list[tuple[Path, str]]:
    """Command-line drive sources `PATH[@LANG]` (a file, or a folder of audio/video files) -> (file, lang).

    LANG defaults to en, or with `guess_language` to the name's language token (clips_more names)."""
    out = []
    for item in items:
        path_s, _, lang = item.rpartition("@") if "@" in Path(item).name else (item, "", "")
        p = Path(path_s)
        if not p.exists():
            raise InputError(f"Drive source {p} does not exist.")
        files = (
            sorted(f for f in p.iterdir() if f.suffix.lower() in AUDIO_EXTS + VIDEO_EXTS)
            if p.is_dir()
            else [p]
        )
        if not files:
            raise InputError(f"{p} holds no audio or video files ({', '.join(AUDIO_EXTS + VIDEO_EXTS)}).")
        for f in files:
            out.append((f, lang or (language_from_name(f.name) if guess_language else None) or "en"))
    return out


def build_drive_pack(
    folder: str | Path,
    audio_dir: str | Path | None,
    extra: Sequence[tuple[Path, str]] = (),
    tts: Sequence[tuple[str, str]] = (),
    max_seconds: float = MAX_SECONDS,
    progress: Progress | None = None,
) -> list[Drive]:
    """Build the pack: every audio file in `audio_dir`, the `extra` (file, language) sources, and the
    `tts` (engine, text) sentences. A source that fails is skipped with a message (progress), not fatal."""
    from emotalk.errors import EmoTalkError

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    jobs: list[tuple[str, Callable[[], Drive]]] = []
    if audio_dir is not None:
        files = sorted(p for p in Path(audio_dir).glob("*") if p.suffix.lower() in AUDIO_EXTS)
        if not files:
            raise InputError(f"{audio_dir} holds no audio files.")
        jobs += [(f.name, lambda f=f: file_drive(folder, f, "en", max_seconds)) for f in files]
    jobs += [(f.name, lambda f=f, lang=lang: file_drive(folder, f, lang, max_seconds)) for f, lang in extra]
    jobs += [(f"tts {e}", lambda e=e, t=t: tts_drive(folder, e, t, max_seconds)) for e, t in tts]
    drives: list[Drive] = []
    for k, (what, job) in enumerate(jobs):
        try:
            d = job()
        except EmoTalkError as e:
            if progress:
                progress(f"skipped {what}: {e}", (k + 1) / len(jobs))
            continue
        if any(x.name == d.name for x in drives):
            raise InputError(f"Two drives are named {d.name}; rename one of the sources.")
        drives.append(d)
        if progress:
            progress(
                f"{d.name}: {d.seconds:.1f} s, {d.language}, {len(d.phones)} phones", (k + 1) / len(jobs)
            )
    index = {"max_seconds": max_seconds, "sr": SR, "drives": [d.name for d in drives]}
    atomic_write_text(folder / INDEX, json.dumps(index, indent=1))
    return drives


def load_drive_pack(folder: str | Path, only: Sequence[str] | None = None) -> list[Drive]:
    """The drives of a pack, in order (`only`: those whose name contains one of these strings)."""
    folder = Path(folder)
    if not (folder / INDEX).is_file():
        raise InputError(
            f"{folder} is not a drive pack (no {INDEX}); build one with "
            "`python -m emotalk bench emotion-audio drives --out DIR`."
        )
    names = json.loads((folder / INDEX).read_text())["drives"]
    drives = []
    for n in names:
        if only and not any(o in n for o in only):
            continue
        data = json.loads((folder / f"{n}.json").read_text())
        d = Drive(**data)
        d.wav_path = folder / f"{n}.wav"
        if not d.wav_path.is_file():
            raise InputError(f"Drive pack {folder} lacks {d.wav_path.name}; rebuild the pack.")
        drives.append(d)
    if not drives:
        raise InputError(f"No drive of {folder} matches {list(only or [])}.")
    return drives
