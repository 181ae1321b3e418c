"""Lip-sync benchmark: the sync table of BENCHMARKS.md (Lip-sync), on real clips and on renders.

    .venv/bin/python -m emotalk bench sync real [--data ../shared/data] [--out out/bench_sync]
    .venv/bin/python -m emotalk bench sync renders IDENTITY [--data ../shared/data] [--out out/bench_sync]
                                         [--size 256] [--device cuda] [--reference CLIP]
    (or bench/bench_sync.py ...)

real:    every clip in DATA/clips (mp4 + grid/*.mpg; loaded by sync_clips): AV offset with a sync model
         trained WITHOUT that clip (leave-one-out, as in scripts/train_syncnet.py), the plain envelope
         estimator for comparison, the shift test, phone contrast as played and at the measured offset.
renders: IDENTITY (a trained identity folder) is rendered (`python -m emotalk render`) driven by every
         file in DATA/audio and by two TTS engines (Piper, espeak-ng) reading fixed sentences; each
         render is measured against its driving speech. With --reference, that real clip is measured
         too, and the targets are checked: |offset| <= 1, confidence >= 0.8x the reference's, phone
         contrast >= the reference's.
Both write OUT/<mode>.json and OUT/<mode>.md (a markdown table).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from emotalk.identity.store import REPO_ROOT as REPO

TTS_SENTENCES = (
    "People of every background come to this country to build a better life for their families.",
    "Maybe we should move the big meeting to Monday, but please bring the papers by five.",
)


def _fmt(x, spec: str) -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def bench_real(data: Path, out: Path, cache: Path) -> list[dict]:
    from emotalk.avsync import lipsync, syncnet
    from emotalk.avsync.offset import estimate_offset, speech_envelope
    from emotalk.cli.bench import sync_clips as ts

    clips = [ts.load_clip(p, cache) for p in ts.clips(data)]
    feats = {c["name"]: ts.features(c) for c in clips}
    shipped = syncnet.load()
    kept = shipped.info.get("clips", [c["name"] for c in clips])
    rows = []
    for c in clips:
        t0 = time.time()
        held_out = syncnet.fit([feats[n] for n in kept if n != c["name"]], ts.LAMBDA)
        est = ts.evaluate(c, held_out)
        shifts = {k: ts.evaluate(c, held_out, k).offset - est.offset for k in ts.SHIFTS}
        plain = estimate_offset(c["mouth"], speech_envelope(c["wav"], len(c["mouth"])), 10)
        ph = c["phones"]
        pc0 = lipsync.phone_contrast(c["mouth"], ph) if ph else None
        pco = lipsync.phone_contrast(c["mouth"], ph, offset=est.offset) if ph else None
        rows.append({
            "clip": c["name"], "frames": len(c["mouth"]), "offset": est.offset, "clear": est.clear,
            "confidence": round(est.confidence, 3), "peak_corr": round(est.peak_corr, 3),
            "corr0": round(est.corr0, 3), "margin": round(est.margin, 3), "signals": est.signals,
            "shift_test_ok": sum(abs(v - k) <= 1 for k, v in shifts.items()), "shift_test_n": len(shifts),
            "plain_offset": plain.offset_frames, "plain_peak_corr": round(plain.peak_corr, 3),
            "contrast0": None if pc0 is None else round(pc0.ratio, 2),
            "contrast_at_offset": None if pco is None else round(pco.ratio, 2),
            "in_training": c["name"] in kept, "seconds": round(time.time() - t0, 1),
        })
        r = rows[-1]
        print(f"{r['clip'][:32]:32s} off {r['offset']:+d} ({'clear' if r['clear'] else 'unclear'}) "
              f"conf {r['confidence']:.3f} plain {r['plain_offset']:+d} shifts {r['shift_test_ok']}/6 "
              f"contrast {r['contrast0']} / {r['contrast_at_offset']}", flush=True)
    lines = ["| clip | frames | offset | clear | confidence | peak corr | corr at 0 | per signal "
             "(model/energy/phones) | shift test | plain offset (peak) | phone contrast at 0 | at offset |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sig = "/".join(f"{r['signals'].get(k, '–')}" for k in ("model", "energy", "phones"))
        lines.append(f"| {r['clip']} | {r['frames']} | {r['offset']:+d} | {'yes' if r['clear'] else 'no'} | "
                     f"{r['confidence']:.3f} | {r['peak_corr']:.3f} | {r['corr0']:+.3f} | {sig} | "
                     f"{r['shift_test_ok']}/{r['shift_test_n']} | "
                     f"{r['plain_offset']:+d} ({r['plain_peak_corr']:.2f}) | {_fmt(r['contrast0'], '.2f')} | "
                     f"{_fmt(r['contrast_at_offset'], '.2f')} |")
    _write(out, "real", rows, lines)
    return rows


def _render(identity: Path, audio: Path, dst: Path, size: int | None, device: str | None) -> float:
    cmd = [sys.executable, "-m", "emotalk", "render", str(identity), "--audio", str(audio), "-o", str(dst)]
    if size:
        cmd += ["--size", str(size)]
    if device:
        cmd += ["--device", device]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"render failed for {audio.name}: {proc.stderr.strip()[-800:]}")
    return time.time() - t0


def drive_list(data: Path, work: Path) -> list[tuple[str, Path, str | None]]:
    """The driving speech of the renders table: every file in DATA/audio and two TTS engines reading
    fixed sentences -> (name, wav path, text or None)."""
    from emotalk import media
    from emotalk.speech.tts import TTSSettings, text_to_speech

    work.mkdir(parents=True, exist_ok=True)
    audio = sorted(p for p in (data / "audio").glob("*") if p.suffix.lower() in (".wav", ".mp3", ".m4a"))
    drives: list[tuple[str, Path, str | None]] = [(p.stem, p, None) for p in audio]
    for engine in ("piper", "espeak"):
        text = " ".join(TTS_SENTENCES)
        res = text_to_speech(text, TTSSettings(engines=(engine,)))
        wav_path = media.write_wav(work / f"tts_{engine}.wav", res.wav, res.sr)
        drives.append((f"tts_{engine} ({res.voice})", wav_path, res.text))
    return drives


def bench_renders(identity: Path, data: Path, out: Path, size: int | None, device: str | None,
                  reference: Path | None, only: list[str] | None = None,
                  render_fn=None, drives: list[tuple[str, Path, str | None]] | None = None) -> list[dict]:
    """Render (or, with render_fn(name, wav, dst) -> seconds, obtain otherwise: e.g. frames rendered on a
    GPU host) the identity for each drive and measure each video against its driving speech."""
    from emotalk import media
    from emotalk.avsync import lipsync

    work = out / "renders"
    work.mkdir(parents=True, exist_ok=True)
    drives = drives if drives is not None else drive_list(data, work)
    if only:
        drives = [d for d in drives if any(o in d[0] for o in only)]
    rows = []
    if reference is not None:
        rep = lipsync.measure_video(reference)
        rows.append(_row(f"REAL {reference.name}", rep, 0.0))
    for name, path, text in drives:
        dst = work / f"{Path(path).stem}.mp4"
        try:
            secs = render_fn(name, path, dst) if render_fn else _render(identity, path, dst, size, device)
        except RuntimeError as e:
            print(e, file=sys.stderr)
            rows.append({"drive": name, "error": str(e)})
            continue
        rep = lipsync.measure_video(dst, text=text, wav=media.read_audio(path, media.SR))
        rows.append(_row(name, rep, secs))
        r = rows[-1]
        print(f"{name[:40]:40s} off {r['offset']:+d} conf {r['confidence']:.3f} contrast {r['contrast0']}",
              flush=True)
    ref = rows[0] if reference is not None else None
    # the real clip's bar: its phone contrast with the phones at its measured offset (a clip whose audio
    # is late, like obama_address, would otherwise set a bar of ~1)
    bar = None if ref is None else ref.get("contrast_at_offset") or ref["contrast0"]
    lines = ["| driving speech | frames | face found | offset | clear | confidence | corr at 0 | "
             "phone contrast | at offset | targets (|off|<=1, conf>=0.8 ref, contrast>=ref) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['drive']} | render failed | | | | | | | | |")
            continue
        ok = "–"
        if ref is not None and r is not ref:
            checks = [abs(r["offset"]) <= 1, r["confidence"] >= 0.8 * ref["confidence"],
                      None if r["contrast0"] is None or bar is None else r["contrast0"] >= bar]
            ok = " ".join("n/a" if c is None else "yes" if c else "NO" for c in checks)
        lines.append(f"| {r['drive']} | {r['frames']} | {100 * r['face_found']:.0f} % | {r['offset']:+d} | "
                     f"{'yes' if r['clear'] else 'no'} | "
                     f"{r['confidence']:.3f} | {r['corr0']:+.3f} | {_fmt(r['contrast0'], '.2f')} | "
                     f"{_fmt(r.get('contrast_at_offset'), '.2f')} | {ok} |")
    _write(out, "renders", rows, lines)
    return rows


def _row(name: str, rep, secs: float) -> dict:
    return {"drive": name, "frames": rep.n_frames, "face_found": round(rep.face_found, 3),
            "offset": rep.sync.offset, "clear": rep.sync.clear,
            "confidence": round(rep.sync.confidence, 3), "corr0": round(rep.sync.corr0, 3),
            "contrast0": None if rep.contrast is None else round(rep.contrast.ratio, 2),
            "contrast_at_offset": (None if rep.contrast_at_offset is None
                                   else round(rep.contrast_at_offset.ratio, 2)),
            "render_s": round(secs, 1), "notes": rep.notes}


def _write(out: Path, mode: str, rows: list[dict], lines: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{mode}.json").write_text(json.dumps(rows, indent=1))
    (out / f"{mode}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / (mode + '.md')}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emotalk bench sync", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["real", "renders"])
    ap.add_argument("identity", nargs="?", type=Path, help="identity folder (renders)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "out" / "bench_sync")
    ap.add_argument("--cache", type=Path, default=REPO / "out" / "sync_cache")
    ap.add_argument("--size", type=int, default=None, help="render side in px")
    ap.add_argument("--device", default=None, help="render device")
    ap.add_argument("--reference", type=Path, help="the identity's real clip, measured as the bar")
    ap.add_argument("--only", nargs="+", help="renders: only driving speech whose name contains one of these")
    args = ap.parse_args(argv)
    if args.mode == "real":
        bench_real(args.data, args.out, args.cache)
    else:
        if args.identity is None:
            ap.error("renders needs an IDENTITY folder")
        bench_renders(args.identity, args.data, args.out, args.size, args.device, args.reference, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
