"""Tables and pictures of the audio-driven evaluation (`evaluation.audio_driven`): markdown per identity,
issue 16's per-drive table, a strip of consecutive mouth crops per category and a contact sheet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emotalk.emotion import CATEGORIES
from emotalk.evaluation import mouth_metrics as mm

# the recogniser's ceiling on real MEAD actors (BENCHMARKS.md, `python -m emotalk eval --ceiling`)
MEAD_CEILING = {"accuracy": 0.71, "v_sa_strict": 0.83, "a_sa_strict": 0.94, "source": "BENCHMARKS.md"}
# real MEAD actors' identity similarity, emotional vs own neutral (scripts/fit_identity_bar.py)
MEAD_IDENTITY_BAR = Path(__file__).resolve().parents[1] / "models" / "identity_similarity_mead.json"
# real MEAD actors' eye opening and eye-box sharpness, emotional vs own neutral (scripts/fit_eye_bar.py)
MEAD_EYE_BAR = Path(__file__).resolve().parents[1] / "models" / "eye_bar_mead.json"
STRIP_FRAMES = 8  # consecutive frames per category in the strip
STRIP_CROP = (128, 64)  # (w, h) of one mouth crop in the strip


def _f(x, spec: str = ".2f") -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, spec)


def identity_markdown(var: str, ident: str, res: dict, ceiling: dict = MEAD_CEILING) -> str:
    """Per-category table and the summary of one identity (one variant)."""
    lines = [
        f"#### {ident} — variant `{var}` (audio-driven renders, {len(res['per_drive'])} drives)",
        "",
        "| category | drives | Acc | read as | sharpness ratio | detail ratio | opening ratio | "
        "opening MAE | eye sharpness ratio | eye opening ratio | median abs offset | offset within ±1 | "
        "peak corr | peak-corr ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c, r in res["categories"].items():
        read = ", ".join(f"{p} {n}" for p, n in sorted(r["predicted"].items(), key=lambda kv: -kv[1])) or "–"
        lines.append(
            f"| {c} | {r['drives']} | {_f(r['acc'])} | {read} | {_f(r['sharpness_ratio'])} | "
            f"{_f(r['detail_ratio'])} | "
            f"{_f(r['opening_ratio'])} | {_f(r['opening_mae'], '.3f')} | "
            f"{_f(r.get('eye_sharpness_ratio'))} | {_f(r.get('eye_opening_ratio'))} | "
            f"{_f(r['abs_offset_median'], '.0f')} | {r['offset_ok']} | {_f(r['peak_corr'], '.3f')} | "
            f"{_f(r['peak_corr_ratio'])} |"
        )
    eyes = eye_bar_line()
    if eyes:
        lines += ["", eyes]
    s = res.get("summary")
    if s:
        lines += [
            "",
            "| | n | Emotion Acc | V-RMSE | A-RMSE | V-SA | A-SA | V-SA* | A-SA* |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {ident} (audio-driven) | {s['n']} | {_f(s['accuracy'])} | {_f(s['v_rmse'])} | "
            f"{_f(s['a_rmse'])} | {_f(s['v_sa'])} | {_f(s['a_sa'])} | {_f(s['v_sa_strict'])} | "
            f"{_f(s['a_sa_strict'])} |",
            f"| real MEAD actors (ceiling, {ceiling['source']}) | 21 | {_f(ceiling['accuracy'])} | | | | | "
            f"{_f(ceiling['v_sa_strict'])} | {_f(ceiling['a_sa_strict'])} |",
        ]
    return "\n".join(lines)


def eye_bar_line(path: Path = MEAD_EYE_BAR) -> str:
    """One line with real MEAD actors' eye opening ratio per category (mean, lowest actor); "" without it."""
    if not path.is_file():
        return ""
    cats = json.loads(path.read_text())["categories"]
    parts = [f"{c} {v['opening_ratio']:.2f} ({v['opening_ratio_min']:.2f})" for c, v in cats.items()]
    return "Real MEAD actors' eye opening ratio (mean of 3, lowest): " + ", ".join(parts) + "."


def load_identity_bar(path: Path = MEAD_IDENTITY_BAR) -> dict[str, float]:
    """{category: mean identity similarity of real MEAD actors} ({} when the table is missing)."""
    if not path.is_file():
        return {}
    return {c: v["mean"] for c, v in json.loads(path.read_text())["categories"].items()}


