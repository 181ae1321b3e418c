"""Streaming latency: time to the first playable segment and to the complete mp4, through
`pipeline.synthesize_stream`, for short and long speech, from audio and from text, cold and warm.

Each (source, seconds, size) runs in a fresh process: the first request there is "cold" (identity load,
Whisper weights, CUDA kernels included; the import of the package is timed apart), the next ones "warm".
With --app-launch the process first runs the app's launch warm-up (`pipeline.warm_up`: the offline voice
started, one still rendered), so "cold" is a first visitor's request.
Text: sentence by sentence, as the app does. Where no offline TTS engine exists (the GPU host: no Piper,
no espeak), or with --tts-wav, the sentences are cut from a wav spoken beforehand and TTS costs nothing
here ("tts time measured separately": `bench speech`, or the tts_s column of a CPU run).

  python -m emotalk bench latency --device cpu --sizes 256 --seconds 5 30          # this machine
  python -m emotalk bench latency --device cuda --sizes 256 512 --tts-wav examples/news.wav
Writes OUT/latency.json and OUT/latency.md (default out/bench/latency).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from emotalk.identity.store import REPO_ROOT as REPO

TEXT = ("The weather changed quickly over the hills this morning. Farmers brought their animals in "
        "before the rain arrived. By noon the river had risen to the edge of the old stone bridge. "
        "Children watched from the windows of the school as the water rushed past. Nobody could remember "
        "a storm like this one in many years. The mayor asked everyone to stay at home until evening. "
        "Volunteers filled sand bags near the market square. Later the clouds opened and the sun came "
        "back. People walked down to the river to see what the flood had left behind. ")
SPEECH = [REPO / "examples" / n for n in ("news.wav", "warning.wav", "hello.wav")]  # our own TTS, tracked


def text_for(seconds: float) -> str:
    """Whole sentences of TEXT (repeated) making about `seconds` of speech (14 characters a second)."""
    out, sentences = "", [s.strip() + "." for s in TEXT.split(".") if s.strip()]
    while len(out) < seconds * 14:
        out += sentences[len(out.split(".")) % len(sentences) - 1] + " "
    return out.strip()


def speech_wav(seconds: float, folder: Path, source: list[Path]) -> Path:
    """`seconds` of speech (the given wavs one after another, repeated) as a 16 kHz wav in `folder`."""
    from emotalk import media
    from emotalk.speech.normalize import load_speech

    wav = np.concatenate([load_speech(p) for p in source])
    wav = np.tile(wav, int(np.ceil(seconds * media.SR / len(wav))))[: int(seconds * media.SR)]
    return media.write_wav(folder / f"speech_{seconds:g}s.wav", wav)


def offline_tts() -> str | None:
    """Why typed text cannot be spoken offline here (None: it can)."""
    from emotalk.speech.tts_offline import espeak_available, piper_available

    why = [w for w in (piper_available(), espeak_available()) if w]
    return None if len(why) < 2 else "; ".join(why)


def use_wav_for_text(wav_path: Path) -> None:
    """Make the pipeline's TTS cut each sentence from `wav_path` (its share by characters): no TTS cost."""
    from emotalk.media import SR
    from emotalk.pipeline import render
    from emotalk.speech.normalize import load_speech
    from emotalk.speech.tts import TTSResult

    wav = load_speech(wav_path)

    def cut(text, voice, arousal, engine, progress=None):
        n = max(int(0.3 * SR), int(len(text) / 14 * SR))
        start = cut.pos % max(1, len(wav) - n)
        cut.pos += n
        piece = np.ascontiguousarray(np.resize(wav[start:], n))
        return TTSResult(piece, "wav", wav_path.name, text, []), None

    cut.pos = 0
    render._tts = cut


def playback_stalls(ready: list[float], durations: list[float]) -> dict:
    """A player that starts at the first segment and plays each as soon as it is ready and the previous one
    has ended: its stalls (count, seconds in all) and the smallest lead a segment had over its play time."""
    clock, stalls, stalled, lead = None, 0, 0.0, float("inf")
    for t, d in zip(ready, durations):
        if clock is None:
            clock = t
        else:
            lead = min(lead, clock - t)
            if t > clock:
                stalls, stalled, clock = stalls + 1, stalled + t - clock, t
        clock += d
    return dict(stalls=stalls, stalled_s=round(stalled, 3),
                min_lead_s=round(lead, 3) if lead != float("inf") else None)


def one(args: argparse.Namespace) -> list[dict]:
    """The runs of one (source, seconds, size) in this process: cold first, then warm."""
    import tempfile

    t0 = time.perf_counter()
    from emotalk import pipeline
    from emotalk.media.segments import Segment

    import_s = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="emotalk-latency-"))
    if args.source == "audio":
        wav = speech_wav(args.secs, tmp, args.speech)
        req = pipeline.RenderRequest(identity=args.identity, audio=str(wav), size=args.size,
                                     device=args.device)
    else:
        if args.tts_wav:
            use_wav_for_text(args.tts_wav)
        req = pipeline.RenderRequest(identity=args.identity, text=text_for(args.secs), size=args.size,
                                     device=args.device)
    launch_s = 0.0
    if args.app_launch:  # the app's launch warm-up (voice started, one still) before any request
        t = time.perf_counter()
        pipeline.warm_up(args.identity, size=args.size, device=args.device)
        launch_s = time.perf_counter() - t
    rows = []
    for k in range(1 + args.warm):
        t, first, segs, done, ready, durs = time.perf_counter(), None, 0, {}, [], []
        for part in pipeline.synthesize_stream(req, tmp / f"run{k}", chunk_s=args.chunk):
            if isinstance(part, Segment):
                first = first or time.perf_counter() - t
                segs += 1
                ready.append(time.perf_counter() - t)
                durs.append(part.duration)
                if args.first_only:
                    break
            else:
                done = dict(complete_s=round(time.perf_counter() - t, 3), frames=part.n_frames,
                            speech_s=round(part.audio_seconds, 2), tts_engine=part.tts_engine,
                            tts_s=round(part.timings.get("speech", 0.0), 3))
        rows.append(dict(source=args.source, seconds=args.secs, size=args.size, device=args.device,
                         run="cold" if k == 0 else "warm", first_s=round(first, 3), segments=segs,
                         import_s=round(import_s, 2) if k == 0 else 0.0, launch_s=round(launch_s, 2), **done,
                         **playback_stalls(ready, durs)))
    return rows


