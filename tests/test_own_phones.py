"""Per-identity phone lip targets (emotalk.lips.own_phones) and their use by render.speech_lips.lip_track."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from emotalk.lips import LIP_NAMES
from emotalk.lips import own_phones as op
from emotalk.lips import phones as pl

FPS = 25.0
M = len(LIP_NAMES)
REST = np.array([0.5, 0.2, -0.3, 0.0, -0.5, 0.1])  # this synthetic person's pause pose: lips apart


def _base() -> pl.PhoneTable:
    """A cross-speaker table: AA opens to gap 1, M closes to -1, UW rounds."""
    t = {"AA": [1.0, 0, 1, 0, 0, 0.5], "M": [-1.0, 0, 0, 0, 0.5, -0.5], "UW": [-0.3, -1, 0, 1, 0, 0],
         "T": [0.0] * M}
    return pl.PhoneTable({k: np.array(v, float) for k, v in t.items()}, {k: 100 for k in t},
                         np.zeros(M), closed_gap=-1.2, closed_press=0.4)


def _clip(seed: int = 0):
    """A 12 s clip: syllables "M AA T" (AA opens to gap 3, M shuts at -2), 0.6 s pauses at REST, one UW;
    code [T,M] stepped per phone with a little noise."""
    rng = np.random.default_rng(seed)
    own = {"AA": [3.0, 0.5, 2.5, -0.5, -1.0, 1.5], "M": [-2.0, 0, -1, 0, 2.0, -1], "T": [0.2] * M,
           "UW": [-1.0, -2, 0, 3, 0, 0]}
    phones, t = [], 0.3
    for k in range(24):
        for name, d in (("M", 0.1), ("AA", 0.16), ("T", 0.08)):
            phones.append((name, t, t + d))
            t += d
        if k == 10:
            phones.append(("UW", t, t + 0.16))
            t += 0.16
        if k % 4 == 3:
            t += 0.6  # a pause
    T = int(np.ceil((t + 0.3) * FPS))
    code = np.tile(REST, (T, 1)) + rng.normal(0, 0.05, (T, M))
    k = np.arange(T) / FPS
    for name, s, e in phones:
        code[(k >= s) & (k < e)] = np.array(own[name]) + rng.normal(0, 0.05, M)
    return code.astype(np.float32), phones, own


def test_own_targets_shrink_to_the_table_by_count():
    code, phones, own = _clip()
    d = op.build_own_table(code, phones, FPS, base=_base(), settings=op.OwnPhoneSettings(prior_count=8))
    ph = d["phones"]
    assert ph["AA"]["own_count"] == 24 and ph["UW"]["own_count"] == 1
    # 24 AAs: 24/32 own, 8/32 the table's
    np.testing.assert_allclose(ph["AA"]["mean"][0], (24 * 3.0 + 8 * 1.0) / 32, atol=0.05)
    # a phone seen once leans on the table: 1/9 own
    np.testing.assert_allclose(ph["UW"]["mean"][3], (1 * 3.0 + 8 * 1.0) / 9, atol=0.05)
    table = op.own_from_json(d).table
    assert table.target("AA")[0] > _base().target("AA")[0] + 1.0  # this person opens wider than average


def test_own_rest_shut_gap_and_gain_follow_the_clip():
    code, phones, _ = _clip(1)
    d = op.build_own_table(code, phones, FPS, base=_base())
    own = op.own_from_json(d)
    assert d["own"]["rest_frames"] > 25
    assert own.table.rest[0] > 0.3  # the clip's own (open) pause pose, not the table's 0
    assert own.table.closed_gap < -1.5  # its closures shut at -2 (table: -1.2)
    np.testing.assert_allclose(own.table.shut_gap, np.percentile(code[:, 0], 1), atol=1e-3)
    assert own.table.closed_level == min(own.table.closed_gap, own.table.shut_gap)
    assert own.phone_gain[0] > 1.0  # the phone track, averaged by coarticulation, spans less than the clip
    lo, hi = op.DEFAULT_OWN.gain_range
    assert all(lo <= g <= hi for g in own.phone_gain)
    # learning from part of the clip only: its first half's phones
    half = np.arange(len(code) // 2)
    d2 = op.build_own_table(code, phones, FPS, frames=half, base=_base())
    assert 0 < d2["phones"]["AA"]["own_count"] < d["phones"]["AA"]["own_count"]


def test_pauses_close_with_the_jaw_press_and_lower_lip_of_the_shut_mouth():
    code, phones, own_codes = _clip(4)
    d = op.build_own_table(code, phones, FPS, base=_base())
    table = op.own_from_json(d).table
    shut = np.asarray(d["closed"]["shut_pose"])  # the most shut frames of this clip are its M closures
    np.testing.assert_allclose(shut[[2, 4, 5]], np.array(own_codes["M"])[[2, 4, 5]], atol=0.1)
    pose = table.pause_pose(closed=True)
    g, j, p, lo = (LIP_NAMES.index(n) for n in ("gap", "jaw", "press", "lower"))
    assert pose[g] == table.closed_level
    np.testing.assert_allclose(pose[[j, p, lo]], shut[[j, p, lo]])
    np.testing.assert_allclose(table.pause_pose(closed=False), table.rest)
    # tables without a shut pose (the cross-speaker one, older identity files) keep the rest pose's jaw
    del d["closed"]["shut_pose"]
    old = op.own_from_json(d).table.pause_pose(closed=True)
    assert old[j] == table.rest[j] and old[p] == table.closed_press


def test_closures_hold_the_whole_shut_mouth_when_the_identity_has_one():
    """p/b/m frames of the blended track take the identity's shut pose in every parameter (gap at the
    closed level, press at least the closure's); a table without one holds only gap and press."""
    from emotalk.lips.coarticulation import closure_frames

    code, phones, _ = _clip(4)
    d = op.build_own_table(code, phones, FPS, base=_base())
    table = op.own_from_json(d).table
    pose = table.closure_pose()
    g, p = LIP_NAMES.index("gap"), LIP_NAMES.index("press")
    assert pose[g] == table.closed_level and pose[p] >= table.closed_press
    T = 50
    drive = np.full((T, M), 0.7)  # a driver that keeps the mouth open and wide
    ph = [("AA", 0.0, 0.4), ("M", 0.4, 0.6), ("AA", 0.6, 1.0), ("B", 1.0, 1.12), ("IY", 1.12, 2.0)]
    out = pl.phone_lips(drive, FPS, ph, table=table)
    shut = np.concatenate(closure_frames(pl.as_phone_tuples(ph), T, FPS))
    np.testing.assert_allclose(out[shut], np.broadcast_to(pose, (len(shut), M)), atol=1e-5)
    assert not np.allclose(out[5], pose, atol=0.1)  # the open vowel is not held
    del d["closed"]["shut_pose"]
    old_table = op.own_from_json(d).table
    assert old_table.closure_pose() is None
    old = pl.phone_lips(drive, FPS, ph, table=old_table)
    assert np.all(old[shut, g] <= old_table.closed_level + 1e-6)
    w = LIP_NAMES.index("width")
    assert not np.allclose(old[shut, w], pose[w])  # only gap and press were held


