"""Rendering requests into mp4s, whole (`synthesize`) or played while they are made (`synthesize_stream`):
the two share every step (`_start`, `_speech`, `_clip` with `_render_inputs`, `_finish`), so a stream's
complete mp4 has the same frames as its segments. Re-exported by `emotalk.pipeline`, the API.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from emotalk import media
from emotalk.errors import InputError
from emotalk.identity.store import load_cached, resolve_identity
from emotalk.render.camera import orbit
from emotalk.render.label import label_frames
from emotalk.requests import (
    MAX_SPEECH_S,
    MAX_TEXT_CHARS,
    SIZE_CPU,
    RenderRequest,
    RenderResult,
    device_info,
    join_notices,
    speech_seconds,
    speech_too_long,
    text_too_long,
    validate_request,
)

Progress = Callable[[str, float], None]  # (stage text, fraction 0..1)


def new_workdir(prefix: str = "emotalk-") -> Path:
    """A fresh private folder for one request's files (no fixed paths, no shared state)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def _tts(text: str, voice: str | None, arousal: float, engine: str | None, progress: Progress | None = None):
    """(TTSResult, notice): the notice says why another engine spoke, only when one did."""
    from emotalk.speech import tts

    if text and len(text) > MAX_TEXT_CHARS:
        raise text_too_long(len(text))
    settings = tts.settings_for(engine, voice)
    res = tts.text_to_speech(text, settings, arousal=arousal, progress=progress)
    chosen = settings.engines[0]
    notice = None
    if res.engine != chosen:
        notice = (f"The chosen voice ({tts.ENGINE_LABELS[chosen]}) could not speak "
                  f"({res.fallback_reason}); {res.engine} ({res.voice}) spoke instead.")
    return res, notice


SENTENCE_PAUSE_S = 0.25  # silence after each spoken sentence of a stream (Piper's own pause)
FIRST_SEGMENT_S = 0.4  # a stream's first segment is this short, so it plays sooner


def _emotion_per_frame(r: RenderRequest, n: int, fps: float, start_s: float = 0.0):
    """(valence, arousal, gain) [n,3] of frames starting `start_s` into the clip (gain: the intensity)."""
    import numpy as np

    from emotalk.emotion import EmotionTrack

    if r.emotion_track:
        va = EmotionTrack.from_keyframes(list(r.emotion_track)).at(start_s + np.arange(n) / fps)
    else:
        va = EmotionTrack.constant(r.valence, r.arousal).at(np.zeros(n))
    gain = np.full((len(va), 1), r.intensity, np.float32)  # scales the effect; (v, a) stays on the disc
    return np.concatenate([np.asarray(va, np.float32), gain], 1)


def _device() -> str:
    return device_info()["device"]


def _default_size(identity_size: int, device: str) -> int:
    """The identity's own size, capped at SIZE_CPU on a CPU (even)."""
    s = identity_size if device == "cuda" else min(identity_size, SIZE_CPU)
    return int(s) - int(s) % 2


def _render_inputs(ident, wav, code, r: RenderRequest, start_s: float = 0.0, phones=None) -> dict:
    """The keyword arguments of `render_frames` for one piece of speech: identity, its 16 kHz speech
    wav [N], its audio code [T,W,C], the request (`start_s`: where the piece starts in the clip) and the
    piece's phone timings (or None): the lip code comes from `render.speech_lips.lip_track`."""
    from emotalk.render.speech_lips import lip_track

    return dict(identity=ident, audio_code=code, emotion=_emotion_per_frame(r, len(code), ident.fps, start_s),
                size=r.size, device=r.device, blinks=r.blink_rate > 0, blink_rate=r.blink_rate, seed=r.seed,
                lips=lip_track(ident, wav, code, phones, source=r.lips))  # None for audio-code identities


def _phones(job: _Job, wav, res=None):
    """Phone timings of one piece of speech for the lips (None where unknown or not wanted): given in the
    request, aligned by TTS to its known text, or found for an English recording (time-bounded)."""
    from emotalk.render.speech_lips import speech_phones

    r = job.r
    if r.lips != "auto":
        return None
    if res is None and r.phones is not None:
        return list(r.phones)
    if res is not None and res.phones:
        return res.phones
    t = time.time()
    job.say("finding the phones", 0.1)
    found = speech_phones(wav, text=res.text if res is not None else r.transcript)
    job.timings["phones"] = job.timings.get("phones", 0.0) + time.time() - t
    return found


@dataclass
class _Job:
    """One render on its way: the checked request, its folder, the identity, what it has said so far."""

    r: RenderRequest
    work: Path
    ident: object  # emotalk.identity.checkpoint.Identity, camera offset applied
    say: Progress
    timings: dict
    t_start: float
    engine: str | None = None  # the TTS engine that spoke, for typed text
    whole: bool = True  # the speech is one piece (keyframes are checked against its length)
    pieces: list = field(default_factory=list)  # speech [N] float32 of each piece, fitted to its frames
    phones: list = field(default_factory=list)  # phone timings (or None) of each piece not yet rendered


