"""GPU step that turns a trained identity into the shipped one: the emotion stage, then evidence.

Runs on the GPU host (no ffmpeg there: datasets decode with OpenCV, as in bench_model.py):
  python bench/ship_identity.py IDENTITY DATASET --out OUT [--steps 800]
Writes OUT/model.safetensors (the identity's tensors with the emotion stage applied, body track kept),
OUT/emotion_stage.json (held-out PSNR/SSIM at (0,0) before and after, losses, minutes) and
OUT/emotion_renders.npz (held-out frames rendered at each category, JPEG) for the CPU-side evaluation
(`python bench/ship_identity.py --evaluate OUT`: recognizer accuracy, V/A sign agreement, lip preservation).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CATS = ("neutral", "happy", "surprised", "fear", "angry", "disgusted", "contempt", "sad", "calm")


def gpu_step(identity: str, dataset: str, out: Path, steps: int, dev: str = "cuda") -> dict:
    import runpy

    import torch
    from safetensors.torch import load_file, save_file

    runpy.run_path(str(ROOT / "bench" / "bench_model.py"))["_cv2_video_fallback"]()
    from emotalk.data import load_dataset
    from emotalk.emotion_train import EmotionStageSettings, run_emotion_stage
    from emotalk.face.emotion import CATEGORIES
    from emotalk.identity import _state_tensors, load_identity
    from emotalk.train import dataset_audio_code, evaluate, frames_at, load_train_data

    ds = load_dataset(dataset)
    ident = load_identity(identity, device=dev)
    model = ident.model
    code = dataset_audio_code(ds, ident.meta["model"].get("audio_kind", "whisper"))
    data = load_train_data(ds, ident.size, code, dev)
    val = np.asarray(data.val_idx)
    _, before = evaluate(model, data, val)
    st = EmotionStageSettings(steps=steps, n_frames=12)
    summary = run_emotion_stage(model, ds, st, device=dev, size=ident.size, audio_code=code,
                                progress=lambda s, f: print(s, flush=True) if f in (1.0,) else None)
    _, after = evaluate(model, data, val)
    picks = val[:: max(1, len(val) // 5)][:5]
    imgs, vas, names, fidx = [], [], [], []
    with torch.no_grad():
        for name in CATS:
            va = torch.tensor(CATEGORIES[name], device=dev).expand(len(picks), 2)
            idx = torch.as_tensor(picks, device=dev)
            fr = frames_at(data, idx, emotion=va)
            img = model.render(fr, data.size, data.size, data.body[idx].float() / 255).rgb.clamp(0, 1)
            imgs.append((img * 255 + 0.5).to(torch.uint8).cpu().numpy())
            vas += [CATEGORIES[name]] * len(picks)
            names += [name] * len(picks)
            fidx += list(picks)
    import cv2

    frames = np.concatenate(imgs)
    jpgs = [cv2.imencode(".jpg", np.ascontiguousarray(f[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 93])[1]
            for f in frames]
    np.savez(out / "emotion_renders.npz", jpg=np.array([j.tobytes() for j in jpgs], dtype=object),
             va=np.array(vas, np.float32), category=np.array(names), frame=np.array(fidx))
    tensors = _state_tensors(model)
    orig = load_file(str(Path(identity) / "model.safetensors"))
    tensors.update({k: v for k, v in orig.items() if k.startswith("track.")})
    save_file(tensors, str(out / "model.safetensors"))
    res = {"heldout_before": before, "heldout_after": after, "steps": steps,
           "minutes": summary["minutes"], "n_targets": summary["n_targets"],
           "loss_emotion_first_last": [summary["loss_emotion"][0], summary["loss_emotion"][-1]],
           "loss_neutral_first_last": [summary["loss_neutral"][0], summary["loss_neutral"][-1]],
           "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu"}
    (out / "emotion_stage.json").write_text(json.dumps(res, indent=1))
    return res


def evaluate_renders(folder: Path) -> dict:
    """CPU side: recognizer on the emotional renders (per category), and lip preservation vs neutral."""
    import cv2

    from emotalk.emotion_metrics import clip_result, lip_preservation, summarise
    from emotalk.face.recognizer import EmotionRecognizer
    from emotalk.face.tracking import track_video

    z = np.load(folder / "emotion_renders.npz", allow_pickle=True)
    frames = np.stack([cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].copy()
                       for b in z["jpg"]])
    cats, fidx = z["category"], z["frame"]
    tracks = [track_video([f], n_frames=1) for f in frames]  # each render on its own
    found = np.array([bool(t.found[0]) for t in tracks])
    lmk = np.stack([t.lmk[0] for t in tracks])
    rec = EmotionRecognizer()
    probs = np.stack([rec.probs(f, l[:, :2]) if ok else np.full(7, np.nan, np.float32)
                      for f, l, ok in zip(frames, lmk, found)])  # NaN rows: no face found
    results, lips = [], {}
    neutral = {int(i): k for k, i in enumerate(fidx) if cats[k] == "neutral"}
    for name in CATS:
        m = np.flatnonzero(cats == name)
        if name not in ("calm", "contempt"):  # no fer class / left out of the ceiling, as on MEAD
            results.append(clip_result(f"render-{name}", name, probs[m]))
        m = np.array([k for k in m if found[k] and found[neutral[int(fidx[k])]]], int)
        if len(m):
            lips[name] = lip_preservation(np.stack([lmk[neutral[int(fidx[k])]] for k in m]), lmk[m])
    summ = summarise(results)
    return {"faces_found": f"{int(found.sum())}/{len(found)}",
            "summary": {k: v for k, v in summ.items() if not isinstance(v, np.ndarray)},
            "per_category_pred": {r.target: r.predicted for r in results},
            "lip_gap_ratio_vs_neutral": {k: v["gap_ratio"] for k, v in lips.items()},
            "lip_gap_mae": {k: v["gap_mae"] for k, v in lips.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("identity", nargs="?")
    ap.add_argument("dataset", nargs="?")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--evaluate", action="store_true", help="CPU side: evaluate OUT/emotion_renders.npz")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.evaluate:
        print(json.dumps(evaluate_renders(a.out), indent=1))
    else:
        print(json.dumps(gpu_step(a.identity, a.dataset, a.out, a.steps, a.device), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
