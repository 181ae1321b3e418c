"""Phone-aware lips (emotalk.lips.phones, emotalk.lips.coarticulation, emotalk.render.speech_lips)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from emotalk.lips import LIP_NAMES
from emotalk.lips import phones as pl
from emotalk.lips.coarticulation import closure_frames

FPS = 25.0
M = len(LIP_NAMES)


def _table() -> pl.PhoneTable:
    """A small table: open vowels open (gap +1.5), bilabials closed-ish (gap -1), rest slightly closed."""
    t = {"AA": [1.5, 0.2, 1.5, 0, -0.3, 1.0], "AE": [1.3, 0.5, 1.2, 0, -0.2, 1.0],
         "M": [-1.0, -0.3, -0.3, 0.2, 0.4, -0.5], "B": [-1.1, -0.3, -0.4, 0.1, 0.4, -0.5],
         "P": [-1.2, -0.3, -0.4, 0.3, 0.3, -0.6], "T": [0.1, 0.0, -0.1, 0, 0, 0],
         "UW": [-0.4, -1.0, 0, 1.0, -0.2, -0.4]}
    return pl.PhoneTable({k: np.array(v, float) for k, v in t.items()}, {k: 50 for k in t},
                         np.array([-0.3, 0.3, -0.4, -0.3, 0.2, -0.2]), closed_gap=-1.6, closed_press=0.5)


def test_bilabial_closures_hold_the_closed_gap_for_their_duration():
    table = _table()
    phones = [("AA", 0.0, 0.2), ("M", 0.2, 0.32), ("AA", 0.32, 0.6), ("B", 0.6, 0.62), ("AE", 0.62, 1.0)]
    T = 25
    drv = np.random.default_rng(0).normal(0, 1, (T, M)).astype(np.float32) + 1.0  # an open-ish driver
    out = pl.phone_lips(drv, FPS, phones, None, table)
    # M: frames whose instant is in [0.2, 0.32) -> 5, 6, 7; B is 20 ms long: still >= 2 frames closed
    assert [list(ix) for ix in closure_frames(phones, T, FPS, 2)] == [[5, 6, 7], [15, 16]]
    np.testing.assert_allclose(out[[5, 6, 7, 15, 16], 0], -1.6, atol=1e-6)
    assert (out[[5, 6, 7, 15, 16], 4] >= 0.5 - 1e-6).all()  # press raised on the closure
    assert (out[[1, 2, 10, 11, 20, 21], 0] > -1.0).all()  # the vowels around are not closed


def test_open_vowels_open_more_than_bilabials_with_the_shipped_table():
    table = pl.load_table()
    assert table.counts["AA"] > 10 and table.counts["M"] > 10
    rng = np.random.default_rng(1)
    phones, t = [], 0.0
    for _ in range(12):  # "ma pa ba" syllables of random length
        for name in (rng.choice(["M", "P", "B"]), rng.choice(["AA", "AE", "AH"])):
            d = rng.uniform(0.06, 0.2)
            phones.append((str(name), t, t + d))
            t += d
    T = int(np.ceil(t * FPS))
    track = pl.phone_track(phones, T, FPS, table)
    k = np.arange(T) / FPS
    gap_of = {c: [track[(k >= s) & (k < e), 0].mean() for n, s, e in phones if (n in ("M", "P", "B")) == c
                  and ((k >= s) & (k < e)).any()] for c in (True, False)}
    assert np.mean(gap_of[False]) > np.mean(gap_of[True]) + 1.0
    assert table.target("AA")[0] > table.target("M")[0] + 1.0  # the table itself: open > closed


def test_long_pause_reaches_rest_within_0p2_s_and_stays():
    table = _table()
    phones = [("AA", 0.0, 0.3), ("T", 0.3, 0.6), ("SIL", 0.6, 1.4), ("AE", 1.4, 1.8), ("UW", 1.8, 2.0)]
    T = 50
    drv = np.random.default_rng(2).normal(0, 1.5, (T, M)).astype(np.float32)  # a restless driver
    out = pl.phone_lips(drv, FPS, phones, None, table)
    a, b = int(np.ceil((0.6 + 0.2) * FPS)), int(np.floor((1.4 - pl.DEFAULT.pause_lead_s) * FPS))
    np.testing.assert_allclose(out[a:b + 1], np.broadcast_to(table.pause_pose(), (b + 1 - a, M)), atol=1e-5)
    assert np.abs(out[16] - table.pause_pose()).max() > 0.05  # still easing 0.04 s into the pause
    assert out[a, 0] == table.closed_gap  # the lips close in the pause (gap at the closure's level)
    open_rest = pl.phone_lips(drv, FPS, phones, None, table, pl.PhoneLipSettings(pause_closed=False))
    np.testing.assert_allclose(open_rest[a:b + 1], np.broadcast_to(table.rest, (b + 1 - a, M)), atol=1e-5)
    short = [("AA", 0.0, 0.3), ("SIL", 0.3, 0.6), ("AE", 0.6, 1.0)]  # 0.3 s: no rest
    w = pl.rest_weight(pl.pauses_from_phones(short, 25, FPS, 0.4), 25, FPS)
    assert w.max() == 0


def test_energy_pauses_rest_without_phones():
    sr = 16000
    rng = np.random.default_rng(3)
    t = np.arange(int(2.4 * sr)) / sr
    speech = (0.3 * np.sin(2 * np.pi * 800 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    speech[int(0.8 * sr):int(1.6 * sr)] = 0.0  # 0.8 s of silence
    speech += rng.normal(0, 1e-4, len(speech)).astype(np.float32)
    T = 60
    drv = rng.normal(0, 1.5, (T, M)).astype(np.float32)
    table = _table()
    out = pl.phone_lips(drv, FPS, None, speech, table)
    a, b = int(np.ceil((0.8 + 0.2 + 0.04) * FPS)), int(np.floor((1.6 - 0.12 - 0.04) * FPS))
    np.testing.assert_allclose(out[a:b + 1], np.broadcast_to(table.pause_pose(), (b + 1 - a, M)), atol=1e-5)
    np.testing.assert_allclose(out[:15], drv[:15], atol=1e-6)  # speech without phones: the driver as is
    assert not np.allclose(pl.phone_lips(drv, FPS, None, speech, table, replace(pl.DEFAULT, pauses=False)),
                           out)


# --- identity-level: the lip track and the renderer ----------------------------------------------------

@pytest.fixture(scope="module")
def lip_identity(tmp_path_factory):
    """A tiny synthetic lip-code identity (6 training steps), with a driver whose predictions vary."""
    from emotalk.gaussians.synthetic import make_synthetic
    from emotalk.identity.checkpoint import load_identity
    from emotalk.identity.fit import train_identity
    from emotalk.lips import LipDriver, save_driver
    from emotalk.training.settings import PRESETS

    tmp = tmp_path_factory.mktemp("phone-lips")
    torch.manual_seed(0)
    ds = make_synthetic(size=32, n_frames=12, window=4, channels=8)
    drv = LipDriver(4, 8)
    torch.nn.init.normal_(drv.mlp[-1].weight, std=2.0)
    s = PRESETS["test"]
    s = replace(s, steps=6, batch=1, size=32, checkpoint_every=100, densify=replace(s.densify, start=100),
                model=replace(s.model, n_face_init=150, n_mouth_init=30, lip_code=True),
                lips=replace(s.lips, driver=str(save_driver(drv, tmp / "drv.safetensors"))))
    out, _, _ = train_identity(ds, s, tmp / "ident", tmp / "work")
    ident = load_identity(out)
    torch.nn.init.normal_(ident.model.fields["face"].mlp[-1].weight, std=0.5)  # lips visibly move the face
    return ident, ds


def test_audio_source_is_the_drivers_clamped_prediction(lip_identity):
    from emotalk.gaussians.model import Frames
    from emotalk.render.speech_lips import lip_track

    ident, ds = lip_identity
    m = ident.model
    code = np.asarray(ds.audio_code, np.float32)
    T = len(code)
    got = lip_track(ident, np.zeros(int(T / FPS * 16000), np.float32), code, source="audio")
    fr = Frames(torch.eye(4).repeat(T, 1, 1), torch.eye(3).repeat(T, 1, 1), torch.as_tensor(code),
                torch.zeros(T, 2), torch.zeros(T, 2))
    np.testing.assert_array_equal(got, m.lips(fr).numpy())
    assert got.std(0).max() > 0  # a varying prediction: the comparison means something
    auto = lip_track(ident, np.zeros(int(T / FPS * 16000), np.float32), code, phones=[("M", 0.0, 0.2)])
    assert auto.shape == got.shape and not np.allclose(auto, got)
    assert (auto >= m.lip_lo.numpy() - 1e-6).all() and (auto <= m.lip_hi.numpy() + 1e-6).all()


def test_render_frames_follows_given_lips(lip_identity):
    from emotalk.gaussians.model import Frames
    from emotalk.render.frames import render_frames
    from emotalk.render.speech_lips import lip_track

    ident, ds = lip_identity
    code = np.asarray(ds.audio_code[:4], np.float32)
    base = np.concatenate(list(render_frames(ident, code, batch=4, blinks=False)))
    same = lip_track(ident, None, code, source="audio")
    np.testing.assert_array_equal(np.concatenate(list(render_frames(ident, code, batch=4, blinks=False,
                                                                    lips=same))), base)
    lips = np.tile(ident.model.lip_hi.numpy(), (4, 1))  # the widest mouth it was trained on
    given = np.concatenate(list(render_frames(ident, code, batch=4, blinks=False, lips=lips)))
    assert np.abs(given.astype(int) - base.astype(int)).max() > 0
    # the same as the model's own override: Frames.lips replaces the driver's prediction
    m = ident.model
    fr = Frames(torch.as_tensor(ident.track_w2c[:4]), torch.as_tensor(ident.K, dtype=torch.float32)[None]
                .expand(4, 3, 3), torch.as_tensor(code), torch.as_tensor(ident.track_upper[:4]),
                torch.zeros(4, 2), lips=torch.as_tensor(lips, dtype=torch.float32))
    assert torch.equal(m.lips(fr), fr.lips)
    with pytest.raises(Exception, match="lip track"):
        list(render_frames(ident, code, lips=lips[:2]))


def test_speech_phones_never_fails_a_render(monkeypatch):
    import time

    from emotalk.render import speech_lips

    wav = np.zeros(16000, np.float32)
    notes: list[str] = []
    assert speech_lips.speech_phones(wav, language="fr", notes=notes) is None and "fr" in notes[-1]

    def boom(*a):
        raise RuntimeError("aligner exploded")

    monkeypatch.setattr(speech_lips, "_find_phones", boom)
    assert speech_lips.speech_phones(wav, text="hello", notes=notes) is None and "exploded" in notes[-1]
    monkeypatch.setattr(speech_lips, "_find_phones", lambda *a: time.sleep(2) or ([], ""))
    t0 = time.time()
    assert speech_lips.speech_phones(wav, text="hello", timeout_s=0.2, notes=notes) is None
    assert time.time() - t0 < 1.5 and "longer than" in notes[-1]


def test_aligned_silence_rests_even_where_the_room_echoes():
    """A pause the aligner marked SIL rests although its energy stays over the silence level (echo); a gap
    between phones with speech going on (an unaligned chunk) does not."""
    table = _table()
    T, sr = 75, 16000
    rng = np.random.default_rng(5)
    t = np.arange(int(T / FPS * sr)) / sr
    wav = (0.3 * np.sin(2 * np.pi * 800 * t) * (1 + rng.normal(0, 0.05, len(t)))).astype(np.float32)
    wav[int(1.6 * sr):int(2.0 * sr)] *= 0.01  # the echo dies away only late in the pause
    drv = np.full((T, M), 1.0, np.float32)  # an open driver
    sil = [("AA", 0.0, 0.8), ("SIL", 0.8, 2.0), ("AE", 2.0, 3.0)]
    out = pl.phone_lips(drv, FPS, sil, wav, table)
    np.testing.assert_allclose(out[int(1.1 * FPS), 0], table.closed_level, atol=1e-5)
    gap = [("AA", 0.0, 0.8), ("AE", 2.0, 3.0)]  # no SIL: loud, so no pause
    assert pl.phone_lips(drv, FPS, gap, wav, table)[int(1.1 * FPS), 0] > 0
    assert pl.sil_cover(sil, 0.8, 2.0) == pytest.approx(1.0) and pl.sil_cover(gap, 0.8, 2.0) == 0.0
