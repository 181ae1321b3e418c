"""What a fit made of an identity, in a few lines for the user: held-out quality, the fitted mouth-opening
gain, whose phone targets drive the lips, how much of its emotion targets its emotional renders draw,
which emotions were made stronger for this face, and a warning when its emotions may render holes.
The train CLI prints these lines and the app's Fine-tune tab shows them (identity.json keeps the metrics)."""

from __future__ import annotations

from pathlib import Path


def quality_line(summary: dict) -> str | None:
    """Held-out PSNR / SSIM and the Gaussian counts; None when the summary has none."""
    if "val_psnr" not in summary:
        return None
    ssim = f", SSIM {summary['val_ssim']:.3f}" if "val_ssim" in summary else ""
    n = (f", {summary['n_face']} + {summary['n_mouth']} Gaussians"
         if "n_face" in summary and "n_mouth" in summary else "")
    return f"held-out PSNR {summary['val_psnr']:.2f} dB{ssim}{n}"


def opening_line(rec: dict) -> str:
    """The fitted render-time opening gain (metrics.lip_opening), or why it stayed 1.0."""
    if rec.get("frames"):
        g, r = rec["gain"], (rec.get("ratio") or {}).get(str(float(rec["gain"])))
        wide = f" (renders open {r:.2f}x as wide as the clip's open frames)" if r is not None else ""
        why = f"; set over the fitted {rec['fitted_gain']}: {rec['chosen']}" if rec.get("chosen") else ""
        return f"mouth opening: gain {g}{wide}{why}"
    return f"mouth opening: gain left at 1.0 ({rec.get('note') or 'not a lip-code identity'})"


def phone_line(has_own: bool) -> str:
    """Whose per-phone lip targets the identity's typed-text and English renders use."""
    if has_own:
        return "phone lips: this person's own phone targets (phone_lips.json)"
    return ("phone lips: the cross-speaker table (this clip gave no own phone targets: they need English "
            "speech and the aligner)")


def emotion_line(summary: dict) -> str:
    """How much of its targets' expression change the emotional renders draw (warp and field together; mean
    and weakest category), or that no emotion stage ran."""
    fid = (summary.get("emotion_stage") or {}).get("fidelity")
    if not fid or "mean" not in fid:
        return "emotions: no emotion stage ran, so every emotion renders as neutral"
    cats = {k: d for k, d in fid.items() if k != "mean"}
    weak = min(cats, key=lambda k: cats[k]["amplitude"]) if cats else None
    low = f" (weakest: {weak}, {100 * cats[weak]['amplitude']:.0f} %)" if weak else ""
    return (f"emotion stage: emotional renders draw {100 * fid['mean']['amplitude']:.0f} % of their targets' "
            f"expression change on average{low}")


def strength_line(summary: dict) -> str:
    """Which emotions the stage made stronger for this face, and how the recogniser then read its targets
    (emotalk.training.emotion_calibration); empty when no calibration ran."""
    st = (summary.get("emotion_stage") or {}).get("strengths") or {}
    cats = st.get("categories") or {}
    if not cats:
        return ""
    raised = [f"{c} x{st['category_gain'][c]:g} (its targets read {100 * d['base']['accuracy']:.0f} -> "
              f"{100 * d['chosen']['accuracy']:.0f} % of frames)"
              for c, d in cats.items() if st["category_gain"].get(c, 1.0) != 1.0]
    weak = [c for c, d in cats.items() if d["chosen"]["accuracy"] < 0.5]
    said = ("emotion strengths: " + ", ".join(raised) if raised
            else "emotion strengths: every emotion at the stage's own strength")
    rest = st.get("rest") or {}
    if rest.get("factor"):
        before, after = rest["p_others"]
        said += (f"; this face rests looking {rest['reads']} (to the recogniser), so that is taken out at "
                 f"the other emotions (x{rest['factor']:g}: they read p {before:.2f} -> {after:.2f})")
    return said + (f"; the recogniser still rarely reads {', '.join(weak)} on this face" if weak else "")


def eye_line(summary: dict) -> str:
    """A warning when the emotion field shrinks the eyes' Gaussians (holes: white eyes at those emotions);
    empty otherwise (`training.emotion_stage.eye_shrink`)."""
    from emotalk.training.emotion_stage import EYE_SHRINK_WARN

    shrink = (summary.get("emotion_stage") or {}).get("eye_shrink") or {}
    bad = sorted((v, c) for c, v in shrink.items() if v < EYE_SHRINK_WARN)
    if not bad:
        return ""
    return ("warning: the emotion field shrinks the eyes' Gaussians at " + ", ".join(f"{c} ({v:+.2f})"
            for v, c in bad) + ": those emotions may render holes (white eyes); look at them before sharing")


def fit_report(summary: dict, folder: str | Path) -> list[str]:
    """Every line above for the identity written to `folder` with training summary `summary`."""
    lines = [quality_line(summary), opening_line(summary.get("lip_opening") or {}),
             phone_line((Path(folder) / "phone_lips.json").is_file()), emotion_line(summary),
             strength_line(summary), eye_line(summary)]
    return [x for x in lines if x]

