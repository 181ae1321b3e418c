"""Render an identity saying a speech file or typed text, with an emotion, into an mp4 (H.264 + AAC).

Goes through emotalk.pipeline like the app: the same validation, limits, TTS engines and notices.
IDENTITY is the name of any shipped or fine-tuned identity (an unknown name is answered with the list of
them), an identity folder, or hf:owner/repo. Typed text is spoken offline (Piper) unless `--engine edge`
sends it to the online voice.
"""

from __future__ import annotations

import argparse

HELP = "render an identity saying an audio file or text, with an emotion"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from emotalk.requests import MAX_SPEECH_S

    p.add_argument("identity", help="identity name, folder, or hf:owner/repo")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--audio", help="speech recording (wav, mp3, m4a, ogg, flac, or a video's sound), "
                                     f"at most {MAX_SPEECH_S:.0f} s")
    src.add_argument("--text", help="text to speak (TTS: Piper offline by default; see --engine)")
    p.add_argument("--engine", default=None, choices=["piper", "espeak", "edge"],
                   help="TTS engine: piper (offline, default), espeak (offline), edge (online voice: the "
                        "text is sent to an online service)")
    p.add_argument("--voice", default=None, help="online voice for --engine edge, e.g. en-US-GuyNeural")
    emo = p.add_mutually_exclusive_group()
    emo.add_argument("--emotion", default=None, help="a category: neutral, happy, sad, angry, ...")
    emo.add_argument("--emotion-track", default=None, help="JSON/CSV keyframes (time, valence, arousal)")
    p.add_argument("--valence", type=float, default=0.0, help="valence in [-1, 1]")
    p.add_argument("--arousal", type=float, default=0.0, help="arousal in [-1, 1]")
    p.add_argument("--intensity", type=float, default=1.0,
                   help="strength of the emotion: 0 neutral, 1 full, up to 1.5 exaggerated")
    p.add_argument("-o", "--out", required=True, help="mp4 to write")
    p.add_argument("--size", type=int, default=None,
                   help="output side in px (default: the identity's; at most 256 on a CPU)")
    p.add_argument("--yaw", type=float, default=0.0, help="camera yaw offset, degrees")
    p.add_argument("--pitch", type=float, default=0.0, help="camera pitch offset, degrees")
    p.add_argument("--no-label", action="store_true", help="leave out the small 'AI-generated' label")
    p.add_argument("--device", default=None, choices=["cpu", "cuda"], help="default: cuda when available")
    p.add_argument("--stream", default=None, metavar="DIR|-",
                   help="play while it renders: write numbered MPEG-TS segments and an HLS playlist "
                        "(DIR/playlist.m3u8) as they are ready, or '-' to pipe MPEG-TS to stdout "
                        "(| ffplay -); the complete mp4 still goes to --out")
    p.add_argument("--chunk", type=float, default=1.0, help="--stream: seconds per segment (default 1)")


def run(args: argparse.Namespace) -> int:
    import shutil
    import sys
    from pathlib import Path

    from emotalk import pipeline
    from emotalk.emotion import EmotionTrack, category_va
    v, a = (category_va(args.emotion) if args.emotion else (args.valence, args.arousal))
    track = None
    if args.emotion_track:
        t = EmotionTrack.from_file(args.emotion_track)
        track = [(float(tt), float(vv), float(aa)) for tt, (vv, aa) in zip(t.times, t.va)]
    req = pipeline.RenderRequest(identity=args.identity, audio=args.audio, text=args.text, engine=args.engine,
                                 voice=args.voice, valence=v, arousal=a, intensity=args.intensity,
                                 emotion_track=track, size=args.size, yaw=args.yaw, pitch=args.pitch,
                                 watermark=not args.no_label, device=args.device)
    req = pipeline.validate_request(req)
    print(f"expected: about {pipeline.estimate_seconds(req):.0f} s of compute", file=sys.stderr, flush=True)

    def prog(stage: str, f: float) -> None:
        print(f"\r{100 * f:5.1f}%  {stage:60s}", end="", file=sys.stderr, flush=True)

    if args.stream:
        res = _stream(req, args.stream, args.chunk, prog)
    else:
        res = pipeline.synthesize(req, progress=prog)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(res.video), out)
    print(file=sys.stderr)
    if res.notice:
        print(f"note: {res.notice}", file=sys.stderr)
    spoken = f", spoken by {res.tts_engine}" if res.tts_engine else ""
    print(f"wrote {out}: {res.audio_seconds:.1f} s clip, {res.n_frames} frames, made in {res.seconds:.1f} s "
          f"({res.audio_seconds / max(res.seconds, 1e-6):.2f}x real time){spoken}",
          file=sys.stderr if args.stream == "-" else sys.stdout)  # stdout carries the video then
    return 0


def _stream(req, where: str, chunk_s: float, prog):
    """synthesize_stream: each segment into DIR (with the playlist updated) or onto stdout as it comes."""
    import shutil
    import sys
    from pathlib import Path

    from emotalk import pipeline
    from emotalk.media.segments import Segment, write_playlist

    out_dir = None if where == "-" else Path(where)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    done: list[Segment] = []
    for part in pipeline.synthesize_stream(req, progress=prog, chunk_s=chunk_s):
        if not isinstance(part, Segment):
            if out_dir is not None:
                write_playlist(out_dir / "playlist.m3u8", done, ended=True)
            return part
        if out_dir is None:
            sys.stdout.buffer.write(part.path.read_bytes())
            sys.stdout.buffer.flush()
        else:
            seg = shutil.copyfile(part.path, out_dir / part.path.name)
            done.append(Segment(Path(seg), part.index, part.start_frame, part.n_frames, part.fps))
            write_playlist(out_dir / "playlist.m3u8", done, ended=False)
    raise RuntimeError("the stream ended without its result")  # synthesize_stream always ends with one
