"""Run the emotion stage again on a trained identity (a fresh emotion field), writing a new identity folder.

    python scripts/emotion_stage.py DATASET IDENTITY OUT [--preset full|cpu|test] [--device cuda]
                                    [--steps N] [--old] [--no-mouth-mask] [--colour W] [--colour-smooth W]
                                    [--texture S] [--gain G] [--shrink W] [--highpass H] [--mask INNER OUTER]
                                    [--no-mouth-warp] [--warp-region mouth|face] [--colour-only] [--seed N]
                                    [--warp-only] [--fidelity-only]
                                    [--calibrate-only JSON] [--strengths JSON] [--no-calibration]

DATASET is the identity's own dataset (`python -m emotalk preprocess CLIP --out DATASET`), IDENTITY its
folder (e.g. checkpoints/obama). The speech fields and Gaussians are kept; the emotion field is dropped
and trained from scratch with the preset's EmotionStageSettings (training/settings.py EMOTION_PRESETS),
as `fit_identity` runs it. --old trains it as before issue 17 (no mouth mask, no colour or shrink
penalties), so old and new can be compared on the same identity. --warp-only keeps the trained emotion
field and only gives it emotion's mouth warp (its face landmarks from DATASET; no training, seconds on a
CPU). --warp-region face --colour-only makes the warp carry the whole face's change (brows, lids, cheeks)
and the field only recolour (seventeenth session; not the default, it erased a low-browed face's eyes).
OUT gets IDENTITY's files with the new model weights and settings (body track and thumbnail copied).
Every run prints the field's fidelity to its targets per category (`target_fidelity`); --fidelity-only
only measures it for IDENTITY's trained field against the preset's targets (OUT unused, nothing written).
The stage first chooses each category's strength on DATASET's frames (`training.emotion_calibration`;
recogniser and dlib, CPU): --calibrate-only JSON does only that and writes the result, --strengths JSON
uses such a file instead (e.g. calibrated on a CPU for a GPU host without dlib), --no-calibration runs
every category at the preset's strength.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch


def drop_emotion_field(model) -> None:
    """Remove a model's emotion field, its encoder and its buffers (lip lock, mouth mask, mouth warp)."""
    model.emotion_field = None
    model.emotion_enc = None
    for name in ("emotion_lip", "emotion_gap_dir", "emotion_keep", "emotion_face", "emotion_warp_gain"):
        if name in model._buffers:
            del model._buffers[name]
    model.settings = replace(model.settings, emotion_field=False, emotion_mouth_mask=False,
                             emotion_mouth_warp=False)


def calibrate_only(ds, s, out: Path) -> int:
    """Choose and write the per-category strengths (JSON, as `Calibration.summary`); print the table."""
    import json

    from emotalk.training.emotion_calibration import calibrate_dataset

    cal = calibrate_dataset(ds, s.generator, s.calibration,
                            progress=lambda m, f: print(m, flush=True))
    summ = cal.summary()
    for c, d in summ["categories"].items():
        b, k = d["base"], d["chosen"]
        print(f"{c:10s} gain x{summ['category_gain'][c]:.1f} texture x{summ['category_texture'][c]:.1f}: "
              f"p {b['p']:.2f} -> {k['p']:.2f}, read {b['accuracy']:.2f} -> {k['accuracy']:.2f}, "
              f"identity {b['identity']:.3f} -> {k['identity']:.3f}")
    rest = summ.get("rest") or {}
    if rest.get("p_others"):
        before, after = rest["p_others"]
        print(f"its frames read {rest['reads']} ({100 * rest['share']:.0f} %): "
              + (f"taken out at the other emotions x{rest['factor']:g} (their p {before:.2f} -> {after:.2f})"
                 if rest["factor"] else f"kept (taking it out did not lift the others' p {before:.2f})"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summ, indent=1))
    print(f"wrote {out}")
    return 0


