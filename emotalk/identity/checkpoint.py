"""Identity checkpoint: one folder that holds everything needed to render a person.

    identity.json      name, format version, source clip + sha256, settings, metrics, provenance, shapes
    model.safetensors  Gaussians, fields and encoders (means fp32, the rest fp16), plus the body track's
                       head poses ("track.world_to_cam" [L,4,4]) and upper-face codes ("track.upper" [L,U])
    body.mp4           the body track: L head-removed body frames, looped when rendering
    thumbnail.png      a render, for pickers
    phone_lips.json    optional: this person's phone targets, rest pose and range (emotalk.lips.own_phones)

Never pickle: tensors go through safetensors, the rest is JSON. Loading checks the version and shapes.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from emotalk.errors import DatasetError
from emotalk.folders import read_folder_json, sha256_file, swap_folder
from emotalk.gaussians.model import BRANCHES, TalkingGaussians
from emotalk.media import resize_frames

FORMAT = "emotalk-identity"
FORMAT_VERSION = 1
BODY_SECONDS = 10.0  # longest body loop kept in a checkpoint
FILES = ("identity.json", "model.safetensors", "body.mp4")


@dataclass
class Identity:
    """A loaded identity, ready to render."""

    root: Path
    meta: dict  # identity.json
    model: TalkingGaussians
    K: np.ndarray  # [3,3] intrinsics at `size`
    size: int  # render side in px
    fps: float
    track_w2c: np.ndarray  # [L,4,4] head poses of the body track
    track_upper: np.ndarray  # [L,U] upper-face codes of the body track
    upper_names: list[str]  # names of the upper-face channels
    body_path: Path  # body.mp4

    @property
    def name(self) -> str:
        return str(self.meta.get("name", self.root.name))

    def body_frames(self, size: int | None = None) -> np.ndarray:
        """[L,S,S,3] uint8 body frames of the loop (S = size, default the identity's), read-only: decoded
        once per file and size and kept (decoding obama's 250 frames took 0.3-0.8 s, paid by every
        request before its first frame)."""
        st = os.stat(self.body_path)
        return _body_loop(str(self.body_path), st.st_mtime_ns, st.st_size, self.size, int(size or self.size))


@lru_cache(maxsize=4)
def _body_loop(path: str, mtime_ns: int, nbytes: int, native: int, size: int) -> np.ndarray:
    """A body loop decoded (and resized); the file's time and size are part of the key, so a replaced
    loop is read again."""
    frames = read_video(Path(path), native)
    frames = frames if size == native else resize_frames(frames, size)
    frames.flags.writeable = False  # shared between requests
    return frames


def write_video_file(path: Path, frames: np.ndarray, fps: float) -> None:
    """Body loop to mp4: H.264 through emotalk.media when ffmpeg is there, else OpenCV's MPEG-4."""
    try:
        import imageio_ffmpeg  # noqa: F401  (emotalk.media's ffmpeg)

        from emotalk import media

        media.write_video(path, frames, fps=fps, crf=20)
        return
    except ImportError:
        pass
    import cv2

    tmp = path.with_name(path.stem + f".tmp{os.getpid()}.mp4")
    w = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames.shape[2], frames.shape[1]))
    for f in frames:
        w.write(np.ascontiguousarray(f[..., ::-1]))
    w.release()
    os.replace(tmp, path)


