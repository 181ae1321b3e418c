"""Lip-sync of a video (a real clip or a render): AV offset, sync confidence and phone contrast; or make
re-spoken audio codes of an identity dataset for lip-sync training.

Examples:
  python -m emotalk sync talk.mp4                      # offset, confidence, phone contrast
  python -m emotalk sync render.mp4 --audio speech.wav --json sync.json
  python -m emotalk sync clip.mp4 --language fr        # no phone contrast (alignment is English only)
  python -m emotalk sync --respeak out/datasets/obama --voices piper-joe espeak-en-us

Offset: video frames at 25 fps; positive = the audio comes later than the lips. Confidence: peak minus
median of the combined correlation over lags +-10; "clear" when the peak beats every lag outside +-2
by 0.1. Phone contrast: mean mouth opening on open vowels / on p, b, m.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = "lip-sync of a video (AV offset, confidence, phone contrast); --respeak DATASET"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from emotalk.speech.voices import DEFAULT_VOICES, VOICES

    p.add_argument("video", nargs="?", type=Path, help="video to measure (its own audio unless --audio)")
    p.add_argument("--audio", type=Path, help="speech to measure the video against (audio or video file)")
    p.add_argument("--text", help="what is said (default: Whisper transcript)")
    p.add_argument("--language", default="en", help="language of the speech; phone contrast needs en")
    p.add_argument("--max-lag", type=int, default=10, help="offsets searched, +- frames")
    p.add_argument("--json", type=Path, help="write the full report as JSON")
    r = p.add_argument_group("re-spoken training codes")
    r.add_argument("--respeak", type=Path, metavar="DATASET", help="identity dataset folder to re-speak")
    r.add_argument("--voices", nargs="+", default=list(DEFAULT_VOICES), choices=list(VOICES),
                   help="offline voices")
    r.add_argument("--kind", choices=["whisper", "mel"], default="whisper", help="audio code kind")
    r.add_argument("--device", default="cpu", help="cpu or cuda (Whisper encoder)")


def _progress(msg: str, frac: float) -> None:
    print(f"[{100 * frac:3.0f}%] {msg}", file=sys.stderr, flush=True)


def _print_report(rep) -> None:
    s = rep.sync
    print(f"{rep.name}: {rep.n_frames} frames, face found in {100 * rep.face_found:.0f} %")
    print(f"AV offset: {s.offset:+d} frames ({40 * s.offset:+d} ms at 25 fps; + = audio late)")
    print(f"confidence: {s.confidence:.3f}  peak corr: {s.peak_corr:.3f}  corr at 0: {s.corr0:.3f}  "
          f"margin: {s.margin:+.3f} ({'clear' if s.clear else 'NOT clear'})  per signal: {s.signals}")
    if rep.contrast is not None:
        c = rep.contrast
        print(f"phone contrast: {c.ratio:.2f} (open vowels {c.open_mean:.4f} over {c.n_open} frames, "
              f"p/b/m {c.closed_mean:.4f} over {c.n_closed} frames)")
        if s.offset:
            print(f"phone contrast at the measured offset: {rep.contrast_at_offset.ratio:.2f}")
    for n in rep.notes:
        print(f"note: {n}")


def run(args: argparse.Namespace) -> int:
    from emotalk.errors import InputError

    if args.respeak is not None:
        from emotalk.dataset.format import load_dataset
        from emotalk.training.respeak import respeak_dataset

        ds = load_dataset(args.respeak)
        paths = respeak_dataset(ds, args.voices, args.kind, _progress, args.device)
        index = json.loads((Path(ds.root) / "respoken" / "index.json").read_text())
        print(f"original: {index['original']}")
        for q in index["voices"]:
            err, raw = 1000 * q["mean_abs_error_s"], 1000 * q["mean_abs_error_unwarped_s"]
            print(f"{q['voice']:30s} matched {q['matched']}/{q['words']} words, time error "
                  f"{err:.0f} ms (unwarped {raw:.0f}), corr0 energy {q['corr0_energy']:+.3f} "
                  f"model {q['corr0_model']:+.3f}")
        for name, why in index["skipped"].items():
            print(f"{name}: skipped ({why})")
        print(f"wrote {len(paths)} codes under {Path(ds.root) / 'respoken'}")
        return 0 if paths else 1
    if args.video is None:
        raise InputError("Give a video to measure, or --respeak DATASET.")
    from dataclasses import replace

    from emotalk import media
    from emotalk.avsync import lipsync

    wav = media.read_audio(args.audio, 16000) if args.audio else None
    settings = replace(lipsync.DEFAULT, max_lag=args.max_lag)
    rep = lipsync.measure_video(args.video, args.language, args.text, wav, settings, _progress)
    _print_report(rep)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rep.to_dict(), indent=1))
        print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m emotalk.cli.sync ...` (until the dispatcher lists the command)."""
    from emotalk.errors import EmoTalkError

    p = argparse.ArgumentParser(prog="python -m emotalk sync", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    try:
        return run(p.parse_args(argv))
    except EmoTalkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