def identity_table(var: str, ident: str, res: dict, bar: dict[str, float] | None = None) -> str:
    """Identity similarity per category beside the real-actor bar ("" when it was not measured)."""
    rows = {c: r for c, r in res["categories"].items() if "identity_same_frames" in r}
    if not rows:
        return ""
    bar = load_identity_bar() if bar is None else bar
    lines = [
        f"#### {ident} — variant `{var}`: identity similarity to the neutral render (dlib face descriptor)",
        "",
        "| category | drives | same frames | all pairs | real MEAD actors (all pairs) | all pairs − MEAD |",
        "|---|---|---|---|---|---|",
    ]
    for c, r in rows.items():
        ours, real = r["identity_all_pairs"], bar.get(c)
        gap = None if ours is None or real is None else round(ours - real, 3) + 0.0  # no '-0.000'
        lines.append(
            f"| {c} | {r['drives']} | {_f(r['identity_same_frames'], '.3f')} | {_f(ours, '.3f')} | "
            f"{_f(real, '.3f')} | {_f(gap, '+.3f')} |"
        )
    return "\n".join(lines)


IDENTITY_DEFINITIONS = """**Identity similarity**: cosine similarity of dlib's 128-D face-recognition
descriptors (`face.identity_embedding`; face box from the MediaPipe track, 5-point alignment) of 8 frames
spread over each render. *Same frames*: frame i against frame i of the same drive's neutral render (same
head pose and speech: only the emotion differs). *All pairs*: every sampled frame against every sampled
neutral frame (the neutral row: distinct frames only), the measure of the real-actor bar: MEAD actors'
emotional frames against their own neutral clip (`scripts/fit_identity_bar.py`,
`emotalk/models/identity_similarity_mead.json`).
Mean over drives. On this scale two frames of one real clip score about 0.97–0.99, one person in two
sessions about 0.96, different people about 0.78–0.88 (dlib's same-person distance 0.6 ≈ cosine 0.91)."""