def main() -> int:
    from emotalk.dataset.format import load_dataset
    from emotalk.identity.checkpoint import load_identity, save_identity_variant
    from emotalk.training.data import dataset_audio_code
    from emotalk.training.emotion_stage import fidelity_line, head_face, rounded, run_emotion_stage
    from emotalk.training.settings import EMOTION_PRESETS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", type=Path)
    ap.add_argument("identity", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--preset", default="full", choices=sorted(EMOTION_PRESETS))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--old", action="store_true",
                    help="as before issue 17: no mouth mask, no colour penalties")
    ap.add_argument("--no-mouth-mask", action="store_true")
    ap.add_argument("--no-mouth-warp", action="store_true", help="no mouth warp (as before 2026-11-28)")
    ap.add_argument("--warp-region", choices=("mouth", "face"), default=None,
                    help="what the warp carries: the lower face's change (default) or the whole face's")
    ap.add_argument("--colour-only", action="store_true",
                    help="the field only recolours (meant with --warp-region face, which draws the geometry)")
    ap.add_argument("--seed", type=int, default=None, help="the stage's sampling seed")
    ap.add_argument("--warp-only", action="store_true",
                    help="keep the trained emotion field; only add the mouth warp (no training)")
    ap.add_argument("--fidelity-only", action="store_true",
                    help="measure IDENTITY's field against the preset's targets; write nothing")
    ap.add_argument("--calibrate-only", type=Path, default=None, metavar="JSON",
                    help="choose the per-category strengths on DATASET, write them here, stop")
    ap.add_argument("--strengths", type=Path, default=None, metavar="JSON",
                    help="per-category strengths from --calibrate-only (no calibration here)")
    ap.add_argument("--no-calibration", action="store_true", help="every category at the preset's strength")
    ap.add_argument("--face-weight", type=float, default=None, help="face_weight")
    ap.add_argument("--lr", type=float, default=None, help="learning rate")
    ap.add_argument("--colour", type=float, default=None, help="colour_weight")
    ap.add_argument("--colour-smooth", type=float, default=None, help="colour_smooth_weight")
    ap.add_argument("--shrink", type=float, default=None,
                    help="shrink_weight (0: the field may shrink Gaussians freely)")
    ap.add_argument("--texture", type=float, default=None, help="generator texture strength")
    ap.add_argument("--gain", type=float, default=None, help="generator warp gain")
    ap.add_argument("--highpass", type=float, default=None, help="generator texture_highpass")
    ap.add_argument("--mask", type=float, nargs=2, default=None, metavar=("INNER", "OUTER"),
                    help="mouth_mask_inner / mouth_mask_outer (mouth widths)")
    args = ap.parse_args()

    s = EMOTION_PRESETS[args.preset]
    if args.old:
        s = replace(s, mouth_mask=False, colour_weight=0.0, colour_smooth_weight=0.0, shrink_weight=0.0,
                    warp_region="mouth", colour_only=False)
    if args.no_mouth_mask:
        s = replace(s, mouth_mask=False)
    if args.no_mouth_warp:
        s = replace(s, mouth_warp=False)
    if args.warp_region:
        s = replace(s, warp_region=args.warp_region)
    if args.colour_only:
        s = replace(s, colour_only=True)
    if args.seed is not None:
        s = replace(s, seed=args.seed)
    for k, v in (("steps", args.steps), ("colour_weight", args.colour), ("face_weight", args.face_weight),
                 ("lr", args.lr), ("shrink_weight", args.shrink),
                 ("colour_smooth_weight", args.colour_smooth)):
        if v is not None:
            s = replace(s, **{k: v})
    if args.mask:
        s = replace(s, mouth_mask_inner=args.mask[0], mouth_mask_outer=args.mask[1])
    for k, v in (("texture", args.texture), ("gain", args.gain), ("texture_highpass", args.highpass)):
        if v is not None:
            s = replace(s, generator=replace(s.generator, **{k: v}))
    given = None  # strengths read from --strengths (kept in identity.json as the stage's)
    if args.no_calibration:
        s = replace(s, calibration=replace(s.calibration, enabled=False))
    if args.strengths is not None:
        import json

        try:
            st = json.loads(args.strengths.read_text())
        except (OSError, ValueError) as e:
            st = {"error": str(e)}
        if not isinstance(st, dict) or not {"category_gain", "category_texture"} <= set(st):
            print(f"--strengths {args.strengths}: not a strengths file written by --calibrate-only; "
                  "make one with --calibrate-only JSON", file=sys.stderr)
            return 2
        given = st
        s = replace(s, generator=replace(s.generator, category_gain=st["category_gain"],
                                         category_texture=st["category_texture"]))
    ds = load_dataset(args.dataset)
    if args.calibrate_only is not None:
        return calibrate_only(ds, s, args.calibrate_only)
    ident = load_identity(args.identity, args.device)
    model = ident.model
    if args.fidelity_only:
        from emotalk.training.data import load_train_data
        from emotalk.training.emotion_stage import make_targets, target_fidelity

        if model.emotion_field is None:
            print(f"{args.identity} has no emotion field to measure", file=sys.stderr)
            return 2
        code = dataset_audio_code(ds, ident.meta["model"].get("audio_kind", "whisper"))
        data = load_train_data(ds, s.size or ident.size, code, args.device)
        fid = target_fidelity(model, data, make_targets(ds, data.size, s), s)
        print("fidelity/amplitude " + fidelity_line(fid))
        return 0
    if args.warp_only:
        if getattr(model, "emotion_keep", None) is None:
            print(f"{args.identity} has no mouth mask: run the emotion stage instead of --warp-only",
                  file=sys.stderr)
            return 2
        lmk3d = ds.lmk3d[ds.train_idx]
        model.set_mouth_warp(torch.as_tensor(head_face(lmk3d)), s.generator.gain)
        # a field trained to move Gaussians keeps doing so: the warp takes the mouth only, unless asked
        model.settings = replace(model.settings, emotion_warp_region=args.warp_region or "mouth")
        res = None
        print(f"mouth warp set from {len(lmk3d)} training frames at gain {s.generator.gain}")
    else:
        drop_emotion_field(model)
        code = dataset_audio_code(ds, ident.meta["model"].get("audio_kind", "whisper"))
        t0 = time.time()
        res = run_emotion_stage(model, ds, s, device=args.device, size=ident.size, audio_code=code,
                                progress=lambda m, f: print(m, flush=True) if f >= 1 or "targets" in m
                                else None)
        print(f"emotion stage: {res['steps']} steps, {res['n_targets']} targets, "
              f"{(time.time() - t0) / 60:.1f} min; "
              f"loss {res['loss_emotion'][0]:.4f} -> {res['loss_emotion'][-1]:.4f}")
        print("fidelity/amplitude " + fidelity_line(res["fidelity"]))
        print("eye shrink (mean log-scale change at the eyes) "
              + " ".join(f"{k} {v:+.3f}" for k, v in res["eye_shrink"].items()))
        s = res["settings"]

    if res is not None:
        stage = {"steps": s.steps, "minutes": round(res["minutes"], 2), "targets": res["n_targets"],
                 "settings": asdict(s), "fidelity": rounded(res["fidelity"]),
                 "eye_shrink": {k: round(v, 3) for k, v in res["eye_shrink"].items()}}
        if res.get("strengths") is not None or given is not None:
            stage["strengths"] = res.get("strengths") or {**given, "from": str(args.strengths)}
    else:
        stage = {**ident.meta["metrics"].get("emotion_stage", {}), "mouth_warp": {
            "gain": s.generator.gain, "face_from": f"{args.dataset.name} (median of its training frames)"}}
    save_identity_variant(args.identity, args.out, model, {"emotion_stage": stage})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
