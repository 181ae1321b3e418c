"""Stages 6-8 of building a dataset: background plate, head-removed body frames, then tracks.npz and
meta.json; the finished work folder replaces the dataset folder in one rename."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from emotalk.dataset.bodyframes import body_frames
from emotalk.dataset.crops import iter_crops, read_crops
from emotalk.dataset.format import DATASET_VERSION, IdentityDataset, load_dataset
from emotalk.dataset.pool import cpu_workers
from emotalk.dataset.progress import Progress, StageClock
from emotalk.dataset.settings import PreprocessSettings
from emotalk.folders import swap_folder


def _versions() -> dict[str, str]:
    """Versions of what made the dataset (finish may run where MediaPipe is not installed)."""
    import cv2
    import torch

    import emotalk

    try:
        from importlib.metadata import version

        mp_version = version("mediapipe")
    except Exception:  # noqa: BLE001 - not installed on this machine (prepare ran elsewhere)
        mp_version = "not installed here"
    return {"emotalk": emotalk.__version__, "dataset_format": str(DATASET_VERSION),
            "python": sys.version.split()[0], "numpy": np.__version__, "torch": torch.__version__,
            "opencv": cv2.__version__, "mediapipe": mp_version}


def finish(work: str | os.PathLike, out_dir: str | os.PathLike,
           settings: PreprocessSettings = PreprocessSettings(),
           progress: Progress | None = None) -> IdentityDataset:
    """Stages 6-8: background plate, body frames, tracks.npz and meta.json; the work folder then becomes
    out_dir (renamed into place, replacing an older dataset there)."""
    import cv2

    from emotalk import media
    from emotalk.dataset.stages import plate
    from emotalk.dataset.stages.store import read_labels
    from emotalk.face import tracking

    s = settings
    work, out_dir = Path(work), Path(out_dir)
    state = json.loads((work / "state.json").read_text())
    T, S, fps = state["T"], state["size"], state["fps"]
    st = StageClock(progress, ("plate", "body", "write"), (0.3, 0.6, 0.1))
    rep = st.begin("plate", "building the background plate")
    video = work / "frames.mp4"
    labels_path = work / "parsing.npz"
    workers = cpu_workers(s.cpu_workers)
    plate_idx = np.linspace(0, T - 1, min(T, s.plate.max_frames)).round().astype(int)
    bg, inpainted = plate.background_plate(read_crops(video, S, fps, T, plate_idx),
                                           read_labels(labels_path, plate_idx), s.plate, workers)

    rep = st.begin("body", "making head-removed body frames")
    sheet_idx = [int(i) for i in np.linspace(0, T - 1, 8).round()]
    crops = iter_crops(video, S, fps, T)
    with media.VideoWriter(work / "body.mp4", fps=fps, crf=s.body_crf) as bw:
        made = body_frames(crops, labels_path, T, bg, s.plate, bw.write, workers, set(sheet_idx), rep)
    crops.close()
    flicker, body_sheet, crop_sheet = made.flicker, made.body, made.crop

    rep = st.begin("write", "writing the dataset")
    cv2.imwrite(str(work / "background.png"), np.ascontiguousarray(bg[..., ::-1]))
    with np.load(work / "state.npz") as z:
        tr = {k: z[k] for k in z.files}
    names = [str(n) for n in tr["blendshape_names"]]
    uf_idx = [names.index(n) for n in tracking.UPPER_FACE_NAMES]
    n_val = max(1, int(round(T * s.val_fraction)))
    bs = tr["blendshapes"].astype(np.float32)
    np.savez_compressed(
        work / "tracks.npz",
        K=tr["K"].astype(np.float32), world_to_cam=tr["world_to_cam"].astype(np.float32),
        lmk2d=tr["lmk_crop"][..., :2].astype(np.float32),
        lmk3d=tr["lmk3d"].astype(np.float16),  # metres: float16 keeps ~0.05 mm here
        blendshapes=bs, blendshape_names=np.array(names),
        upper_face=bs[:, uf_idx], upper_face_names=np.array(tracking.UPPER_FACE_NAMES),
        train_idx=np.arange(T - n_val, dtype=np.int64), val_idx=np.arange(T - n_val, T, dtype=np.int64),
        found=tr["found"].astype(bool), head_template=tr["head_template"].astype(np.float32),
        mouth_open=tr["mouth_open"].astype(np.float32),
    )
    quality = dict(state["quality"], background_inpainted_fraction=round(inpainted, 4),
                   parsing_change_per_frame=round(float(np.median(flicker)) if flicker else 0.0, 4))
    meta = {
        "format_version": DATASET_VERSION, "fps": fps, "size": S, "n_frames": T, "units": "metres",
        "head_frame": "x: subject's right-to-left eye axis, y: down, z: into the head (face looks to "
                      "-z); origin ~8 cm behind the stable landmarks' centroid; scale from a 9 cm "
                      "outer-eye distance",
        "camera": "OpenCV pinhole; world_to_cam maps head-frame points to camera coordinates",
        "crop": state["crop"], "source": state["source"],
        "split": {"train": T - n_val, "val": n_val, "val_fraction": s.val_fraction},
        "audio": state["audio"], "quality": quality, "checks": state["checks"],
        "settings": state["settings"], "versions": _versions(),
        "decode": state.get("decode"), "parse": state.get("parse"),
    }
    times = dict(state["timings_s"])
    times.update(st.end())
    times["total"] = round(sum(v for v in times.values() if isinstance(v, (int, float))), 2)
    meta["timings_s"] = times
    meta["finish"] = {"cpu_workers": workers}
    if s.debug_dir:
        sheet_labels = dict(zip(sheet_idx, read_labels(labels_path, sheet_idx)))
        _write_sheet(Path(s.debug_dir) / f"{out_dir.name}_parsing.png", sheet_idx,
                     crop_sheet, sheet_labels, body_sheet, bg)
    for f in ("crops.npy", "state.npz", "state.json"):
        (work / f).unlink(missing_ok=True)
    meta["bytes"] = {p.name: p.stat().st_size for p in work.iterdir()}
    (work / "meta.json").write_text(json.dumps(meta, indent=1))
    swap_folder(work, out_dir)
    return load_dataset(out_dir)


def _write_sheet(path: Path, idx: list[int], frames: dict, labels: dict, body: dict, bg: np.ndarray) -> None:
    """Debug contact sheet: parsing overlays of sampled frames, their body frames, and the plate."""
    import cv2

    from emotalk.face.parsing import contact_sheet, overlay

    tiles = [overlay(frames[i], labels[i]) for i in idx if i in labels and i in frames]
    tiles += [body[i] for i in idx if i in body][:3]
    tiles.append(bg)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), contact_sheet(tiles, cols=4)[..., ::-1])