def read_video(path: Path, size: int) -> np.ndarray:
    """All frames of a short video as [L,size,size,3] uint8 RGB (OpenCV: works without ffmpeg)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        if f.shape[0] != size or f.shape[1] != size:
            f = cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
        out.append(f[..., ::-1])
    cap.release()
    if not out:
        raise DatasetError(f"{path} has no readable frames: the identity is damaged. Train it again.")
    return np.ascontiguousarray(np.stack(out))


def choose_loop(w2c: np.ndarray, idx: np.ndarray, length: int) -> np.ndarray:
    """A contiguous run of `length` frames of idx whose ends are the calmest (slow head motion there),
    so the back-and-forth replay turns where the head is nearly still."""
    if len(idx) <= length:
        return idx
    t = w2c[idx, :3, 3]
    speed = np.r_[0, np.linalg.norm(np.diff(t, axis=0), axis=1)]
    speed = np.convolve(speed, np.ones(5) / 5, mode="same")
    starts = np.arange(0, len(idx) - length + 1)
    score = speed[starts] + speed[starts + length - 1]
    s0 = int(starts[np.argmin(score)])
    return idx[s0:s0 + length]


def _state_tensors(model: TalkingGaussians) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().contiguous()
        keep32 = k.endswith(".means") or k.endswith(".lo") or k.endswith(".hi")
        out[k] = v if keep32 or not v.is_floating_point() else v.half()
    return out


def source_record(source_clip: str | os.PathLike | None, src_meta: dict) -> tuple[str | None, str | None]:
    """(clip file name, sha256) for identity.json: never a folder of the machine that trained it (the
    identity may be shared). `source_clip` (a path or a name) wins; else the dataset's source record."""
    path = Path(source_clip) if source_clip else None
    sha = sha256_file(path) if path is not None and path.is_file() else None
    raw = source_clip or src_meta.get("name") or src_meta.get("path") or src_meta.get("clip")
    name = Path(str(raw).replace("\\", "/")).name if raw else None
    if sha is None and (not source_clip or name == src_meta.get("name")):
        sha = src_meta.get("sha256")  # the dataset's own record of the same clip
    return name or None, sha


def save_identity(path: str | os.PathLike, model: TalkingGaussians, ds, settings, summary: dict,
                  name: str | None = None, source_clip: str | None = None, size: int | None = None,
                  thumbnail: np.ndarray | None = None) -> Path:
    """Write an identity folder atomically (a temp folder renamed into place)."""
    from safetensors.torch import save_file

    root = Path(path)
    S = int(size or getattr(settings, "size", None) or ds.size)
    tmp = root.with_name(root.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    L = int(min(len(ds.train_idx), round(BODY_SECONDS * ds.fps)))
    loop = choose_loop(ds.world_to_cam, np.asarray(ds.train_idx), L)
    body = ds.body(loop)
    body = resize_frames(body, S)
    write_video_file(tmp / "body.mp4", body, ds.fps)
    tensors = _state_tensors(model)
    tensors["track.world_to_cam"] = torch.as_tensor(ds.world_to_cam[loop], dtype=torch.float32)
    tensors["track.upper"] = torch.as_tensor(ds.upper_face[loop], dtype=torch.float32)
    save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": FORMAT})
    K = ds.K.astype(np.float64).copy()
    K[:2] *= S / ds.size
    src_meta = ds.meta.get("source") if isinstance(ds.meta.get("source"), dict) else {}
    clip, sha = source_record(source_clip, src_meta)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": name or root.name,
        "source": {"clip": clip, "name": src_meta.get("name") or clip, "sha256": sha,
                   "dataset": Path(ds.root).name},
        # the model's own shape settings: it may have grown an emotion field after training
        "settings": {**asdict(settings), "model": asdict(model.settings)},
        "metrics": summary,
        "provenance": {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "torch": torch.__version__, "method": "EmoTalkingGaussian-style 3DGS talking head"},
        "model": {"n_face": model.n_gaussians("face"), "n_mouth": model.n_gaussians("mouth"),
                  "audio_shape": list(model.audio_shape), "audio_kind": settings.audio_kind,
                  "upper_dim": model.upper_dim, "size": S, "fps": float(ds.fps), "K": K.tolist(),
                  "upper_names": list(getattr(ds, "upper_face_names", [])),
                  "track_frames": int(len(loop))},
    }
    (tmp / "identity.json").write_text(json.dumps(meta, indent=1))
    if thumbnail is not None:
        import cv2

        cv2.imwrite(str(tmp / "thumbnail.png"), np.ascontiguousarray(thumbnail[..., ::-1]))
    swap_folder(tmp, root)
    return root