def table(rows: list[dict], meta: dict) -> str:
    lines = [f"# Streaming latency ({meta['device']}, {meta['when']})", "",
             f"identity {meta['identity']}, chunk {meta['chunk']} s, load average {meta['load']}, "
             f"OMP_NUM_THREADS={meta['threads']}; text: {meta['text']}", "",
             "| source | speech | size | run | first segment | complete mp4 | x real time | segments "
             "| stalls (s) | smallest lead |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        done = f"{r['complete_s']:.2f} s" if "complete_s" in r else "–"
        rt = f"{r['speech_s'] / r['complete_s']:.2f}" if "complete_s" in r else "–"
        lead = "–" if r.get("min_lead_s") is None else f"{r['min_lead_s']:.2f} s"
        lines.append(f"| {r['source']} | {r['seconds']:g} s | {r['size']} | {r['run']} "
                     f"| {r['first_s']:.2f} s | {done} | {rt} | {r['segments']} "
                     f"| {r.get('stalls', '–')} ({r.get('stalled_s', 0):.2f}) | {lead} |")
    return "\n".join(lines + meta.get("skipped", [])) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m emotalk bench latency", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--identity", default="obama")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="default: 256 on CPU, 256 512 on CUDA")
    p.add_argument("--seconds", type=float, nargs="+", default=[5.0, 30.0])
    p.add_argument("--sources", nargs="+", default=["audio", "text"], choices=["audio", "text"])
    p.add_argument("--speech", type=Path, nargs="+", default=SPEECH, help="wavs the audio runs repeat")
    p.add_argument("--tts-wav", type=Path, default=None,
                   help="text runs cut sentences from this wav instead of speaking (no offline TTS here)")
    p.add_argument("--chunk", type=float, default=1.0, help="seconds per segment")
    p.add_argument("--warm", type=int, default=1, help="warm runs after the cold one")
    p.add_argument("--first-only", action="store_true", help="stop each run at its first segment")
    p.add_argument("--app-launch", action="store_true",
                   help="run the app's launch warm-up first (its time is launch_s, not counted)")
    p.add_argument("--out", type=Path, default=REPO / "out" / "bench" / "latency")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: one case, JSON out
    p.add_argument("--source", default=None, help=argparse.SUPPRESS)
    p.add_argument("--secs", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print("LATENCY " + json.dumps(one(args)), flush=True)
        return 0
    from emotalk.requests import device_info

    dev = args.device or device_info()["device"]
    sizes = args.sizes or ([256] if dev == "cpu" else [256, 512])
    meta = dict(device=dev, identity=args.identity, chunk=args.chunk, load=f"{os.getloadavg()[0]:.2f}",
                threads=os.environ.get("OMP_NUM_THREADS", "unset"), when=time.strftime("%Y-%m-%d %H:%M"),
                text="spoken sentence by sentence", skipped=[])
    sources = list(args.sources)
    if "text" in sources and not args.tts_wav and (why := offline_tts()):
        if args.speech and args.speech[0].is_file():
            args.tts_wav = args.speech[0]  # no offline engine here: sentences cut from recorded TTS speech
        else:
            sources.remove("text")
            meta["skipped"].append(f"\nText rows skipped: no offline TTS here ({why}); pass --tts-wav.")
    if args.tts_wav:
        meta["text"] = f"sentences cut from {args.tts_wav.name} (no TTS here: tts time measured separately)"
    rows = []
    for source in sources:
        for secs in args.seconds:
            for size in sizes:
                cmd = [sys.executable, "-m", "emotalk", "bench", "latency", "--one", "--source", source,
                       "--secs", str(secs), "--size", str(size), "--device", dev, "--identity", args.identity,
                       "--chunk", str(args.chunk), "--warm", str(args.warm), "--speech",
                       *map(str, args.speech)]
                cmd += ["--tts-wav", str(args.tts_wav)] if args.tts_wav else []
                cmd += ["--first-only"] if args.first_only else []
                cmd += ["--app-launch"] if args.app_launch else []
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
                line = [x for x in r.stdout.splitlines() if x.startswith("LATENCY ")]
                if r.returncode != 0 or not line:
                    raise SystemExit(f"{source} {secs:g} s {size} px failed:\n{r.stderr[-3000:]}")
                rows += json.loads(line[-1][len("LATENCY "):])
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latency.json").write_text(json.dumps(dict(meta=meta, rows=rows), indent=1))
    (args.out / "latency.md").write_text(table(rows, meta))
    print(table(rows, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
