"""Audio-driven emotion benchmark (issue 17 "measure what users see", issue 16's drive table), in three
stages that may run on different machines:

    python -m emotalk bench emotion-audio drives [--out out/emotion_audio/drives] [--add PATH[@LANG] ...]
    python -m emotalk bench emotion-audio render IDENTITY... --drives DIR --out OUT [--size 256]
            [--device cuda] [--variant SPEC ...] [--request KEY=VALUE ...]
    python -m emotalk bench emotion-audio measure OUT --drives DIR
    (or bench/bench_emotion_audio.py ...)

drives  (CPU with TTS, Whisper and the aligner): a drive pack (`evaluation.drive_pack`): every audio file
        in DATA/audio, Piper reading TTS sentence 2 and espeak-ng sentence 1 of `bench sync`, and any
        --add PATH[@LANG] (files, or folders of audio/video files; LANG default en, or the name's
        language token with --guess-language), each cut to --max-seconds, with English phone timings.
render  (GPU host; needs no MediaPipe, TTS or Whisper transcripts): every IDENTITY x drive x category
        through `pipeline.synthesize` (the path users get; the drive's phones and transcript passed on,
        no watermark, seed 0), to OUT/<variant>/<identity>/<drive>/<category>.mp4, plus OUT/render.json.
        --variant SPEC renders a variant: "default" (no extra fields) or "[NAME:]KEY=VALUE[,KEY=VALUE]"
        of RenderRequest fields (e.g. lips=audio, intensity=1.5); --request KEY=VALUE applies to all.
        On a GPU host without the Whisper asset, EMOTALK_WHISPER_DIR names an encoder-only copy.
measure (CPU with MediaPipe and the recogniser): `evaluation.audio_driven` on every render of OUT:
        OUT/measure.json, OUT/measure.md, and mouth strip + contact sheet PNGs of --strip-drive.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emotalk.errors import InputError
from emotalk.evaluation.audio_driven import RENDER_INDEX
from emotalk.folders import atomic_path, atomic_write_text
from emotalk.identity.store import REPO_ROOT as REPO

DEFAULT_CATEGORIES = (
    "neutral",
    "happy",
    "surprised",
    "fear",
    "angry",
    "disgusted",
    "sad",
)  # the recogniser's 7
OPTIONAL_CATEGORIES = ("contempt", "calm")  # no recogniser class: mouth and sync numbers only
STAGE_FIELDS = (
    "identity",
    "audio",
    "text",
    "valence",
    "arousal",
    "size",
    "device",
    "phones",
    "transcript",
    "notices",
    "emotion_track",
)  # RenderRequest fields the render stage sets itself
DEFAULT_OUT = REPO / "out" / "emotion_audio"


def _log(msg: str, frac: float | None = None) -> None:
    print(msg if frac is None else f"  [{frac * 100:5.1f}%] {msg}", file=sys.stderr, flush=True)


# --- drives ---------------------------------------------------------------------------------------------


def run_drives(args: argparse.Namespace) -> int:
    from emotalk.cli.bench.sync import TTS_SENTENCES
    from emotalk.evaluation.drive_pack import TTS_ENGINES, build_drive_pack, expand_sources

    extra = expand_sources(args.add or [], args.guess_language)
    tts = (
        []
        if args.no_tts
        else [(e, TTS_SENTENCES[(k + 1) % len(TTS_SENTENCES)]) for k, e in enumerate(TTS_ENGINES)]
    )
    audio_dir = None if args.no_audio_dir else args.data / "audio"
    if audio_dir is not None and not audio_dir.is_dir():
        raise InputError(
            f"{audio_dir} does not exist; point --data at the shared data folder or give --no-audio-dir."
        )
    drives = build_drive_pack(args.out, audio_dir, extra, tts, args.max_seconds, progress=_log)
    for d in drives:
        print(f"{d.name:40s} {d.language} {d.seconds:5.2f} s {len(d.phones):4d} phones  {'; '.join(d.notes)}")
    print(f"wrote {len(drives)} drives to {args.out}")
    return 0


# --- render ---------------------------------------------------------------------------------------------


SWITCHES = "emotion_parts"  # a variant key that is not a request field, the model's `EmotionSwitches`:
# absent: the defaults users get; "on" (every part), "off" (the emotion's lip-code offset, the field's mouth
# mask, the mouth warp and the dropped jaw all off: the behaviour before issue 17), "mask" (mask only: the
# default before the mouth warp), "warp" (mask and mouth warp: the default before the dropped jaw),
# "warp-flat" (that without the warp's Gaussian stretch), "jaw" (mask, warp and dropped jaw: today's
# default), "offset" (lip-code offset only)
PARTS = {  # (lip_offset, mouth_mask, mouth_warp, warp_stretch, jaw_drop)
    "on": (True, True, True, True, True), "off": (False, False, False, False, False),
    "mask": (False, True, False, False, False), "warp": (False, True, True, True, False),
    "warp-flat": (False, True, True, False, False), "jaw": (False, True, True, True, True),
    "offset": (True, False, False, False, False)}


def _set_switches(identity: str, device: str, value: str | None) -> None:
    """Switch the cached identity's emotion parts on or off (the pipeline reuses the same loaded object);
    None: the defaults users get (`EmotionSwitches()`)."""
    from emotalk.gaussians.emotion import EmotionSwitches
    from emotalk.identity.store import load_cached, resolve_identity

    model = load_cached(resolve_identity(identity), device).model
    if value is None:  # what users get
        model.switches = EmotionSwitches()
        return
    offset, mask, warp, stretch, jaw = PARTS[value]
    model.switches = EmotionSwitches(lip_offset=offset, mouth_mask=mask, mouth_warp=warp,
                                     warp_stretch=stretch, jaw_drop=jaw)


def _value(text: str):
    """A --request value: JSON (numbers, true/false, null, lists) when it parses, else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_fields(pairs: list[str]) -> dict:
    """KEY=VALUE strings -> {field: value}, checked to be RenderRequest fields the stage does not set."""
    from emotalk.requests import RenderRequest

    names = {f.name for f in dataclasses.fields(RenderRequest)}
    out = {}
    for p in pairs:
        key, eq, val = p.partition("=")
        key = key.strip()
        if not eq or not key:
            raise InputError(f"--request/--variant takes KEY=VALUE, got {p!r}.")
        if key == SWITCHES:
            if val.strip() not in PARTS:
                raise InputError(f"{SWITCHES} takes one of {', '.join(PARTS)}, got {val.strip()!r}.")
            out[key] = val.strip()
            continue
        if key not in names:
            raise InputError(f"{key!r} is not a RenderRequest field; fields: {', '.join(sorted(names))}.")
        if key in STAGE_FIELDS:
            raise InputError(
                f"{key!r} is set by the render stage itself (per drive and category); "
                "use the stage's own options."
            )
        out[key] = _value(val.strip())
    return out


