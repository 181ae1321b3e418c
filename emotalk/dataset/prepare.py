"""Stages 1-4 of building a dataset: early checks of the whole clip, face tracking, crop and head pose,
AV-sync check and audio shift. Everything that can refuse a clip happens here, before the long stages."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path

import numpy as np

from emotalk.dataset.crops import decode_crops
from emotalk.dataset.progress import Progress, StageClock
from emotalk.dataset.settings import PreprocessSettings
from emotalk.errors import InputError, MediaError
from emotalk.folders import sha256_file
from emotalk.media import SR


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


def prepare(clip: str | os.PathLike, work: str | os.PathLike,
            settings: PreprocessSettings = PreprocessSettings(), progress: Progress | None = None) -> None:
    """Stages 1-4 into the work folder: early checks, tracking, crop + head pose, AV sync; frames.mp4,
    audio.wav and the tracking state. Everything that can refuse a clip happens here, early."""
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
    st = StageClock(progress, ("check", "track", "pose", "frames"), (0.2, 0.5, 0.1, 0.2))
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
    poses = head_pose.fit_head_poses(lmk_crop, S, s.pose, progress=rep)

    mouth = landmarks.mouth_opening(lmk_src)
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
        decode_crops(clip, crop, S, fps, T, work / "crops.npy", rep, writer)
    np.savez(work / "state.npz", lmk_crop=lmk_crop, found=raw.found, blendshapes=bs,
             blendshape_names=np.array(raw.blendshape_names), K=poses.K, world_to_cam=poses.world_to_cam,
             head_template=poses.template, lmk3d=poses.lmk3d, mouth_open=mouth.astype(np.float32))
    q = poses.quality
    state = {
        "clip": str(clip.resolve()), "T": T, "size": S, "fps": fps,
        "crop": {"x0": crop.x0, "y0": crop.y0, "side": crop.side, "units": "source px"},
        "source": {"path": str(clip.resolve()), "name": clip.name, "sha256": sha256_file(clip),
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
