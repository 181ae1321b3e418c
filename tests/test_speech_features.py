"""Audio code: the PyTorch Whisper encoder against ctranslate2, frame alignment, chunking, bad input."""

from __future__ import annotations

import time

import numpy as np
import pytest

from emotalk.errors import InputError
from emotalk.speech.features import ChunkSettings, code_dims, compute_audio_code, frame_windows
from tests.conftest import shared

AUDIO = ["speech_hallo_7s.wav", "speech_hdtf_radio_8s.wav", "speech_macron_12s.wav", "speech_obama_5s.wav",
         "speech_synctalk_13s.wav"]


@pytest.fixture(scope="module")
def whisper_dir():
    from emotalk import assets

    return assets.fetch("whisper-tiny.en")


@pytest.fixture(scope="module")
def speech():
    from emotalk.media import read_audio

    return read_audio(shared("audio/speech_synctalk_13s.wav"), 16000)  # [N] 13.3 s


@pytest.fixture(scope="module")
def speech_code(speech) -> np.ndarray:
    """The default (Whisper) audio code of `speech`, computed once for the tests that read it."""
    return compute_audio_code(speech, 16000)


def test_code_dims():
    assert code_dims("whisper") == (16, 384)
    assert code_dims("mel") == (32, 80)
    with pytest.raises(InputError, match="kind"):
        code_dims("hubert")


def test_ct2_reader_shapes(whisper_dir):
    from emotalk.speech.ct2_weights import read_ct2_variables

    v = read_ct2_variables(whisper_dir / "model.bin", prefix="encoder/")
    assert v["encoder/conv1/weight"].shape == (384, 80, 3)
    assert v["encoder/position_encodings/encodings"].shape == (1500, 384)
    assert v["encoder/layer_3/self_attention/linear_0/weight"].shape == (1152, 384)
    assert int(v["encoder/num_heads"]) == 6
    assert not any(k.startswith("decoder/") for k in v)


def test_mel_front_end_matches_references(speech):
    librosa = pytest.importorskip("librosa")
    import torch
    from faster_whisper.feature_extractor import FeatureExtractor

    from emotalk.speech.whisper_encoder import log_mel, mel_filters

    assert np.allclose(mel_filters(), librosa.filters.mel(sr=16000, n_fft=400, n_mels=80), atol=1e-7)
    x = speech[: 16000 * 10]
    ref = FeatureExtractor()(x, padding=0)  # [80, 1000]
    ours = log_mel(torch.from_numpy(x)).numpy()
    n = min(ref.shape[1], ours.shape[1])
    assert n >= 999
    assert np.abs(ref[:, :n] - ours[:, :n]).max() < 1e-4


def test_encoder_matches_ctranslate2(whisper_dir, speech):
    ctranslate2 = pytest.importorskip("ctranslate2")
    import torch

    from emotalk.speech.whisper_encoder import load_encoder, log_mel

    audio = np.zeros(16000 * 30, np.float32)
    audio[: len(speech)] = speech
    mel = log_mel(torch.from_numpy(audio))[None]  # [1,80,3000]
    with torch.inference_mode():
        ours = load_encoder(str(whisper_dir), "cpu")(mel).numpy()  # [1,1500,384] (the cached encoder)
    model = ctranslate2.models.Whisper(str(whisper_dir), device="cpu", compute_type="float32",
                                       intra_threads=2)
    ref = np.asarray(model.encode(ctranslate2.StorageView.from_array(mel.numpy()), to_cpu=True))
    assert ref.shape == ours.shape == (1, 1500, 384)
    err = np.abs(ref - ours)
    assert err.max() < 0.02 and err.mean() < 1e-3, (err.max(), err.mean())