def parse_variant(spec: str) -> tuple[str, dict]:
    """'default' | '[NAME:]KEY=VALUE[,KEY=VALUE]' -> (folder name, fields)."""
    spec = spec.strip()
    if spec in ("", "default"):
        return "default", {}
    name, colon, rest = spec.partition(":")
    if not colon or "=" in name:
        name, rest = "", spec
    fields = parse_fields([x for x in rest.split(",") if x.strip()])
    from emotalk.evaluation.drive_pack import safe_name

    return safe_name(name or "_".join(f"{k}-{v}" for k, v in fields.items())), fields


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return out or "unknown (no git here)"


def render_all(
    identities: list[str],
    drives_dir: Path,
    out: Path,
    categories: tuple[str, ...],
    variants: list[tuple[str, dict]],
    size: int,
    device: str | None,
    only: list[str] | None = None,
    skip_existing: bool = False,
    log=_log,
) -> dict:
    """Every identity x drive x category x variant through `pipeline.synthesize` -> render.json's dict."""
    import platform

    from emotalk.emotion import CATEGORIES
    from emotalk.evaluation.drive_pack import load_drive_pack
    from emotalk.pipeline import RenderRequest, device_info, synthesize

    drives = load_drive_pack(drives_dir, only)
    bad = [c for c in categories if c not in CATEGORIES]
    if bad:
        raise InputError(f"Unknown categories {bad}; choose from {', '.join(CATEGORIES)}.")
    info = device_info()
    doc = {
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {platform.node()}",
        "device": device or info["device"],
        "renderer": str(info.get("renderer", {}).get("backend", info.get("renderer"))),
        "size": size,
        "drives_dir": str(drives_dir),
        "categories": list(categories),
        "variants": {n: f for n, f in variants},
        "renders": [],
    }
    jobs = [(v, i, d, c) for v in variants for i in identities for d in drives for c in categories]
    if skip_existing and (out / RENDER_INDEX).is_file():  # a resumed run keeps the earlier renders' rows
        doc["renders"] = json.loads((out / RENDER_INDEX).read_text()).get("renders", [])
    t_all = time.time()
    for k, ((vname, fields), ident, d, cat) in enumerate(jobs):
        dst = out / vname / Path(ident).name / d.name / f"{cat}.mp4"
        if skip_existing and dst.is_file():
            continue
        v, a = CATEGORIES[cat]
        fields = dict(fields)
        _set_switches(str(ident), device or info["device"], fields.pop(SWITCHES, None))
        req = RenderRequest(
            identity=str(ident),
            audio=str(d.wav_path),
            valence=v,
            arousal=a,
            size=size,
            device=device,
            phones=d.request_phones(),
            transcript=d.transcript or None,
            watermark=False,
            seed=0,
            **fields,
        )
        work = Path(tempfile.mkdtemp(prefix="emotalk-ea-"))
        try:
            res = synthesize(req, workdir=work)
            with atomic_path(dst) as tmp:
                shutil.copyfile(res.video, tmp)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        doc["renders"].append(
            {
                "variant": vname,
                "identity": Path(ident).name,
                "drive": d.name,
                "category": cat,
                "frames": res.n_frames,
                "seconds": round(res.seconds, 2),
                "timings": {s: round(t, 3) for s, t in res.timings.items()},
                "bytes": dst.stat().st_size,
                "notice": res.notice,
            }
        )
        atomic_write_text(out / RENDER_INDEX, json.dumps(doc, indent=1))  # so far, if the run is cut off
        log(
            f"{vname}/{Path(ident).name}/{d.name}/{cat}: {res.n_frames} frames, {res.seconds:.1f} s, "
            f"{dst.stat().st_size / 1e3:.0f} kB",
            (k + 1) / len(jobs),
        )
    total = sum(p.stat().st_size for p in out.rglob("*.mp4"))
    doc["total_bytes"], doc["wall_s"] = total, round(time.time() - t_all, 1)
    atomic_write_text(out / RENDER_INDEX, json.dumps(doc, indent=1))
    return doc


