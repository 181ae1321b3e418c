"""Identity datasets: `preprocess` turns a talking-head clip into one (a folder), `load_dataset` reads it.

Stages (each reports progress): early checks of the whole clip -> MediaPipe tracking -> crop, head pose
and intrinsics -> AV-sync check and audio shift -> cropped frames + face parsing -> background plate ->
head-removed body frames -> files written into a temporary folder, renamed into place at the end.
The folder layout is documented in docs/DATASET.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from emotalk.dataset.format import DATASET_VERSION, SR, IdentityDataset, load_dataset
from emotalk.dataset.stages.checks import CheckSettings
from emotalk.dataset.stages.crop import CropSettings
from emotalk.dataset.stages.plate import PlateSettings
from emotalk.errors import DatasetError, InputError, MediaError
from emotalk.face.parsing import ParsingSettings
from emotalk.face.tracking import PoseSettings, TrackerSettings

Progress = Callable[[str, float], None]


@dataclass
class PreprocessSettings:
    """Everything that shapes a dataset; saved in meta.json."""

    size: int = 512  # S: side of the square crop in px
    fps: float = 25.0  # output frame rate (input is resampled)
    min_seconds: float = 4.0  # shorter clips are refused
    max_seconds: float = 600.0  # longer clips are refused
    max_lost_fraction: float = 0.1  # refuse when the face is lost in more of the frames than this
    max_gap_seconds: float = 1.0  # refuse when the face is lost for longer than this in one go
    val_fraction: float = 1 / 11  # the last part of the frames, held out
    frames_crf: int = 16  # H.264 quality of frames.mp4 (lower = better, larger)
    body_crf: int = 18  # H.264 quality of body.mp4
    av_max_lag: int = 10  # AV offsets searched, +- frames
    av_min_confidence: float = 3.5  # below this the offset is not applied (and a warning is given)
    av_warn_frames: int = 2  # |offset| above this is warned about
    debug_dir: str | None = None  # where to write the parsing contact sheet (None: no sheet)
    checks: CheckSettings = field(default_factory=CheckSettings)
    crop: CropSettings = field(default_factory=CropSettings)
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    pose: PoseSettings = field(default_factory=PoseSettings)
    parsing: ParsingSettings = field(default_factory=ParsingSettings)
    plate: PlateSettings = field(default_factory=PlateSettings)


PRESETS: dict[str, PreprocessSettings] = {
    "default": PreprocessSettings(),  # 512², for training
    "fast": PreprocessSettings(size=256),  # quicker previews
    "test": PreprocessSettings(size=96),  # unit tests: small crops (parsing still runs at 512²)
}


# ----------------------------------------------------------------------------------------------
# preprocess


class _Stages:
    """Maps each stage's own 0..1 progress onto the part's 0..1 and records stage times."""

    def __init__(self, progress: Progress | None, names: tuple[str, ...], weights: tuple[float, ...]):
        self.progress = progress
        self.weights = dict(zip(names, weights))
        self.start: dict[str, float] = {}
        self.times: dict[str, float] = {}
        self.cur: str | None = None

    def begin(self, name: str, text: str) -> Progress:
        now = time.time()
        if self.cur:
            self.times[self.cur] = round(now - self.start[self.cur], 2)
        self.cur = name
        self.start[name] = now
        keys = list(self.weights)
        base = sum(self.weights[k] for k in keys[: keys.index(name)])
        w = self.weights[name]

        def report(msg: str, frac: float) -> None:
            if self.progress:
                self.progress(msg, min(1.0, base + w * max(0.0, min(1.0, frac))))

        report(text, 0.0)
        return report

    def end(self) -> dict[str, float]:
        if self.cur:
            self.times[self.cur] = round(time.time() - self.start[self.cur], 2)
            self.cur = None
        return dict(self.times)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import cv2
    import mediapipe
    import torch

    import emotalk

    return {"emotalk": emotalk.__version__, "dataset_format": str(DATASET_VERSION),
            "python": sys.version.split()[0], "numpy": np.__version__, "torch": torch.__version__,
            "opencv": cv2.__version__,
            "mediapipe": mediapipe.__version__}


def _check_clip(clip: Path, s: PreprocessSettings, report: Progress):
    """Probe, audio, scene cuts and sampled faces; raises InputError/MediaError before any long work."""
    import cv2

    from emotalk import media
    from emotalk.dataset.stages import checks

    info = media.probe(clip)
    name = clip.name
    if not info.has_video:
        raise MediaError(f"{name} has no video stream. Use a video of the person talking.")
    if not info.has_audio:
        raise MediaError(f"{name} has no audio track. The identity learns from the person's speech: "
                         "use a clip with its sound.")
    if info.duration and info.duration < s.min_seconds:
        raise InputError(f"{name} is {info.duration:.1f} s long; at least {s.min_seconds:.0f} s of talking "
                         "is needed (a few minutes is best).")
    if info.duration and info.duration > s.max_seconds:
        raise InputError(f"{name} is {info.duration:.0f} s long; the limit is {s.max_seconds:.0f} s. "
                         "Trim it (1 to 5 minutes of talking is plenty).")
    wav = media.read_audio(clip, SR)
    if len(wav) < SR * 0.5 or float(np.abs(wav).max(initial=0.0)) < 1e-4:
        raise MediaError(f"The audio track of {name} is empty or silent. "
                         "Use a clip with the person's speech.")

    t_est = max(1, int(round(info.duration * s.fps)))
    n_s = s.checks.sample_frames
    want = set(np.linspace(0, t_est - 1, n_s).round().astype(int).tolist())
    thumbs, samples = [], []
    for i, f in enumerate(media.iter_frames(clip, fps=s.fps)):
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
        thumbs.append(cv2.resize(g, (s.checks.thumb, s.checks.thumb), interpolation=cv2.INTER_AREA))
        if i in want:
            samples.append(f.copy())
        if i % 50 == 0:
            report(f"checking frame {i}/{t_est}", 0.6 * i / t_est)
    T = len(thumbs)
    if T / s.fps < s.min_seconds:
        raise InputError(f"{name} holds only {T / s.fps:.1f} s of video; "
                         f"at least {s.min_seconds:.0f} s needed.")
    cuts = checks.scene_cuts(np.stack(thumbs).astype(np.float32), s.checks)
    if cuts:
        ts = ", ".join(f"{c / s.fps:.1f} s" for c in cuts[:5])
        raise InputError(f"{name} has a scene cut (at {ts}). Use one continuous shot: trim the clip to a "
                         "single take.")
    report("checking faces in sampled frames", 0.7)
    h, counts, yaws = checks.check_faces(samples, s.checks, name)
    return info, wav, checks.CheckReport(T, h, counts, yaws, cuts)


def _sub(progress: Progress | None, a: float, b: float) -> Progress | None:
    """Progress of a part of the run mapped onto [a, b] of the whole."""
    if progress is None:
        return None
    return lambda msg, f: progress(msg, a + (b - a) * f)


def _decode_crops(video: Path, crop, S: int, fps: float, T: int, dst: Path, report: Progress,
                  writer=None) -> np.ndarray:
    """Decode a video (cropping when `crop` is given) into a raw [T,S,S,3] array on disk, as fast as the
    decoder goes (slow stages read it afterwards and never stall the decoder); optionally encode too."""
    from emotalk import media

    arr = np.lib.format.open_memmap(dst, mode="w+", dtype=np.uint8, shape=(T, S, S, 3))
    n = 0
    for i, f in enumerate(media.iter_frames(video, fps=fps, max_frames=T)):
        arr[i] = crop.apply(f, S) if crop is not None else f
        if writer is not None:
            writer.write(arr[i])
        n += 1
        if i % 25 == 0:
            report(f"decoding frame {i}/{T}", i / T)
    if n != T:
        raise MediaError(f"{video.name} decoded to {n} frames now but {T} before; the file seems damaged. "
                         "Re-encode it and try again.")
    return arr


def prepare(clip: str | os.PathLike, work: str | os.PathLike,
            settings: PreprocessSettings = PreprocessSettings(), progress: Progress | None = None) -> None:
    """Stages 1-4 into the work folder: early checks, tracking, crop + head pose, AV sync; frames.mp4,
    audio.wav and the tracking state. Everything that can refuse a clip happens here, early."""
    from emotalk import media
    from emotalk.avsync import offset as avsync
    from emotalk.dataset.stages.crop import choose_crop
    from emotalk.face import tracking

    s = settings
    clip, work = Path(clip), Path(work)
    if s.size % 2 or s.size < 32:
        raise InputError(f"size must be an even number of pixels >= 32, got {s.size}.")
    if not clip.is_file():
        raise MediaError(f"{clip} does not exist. Give the path of a video file.")
    st = _Stages(progress, ("check", "track", "pose", "frames"), (0.2, 0.5, 0.1, 0.2))
    S, fps = s.size, s.fps

    rep = st.begin("check", "checking the clip")
    info, wav, check = _check_clip(clip, s, rep)

    rep = st.begin("track", "tracking the face")
    raw = tracking.track_video(media.iter_frames(clip, fps=fps), n_frames=check.n_frames, fps=fps,
                               settings=s.tracker, progress=rep)
    T = len(raw.found)
    runs = tracking.lost_runs(raw.found)
    lost = int((~raw.found).sum())
    longest = max((b - a for a, b in runs), default=0)
    if lost > s.max_lost_fraction * T:
        raise InputError(f"The face is lost in {lost} of {T} frames of {clip.name} "
                         f"({100 * lost / T:.0f}%, limit {100 * s.max_lost_fraction:.0f}%). Use a clip where "
                         "the face stays visible and turned to the camera.")
    if longest > s.max_gap_seconds * fps:
        a, b = max(runs, key=lambda r: r[1] - r[0])
        raise InputError(f"The face is lost for {(b - a) / fps:.1f} s in a row in {clip.name} "
                         f"(from {a / fps:.1f} s). Trim that part away or use another clip.")
    lmk_src = tracking.fill_gaps(raw.lmk, raw.found)
    bs = tracking.fill_gaps(raw.blendshapes, raw.found)

    rep = st.begin("pose", "fitting camera and head pose")
    crop = choose_crop(lmk_src, raw.found, raw.width, raw.height, s.crop)
    lmk_crop = crop.to_crop(lmk_src, S)  # [T,478,3]
    poses = tracking.fit_head_poses(lmk_crop, S, s.pose, progress=rep)

    mouth = avsync.mouth_opening(lmk_src)
    sync = avsync.estimate_offset(mouth, avsync.speech_envelope(wav, T, SR, fps), s.av_max_lag)
    confident = sync.confidence >= s.av_min_confidence
    shift = sync.offset_frames if confident else 0
    av_warn = None
    if not confident:
        av_warn = (f"AV offset uncertain (best {sync.offset_frames:+d} frames, "
                   f"confidence {sync.confidence:.1f} < {s.av_min_confidence}); audio left unshifted.")
    elif abs(sync.offset_frames) > s.av_warn_frames:
        av_warn = (f"audio was {sync.offset_frames:+d} frames out of sync with the video "
                   f"({1000 * sync.offset_frames / fps:+.0f} ms); corrected.")
    if av_warn:
        warnings.warn(f"{clip.name}: {av_warn}", stacklevel=2)

    rep = st.begin("frames", "cropping frames")
    work.mkdir(parents=True, exist_ok=True)
    media.write_wav(work / "audio.wav", avsync.shift_audio(wav, shift, int(round(T * SR / fps)), SR, fps), SR)
    with media.VideoWriter(work / "frames.mp4", fps=fps, crf=s.frames_crf) as writer:
        _decode_crops(clip, crop, S, fps, T, work / "crops.npy", rep, writer)
    np.savez(work / "state.npz", lmk_crop=lmk_crop, found=raw.found, blendshapes=bs,
             blendshape_names=np.array(raw.blendshape_names), K=poses.K, world_to_cam=poses.world_to_cam,
             head_template=poses.template, lmk3d=poses.lmk3d, mouth_open=mouth.astype(np.float32))
    q = poses.quality
    state = {
        "clip": str(clip.resolve()), "T": T, "size": S, "fps": fps,
        "crop": {"x0": crop.x0, "y0": crop.y0, "side": crop.side, "units": "source px"},
        "source": {"path": str(clip.resolve()), "name": clip.name, "sha256": _sha256(clip),
                   "width": raw.width, "height": raw.height, "fps": info.fps, "duration": info.duration},
        "audio": {"sample_rate": SR, "av_offset_frames": sync.offset_frames,
                  "av_offset_ms": round(1000 * sync.offset_frames / fps, 1),
                  "av_confidence": round(sync.confidence, 2), "av_peak_corr": round(sync.peak_corr, 3),
                  "av_corr_by_lag": [round(c, 3) for c in sync.corr],
                  "shift_applied_frames": shift, "warning": av_warn},
        "quality": {
            "frames_lost": lost, "lost_fraction": round(lost / T, 4), "longest_gap_frames": longest,
            "face_height_px": round(check.face_height_px, 1),
            "reproj_err_px_at512": round(q["reproj_err_px_at512"], 3),
            "reproj_err_raw_px_at512": round(q["reproj_err_raw_px_at512"], 3),
            "reproj_err_p95_px_at512": round(q["reproj_err_p95_px_at512"], 3),
            "reproj_err_px": round(q["reproj_err_px"], 3),
            "jitter_deg": round(q["jitter_deg"], 3), "jitter_raw_deg": round(q["jitter_raw_deg"], 3),
            "focal_px": round(q["focal_px"], 2), "fov_deg": round(q["fov_deg"], 2),
            "focal_search_err_px_at512": q["focal_search"],
            "yaw_deg_p5_p95": [round(v, 1) for v in q["yaw_deg_range"]],
        },
        "checks": dataclasses.asdict(check),
        "settings": dataclasses.asdict(s),
        "timings_s": st.end(),
    }
    (work / "state.json").write_text(json.dumps(state, indent=1))


def parse(work: str | os.PathLike, settings: PreprocessSettings = PreprocessSettings(),
          progress: Progress | None = None, frames: np.ndarray | None = None,
          device: str | None = None, workers: int = 1) -> None:
    """Stage 5: face parsing of the work folder's crops -> parsing.npz. `frames` [T,S,S,3] may be given
    (decoded elsewhere, e.g. on a GPU host without ffmpeg); otherwise crops.npy or frames.mp4 is read.
    `workers` > 1 cleans labels in that many processes."""
    import torch

    from emotalk.dataset.stages.store import LabelWriter
    from emotalk.face import parsing as fparse

    work = Path(work)
    state = json.loads((work / "state.json").read_text())
    T, S = state["T"], state["size"]
    st = _Stages(progress, ("parse",), (1.0,))
    rep = st.begin("parse", "parsing faces")
    if frames is None:
        if (work / "crops.npy").is_file():
            frames = np.load(work / "crops.npy", mmap_mode="r")
        else:
            frames = _decode_crops(work / "frames.mp4", None, S, state["fps"], T, work / "crops.npy", rep)
    if len(frames) != T or frames.shape[1:] != (S, S, 3):
        raise DatasetError(f"parse: got frames {frames.shape}, expected ({T}, {S}, {S}, 3).")
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    parser = fparse.FaceParser(settings.parsing, device=dev)
    lw = LabelWriter(work / "parsing.tmp.npz")
    clean = partial(fparse.clean_labels, settings=settings.parsing)
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    pending: list[np.ndarray] = []

    def drain(n_done: int) -> None:
        done = pool.map(clean, pending, chunksize=8) if pool else map(clean, pending)
        for lab in done:
            lw.write(lab)
        pending.clear()
        rep(f"parsing frame {n_done}/{T}", n_done / T)

    try:
        for i, lab in enumerate(parser.stream(frames[j] for j in range(T))):
            pending.append(lab)
            if len(pending) >= (16 * workers if pool else 10):
                drain(i + 1)
        drain(T)
    finally:
        if pool:
            pool.shutdown()
    lw.close()
    os.replace(work / "parsing.tmp.npz", work / "parsing.npz")
    state["timings_s"].update(st.end() | {"parse_device": dev})
    state["timings_s"].pop("total", None)
    (work / "state.json").write_text(json.dumps(state, indent=1))


def finish(work: str | os.PathLike, out_dir: str | os.PathLike,
           settings: PreprocessSettings = PreprocessSettings(),
           progress: Progress | None = None) -> IdentityDataset:
    """Stages 6-8: background plate, body frames, tracks.npz and meta.json; the work folder then becomes
    out_dir (renamed into place, replacing an older dataset there)."""
    import cv2

    from emotalk import media
    from emotalk.dataset.stages import plate
    from emotalk.dataset.stages.crop import Crop
    from emotalk.dataset.stages.store import read_labels
    from emotalk.face import tracking

    s = settings
    work, out_dir = Path(work), Path(out_dir)
    state = json.loads((work / "state.json").read_text())
    T, S, fps = state["T"], state["size"], state["fps"]
    st = _Stages(progress, ("plate", "body", "write"), (0.3, 0.6, 0.1))
    rep = st.begin("plate", "building the background plate")
    if (work / "crops.npy").is_file():
        crops = np.load(work / "crops.npy", mmap_mode="r")
    else:
        c = state["crop"]
        crops = _decode_crops(Path(state["clip"]), Crop(c["x0"], c["y0"], c["side"]), S, fps, T,
                              work / "crops.npy", rep)
    labels_path = work / "parsing.npz"
    plate_idx = np.linspace(0, T - 1, min(T, s.plate.max_frames)).round().astype(int)
    bg, inpainted = plate.background_plate(np.asarray(crops[plate_idx]), read_labels(labels_path, plate_idx),
                                           s.plate)

    rep = st.begin("body", "making head-removed body frames")
    sheet_idx = [int(i) for i in np.linspace(0, T - 1, 8).round()]
    body_sheet: dict[int, np.ndarray] = {}
    flicker: list[float] = []  # per frame pair: changed labels / person pixels (temporal stability)
    prev_lab: np.ndarray | None = None
    with media.VideoWriter(work / "body.mp4", fps=fps, crf=s.body_crf) as bw:
        for i0 in range(0, T, 25):
            labs = read_labels(labels_path, np.arange(i0, min(T, i0 + 25)))
            for lab in labs:
                if prev_lab is not None:
                    person = (lab != 0) | (prev_lab != 0)
                    flicker.append(float((lab != prev_lab)[person].mean()) if person.any() else 0.0)
                prev_lab = lab
            rep(f"body frame {i0}/{T}", i0 / T)
            for k, lab in enumerate(labs):
                b = plate.body_frame(crops[i0 + k], lab, bg, s.plate)
                bw.write(b)
                if i0 + k in sheet_idx:
                    body_sheet[i0 + k] = b

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
    }
    times = dict(state["timings_s"])
    times.update(st.end())
    times["total"] = round(sum(v for v in times.values() if isinstance(v, (int, float))), 2)
    meta["timings_s"] = times
    if s.debug_dir:
        sheet_labels = dict(zip(sheet_idx, read_labels(labels_path, sheet_idx)))
        _write_sheet(Path(s.debug_dir) / f"{out_dir.name}_parsing.png", sheet_idx,
                     {i: np.array(crops[i]) for i in sheet_idx}, sheet_labels, body_sheet, bg)
    del crops
    for f in ("crops.npy", "state.npz", "state.json"):
        (work / f).unlink(missing_ok=True)
    meta["bytes"] = {p.name: p.stat().st_size for p in work.iterdir()}
    (work / "meta.json").write_text(json.dumps(meta, indent=1))
    # swap into place
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        os.replace(out_dir, old)
    os.replace(work, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return load_dataset(out_dir)


def preprocess(clip: str | os.PathLike, out_dir: str | os.PathLike,
               settings: PreprocessSettings = PreprocessSettings(),
               progress: Progress | None = None) -> IdentityDataset:
    """Turn a talking-head clip into an identity dataset folder at out_dir (replaced atomically).

    prepare -> parse -> finish in a temporary sibling folder of out_dir; on any error it is removed.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        prepare(clip, work, settings, _sub(progress, 0.0, 0.25))
        parse(work, settings, _sub(progress, 0.25, 0.85))
        return finish(work, out_dir, settings, _sub(progress, 0.85, 1.0))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_sheet(path: Path, idx: list[int], frames: dict, labels: dict, body: dict, bg: np.ndarray) -> None:
    """Debug contact sheet: parsing overlays of sampled frames, their body frames, and the plate."""
    import cv2

    from emotalk.face.parsing import contact_sheet, overlay

    tiles = [overlay(frames[i], labels[i]) for i in idx if i in labels and i in frames]
    tiles += [body[i] for i in idx if i in body][:3]
    tiles.append(bg)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), contact_sheet(tiles, cols=4)[..., ::-1])