def test_shape_and_length(speech, speech_code):
    code = speech_code
    assert code.dtype == np.float32 and code.shape == (round(len(speech) / 16000 * 25), 16, 384)
    assert np.isfinite(code).all()
    # pad and trim to a requested number of frames; the kept frames are the same
    longer = compute_audio_code(speech, 16000, n_frames=400)
    shorter = compute_audio_code(speech, 16000, n_frames=100)
    assert longer.shape[0] == 400 and shorter.shape[0] == 100
    assert np.abs(longer[:300] - code[:300]).max() < 1e-4
    assert np.array_equal(shorter, code[:100])  # the code is cut, not the audio


def test_deterministic_and_other_rates(speech):
    a = compute_audio_code(speech[:48000], 16000)
    b = compute_audio_code(speech[:48000], 16000)
    assert np.array_equal(a, b)
    import soxr

    up = soxr.resample(speech[:48000], 16000, 44100).astype(np.float32)
    c = compute_audio_code(np.stack([up, up], 1), 44100)  # stereo 44.1 kHz
    assert c.shape == a.shape
    cos = (a * c).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(c, axis=-1))
    assert cos.mean() > 0.97


@pytest.mark.parametrize("kind,tol", [("mel", 1e-5), ("whisper", None)])
def test_frames_follow_the_audio(speech, kind, tol):
    """Delaying the audio by 0.4 s (10 frames) moves the code by 10 frames."""
    x = speech[: 16000 * 6]
    a = compute_audio_code(x, 16000, kind=kind)
    b = compute_audio_code(np.concatenate([np.zeros(6400, np.float32), x]), 16000, kind=kind)
    assert b.shape[0] == a.shape[0] + 10
    if tol is not None:
        assert np.abs(b[10 + 5:-5] - a[5:-5]).max() < tol  # mel: exact up to the borders
    else:
        d_match = np.abs(b[10:-10] - a[:-10]).mean()
        d_off = np.abs(b[12:-8] - a[:-10]).mean()  # misaligned by 2 frames
        assert d_match < 0.5 * d_off, (d_match, d_off)


def test_window_centre_convention():
    """Frame t takes steps t*rate/fps - W/2 ... + W/2 - 1 (ER-NeRF), interpolated for 30 fps."""
    seq = np.arange(200, dtype=np.float32)[:, None]  # [S,1] value = step index
    w = frame_windows(seq, 10, 25.0, 50.0, 16, lead_steps=18)
    assert w[3, :, 0].tolist() == list(range(6 - 8 + 18, 6 + 8 + 18))
    w30 = frame_windows(seq, 10, 30.0, 50.0, 16, lead_steps=18)
    assert np.allclose(w30[3, 8, 0], 3 * 50 / 30 + 18)


def test_long_audio_has_no_seams(speech):
    """70 s of speech spans 3 encoder windows; the cross-faded borders look like any other step."""
    long = np.concatenate([speech] * 6)[: 16000 * 70]
    chunks = ChunkSettings()
    code = compute_audio_code(long, 16000, chunks=chunks)
    assert code.shape == (1750, 16, 384)
    seq = code[:, 8, :]  # [T,C] the frame's own step
    jumps = np.linalg.norm(np.diff(seq, axis=0), axis=-1)  # [T-1]
    hop_frames = int((chunks.window_s - chunks.overlap_s) * 25)
    lead = 18 / 50 * 25  # frames of silence the code adds in front
    for k in (1, 2):
        start, end = int(k * hop_frames - lead), int(k * hop_frames - lead + chunks.overlap_s * 25)
        border = jumps[max(0, start - 2):end + 2]
        assert border.max() < np.percentile(jumps, 99.5) * 1.2
    # a hard cut (no overlap) makes a visible seam, the cross-fade does not
    hard = compute_audio_code(long, 16000, chunks=ChunkSettings(overlap_s=0.0))[:, 8, :]
    cut = int(30 * 25 - lead)
    hard_jump = np.linalg.norm(hard[cut] - hard[cut - 1])
    assert hard_jump > np.median(np.linalg.norm(np.diff(hard, axis=0), axis=-1))


