"""Face tracking: MediaPipe FaceLandmarker per frame (478 landmarks, 52 blendshapes), and lost frames.

MediaPipe gives landmarks with x, y normalised to the image and z in x's scale; we return them in
source pixels. Its own head pose is not used: `emotalk.face.head_pose` fits our camera to the landmarks.
Landmark indices and measures live in `emotalk.face.landmarks`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from emotalk.errors import MediaError

Progress = Callable[[str, float], None]

# FaceLandmarker's 52 blendshapes, in the order it returns them (caches store bare arrays)
BLENDSHAPE_NAMES = ("_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
                    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
                    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft",
                    "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
                    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward",
                    "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
                    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
                    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
                    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
                    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
                    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight")
UPPER_FACE_NAMES = ("eyeBlinkLeft", "eyeBlinkRight", "browDownLeft", "browDownRight", "browInnerUp",
                    "browOuterUpLeft", "browOuterUpRight")


@dataclass
class TrackerSettings:
    """MediaPipe FaceLandmarker options."""

    min_detection_confidence: float = 0.5  # face detector threshold
    min_presence_confidence: float = 0.5  # landmark model's face-present threshold
    min_tracking_confidence: float = 0.5  # below this the detector runs again


@dataclass
class RawTrack:
    """MediaPipe output for a clip, in source-image pixels."""

    lmk: np.ndarray  # [T,478,3] float32: x, y in source px; z in px (x's scale), smaller = nearer
    found: np.ndarray  # [T] bool: a face was found in that frame
    blendshapes: np.ndarray  # [T,52] float32 (zeros where not found)
    blendshape_names: list[str]
    width: int  # source frame width, px
    height: int  # source frame height, px


def _landmarker(mode: str, num_faces: int, settings: TrackerSettings):
    import mediapipe as mp  # noqa: F401  (heavy import kept local)
    from mediapipe.tasks.python import vision
    from mediapipe.tasks.python.core.base_options import BaseOptions

    from emotalk.assets import fetch

    opts = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(fetch("face_landmarker.task"))),
        running_mode=getattr(vision.RunningMode, mode),
        num_faces=num_faces,
        min_face_detection_confidence=settings.min_detection_confidence,
        min_face_presence_confidence=settings.min_presence_confidence,
        min_tracking_confidence=settings.min_tracking_confidence,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=False,
    )
    return vision.FaceLandmarker.create_from_options(opts)


def _mp_image(frame: np.ndarray):
    import mediapipe as mp

    return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))


def _faces_px(res, w: int, h: int) -> list[np.ndarray]:
    """Each detected face's landmarks [478,3] in px."""
    out = []
    for face in res.face_landmarks:
        a = np.array([(p.x, p.y, p.z) for p in face], np.float32)
        a[:, 0] *= w
        a[:, 1] *= h
        a[:, 2] *= w
        out.append(a)
    return out


def detect_faces(frames: Iterable[np.ndarray], max_faces: int = 3,
                 settings: TrackerSettings = TrackerSettings()) -> list[list[np.ndarray]]:
    """Independent per-image detection (for sampled frames): per frame, a list of [478,3] px arrays."""
    lm = _landmarker("IMAGE", max_faces, settings)
    try:
        out = []
        for f in frames:
            out.append(_faces_px(lm.detect(_mp_image(f)), f.shape[1], f.shape[0]))
        return out
    finally:
        lm.close()


class _Collector:
    """Per-frame landmarker results -> the arrays of a RawTrack."""

    def __init__(self):
        self.lmks: list[np.ndarray] = []
        self.found: list[bool] = []
        self.bss: list[np.ndarray | None] = []
        self.names: list[str] = []
        self.w = self.h = 0

    def add(self, res, w: int, h: int) -> None:
        self.w, self.h = w, h
        faces = _faces_px(res, w, h)
        if faces:
            self.lmks.append(faces[0])
            self.found.append(True)
            cats = res.face_blendshapes[0]
            if not self.names:
                self.names = [c.category_name for c in cats]
            self.bss.append(np.array([c.score for c in cats], np.float32))
        else:
            self.lmks.append(np.zeros((478, 3), np.float32))
            self.found.append(False)
            self.bss.append(None)

    def result(self) -> RawTrack:
        if not self.lmks:
            raise MediaError("No frames could be read from the clip.")
        nb = len(self.names) or 52
        bs = np.stack([b if b is not None else np.zeros(nb, np.float32) for b in self.bss])
        return RawTrack(np.stack(self.lmks), np.array(self.found), bs, self.names, self.w, self.h)


def track_video(frames: Iterable[np.ndarray], n_frames: int | None = None, fps: float = 25.0,
                settings: TrackerSettings = TrackerSettings(), progress: Progress | None = None) -> RawTrack:
    """Run the landmarker in video mode over `frames` (RGB [H,W,3]); frames with no face are marked lost."""
    lm = _landmarker("VIDEO", 1, settings)
    out = _Collector()
    try:
        for i, f in enumerate(frames):
            out.add(lm.detect_for_video(_mp_image(f), int(round(i * 1000.0 / fps))), f.shape[1], f.shape[0])
            if progress and n_frames and i % 25 == 0:
                progress(f"tracking frame {i}/{n_frames}", min(1.0, i / n_frames))
    finally:
        lm.close()
    return out.result()


# ----------------------------------------------------------------------------------------------
# parallel tracking of frames stored in a .npy file: one landmarker per worker process, each on a
# contiguous range (video-mode tracking and smoothing work within it; a few warm-up frames before the
# range start the tracker where the previous range left off)

