"""An identity's evaluation as markdown tables, and writing it to disk (JSON and markdown side by side)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emotalk.evaluation.emotion_renders import EMOTION_CATS
from emotalk.folders import atomic_write_text


def _f(x, spec: str = ".3f") -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def _median_gap(gaps: dict) -> float | None:
    v = [x for k, x in gaps.items() if k != "neutral" and x is not None and np.isfinite(x)]
    return float(np.median(v)) if v else None


def markdown(res: dict) -> str:
    """The evaluation as markdown tables (one per section present)."""
    h = res["heldout"]
    out = [f"### {res['identity_name']} on {Path(res['dataset']).name}: held-out frames "
           f"{h['first']}–{h['last']} ({h['frames']} frames, {h['seconds']} s) at {res['size']} px",
           "", f"Identity trained at {res['identity_size']} px, dataset {res['dataset_size']} px; "
           f"audio code {res['audio_kind']}; device {res['device']}."]
    if "image" in res:
        m = res["image"]
        out += ["", "**Image** (render vs real frame; face = landmark box)", "",
                "| PSNR | SSIM | ST-LPIPS | PSNR face | SSIM face | ST-LPIPS face |",
                "|---|---|---|---|---|---|",
                f"| {_f(m.get('psnr'), '.2f')} | {_f(m.get('ssim'))} | {_f(m.get('stlpips'))} | "
                f"{_f(m.get('psnr_face'), '.2f')} | {_f(m.get('ssim_face'))} | {_f(m.get('stlpips_face'))} |"]
    if "lips" in res:
        m = res["lips"]
        out += ["", "**Lips** (MediaPipe on renders and real frames alike)", "",
                "| LMD px | LMD px @512 | LMD / eye dist | mouth-opening corr | mean opening render / real "
                "| faces render / real |", "|---|---|---|---|---|---|",
                f"| {_f(m['lmd_px'], '.2f')} | {_f(m['lmd_px_at_512'], '.2f')} | "
                f"{_f(m['lmd_over_eye_distance'], '.4f')} | {_f(m['mouth_open_corr'])} | "
                f"{_f(m['mouth_open_mean_render'])} / {_f(m['mouth_open_mean_real'])} | "
                f"{m['faces_found_render']} / {m['faces_found_real']} |"]
    if "sync" in res:
        s = res["sync"]
        out += ["", f"**Sync** on the {s.get('scope', 'held-out run')} ({s['frames']} frames) "
                "with the clip's audio", "",
                "| frames | AV offset | clear | confidence | corr at 0 | phone contrast |",
                "|---|---|---|---|---|---|"]
        for name in ("render", "real"):
            r = s[name]
            off = "–" if r["offset"] is None else f"{r['offset']:+d}"
            out.append(f"| {name} | {off} | {'yes' if r['clear'] else 'no'} | {_f(r['confidence'])} | "
                       f"{_f(r['corr0'], '+.3f')} | {_f(r['phone_contrast'], '.2f')} |")
        out += [f"- {n}" for n in dict.fromkeys(s["notes"])]
        if s.get("transcript"):
            out.append(f"- heard: \"{s['transcript'].strip()}\"")
    if "emotion" in res:
        e = res["emotion"]
        sm = e["summary"]
        gaps = e["lip_gap_ratio_vs_neutral"]
        out += ["", f"**Emotion, tracked lips** ({len(e['frames'])} held-out frames with their tracked lip "
                f"code x {len(EMOTION_CATS)} categories; "
                f"faces found {e['faces_found']})", "",
                "| Emotion Acc | V-RMSE | A-RMSE | V-SA | A-SA | lip gap vs neutral (median of categories) |",
                "|---|---|---|---|---|---|",
                f"| {_f(sm.get('accuracy'))} | {_f(sm.get('v_rmse'))} | {_f(sm.get('a_rmse'))} | "
                f"{_f(sm.get('v_sa'))} | {_f(sm.get('a_sa'))} | "
                f"{_f(_median_gap(gaps))} |",
                "", "| category | predicted | lip gap vs neutral |", "|---|---|---|"]
        for c in EMOTION_CATS:
            out.append(f"| {c} | {e['per_category_pred'].get(c) or '–'} | {_f(gaps.get(c), '.2f')} |")
    if res.get("notes"):
        out += ["", *[f"- {n}" for n in res["notes"]]]
    t = res.get("timings_s", {})
    if t:
        out += ["", "Timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in t.items())]
    return "\n".join(out)


def write_report(res: dict, json_path: Path, header: dict | None = None) -> tuple[Path, Path]:
    """Write res as JSON and its markdown next to it (same stem, .md), each atomically."""
    import json

    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    md_path = json_path.with_suffix(".md")
    doc = {"header": header or {}, **res}
    md = (f"_{header['date']}, {header['machine']}, commit {header['commit']}_\n\n" if header else "") \
        + markdown(res) + "\n"
    for path, text in ((json_path, json.dumps(doc, indent=1, allow_nan=False)), (md_path, md)):
        atomic_write_text(path, text)
    return json_path, md_path