def save_identity_variant(src: str | os.PathLike, out: str | os.PathLike, model: TalkingGaussians,
                          metrics: dict, weights: bool = True) -> Path:
    """Write `out` as a copy of the identity folder `src` with `model`'s settings (and, with `weights`, its
    weights; the body track is kept) and identity.json's metrics updated by `metrics` (top-level keys
    replaced); atomically, and it must load. For scripts that change a trained identity (its emotion
    stage, its opening gain) without training it again."""
    from safetensors.torch import load_file, save_file

    src, out = Path(src), Path(out)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, tmp)
    if weights:
        old = load_file(str(src / "model.safetensors"))
        tensors = {**_state_tensors(model), **{k: v for k, v in old.items() if k.startswith("track.")}}
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": FORMAT})
    meta = json.loads((src / "identity.json").read_text())
    meta["settings"]["model"] = asdict(model.settings)
    meta["metrics"].update(metrics)
    (tmp / "identity.json").write_text(json.dumps(meta, indent=1))
    swap_folder(tmp, out)
    load_identity(out)  # it loads
    return out


def load_identity(path: str | os.PathLike, device: str = "cpu") -> Identity:
    """Open an identity folder; DatasetError says what is wrong (missing file, version, shapes)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from emotalk.training.settings import settings_from_dict

    root = Path(path)
    meta = read_folder_json(root, FILES, "identity.json", "identity",
                            f"python -m emotalk train DATASET --out {root}", "Train the identity again.")
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{root} is format {meta.get('format')!r} version {meta.get('format_version')}; "
                           f"this EmoTalk reads {FORMAT!r} version {FORMAT_VERSION}. "
                           "Train the identity again.")
    try:
        t = load_file(str(root / "model.safetensors"))
    except (SafetensorError, OSError, ValueError) as e:
        raise DatasetError(f"{root / 'model.safetensors'} is not a readable safetensors model file ({e}). "
                           "Replace it with the file written by training, or train again.") from e
    m = meta["model"]
    settings = settings_from_dict(meta["settings"])
    model = TalkingGaussians(settings.model, int(m["n_face"]), int(m["n_mouth"]), tuple(m["audio_shape"]),
                             int(m["upper_dim"]), torch.zeros(3), torch.ones(3))
    state = {k: v.float() if v.is_floating_point() else v for k, v in t.items() if not k.startswith("track.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise DatasetError(f"{root / 'model.safetensors'} does not match identity.json "
                           f"({first[1].strip() if len(first) > 1 else first[0]}). The files come from "
                           "different trainings or are damaged; train again.") from e
    for k in ("track.world_to_cam", "track.upper"):
        if k not in t:
            raise DatasetError(f"{root / 'model.safetensors'} lacks {k}: the identity is damaged. "
                               "Train again.")
    w2c, upper = t["track.world_to_cam"].float().numpy(), t["track.upper"].float().numpy()
    L = int(m["track_frames"])
    if w2c.shape != (L, 4, 4) or upper.shape != (L, int(m["upper_dim"])):
        raise DatasetError(f"{root}: body track shapes {w2c.shape} / {upper.shape} do not match "
                           f"{L} frames and {m['upper_dim']} upper-face channels. Train again.")
    model.to(device).eval()
    for b in BRANCHES:
        model.branches[b].requires_grad_(False)
    return Identity(root=root, meta=meta, model=model, K=np.asarray(m["K"], np.float32), size=int(m["size"]),
                    fps=float(m["fps"]), track_w2c=w2c, track_upper=upper,
                    upper_names=list(m.get("upper_names", [])), body_path=root / "body.mp4")


def identity_size_mb(path: str | os.PathLike) -> float:
    """Size of an identity folder in MB."""
    return sum(p.stat().st_size for p in Path(path).iterdir() if p.is_file()) / 1e6