def _start(req: RenderRequest, workdir: Path | None, progress: Progress | None) -> _Job:
    t_start = time.time()
    say = progress or (lambda s, f: None)
    r = validate_request(req)
    work = Path(workdir or new_workdir())
    work.mkdir(parents=True, exist_ok=True)
    r.device = r.device or _device()
    say("loading identity", 0.0)
    ident = load_cached(resolve_identity(r.identity), r.device)
    r.size = r.size or _default_size(ident.size, r.device)
    if r.yaw or r.pitch:
        ident = replace(ident, track_w2c=orbit(ident.track_w2c, r.yaw, r.pitch))
    return _Job(r, work, ident, say, {"load": time.time() - t_start, "speech": 0.0, "features": 0.0},
                t_start)


def _speech(job: _Job, by_sentence: bool):
    """The speech, 16 kHz [N] float32, in pieces: an upload whole; typed text whole, or sentence by
    sentence (a pause after each) for a stream."""
    import numpy as np

    from emotalk.media import SR
    from emotalk.speech.normalize import load_speech
    from emotalk.speech.textnorm import split_sentences

    r = job.r
    if not (r.text and r.text.strip()):
        t = time.time()
        job.say("reading the speech", 0.05)
        wav = load_speech(r.audio)
        if len(wav) / SR > MAX_SPEECH_S:  # a file whose header did not tell its length
            raise speech_too_long(Path(r.audio).name, len(wav) / SR)
        job.timings["speech"] += time.time() - t
        bounds = _upload_pieces(job, wav)
        job.whole = len(bounds) == 1
        if r.emotion_track and not job.whole:  # keyframes inside the whole recording (pieces are not checked)
            from emotalk.emotion import EmotionTrack

            EmotionTrack.from_keyframes(list(r.emotion_track), duration=len(wav) / SR)
        for a, b in bounds:
            job.phones.append(_phones(job, wav[a:b]))
            yield wav[a:b]
        return
    texts = split_sentences(r.text) if by_sentence else [r.text]
    job.whole = len(texts) == 1
    for i, text in enumerate(texts):
        t = time.time()
        job.say("speaking the text", 0.05)
        res, notice = _tts(text, r.voice, r.arousal, r.engine)
        job.engine = f"{res.engine} ({res.voice})"
        if notice and notice not in r.notices:
            r.notices.append(notice)
        job.timings["speech"] += time.time() - t
        pause = np.zeros(int(SENTENCE_PAUSE_S * SR) if i < len(texts) - 1 else 0, np.float32)
        job.phones.append(_phones(job, res.wav, res))  # in the piece's own time: the pause comes after
        yield np.concatenate([res.wav, pause])


def _upload_pieces(job: _Job, wav) -> list[tuple[int, int]]:
    """Sample ranges an upload is rendered in: pieces cut at pauses (`speech.pieces`) when its phones are
    to be found (lips "auto", no transcript or phones given), so they are found piece by piece and a
    stream starts after the first piece's; else the whole recording."""
    from emotalk.media import SR
    from emotalk.speech.pieces import piece_bounds

    r = job.r
    if r.lips != "auto" or r.transcript or r.phones is not None:
        return [(0, len(wav))]
    return piece_bounds(wav, SR, job.ident.fps)


def _clip(job: _Job, pieces, chunk_frames, live=None):
    """The one render loop of `synthesize` and `synthesize_stream` (see `render.stream.render_chunks`):
    each piece of speech -> its audio code -> `_render_inputs`; the emotion is read from `live` before
    each chunk. Fills job.pieces with each piece's speech, fitted to its frames."""
    import numpy as np

    from emotalk.emotion import EmotionTrack
    from emotalk.media import SR
    from emotalk.render.stream import EmotionSteer, render_chunks
    from emotalk.speech.features import compute_audio_code

    r, ident, fps = job.r, job.ident, job.ident.fps
    kind = ident.meta["model"].get("audio_kind", "whisper")
    expected = max(1, int(round(speech_seconds(r) * fps)))

    def inputs():
        first = 0
        for wav in pieces:
            n = max(1, int(round(len(wav) / SR * fps)))
            m = int(round(n / fps * SR))
            job.pieces.append(np.pad(wav[:m], (0, max(0, m - len(wav)))))
            if r.emotion_track and job.whole:
                EmotionTrack.from_keyframes(list(r.emotion_track), duration=n / fps)  # keyframes inside it
            t = time.time()
            job.say("audio features", 0.15)
            code = compute_audio_code(wav, SR, n_frames=n, fps=fps, kind=kind, device=r.device)
            job.timings["features"] += time.time() - t
            ph = job.phones.pop(0) if job.phones else None
            yield _render_inputs(ident, job.pieces[-1], code, r, start_s=first / fps, phones=ph)
            first += n

    def say(done: int, total: int) -> None:
        job.say(f"rendering frame {done}/{total}", 0.2 + 0.75 * min(1.0, done / total))

    capacity = None if r.audio else int(expected * 1.5 + 2 * fps)  # typed text: its length is a guess
    yield from render_chunks(inputs(), chunk_frames, capacity, EmotionSteer(live, r.intensity),
                             label_frames if r.watermark else None, say, expected)


