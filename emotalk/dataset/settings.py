"""The settings that shape an identity dataset (saved in its meta.json)."""

from __future__ import annotations

from dataclasses import dataclass, field

from emotalk.dataset.stages.checks import CheckSettings
from emotalk.dataset.stages.crop import CropSettings
from emotalk.dataset.stages.plate import PlateSettings
from emotalk.face.head_pose import PoseSettings
from emotalk.face.parsing import ParsingSettings
from emotalk.face.tracking import TrackerSettings


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
    av_min_confidence: float = 0.15  # estimate_sync: a clear peak this far above the median is applied
    av_min_confidence_plain: float = 3.5  # the same for the plain estimator (used where librosa is missing)
    track_workers: int = 0  # MediaPipe tracking processes (0: one per core but one; 1: in this process)
    cpu_workers: int = 0  # threads for per-frame work (crops, plate, body frames); 0: os.cpu_count()
    frame_store_mb: float = 8000.0  # the decoded clip kept for tracking and cropping; larger clips are scaled
    av_warn_frames: int = 2  # |offset| above this is warned about
    debug_dir: str | None = None  # where to write the parsing contact sheet (None: no sheet)
    checks: CheckSettings = field(default_factory=CheckSettings)  # early refusal of unusable clips
    crop: CropSettings = field(default_factory=CropSettings)  # where the square crop goes
    tracker: TrackerSettings = field(default_factory=TrackerSettings)  # MediaPipe face tracking
    pose: PoseSettings = field(default_factory=PoseSettings)  # camera and head-pose fit
    parsing: ParsingSettings = field(default_factory=ParsingSettings)  # face parsing and label cleaning
    plate: PlateSettings = field(default_factory=PlateSettings)  # background plate and body frames