class _FakeModel:
    """What lip_track needs of a lip-code model: a driver predicting zeros, a wide trained range."""

    settings = SimpleNamespace(lip_code=True)
    audio_shape = (4, 8)
    lip_lo = torch.full((M,), -3.0)
    lip_hi = torch.full((M,), 3.0)

    def lip_driver(self, x):
        return torch.zeros(len(x), M)


def test_lip_track_uses_the_identity_table_when_present(tmp_path):
    from emotalk.render.speech_lips import lip_track

    ident = SimpleNamespace(model=_FakeModel(), fps=FPS, root=tmp_path)
    T = 50
    code = np.zeros((T, 4, 8), np.float32)
    phones = [("AA", 0.0, 0.3), ("SIL", 0.3, 1.5), ("M", 1.5, 1.7), ("AA", 1.7, 2.0)]
    cross = lip_track(ident, None, code, phones)
    np.testing.assert_allclose(cross[20, 0], pl.load_table().closed_level, atol=1e-5)  # the table's closure
    d = op.build_own_table(*_clip(2)[:2], FPS, base=_base())
    d["closed"]["shut_gap"] = -2.7
    (tmp_path / op.FILE).write_text(json.dumps(d))
    own = lip_track(ident, None, code, phones)
    np.testing.assert_allclose(own[20, 0], -2.7, atol=1e-5)  # the identity's own shut lips in the pause
    assert own[2, 0] > cross[2, 0] + 0.3  # its own, wider open vowel (half of the blend: driver 0)
    (tmp_path / op.FILE).write_text("{not json")  # a damaged file: the cross-speaker table, no error
    np.testing.assert_allclose(lip_track(ident, None, code, phones), cross, atol=1e-6)


def test_write_identity_phone_lips_from_a_dataset(tmp_path, monkeypatch):
    code, phones, _ = _clip(3)
    T = len(code)
    ds = SimpleNamespace(fps=FPS, train_idx=np.arange(T - 20), lmk2d=np.zeros((T, 478, 2)),
                         audio=lambda: np.zeros(int(T / FPS * 16000), np.float32))
    monkeypatch.setattr("emotalk.lips.dataset_lips", lambda ds: (None, code))
    p = op.write_identity_phone_lips(tmp_path, ds, phones=phones)
    assert p == tmp_path / op.FILE and op.load_own(tmp_path) is not None
    d = json.loads(p.read_text())
    assert d["kind"] == op.KIND and d["names"] == list(LIP_NAMES) and len(d["phone_gain"]) == M
    short = SimpleNamespace(**{**vars(ds), "train_idx": np.arange(50)})
    monkeypatch.setattr("emotalk.lips.dataset_lips", lambda ds: (None, code[:50]))  # 2 s: too short
    assert op.write_identity_phone_lips(tmp_path / "short", short, phones=phones) is None
    assert not (tmp_path / "short").exists()

    def boom(ds):
        raise RuntimeError("no blendshapes")

    monkeypatch.setattr("emotalk.lips.dataset_lips", boom)  # any failure: None, never an error
    assert op.write_identity_phone_lips(tmp_path / "bad", ds, phones=phones) is None


def test_not_english_clip_gets_no_phones(monkeypatch):
    from emotalk.speech import align

    words = [align.Word("bonjour", 0.0, 0.5, 0.3), align.Word("madame", 0.5, 1.0, 0.4)]
    monkeypatch.setattr(align, "transcribe", lambda *a, **k: align.Transcript("bonjour madame", words))
    phones, why = op.clip_phones(np.zeros(16000, np.float32))
    assert phones == [] and "English" in why


@pytest.mark.parametrize("name", ["obama", "reagan"])
def test_shipped_identity_tables_load(name):
    from emotalk.identity.store import SHIPPED_DIR

    root = SHIPPED_DIR / name
    if not (root / op.FILE).is_file():
        pytest.skip(f"{name} ships without {op.FILE}")
    own = op.load_own(root)
    assert own is not None and own.table.counts["AA"] > 10
    assert own.table.target("AA")[0] > own.table.target("M")[0] + 1.0