def _finish(job: _Job, writer, n_frames: int) -> RenderResult:
    """Close the whole clip's video (speech muxed, or an upload's own sound), note the pace."""
    import numpy as np

    from emotalk.media import SR
    from emotalk.render.soundtrack import mux_soundtrack
    from emotalk.render.speed import observe

    r, fps = job.r, job.ident.fps
    wav = np.concatenate(job.pieces)
    speech_wav = media.write_wav(job.work / "speech.wav", wav)
    out = job.work / "emotalk.mp4"
    job.say("encoding", 0.97)
    if not r.audio:
        writer.audio = wav
    writer.close()
    if r.audio:
        mux_soundtrack(writer.path, r.audio, out, n_frames / fps)
        writer.path.unlink(missing_ok=True)
    observe(len(wav) / SR, r.size, r.device, time.time() - job.t_start, tts=job.engine is not None)
    job.say("done", 1.0)
    job.timings["render_encode"] = time.time() - job.t_start - sum(job.timings.values())
    return RenderResult(out, speech_wav, n_frames, time.time() - job.t_start, job.engine,
                        join_notices(job.r.notices), job.timings, audio_seconds=len(wav) / SR)


def _writer(job: _Job):
    from emotalk.media import SR, VideoWriter

    path = job.work / ("frames.mp4" if job.r.audio else "emotalk.mp4")  # an upload's sound comes after
    return VideoWriter(path, fps=job.ident.fps, sr=SR)


def synthesize(req: RenderRequest, workdir: Path | None = None,
               progress: Progress | None = None) -> RenderResult:
    """Speech (a recording, a video's sound, or text) + identity + emotion -> an mp4 with that speech,
    lips in sync. An upload's sound goes into the mp4 at its own quality; 16 kHz mono only drives the lips."""
    job = _start(req, workdir, progress)
    writer, n = _writer(job), 0
    try:
        for frames, _, _ in _clip(job, _speech(job, by_sentence=False), lambda first: 1 << 30):
            writer.write_batch(frames)
            n += len(frames)
    except BaseException:
        writer.abort()
        raise
    return _finish(job, writer, n)


def synthesize_stream(req: RenderRequest, workdir: Path | None = None, progress: Progress | None = None,
                      chunk_s: float = 1.0, emotion=None):
    """`synthesize`, played while it is made: yields `media.segments.Segment`s (MPEG-TS, H.264 + AAC,
    about `chunk_s` long, the first shorter) as soon as each is encoded, and last the `RenderResult` of
    the complete mp4 (the same frames). Typed text is spoken sentence by sentence (the next sentence is
    spoken while this one renders); an upload whose phones are to be found goes piece by piece
    (`_upload_pieces`: the first at most 4 s, the next piece's phones found while this one renders).
    `emotion`: a callable giving the (valence, arousal) wanted now (or None), read before each chunk: a
    change steers the rest of the stream."""
    import numpy as np

    from emotalk.media.segments import Segment, encode_segment
    from emotalk.render.stream import prefetch

    if not 0.04 <= chunk_s <= 30:
        raise InputError(f"chunk_s must be between 0.04 and 30 seconds, got {chunk_s}.")
    job = _start(req, workdir, progress)
    fps = job.ident.fps
    first_n, chunk_n = max(1, round(min(chunk_s, FIRST_SEGMENT_S) * fps)), max(1, round(chunk_s * fps))
    pieces = _speech(job, by_sentence=True)
    clip = _clip(job, prefetch(pieces),  # the next sentence spoken, or the next piece's phones found, ahead
                 lambda first: first_n if first == 0 else chunk_n, emotion)
    writer, held, n, k = _writer(job), [], 0, 0
    try:
        for frames, _, end in clip:
            writer.write_batch(frames)
            held.append(frames)
            n += len(frames)
            if end:
                seg = np.concatenate(held)
                a = n - len(seg)
                speech = np.concatenate(job.pieces)[round(a / fps * media.SR):round(n / fps * media.SR)]
                path = encode_segment(job.work / "segments" / f"seg_{k:05d}.ts", seg, fps, speech,
                                      start_s=a / fps)
                yield Segment(path, k, a, len(seg), fps)
                held, k = [], k + 1
    except BaseException:
        writer.abort()
        raise
    yield _finish(job, writer, n)
