"""Stages 1-4 of building a dataset: early checks of the whole clip, face tracking, crop and head pose,
AV-sync check and audio shift. Everything that can refuse a clip happens here, before the long stages."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path

import numpy as np

from emotalk.dataset.framestore import DecodedClip, decode_clip
from emotalk.dataset.pool import cpu_workers, ordered_map
from emotalk.dataset.progress import Progress, StageClock
from emotalk.dataset.settings import PreprocessSettings
from emotalk.errors import InputError, MediaError
from emotalk.folders import sha256_file
from emotalk.media import SR


def _check_clip(clip: Path, s: PreprocessSettings, report: Progress):
    """Probe, audio and duration; raises InputError/MediaError before any long work."""
    from emotalk import media

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
    report("checking audio and duration: done", 1.0)
    return info, wav


def _check_frames(clip: Path, dec: DecodedClip, s: PreprocessSettings, report: Progress):
    """Scene cuts and sampled faces of the decoded clip; raises InputError before tracking finishes."""
    import cv2

    from emotalk.dataset.stages import checks

    name, T = clip.name, dec.n_frames
    if T / s.fps < s.min_seconds:
        raise InputError(f"{name} holds only {T / s.fps:.1f} s of video; "
                         f"at least {s.min_seconds:.0f} s needed.")
    cuts = checks.scene_cuts(dec.thumbs, s.checks)
    if cuts:
        ts = ", ".join(f"{c / s.fps:.1f} s" for c in cuts[:5])
        raise InputError(f"{name} has a scene cut (at {ts}). Use one continuous shot: trim the clip to a "
                         "single take.")
    report("checking faces in sampled frames", 0.9)
    samples = dec.samples
    if dec.scale != 1.0:  # face sizes are judged in source px
        w, h = round(samples[0].shape[1] / dec.scale), round(samples[0].shape[0] / dec.scale)
        samples = [cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in samples]
    h, counts, yaws = checks.check_faces(samples, s.checks, name)
    return checks.CheckReport(T, h, counts, yaws, cuts)


def _estimate(mouth: np.ndarray, wav: np.ndarray, s: PreprocessSettings):
    """(estimate with .offset/.confidence/.margin/.clear/..., estimator name, whether it is sure).

    `avsync.lipsync.estimate_sync` (sync model + energy onsets); where librosa, which it needs, is not
    installed (a bare GPU host), the plain envelope cross-correlation of `avsync.offset`, said in meta."""
    import importlib.util

    if importlib.util.find_spec("librosa") is None:
        from types import SimpleNamespace

        from emotalk.avsync import offset

        r = offset.estimate_offset(mouth, offset.speech_envelope(wav, len(mouth), SR, s.fps), s.av_max_lag)
        est = SimpleNamespace(offset=r.offset_frames, confidence=r.confidence, peak_corr=r.peak_corr,
                              margin=0.0, clear=r.confidence >= s.av_min_confidence_plain, signals={},
                              corr=r.corr)
        return est, "avsync.offset.estimate_offset (librosa not installed)", est.clear
    from emotalk.avsync import lipsync

    est = lipsync.estimate_sync(mouth, wav, None, lipsync.SyncSettings(max_lag=s.av_max_lag, fps=s.fps))
    return est, "avsync.lipsync.estimate_sync", est.clear and est.confidence >= s.av_min_confidence


def _av_sync(clip: Path, mouth: np.ndarray, wav: np.ndarray, s: PreprocessSettings):
    """The clip's AV offset, the estimator's name, the shift to apply and a warning."""
    sync, name, confident = _estimate(mouth, wav, s)
    shift = sync.offset if confident else 0
    av_warn = None
    if not confident:
        av_warn = (f"AV offset uncertain (best {sync.offset:+d} frames, confidence {sync.confidence:.2f}, "
                   f"margin {sync.margin:.2f}; {name}); audio left unshifted.")
    elif abs(sync.offset) > s.av_warn_frames:
        av_warn = (f"audio was {sync.offset:+d} frames out of sync with the video "
                   f"({1000 * sync.offset / s.fps:+.0f} ms); corrected.")
    if av_warn:
        warnings.warn(f"{clip.name}: {av_warn}", stacklevel=3)
    return sync, name, shift, av_warn


def _track(clip: Path, dec: DecodedClip, tracker, s: PreprocessSettings, width: int, height: int,
           report: Progress):
    """Tracking of the decoded clip (landmarks in source px) and the refusals of lost faces."""
    from emotalk.face import tracking

    raw = tracker.track(str(dec.path), dec.n_frames, s.fps, report)
    if dec.scale != 1.0:  # landmarks in source px, as everything after expects
        raw.lmk = raw.lmk / np.float32(dec.scale)
        raw.width, raw.height = width, height
    T = len(raw.found)
    runs = tracking.lost_runs(raw.found)
    lost = int((~raw.found).sum())
    longest = max((b - a for a, b in runs), default=0)
    if lost > s.max_lost_fraction * T:
        raise InputError(f"The face is lost in {lost} of {T} frames of {clip.name} "
                         f"({100 * lost / T:.0f}%, limit {100 * s.max_lost_fraction:.0f}%). Use a clip where "
                         "the face stays visible and turned to the camera.")
    if longest > s.max_gap_seconds * s.fps:
        a, b = max(runs, key=lambda r: r[1] - r[0])
        raise InputError(f"The face is lost for {(b - a) / s.fps:.1f} s in a row in {clip.name} "
                         f"(from {a / s.fps:.1f} s). Trim that part away or use another clip.")
    return raw, lost, longest


def _write_frames(dec: DecodedClip, crop, S: int, fps: float, dst: Path, crf: int, report: Progress,
                  workers: int = 1) -> None:
    """The square crop of every stored frame, resized to S, into the H.264 video `dst` (frames.mp4);
    cut and resized by `workers` threads, written in order."""
    from emotalk import media
    from emotalk.dataset.stages.crop import Crop

    c = crop if dec.scale == 1.0 else Crop(int(round(crop.x0 * dec.scale)), int(round(crop.y0 * dec.scale)),
                                           max(2, int(round(crop.side * dec.scale))))
    frames = dec.frames()
    T = len(frames)
    with media.VideoWriter(dst, fps=fps, crf=crf) as writer:
        for i, f in enumerate(ordered_map(lambda j: c.apply(frames[j], S), range(T), workers)):
            writer.write(f)
            if i % 25 == 0:
                report(f"cropping frame {i}/{T}", i / T)


def prepare(clip: str | os.PathLike, work: str | os.PathLike,
            settings: PreprocessSettings = PreprocessSettings(), progress: Progress | None = None) -> None:
    """Stages 1-4 into the work folder: early checks, tracking, crop + head pose, AV sync; frames.mp4,
    audio.wav and the tracking state. Everything that can refuse a clip happens here, early. The clip is
    decoded once, into a temporary frame store that tracking (in parallel processes) and cropping read."""
    from emotalk import media
    from emotalk.avsync import offset as avsync
    from emotalk.dataset.stages.crop import choose_crop
    from emotalk.face import head_pose, landmarks, tracking

    s = settings
    clip, work = Path(clip), Path(work)
    if s.size % 2 or s.size < 32:
        raise InputError(f"size must be an even number of pixels >= 32, got {s.size}.")
    if not clip.is_file():
        raise MediaError(f"{clip} does not exist. Give the path of a video file.")
    st = StageClock(progress, ("check", "decode", "track", "pose", "frames"), (0.02, 0.13, 0.55, 0.1, 0.2))
    S, fps = s.size, s.fps

    rep = st.begin("check", "checking the clip")
    info, wav = _check_clip(clip, s, rep)
    work.mkdir(parents=True, exist_ok=True)
    workers = s.track_workers or tracking.default_workers()
    with tracking.ParallelTracker(workers, s.tracker) as tracker:  # its workers start while the clip decodes
        rep = st.begin("decode", "checking the clip's frames")
        dec = decode_clip(clip, fps, info.duration, info.width, info.height, s.frame_store_mb,
                          s.checks.thumb, s.checks.sample_frames, work, rep)
        try:
            check = _check_frames(clip, dec, s, rep)
            rep = st.begin("track", "tracking the face")
            raw, lost, longest = _track(clip, dec, tracker, s, info.width, info.height, rep)
            tracker.close()
            T = len(raw.found)
            lmk_src = tracking.fill_gaps(raw.lmk, raw.found)
            bs = tracking.fill_gaps(raw.blendshapes, raw.found)

            rep = st.begin("pose", "fitting camera and head pose")
            crop = choose_crop(lmk_src, raw.found, raw.width, raw.height, s.crop)
            lmk_crop = crop.to_crop(lmk_src, S)  # [T,478,3]
            poses = head_pose.fit_head_poses(lmk_crop, S, s.pose, progress=rep)
            mouth = landmarks.mouth_opening(lmk_src)
            sync, estimator, shift, av_warn = _av_sync(clip, mouth, wav, s)

            rep = st.begin("frames", "cropping frames")
            media.write_wav(work / "audio.wav",
                            avsync.shift_audio(wav, shift, int(round(T * SR / fps)), SR, fps), SR)
            _write_frames(dec, crop, S, fps, work / "frames.mp4", s.frames_crf, rep,
                          cpu_workers(s.cpu_workers))
        finally:
            dec.remove()
    np.savez(work / "state.npz", lmk_crop=lmk_crop, found=raw.found, blendshapes=bs,
             blendshape_names=np.array(raw.blendshape_names), K=poses.K, world_to_cam=poses.world_to_cam,
             head_template=poses.template, lmk3d=poses.lmk3d, mouth_open=mouth.astype(np.float32))
    q = poses.quality
    state = {
        "clip": str(clip.resolve()), "T": T, "size": S, "fps": fps,
        "crop": {"x0": crop.x0, "y0": crop.y0, "side": crop.side, "units": "source px"},
        "source": {"path": str(clip.resolve()), "name": clip.name, "sha256": sha256_file(clip),
                   "width": raw.width, "height": raw.height, "fps": info.fps, "duration": info.duration},
        "audio": {"sample_rate": SR, "av_offset_frames": sync.offset,
                  "av_offset_ms": round(1000 * sync.offset / fps, 1),
                  "av_estimator": estimator,
                  "av_confidence": round(sync.confidence, 3), "av_peak_corr": round(sync.peak_corr, 3),
                  "av_margin": round(sync.margin, 3), "av_clear": bool(sync.clear),
                  "av_signals": sync.signals, "av_corr_by_lag": [round(c, 3) for c in sync.corr],
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
        "decode": {"frame_store_scale": round(dec.scale, 4), "track_workers": tracker.used},
        "settings": dataclasses.asdict(s),
        "timings_s": st.end(),
    }
    (work / "state.json").write_text(json.dumps(state, indent=1))