_REPORTS = None  # worker processes: queue of (range start, frames done) progress reports
_STOP = None  # worker processes: event set by the parent when the work is abandoned (Stop, an error)


def _init_worker(reports, stop) -> None:
    global _REPORTS, _STOP
    _REPORTS, _STOP = reports, stop
    import mediapipe  # noqa: F401  (import while the parent still decodes)


def _track_range(path: str, start: int, stop: int, warm: int, fps: float,
                 settings: TrackerSettings) -> RawTrack:
    """Frames [start, stop) of the [T,H,W,3] uint8 .npy at `path`, after `warm` frames before start."""
    frames = np.load(path, mmap_mode="r")
    lm = _landmarker("VIDEO", 1, settings)
    out = _Collector()
    try:
        for i in range(start - warm, stop):
            if _STOP is not None and _STOP.is_set():
                break  # abandoned: the parent is no longer waiting for this range
            f = np.ascontiguousarray(frames[i])
            res = lm.detect_for_video(_mp_image(f), int(round(i * 1000.0 / fps)))
            if i >= start:
                out.add(res, f.shape[1], f.shape[0])
                if _REPORTS is not None and (i - start) % 25 == 24:
                    _REPORTS.put((start, 25))
    finally:
        lm.close()
    return out.result()


def default_workers() -> int:
    """Tracking processes for this machine: one per core but one (decoding, the parent), at least 1."""
    import os

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, n - 1)


class ParallelTracker:
    """A pool of `workers` spawned processes, each running its own FaceLandmarker on one contiguous range
    of stored frames; with workers=1 tracking runs in this process. Start it early (the workers import
    MediaPipe while the caller decodes), then call `track`."""

    def __init__(self, workers: int, settings: TrackerSettings = TrackerSettings(), warm_frames: int = 8,
                 min_range: int = 50):
        self.workers, self.settings = max(1, workers), settings
        self.warm, self.min_range = warm_frames, min_range  # warm-up frames per range; fewest frames a range
        self.pool = self.reports = None
        self.used = 0  # processes the last `track` used (0: none yet)
        if self.workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            ctx = mp.get_context("spawn")
            self.reports, self.stop = ctx.Queue(), ctx.Event()
            self.pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_init_worker,
                                            initargs=(self.reports, self.stop))
            for _ in range(self.workers):  # start every worker now
                self.pool.submit(default_workers)

    def __enter__(self) -> ParallelTracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """End the workers; ranges still being tracked are abandoned within a frame."""
        if self.pool is not None:
            self.stop.set()
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def track(self, path: str, n_frames: int, fps: float = 25.0,
              progress: Progress | None = None) -> RawTrack:
        """Track frames [0, n_frames) of the .npy at `path`; the same RawTrack as `track_video`, in order."""
        from concurrent.futures.process import BrokenProcessPool

        n = min(self.workers, max(1, n_frames // self.min_range)) if self.pool is not None else 1
        self.used = n
        if n == 1:
            frames = np.load(path, mmap_mode="r")
            return track_video((frames[i] for i in range(n_frames)), n_frames, fps, self.settings, progress)
        try:
            return self._track_parallel(path, n_frames, fps, n, progress)
        except BrokenProcessPool as e:  # a worker died (e.g. a script without a __main__ guard)
            import warnings

            warnings.warn(f"parallel face tracking failed ({e}); tracking in this process instead",
                          stacklevel=2)
            self.close()
            self.used = 1
            frames = np.load(path, mmap_mode="r")
            return track_video((frames[i] for i in range(n_frames)), n_frames, fps, self.settings, progress)

    def _track_parallel(self, path: str, n_frames: int, fps: float, n: int,
                        progress: Progress | None) -> RawTrack:
        import queue as queue_mod
        from concurrent.futures import FIRST_EXCEPTION, wait

        bounds = np.linspace(0, n_frames, n + 1).round().astype(int)
        futs = [self.pool.submit(_track_range, path, int(a), int(b), min(self.warm, int(a)), fps,
                                 self.settings) for a, b in zip(bounds[:-1], bounds[1:])]
        done_frames = 0
        pending = set(futs)
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            for f in finished:
                if f.exception() is not None:
                    raise f.exception()
            try:
                while True:
                    done_frames += self.reports.get_nowait()[1]
            except queue_mod.Empty:
                pass
            if progress:
                progress(f"tracking frame {min(done_frames, n_frames)}/{n_frames} ({n} processes)",
                         min(1.0, done_frames / n_frames))
        parts = [f.result() for f in futs]
        names = next((p.blendshape_names for p in parts if p.blendshape_names), [])
        nb = len(names) or 52
        bs = np.concatenate([p.blendshapes if p.blendshapes.shape[1] == nb
                             else np.zeros((len(p.found), nb), np.float32) for p in parts])
        return RawTrack(np.concatenate([p.lmk for p in parts]), np.concatenate([p.found for p in parts]),
                        bs, names, parts[0].width, parts[0].height)


# ----------------------------------------------------------------------------------------------
# gaps


def lost_runs(found: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of frames with no face."""
    runs, start = [], None
    for i, ok in enumerate(found):
        if not ok and start is None:
            start = i
        if ok and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(found)))
    return runs


def fill_gaps(x: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Linear interpolation over lost frames along axis 0 (edges hold the nearest found value)."""
    idx = np.flatnonzero(found)
    if len(idx) == len(found):
        return x
    flat = x.reshape(len(x), -1)
    out = np.empty_like(flat)
    t = np.arange(len(x))
    for j in range(flat.shape[1]):
        out[:, j] = np.interp(t, idx, flat[idx, j])
    return out.reshape(x.shape)