def test_bad_input():
    with pytest.raises(InputError, match="empty"):
        compute_audio_code(np.zeros(0, np.float32))
    with pytest.raises(InputError, match="NaN"):
        compute_audio_code(np.full(16000, np.nan, np.float32))
    with pytest.raises(InputError, match="1-D"):
        compute_audio_code(np.zeros((10, 10, 10), np.float32))
    with pytest.raises(InputError, match="frame"):
        compute_audio_code(np.zeros(100, np.float32))  # 6 ms: no video frame
    with pytest.raises(InputError, match="fps"):
        compute_audio_code(np.zeros(16000, np.float32), fps=0)
    with pytest.raises(InputError, match="kind"):
        compute_audio_code(np.zeros(16000, np.float32), kind="deepspeech")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            compute_audio_code(np.zeros(16000, np.float32), device="cuda")


@pytest.fixture(scope="module")
def warm_encoder() -> None:
    """One code computed first, so the timings printed below leave out loading and first-run setup."""
    compute_audio_code(np.sin(np.arange(16000, dtype=np.float32) / 9), 16000)


@pytest.mark.parametrize("name", AUDIO)
def test_every_shared_file(name, capsys, warm_encoder):
    from emotalk.speech.normalize import load_speech

    wav = load_speech(shared(f"audio/{name}"))
    t0 = time.perf_counter()
    code = compute_audio_code(wav, 16000)
    dt = time.perf_counter() - t0
    dur = len(wav) / 16000
    assert code.shape == (round(dur * 25), 16, 384) and np.isfinite(code).all()
    assert code.std() > 0.1
    with capsys.disabled():
        print(f"\n  features {name}: {dur:.1f} s audio in {dt:.2f} s = {dt / dur:.3f}x real time")


def test_encoder_only_weights_round_trip(whisper_dir, speech, tmp_path):
    """An encoder-only model.bin (what travels to a GPU host) gives the very same code."""
    from emotalk.speech.ct2_weights import read_ct2_variables, write_ct2_variables

    enc = read_ct2_variables(whisper_dir / "model.bin", prefix="encoder/")
    write_ct2_variables(tmp_path / "enc" / "model.bin", enc)
    back = read_ct2_variables(tmp_path / "enc" / "model.bin")
    assert back.keys() == enc.keys() and all(np.array_equal(back[k], enc[k]) for k in enc)
    x = speech[:32000]
    assert np.array_equal(compute_audio_code(x, model_dir=tmp_path / "enc"), compute_audio_code(x))


def _zcos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of codes after standardising each channel (Whisper states carry a large, slowly varying
    context/position offset in a few channels; the per-frame content is what must agree)."""
    flat = a.reshape(-1, a.shape[-1])
    mu, sd = flat.mean(0), flat.std(0) + 1e-3
    p, q = (a - mu) / sd, (b - mu) / sd
    return (p * q).sum(-1) / (np.linalg.norm(p, axis=-1) * np.linalg.norm(q, axis=-1))


def test_fast_chunks_are_close_to_the_default(speech, speech_code):
    from emotalk.speech.features import FAST_CHUNKS

    a = speech_code
    b = compute_audio_code(speech, 16000, chunks=FAST_CHUNKS)  # 13 s: two 10 s windows
    assert a.shape == b.shape
    assert _zcos(a, b).mean() > 0.95
    assert _zcos(a[:-20], a[20:]).mean() < 0.5  # while different moments of speech differ


def test_content_survives_a_shift_in_context(speech):
    """The same words after 2 s of silence give nearly the same (standardised) code."""
    x = speech[: 16000 * 6]
    a = compute_audio_code(x, 16000)
    b = compute_audio_code(np.concatenate([np.zeros(32000, np.float32), x]), 16000)[50:]
    assert _zcos(a[5:-5], b[5:-5]).mean() > 0.95
