"""Time the app's fine-tune path, stage by stage, then render with the new identity.

    python -m emotalk bench finetune CLIP --name NAME --preset fast --out DIR [--stages ...]
    (or python bench/bench_finetune.py ...)

It calls `emotalk.identity.fit.fit_identity` as `pipeline.fine_tune` does (the recipe the app picks for
this device, the same work folder layout and resumption), not a shortcut; only the clip check is run
and timed as a stage of its own (`check=False` in the calls after it, so later invocations need no
MediaPipe). Stages, in order: check (the clip check), prepare (decode, tracking, pose, crop, AV sync),
parse (face parsing), finish (plate, body frames, dataset files), train (training, emotion stage, save:
one `fit_identity` call that resumes after the dataset), render (a short clip with the new identity and
an emotion). `--stages` picks some of them, so they can run as separate invocations on one machine
(e.g. MediaPipe for prepare, then the parser's weights for the rest): each resumes from DIR/work.
Writes DIR/bench.json (merged over invocations) and DIR/bench.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

STAGES = ("check", "prepare", "parse", "finish", "train", "render")


def _phase(msg: str) -> str | None:
    if msg.startswith("train ["):
        return "train"
    if msg.startswith("emotion"):
        return "emotion"
    return None


def _machine() -> dict:
    import platform

    import torch

    return {"host": platform.node(), "cpus": os.cpu_count(), "torch": torch.__version__,
            "cuda": torch.cuda.is_available(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "load_avg": round(os.getloadavg()[0], 2)}


def _dataset_timings(work: Path) -> dict:
    """The dataset's own stage timings (prepare's and parse's in the partial state, all in meta.json)."""
    for f in (work / "dataset" / "meta.json", work / "dataset.partial" / "state.json"):
        if f.is_file():
            return json.loads(f.read_text()).get("timings_s", {})
    return {}


def run_stages(clip: Path, name: str, preset: str, out: Path, stages: list[str], audio: Path | None,
               log=print, device: str = "auto") -> dict:
    """Run `stages` and return their timings (seconds) and results; see the module docstring. `device`
    picks the recipe as the app would there ("cuda" on a CPU: prepare here what a GPU host finishes)."""
    import torch

    from emotalk.identity import fit
    from emotalk.training.settings import recipe_for

    dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    recipe = recipe_for(preset, dev)
    work, ident = out / "work", out / "identity"
    res: dict = {"stages_s": {}, "device": dev, "recipe": recipe.summary(), "machine": _machine()}
    t_all = time.time()

    def progress(msg: str, frac: float) -> None:
        ph = _phase(msg)
        now = time.time()
        if ph:  # first and latest report of each phase
            marks.setdefault(ph, [now, now])[1] = now
        if now - last[0] > 10:
            last[0] = now
            log(f"[{100 * frac:5.1f}%] {msg}")

    if "check" in stages:
        t0 = time.time()
        rep = fit.check_clip(clip)
        res["stages_s"]["check"] = round(time.time() - t0, 2)
        res["check"] = {"refused": not rep.ok, "findings": [f"{f.level}: {f.topic}: {f.text}"
                                                              for f in rep.findings]}
        log(f"check: {res['stages_s']['check']} s, refused={not rep.ok}")
        rep.raise_if_refused()
    last, marks = [0.0], {}
    for st in ("prepare", "parse", "finish"):
        if st in stages:
            t0 = time.time()
            fit.fit_identity(clip, ident, recipe, work, dev, name, progress, until=st, check=False)
            res["stages_s"][st] = round(time.time() - t0, 2)
            log(f"{st}: {res['stages_s'][st]} s")
    if "train" in stages:
        t0 = time.time()
        r = fit.fit_identity(clip, ident, recipe, work, dev, name, progress, check=False)
        end = time.time()
        # a phase lasts from its first report to the next phase's first (the last one: to its last report)
        order = sorted(marks, key=lambda k: marks[k][0])
        phases = {k: round((marks[order[i + 1]][0] if i + 1 < len(order) else marks[k][1]) - marks[k][0], 2)
                  for i, k in enumerate(order)}
        phases["save"] = round(end - (marks[order[-1]][1] if order else end), 2)  # thumbnail, identity files
        res["stages_s"]["train_total"] = round(end - t0, 2)
        res["stages_s"]["before_training"] = round((marks[order[0]][0] if order else end) - t0, 2)
        res["stages_s"].update({f"train.{k}": v for k, v in phases.items()})
        res["identity"] = {"path": str(r.path), "summary": r.summary, "notice": r.notice}
        log(f"train: {res['stages_s']['train_total']} s ({phases})")
    res["dataset_timings_s"] = _dataset_timings(work)
    if "render" in stages:
        from emotalk.pipeline import synthesize
        from emotalk.requests import RenderRequest

        t0 = time.time()
        rr = synthesize(RenderRequest(identity=str(ident), audio=str(audio), valence=0.6, arousal=0.5,
                                      device=dev), workdir=out / "render")
        res["stages_s"]["render"] = round(time.time() - t0, 2)
        res["render"] = {"video": str(rr.video), "frames": rr.n_frames, "audio_s": rr.audio_seconds,
                         "timings": rr.timings, "notice": rr.notice}
        log(f"render: {res['stages_s']['render']} s -> {rr.video}")
    res["wall_s"] = round(time.time() - t_all, 2)
    return res


