"""GPU step that turns a trained identity into the shipped one: the emotion stage, then evidence.

Runs on the GPU host (no ffmpeg there: datasets decode with OpenCV, inside emotalk.media):
  python bench/ship_identity.py IDENTITY DATASET --out OUT [--steps 1500]
Writes OUT/identity/ (the identity with the emotion stage applied, body track kept, identity.json's
settings and metrics updated: ready to copy under checkpoints/), OUT/emotion_stage.json (held-out
PSNR/SSIM at (0,0) before and after, losses, minutes, render FPS neutral vs emotional) and
OUT/emotion_renders.npz (held-out frames rendered at each category, JPEG) for the CPU-side evaluation
(`python bench/ship_identity.py --evaluate OUT`: recognizer accuracy, V/A sign agreement, lip preservation).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from emotalk.evaluation.emotion_renders import EMOTION_CATS as CATS
from emotalk.evaluation.emotion_renders import emotion_from_renders, render_emotions

ROOT = Path(__file__).resolve().parents[1]  # the checkout: where shipped identities go


def gpu_step(identity: str, dataset: str, out: Path, steps: int, dev: str = "cuda") -> dict:
    import torch

    from emotalk.dataset.format import load_dataset
    from emotalk.emotion import CATEGORIES
    from emotalk.identity.checkpoint import load_identity
    from emotalk.training.data import dataset_audio_code, load_train_data
    from emotalk.training.emotion_stage import EmotionStageSettings, run_emotion_stage
    from emotalk.training.loop import evaluate

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
    picks = val[:: max(1, len(val) // 8)][:8]
    frames, vas, names, fidx = render_emotions(model, data, picks, CATS)
    import cv2

    jpgs = [cv2.imencode(".jpg", np.ascontiguousarray(f[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 93])[1]
            for f in frames]
    np.savez(out / "emotion_renders.npz", jpg=np.array([j.tobytes() for j in jpgs], dtype=object),
             va=np.array(vas, np.float32), category=np.array(names), frame=np.array(fidx))
    speed = {k: render_fps(model, data, val, va, dev) for k, va in (("neutral", (0.0, 0.0)),
                                                                      ("happy", CATEGORIES["happy"]))}
    res = {"heldout_before": before, "heldout_after": after, "steps": steps,
           "minutes": summary["minutes"], "n_targets": summary["n_targets"],
           "loss_emotion_first_last": [summary["loss_emotion"][0], summary["loss_emotion"][-1]],
           "render_fps_b32": speed,
           "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu"}
    (out / "emotion_stage.json").write_text(json.dumps(res, indent=1))
    write_identity(Path(identity), model, out / "identity", res, st)
    return res


def render_fps(model, data, val: np.ndarray, va: tuple[float, float], dev: str, batch: int = 32,
               reps: int = 10) -> float:
    """Frames per second of batched renders of held-out frames at one emotion (caches precomputed)."""
    import time

    import torch

    from emotalk.gaussians.model import BRANCHES
    from emotalk.training.data import frames_at

    idx = torch.as_tensor(np.resize(val, batch), device=dev)
    emo = torch.tensor(va, device=dev, dtype=torch.float32).expand(batch, 2)
    with torch.no_grad():
        caches = {b: model.precompute(b) for b in BRANCHES}
        fr = frames_at(data, idx, emotion=emo)
        body = data.body[idx].float() / 255
        for k in range(reps + 2):
            if k == 2:
                if dev.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.time()
            model.render(fr, data.size, data.size, body, caches=caches)
        if dev.startswith("cuda"):
            torch.cuda.synchronize()
    return batch * reps / (time.time() - t0)


def write_identity(src: Path, model, dest: Path, res: dict, st) -> Path:
    """The identity with the emotion stage applied, ready to ship: tensors replaced (body track kept),
    identity.json's model settings (now with the emotion field) and metrics updated."""
    import shutil
    from dataclasses import asdict

    from safetensors.torch import load_file, save_file

    from emotalk.identity.checkpoint import _state_tensors

    dest.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.name != "model.safetensors":
            shutil.copy2(f, dest / f.name)
    tensors = _state_tensors(model)
    orig = load_file(str(src / "model.safetensors"))
    tensors.update({k: v for k, v in orig.items() if k.startswith("track.")})
    save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "emotalk-identity"})
    meta = json.loads((src / "identity.json").read_text())
    meta["settings"]["model"] = asdict(model.settings)
    m = meta.setdefault("metrics", {})
    m.update({"heldout_psnr_before_emotion_stage": round(res["heldout_before"]["psnr"], 3),
              "heldout_psnr": round(res["heldout_after"]["psnr"], 3),
              "heldout_ssim": round(res["heldout_after"]["ssim"], 4),
              "emotion_stage": {"steps": res["steps"], "minutes": round(res["minutes"], 2),
                                "targets": res["n_targets"], "device": res["device"],
                                "settings": asdict(st)}})
    (dest / "identity.json").write_text(json.dumps(meta, indent=1))
    return dest


def evaluate_renders(folder: Path) -> dict:
    """CPU side: recognizer on the emotional renders (per category), and lip preservation vs neutral."""
    import cv2

    z = np.load(folder / "emotion_renders.npz", allow_pickle=True)
    frames = np.stack([cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].copy()
                       for b in z["jpg"]])
    return emotion_from_renders(frames, z["category"], z["frame"])


def install(folder: Path, name: str, dest_root: Path = ROOT / "checkpoints") -> Path:
    """Copy OUT/identity to checkpoints/NAME with a portable source path and the provenance filled in
    (the GPU host's temporary dataset path is replaced by the command that makes the dataset)."""
    import shutil

    src = folder / "identity"
    meta = json.loads((src / "identity.json").read_text())
    clip = meta["source"]["name"]
    size = meta["model"]["size"]
    stage = meta["metrics"].get("emotion_stage", {})
    meta["name"] = name
    meta["source"]["clip"] = f"shared/data/clips/{clip}"
    meta["source"]["dataset"] = f"python -m emotalk preprocess shared/data/clips/{clip} ({size} px)"
    prov = meta.setdefault("provenance", {})
    settings = meta.get("settings", {})
    if settings.get("model", {}).get("lip_code"):
        speaker = clip.split("_")[0]
        how = f"lip code; its LipDriver was trained without the {speaker} clips"
        settings["lip_driver"] = f"scripts/train_lip_driver.py --without {speaker}"
    else:
        how = "re-spoken codes mixed in"
    prov["trained_on"] = (f"{stage.get('device', 'GPU')} (train --preset fast, {how}), "
                          f"then bench/ship_identity.py (emotion field, {stage.get('steps', '?')} steps)")
    prov["licence"] = "trained on a public-domain US presidential address (shippable per the data manifest)"
    dest = dest_root / name
    tmp = dest_root / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    (tmp / "identity.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.replace(dest)
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("identity", nargs="?")
    ap.add_argument("dataset", nargs="?")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--evaluate", action="store_true", help="CPU side: evaluate OUT/emotion_renders.npz")
    ap.add_argument("--install", metavar="NAME",
                    help="copy OUT/identity to checkpoints/NAME (shippable clips only)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.install:
        print(install(a.out, a.install))
    elif a.evaluate:
        print(json.dumps(evaluate_renders(a.out), indent=1))
    else:
        print(json.dumps(gpu_step(a.identity, a.dataset, a.out, a.steps, a.device), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