def drives_markdown(var: str, ident: str, res: dict) -> str:
    """Issue 16's drive table: the neutral renders, one row per drive."""
    lines = [
        f"#### {ident} — variant `{var}`: neutral renders per drive (lip sync, articulation, rest)",
        "",
        "| drive | lang | abs offset | confidence | peak corr | phone contrast | open-vowel p95 gap | "
        "pauses at rest (≥ 0.4 s) | pauses from |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["drives"]:
        rest = f"{r['pauses_at_rest']}/{r['pauses']}" if r["pauses"] else "no pause"
        lines.append(
            f"| {r['drive']} | {r['language']} | {r['abs_offset']} | {_f(r['confidence'], '.3f')} | "
            f"{_f(r['peak_corr'], '.3f')} | {_f(r['contrast'])} | {_f(r['open_vowel_p95'], '.3f')} | "
            f"{rest} | {r['pauses_from']} |"
        )
    return "\n".join(lines)


DEFINITIONS = """Definitions. Renders go through `emotalk.pipeline.synthesize` (the path users get), one per
identity x drive x category, at the category's (valence, arousal) and intensity 1. **Acc**: fraction of
drives whose render the recogniser (fer FER2013) reads as the category (argmax of the mean probability over
frames). **Summary** over all renders of the 7 recogniser categories: V/A-RMSE, V/A-SA (dead zone 0.1) and
V/A-SA* (strict sign over non-neutral targets), as in the emotion table. **Sharpness ratio**: variance of
the 3x3 Laplacian of the grey lip box (tracked lip landmarks + 25 % of the lip width on each side, 2:1,
resampled to 64x32), median over frames, emotional / neutral render of the same drive; geometric mean over
drives. **Detail ratio**: the same with each frame's Laplacian variance divided by its lip box's grey
variance (a darker lip line or shading raises the plain sharpness without adding detail; blur lowers both).
**Opening ratio**: mean inner-lip gap / eye distance over speech frames, emotional / neutral
(geometric mean over drives); MAE: mean |difference| (eye-distance units). **Offset / peak corr**:
`avsync.lipsync.measure` of the render's mouth against the drive's speech (phones where known);
peak-corr ratio = mean peak correlation of the category / of neutral over the same drives.
**Drive table** (neutral renders): phone contrast = open-vowel / p-b-m opening; open-vowel p95 = 95th
percentile of the opening on open-vowel frames; a pause (≥ 0.4 s without phones, or below -35 dB of the
speech's peak when there are no phones) is at rest when the opening falls to the render's rest level
(its 10th percentile + 0.15 x its 5-95 percentile range) within 0.2 s and stays there for 80 % of the rest
of the pause."""


def report_markdown(results: dict, header: str = "") -> str:
    """The whole report: per variant and identity, the category table + summary and the drive table."""
    parts = ["### Emotion and lips on audio-driven renders (speech the identity never heard)"]
    if header:
        parts.append(header)
    for var, per_id in results.items():
        for ident, res in per_id.items():
            parts += [identity_markdown(var, ident, res), drives_markdown(var, ident, res)]
            idt = identity_table(var, ident, res)
            if idt:
                parts.append(idt)
            if res.get("images"):
                parts.append("Images: " + ", ".join(res["images"]))
    parts.append(DEFINITIONS)
    if any(identity_table(v, i, r, {}) for v, per in results.items() for i, r in per.items()):
        parts.append(IDENTITY_DEFINITIONS)
    return "\n\n".join(parts) + "\n"


# --- pictures ------------------------------------------------------------------------------------------


def _label(img: np.ndarray, text: str, width: int = 110) -> np.ndarray:
    """A row label to the left of img [h,w,3]."""
    import cv2

    pad = np.full((img.shape[0], width, 3), 255, np.uint8)
    cv2.putText(
        pad, text, (4, img.shape[0] // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
    )
    return np.concatenate([pad, img], 1)


def strip_start(opening: np.ndarray, n: int = STRIP_FRAMES) -> int:
    """First frame of the n-frame window where the (neutral) opening moves most (articulation on show)."""
    o = np.nan_to_num(np.asarray(opening, np.float64))
    if len(o) <= n:
        return 0
    return int(np.argmax([o[i : i + n].max() - o[i : i + n].min() for i in range(len(o) - n + 1)]))


def mouth_strip(tracks: dict[str, dict], start: int | None = None, n: int = STRIP_FRAMES) -> np.ndarray:
    """n consecutive mouth crops per category (rows), from tracks with "images" and "lmk": [H,W,3] RGB."""
    cats = [c for c in CATEGORIES if c in tracks]
    if start is None:
        start = strip_start(tracks.get("neutral", tracks[cats[0]])["opening"], n)
    rows = []
    for c in cats:
        t = tracks[c]
        crops = []
        for i in range(start, start + n):
            if i < len(t["images"]) and np.isfinite(t["lmk"][i, 0, 0]):
                crops.append(mm.mouth_crop(t["images"][i], t["lmk"][i], STRIP_CROP, grey=False))
            else:
                crops.append(np.zeros((STRIP_CROP[1], STRIP_CROP[0], 3), np.uint8))
        row = np.concatenate([np.pad(x, ((1, 1), (1, 1), (0, 0)), constant_values=255) for x in crops], 1)
        rows.append(_label(row, c))
    return np.concatenate(rows, 0)


def contact_sheet(tracks: dict[str, dict], frame: int) -> np.ndarray:
    """One full frame per category side by side (same frame index), labelled: [H,W,3] RGB."""
    import cv2

    tiles = []
    for c in [c for c in CATEGORIES if c in tracks]:
        img = tracks[c]["images"][min(frame, len(tracks[c]["images"]) - 1)].copy()
        if img.shape[0] < 256:
            img = cv2.resize(img, (256 * img.shape[1] // img.shape[0], 256), interpolation=cv2.INTER_CUBIC)
        head = np.full((22, img.shape[1], 3), 255, np.uint8)
        cv2.putText(head, c, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.pad(np.concatenate([head, img], 0), ((0, 0), (0, 2), (0, 0)), constant_values=255))
    return np.concatenate(tiles, 1)


def write_images(results: dict, out: Path) -> list[Path]:
    """Strip and contact sheet of the kept drive, per variant and identity, as PNGs in `out`."""
    import cv2

    written = []
    for var, per_id in results.items():
        for ident, res in per_id.items():
            keep = res.get("_strip")
            if not keep:
                continue
            tracks = keep["tracks"]
            ref = tracks.get("neutral", next(iter(tracks.values())))
            start = strip_start(ref["opening"])
            names = []
            for kind, img in (
                ("strip", mouth_strip(tracks, start)),
                ("sheet", contact_sheet(tracks, start + STRIP_FRAMES // 2)),
            ):
                p = out / f"{kind}_{var}_{ident}_{keep['drive']}.png"
                cv2.imwrite(str(p), np.ascontiguousarray(img[..., ::-1]))
                written.append(p)
                names.append(p.name)
            res["images"] = names + [f"(frames {start}-{start + STRIP_FRAMES - 1} of {keep['drive']})"]
    return written