def _markdown(b: dict) -> str:
    lines = [f"# Fine-tune benchmark: {b['clip']} -> {b['name']} ({b['preset']})", ""]
    for inv in b["invocations"]:
        m = inv["machine"]
        lines += [f"## stages {', '.join(inv['stages'])} on {m['gpu'] or 'CPU'} ({m['cpus']} cores, load "
                  f"{m['load_avg']}), {inv['device']}", "", "| stage | seconds |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in inv["stages_s"].items()]
        ds = {k: v for k, v in inv.get("dataset_timings_s", {}).items() if isinstance(v, (int, float))}
        if ds:
            lines += ["", "dataset stages: " + ", ".join(f"{k} {v} s" for k, v in ds.items())]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m emotalk bench finetune", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clip", type=Path)
    ap.add_argument("--name", required=True, help="the new identity's name")
    ap.add_argument("--preset", default="fast", help="fine-tune recipe as the app names it (fast, quality)")
    ap.add_argument("--out", type=Path, required=True, help="folder: work/, identity/, bench.json, bench.md")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    ap.add_argument("--device", default="auto",
                    help="auto | cuda | cpu: the device whose recipe is used (cuda on a CPU: prepare only)")
    ap.add_argument("--audio", type=Path, default=None,
                    help="speech for the render (default: examples/hello.wav of this checkout)")
    a = ap.parse_args(argv)
    from emotalk.errors import InputError

    stages = [s.strip() for s in a.stages.split(",") if s.strip()]
    bad = [s for s in stages if s not in STAGES]
    if bad:
        raise InputError(f"Unknown stages {', '.join(bad)}; choose from {', '.join(STAGES)}.")
    if not a.clip.is_file():
        raise InputError(f"{a.clip} does not exist.")
    audio = a.audio or Path(__file__).resolve().parents[3] / "examples" / "hello.wav"
    a.out.mkdir(parents=True, exist_ok=True)
    res = run_stages(a.clip, a.name, a.preset, a.out, stages, audio,
                     log=lambda m: print(m, file=sys.stderr, flush=True), device=a.device)
    res["stages"] = stages
    path = a.out / "bench.json"
    b = json.loads(path.read_text()) if path.is_file() else {"invocations": []}
    b.update({"clip": a.clip.name, "name": a.name, "preset": a.preset})
    b["invocations"].append(res)
    path.write_text(json.dumps(b, indent=1, default=str))
    (a.out / "bench.md").write_text(_markdown(b))
    print(json.dumps(res, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
