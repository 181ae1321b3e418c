"""Speech tools: speak text (offline by default: Piper, else espeak-ng; the online voice only with
--engine edge or an online --voice; any fallback is printed), transcribe a recording with word (and
phone) times, or compute the audio code that drives the lips.

Examples:
  python -m emotalk speak --text "Hello there." -o hello.wav --srt hello.srt
  python -m emotalk speak --text "Hi" --engine offline -o hi.wav
  python -m emotalk speak --transcribe talk.mp4 --phones --json talk_timings.json
  python -m emotalk speak --features talk.wav -o code.npy --kind whisper --fps 25
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emotalk.folders import atomic_path, atomic_write_text

HELP = "text to speech, transcripts with word/phone times, audio code (.npy)"
ENGINE_CHOICES = {"auto": None, "offline": ("piper", "espeak"), "edge": ("edge",), "piper": ("piper",),
                  "espeak": ("espeak",)}  # None: offline, after the online voice when --voice names one


def add_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--text", help="text to speak (needs -o out.wav)")
    what.add_argument("--text-file", type=Path, help="UTF-8 text file to speak (needs -o out.wav)")
    what.add_argument("--transcribe", type=Path, metavar="FILE",
                      help="print the transcript of an audio/video file with word times")
    what.add_argument("--features", type=Path, metavar="FILE",
                      help="compute the per-frame audio code of an audio/video file (needs -o code.npy)")
    what.add_argument("--list-voices", nargs="?", const="en", metavar="LANG",
                      help="list voices (online voices when reachable, e.g. 'en', 'fr'; 'all' for every one)")
    p.add_argument("-o", "--output", type=Path, help="output .wav (speech) or .npy (audio code)")
    g = p.add_argument_group("speaking")
    g.add_argument("--voice", help="online voice, e.g. en-US-GuyNeural (its language is the text's language)")
    g.add_argument("--engine", choices=list(ENGINE_CHOICES), default="auto",
                   help="auto: Piper, else espeak-ng (the text stays here), after the online voice only "
                        "when --voice names one; offline: never use the network; edge: the online voice")
    g.add_argument("--rate", type=float, default=0.0, help="speaking-rate change in percent (-50..100)")
    g.add_argument("--pitch", type=float, default=0.0, help="pitch change in Hz (-50..50)")
    g.add_argument("--arousal", type=float, default=0.0,
                   help="emotion arousal in [-1,1]; changes rate and pitch only with --arousal-prosody")
    g.add_argument("--arousal-prosody", action="store_true", help="let --arousal modulate rate and pitch")
    g.add_argument("--srt", type=Path, help="also write subtitles from the word timings")
    g.add_argument("--no-align", action="store_true", help="skip phone alignment (faster)")
    t = p.add_argument_group("transcripts and timings")
    t.add_argument("--phones", action="store_true", help="with --transcribe: also align ARPAbet phones")
    t.add_argument("--json", type=Path, help="write words (and phones) with times as JSON")
    f = p.add_argument_group("audio code")
    f.add_argument("--kind", choices=["whisper", "mel"], default="whisper", help="feature kind")
    f.add_argument("--fps", type=float, default=25.0, help="video frame rate the code is aligned to")
    f.add_argument("--n-frames", type=int, help="number of video frames (default: duration x fps)")
    f.add_argument("--device", default="cpu", help="cpu or cuda")


def _timings_json(path: Path, words, phones, extra: dict) -> None:
    data = dict(extra, words=[w.__dict__ for w in words], phones=[p.__dict__ for p in phones])
    atomic_write_text(path, json.dumps(data, indent=1))


def _need_output(args: argparse.Namespace, suffix: str) -> Path:
    from emotalk.errors import InputError

    if args.output is None:
        raise InputError(f"Give an output file with -o (a {suffix} file).")
    if args.output.suffix.lower() != suffix:
        raise InputError(f"The output {args.output} should end in {suffix}.")
    return args.output


def _progress(stage: str, frac: float) -> None:
    print(f"  {stage}: {100 * frac:.0f} %", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from emotalk.errors import InputError

    if args.list_voices is not None:
        from emotalk.speech.tts import OFFLINE_VOICES
        from emotalk.speech.tts_edge import list_voices

        lang = None if args.list_voices == "all" else args.list_voices
        for name in list_voices(lang):
            print(f"edge    {name}")
        for engine, name in OFFLINE_VOICES.items():
            print(f"{engine:7s} {name}   (offline, English; --engine {engine})")
        return 0

    if args.text is not None or args.text_file is not None:
        from emotalk.media import write_wav
        from emotalk.speech.tts import TTSSettings, text_to_speech

        out = _need_output(args, ".wav")
        if args.text_file is not None:
            try:
                text = args.text_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise InputError(f"Cannot read the text file {args.text_file} ({e}); give UTF-8 text.") from e
        else:
            text = args.text
        settings = TTSSettings(engines=ENGINE_CHOICES[args.engine], voice=args.voice, rate=args.rate,
                               pitch=args.pitch, arousal_prosody=args.arousal_prosody,
                               align=not args.no_align)
        res = text_to_speech(text, settings, arousal=args.arousal)
        write_wav(out, res.wav, res.sr)
        print(f"engine: {res.engine} ({res.voice})")
        print(f"fallback: {res.fallback_reason or 'none'}")
        print(f"wrote {out} ({res.duration:.2f} s, {len(res.words)} words, {len(res.phones)} phones)")
        if args.srt:
            atomic_write_text(args.srt, res.srt())
            print(f"wrote {args.srt}")
        if args.json:
            meta = {"engine": res.engine, "voice": res.voice, "fallback": res.fallback_reason,
                    "text": res.text}
            _timings_json(args.json, res.words, res.phones, meta)
            print(f"wrote {args.json}")
        return 0

    if args.transcribe is not None:
        from emotalk.speech.align import align_phones, transcribe
        from emotalk.speech.normalize import load_speech

        wav = load_speech(args.transcribe)
        tr = transcribe(wav)
        phones = align_phones(wav, tr.text).phones if args.phones else []
        print(tr.text)
        for w in tr.words:
            print(f"{w.start:8.2f} {w.end:8.2f}  {w.text}  ({w.score:.2f})")
        if phones:
            print(" ".join(f"{p.phone}@{p.start:.2f}" for p in phones))
        if args.json:
            _timings_json(args.json, tr.words, phones, {"text": tr.text})
            print(f"wrote {args.json}")
        return 0

    import numpy as np

    from emotalk.speech.features import compute_audio_code
    from emotalk.speech.normalize import load_speech

    out = _need_output(args, ".npy")
    wav = load_speech(args.features)
    code = compute_audio_code(wav, 16000, n_frames=args.n_frames, fps=args.fps, kind=args.kind,
                              device=args.device, progress=_progress)
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.save(f, code)
    print(f"wrote {out}: code {tuple(code.shape)} (frames, window, channels), kind {args.kind}, "
          f"{args.fps:g} fps")
    return 0