def run_render(args: argparse.Namespace) -> int:
    if not args.identities:
        raise InputError(
            "Give at least one IDENTITY (a shipped name, or a folder such as checkpoints/obama)."
        )
    if args.size < 32 or args.size % 2:
        raise InputError(f"--size must be an even number of pixels >= 32, got {args.size}.")
    common = parse_fields(args.request or [])
    variants = [parse_variant(s) for s in (args.variant or ["default"])]
    variants = [(n, {**common, **f}) for n, f in variants]
    if len({n for n, _ in variants}) != len(variants):
        raise InputError("Two variants share a folder name; name them (NAME:KEY=VALUE).")
    cats = tuple(args.categories) + (OPTIONAL_CATEGORIES if args.all_categories else ())
    doc = render_all(
        args.identities,
        args.drives,
        args.out,
        cats,
        variants,
        args.size,
        args.device,
        args.only,
        args.skip_existing,
    )
    n = len(doc["renders"])
    print(
        f"rendered {n} videos in {doc['wall_s']:.0f} s; total size of {args.out}: "
        f"{doc['total_bytes'] / 2**20:.1f} MiB"
    )
    return 0


# --- measure --------------------------------------------------------------------------------------------


def run_measure(args: argparse.Namespace) -> int:
    from emotalk.evaluation.audio_driven import measure_renders, to_json
    from emotalk.evaluation.audio_driven_report import report_markdown, write_images
    from emotalk.evaluation.drive_pack import load_drive_pack

    root = args.root
    drives = load_drive_pack(args.drives)
    names = [d.name for d in drives]
    strip = args.strip_drive or next((n for n in names if n.startswith("tts_piper")), names[0])
    t0 = time.time()
    res = measure_renders(root, drives, recognise=not args.no_recogniser, strip_drive=strip, progress=_log)
    out = args.out or root
    out.mkdir(parents=True, exist_ok=True)
    images = write_images(res, out)
    rj = root / RENDER_INDEX
    meta = json.loads(rj.read_text()) if rj.is_file() else {}
    header = (
        f"_Renders: commit {meta.get('commit', '?')}, {meta.get('device', '?')}, {meta.get('size', '?')}² "
        f"({meta.get('date', '?')}); measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in "
        f"{time.time() - t0:.0f} s._"
    )
    md = report_markdown(res, header)
    atomic_write_text(out / "measure.md", md)
    atomic_write_text(out / "measure.json", to_json({"render": meta, "results": res}))
    print(md)
    print(f"wrote {out / 'measure.md'}, measure.json and {len(images)} images", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    from emotalk.evaluation.drive_pack import MAX_SECONDS

    ap = argparse.ArgumentParser(
        prog="python -m emotalk bench emotion-audio",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = ap.add_subparsers(dest="stage", required=True)
    d = sub.add_parser("drives", help="build the drive pack (CPU)")
    d.add_argument("--out", type=Path, default=DEFAULT_OUT / "drives", help="drive pack folder")
    d.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data (audio/)")
    d.add_argument("--add", nargs="+", metavar="PATH[@LANG]", help="more drives: files or folders")
    d.add_argument("--guess-language", action="store_true", help="--add: language from a _xx_ name token")
    d.add_argument("--max-seconds", type=float, default=MAX_SECONDS, help="cap per drive, seconds")
    d.add_argument("--no-tts", action="store_true", help="no Piper / espeak-ng drives")
    d.add_argument("--no-audio-dir", action="store_true", help="not the files of DATA/audio")
    r = sub.add_parser("render", help="render every identity x drive x category (GPU host)")
    r.add_argument("identities", nargs="*", help="identity names or folders")
    r.add_argument("--drives", type=Path, default=DEFAULT_OUT / "drives", help="drive pack folder")
    r.add_argument("--out", type=Path, default=DEFAULT_OUT / "renders", help="render folder")
    r.add_argument("--size", type=int, default=256, help="render side, px")
    r.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    r.add_argument("--categories", nargs="+", default=list(DEFAULT_CATEGORIES), help="categories to render")
    r.add_argument("--all-categories", action="store_true", help="also contempt and calm")
    r.add_argument("--variant", action="append", metavar="SPEC", help="default | [NAME:]KEY=VALUE[,...]")
    r.add_argument("--request", action="append", metavar="KEY=VALUE", help="RenderRequest field for all")
    r.add_argument("--only", nargs="+", help="only drives whose name contains one of these")
    r.add_argument("--skip-existing", action="store_true", help="keep renders already in OUT")
    m = sub.add_parser("measure", help="measure the renders (CPU, MediaPipe + recogniser)")
    m.add_argument("root", type=Path, help="render folder (OUT of the render stage)")
    m.add_argument("--drives", type=Path, default=DEFAULT_OUT / "drives", help="the drive pack rendered from")
    m.add_argument("--out", type=Path, default=None, help="report folder (default: the render folder)")
    m.add_argument("--strip-drive", default=None, help="drive of the mouth strip (default: tts_piper)")
    m.add_argument("--no-recogniser", action="store_true", help="mouth and sync numbers only")
    args = ap.parse_args(argv)
    return {"drives": run_drives, "render": run_render, "measure": run_measure}[args.stage](args)


if __name__ == "__main__":
    sys.exit(main())
